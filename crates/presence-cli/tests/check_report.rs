//! `presence check`'s report says how far the check went and gives a
//! command that repeats it, bounds included.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `presence check` with `flags` into a fresh directory named after
/// `name`, and returns the one report it wrote.
fn report(name: &str, flags: &[&str]) -> String {
    named_report(name, flags).1
}

/// [`report`], with the report's file name.
fn named_report(name: &str, flags: &[&str]) -> (String, String) {
    let out: PathBuf =
        std::env::temp_dir().join(format!("presence-check-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let finished = Command::new(env!("CARGO_BIN_EXE_presence"))
        .arg("check")
        .args(flags)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("presence runs");
    assert!(
        finished.status.success(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    let named = only_file(&out);
    let _ = std::fs::remove_dir_all(&out);
    named
}

fn only_file(dir: &Path) -> (String, String) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the report directory exists")
        .map(|entry| entry.expect("a readable entry").path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let path = entries.remove(0);
    let name = path
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    (name, std::fs::read_to_string(path).expect("the report reads"))
}

fn line_with<'r>(report: &'r str, start: &str) -> &'r str {
    report
        .lines()
        .find(|line| line.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in\n{report}"))
}

#[test]
fn a_complete_check_is_exhaustive_and_its_command_names_no_limit() {
    let (name, report) = named_report("complete", &["--replicas", "2", "--ops", "1", "--faults", "0"]);
    assert_eq!(name, "crdt-r2-o1-f0.md");
    assert_eq!(line_with(&report, "| exhaustive"), "| exhaustive | yes |");
    let command = line_with(&report, "- command:");
    assert!(
        !command.contains("--timeout-secs") && !command.contains("--depth"),
        "{command}"
    );
}

#[test]
fn a_depth_bound_is_reported_and_repeated() {
    let flags = ["--replicas", "2", "--ops", "2", "--faults", "0", "--depth", "3"];
    let (name, report) = named_report("depth", &flags);
    // Named for its bound, so it never replaces an exhaustive run's report.
    assert_eq!(name, "crdt-r2-o2-f0-d3.md");
    assert_eq!(
        line_with(&report, "| exhaustive"),
        "| exhaustive | no (bounded at depth 3) |"
    );
    assert!(line_with(&report, "- command:").ends_with(" --depth 3`"));
}

#[test]
fn a_time_limit_is_reported_and_repeated() {
    // Far larger than a second's work (25 million representatives even
    // under symmetry, which this run does not use).
    let flags = [
        "--replicas",
        "3",
        "--ops",
        "2",
        "--faults",
        "1",
        "--timeout-secs",
        "1",
    ];
    let report = report("timeout", &flags);
    assert_eq!(
        line_with(&report, "| exhaustive"),
        "| exhaustive | no (stopped at the 1 s time limit) |"
    );
    assert!(line_with(&report, "- command:").ends_with(" --timeout-secs 1`"));
}

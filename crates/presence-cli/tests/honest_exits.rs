//! A command that checked nothing, or could not write what it was asked
//! to, must not exit 0: each case here once did.

use std::process::Command;

fn presence(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_presence"))
        .args(args)
        .output()
        .expect("presence runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn no_threads_is_a_usage_error() {
    for command in [
        &["check", "--threads", "0"][..],
        &["sim", "--threads", "0"],
        &["swarm", "--threads", "0", "--seeds", "1"],
    ] {
        let (code, stderr) = presence(command);
        assert_eq!(code, Some(64), "{command:?}: {stderr}");
        assert!(stderr.contains("1..=1024"), "{stderr}");
    }
}

#[test]
fn seed_ranges_that_hold_no_seed_or_overflow_are_usage_errors() {
    for command in [
        &["swarm", "--first", "18446744073709551615", "--seeds", "2"][..],
        &["swarm", "--seeds", "0"],
        &["swarm", "--seeds", "18446744073709551615"],
    ] {
        let (code, stderr) = presence(command);
        assert_eq!(code, Some(64), "{command:?}: {stderr}");
    }
    let (code, stderr) = presence(&[
        "swarm",
        "--first",
        "18446744073709551614",
        "--seeds",
        "1",
        "--threads",
        "1",
    ]);
    assert_eq!(code, Some(0), "the last seed is a seed: {stderr}");
}

#[test]
fn a_report_that_cannot_be_written_fails_the_check() {
    let file = std::env::temp_dir().join(format!("presence-not-a-dir-{}", std::process::id()));
    std::fs::write(&file, "a file, not a folder").expect("temp file");
    let out = file.join("reports");
    let out = out.to_str().expect("utf-8 path");
    let (code, stderr) = presence(&[
        "check",
        "--replicas",
        "2",
        "--ops",
        "1",
        "--faults",
        "0",
        "--out",
        out,
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, Some(74), "{stderr}");
    assert!(stderr.contains("cannot write"), "{stderr}");
}

#[test]
fn unknown_arguments_are_usage_errors_not_liveness_failures() {
    let (code, _) = presence(&["sim", "--no-such-flag"]);
    assert_eq!(code, Some(64));
    let (code, _) = presence(&["--help"]);
    assert_eq!(code, Some(0));
}

#[test]
fn a_swarm_that_never_reaches_a_required_mark_fails_with_its_own_code() {
    let (code, stderr) = presence(&["swarm", "--seeds", "1", "--require-mark", "clock-stepped-back"]);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("never reached clock-stepped-back"), "{stderr}");
    let (code, stderr) = presence(&["swarm", "--seeds", "20", "--require-mark", "down-detected"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = presence(&["swarm", "--seeds", "1", "--require-mark", "no-such-mark"]);
    assert_eq!(code, Some(64), "{stderr}");
}

#[test]
fn a_node_without_a_usable_secret_does_not_start() {
    let node = |env: Option<&str>, extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_presence"));
        command
            .args([
                "node",
                "--id",
                "n0",
                "--listen",
                "127.0.0.1:0",
                "--max-runtime-secs",
                "1",
            ])
            .args(extra)
            .env_remove("PRESENCE_SECRET");
        if let Some(secret) = env {
            command.env("PRESENCE_SECRET", secret);
        }
        let output = command.output().expect("presence runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = node(None, &[]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("PRESENCE_SECRET"), "{stderr}");
    let (code, stderr) = node(Some("too short"), &[]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("16 to 1024 bytes"), "{stderr}");
    let (code, stderr) = node(None, &["--secret-file", "/nonexistent/secret"]);
    assert_eq!(code, Some(64), "{stderr}");
    let (code, stderr) = node(Some("a secret long enough to use"), &["--window-ms", "0"]);
    assert_eq!(code, Some(64), "{stderr}");
}

/// A search stopped short never says a property holds, and a synchronous
/// check in which no node forgot a watermark checked nothing of forgetting:
/// exit 6, not 0.
#[test]
fn a_partial_search_never_says_holds_and_an_empty_forgetting_check_fails() {
    let out = std::env::temp_dir().join(format!("presence-honest-holds-{}", std::process::id()));
    let out = out.to_str().expect("a UTF-8 temp path");
    let stdout = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_presence"))
            .args(args)
            .args(["--out", out])
            .output()
            .expect("presence runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let tiny = [
        "check",
        "--model",
        "protocol",
        "--replicas",
        "2",
        "--ops",
        "1",
        "--faults",
        "0",
    ];
    let (code, whole) = stdout(&tiny);
    assert_eq!(code, Some(0));
    assert!(
        whole.contains("| I1 diff exactness | always | holds |"),
        "{whole}"
    );
    let (code, bounded) = stdout(&[&tiny[..], &["--depth", "3"]].concat());
    assert_eq!(code, Some(0));
    assert!(!bounded.contains("| holds |"), "{bounded}");
    assert!(
        bounded.contains("not violated within these bounds (not exhaustive)"),
        "{bounded}"
    );
    let (code, _) = stdout(&[
        "check",
        "--model",
        "protocol",
        "--replicas",
        "3",
        "--ops",
        "3",
        "--faults",
        "1",
        "--synchrony",
        "--walk",
        "--seed",
        "1",
        "--walks",
        "50",
    ]);
    assert_eq!(code, Some(6), "three ticks are too few to forget anything");
    let _ = std::fs::remove_dir_all(out);
}

//! The name-hash secret decides only where the indexes file names, never
//! what a run does: the same scenarios under two secrets give the same
//! trace hashes. (A secret that reached a trace would make runs depend on
//! something a seed does not fix.)

use std::path::Path;
use std::process::Command;

fn trace_hashes(secret: &str, scenario: &str) -> String {
    let sims = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sims");
    let output = Command::new(env!("CARGO_BIN_EXE_presence"))
        .args(["sim", "--no-shrink", "--hashes", "--scenario", scenario, "--dir"])
        .arg(&sims)
        .env("PRESENCE_HASH_SECRET", secret)
        .output()
        .expect("presence runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let hashes: String = stdout
        .lines()
        .skip_while(|line| !line.starts_with("trace hashes"))
        .filter(|line| line.starts_with(scenario))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(!hashes.is_empty(), "no hashes printed: {stdout}");
    hashes
}

#[test]
fn runs_do_not_depend_on_the_hash_secret() {
    for scenario in ["churn-with-restarts", "big-room"] {
        assert_eq!(
            trace_hashes("1", scenario),
            trace_hashes("2", scenario),
            "{scenario}"
        );
    }
}

#[test]
fn a_bad_secret_is_a_usage_error() {
    let status = Command::new(env!("CARGO_BIN_EXE_presence"))
        .args(["sim", "--scenario", "nothing"])
        .env("PRESENCE_HASH_SECRET", "not-a-number")
        .status()
        .expect("presence runs");
    assert_eq!(status.code(), Some(64));
}

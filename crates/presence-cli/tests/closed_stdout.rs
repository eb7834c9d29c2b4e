//! `presence` writing into a pipe whose reader has gone (`presence check |
//! head`) ends quietly with status 141, as a process ended by SIGPIPE
//! would, instead of panicking.

use std::process::{Command, Stdio};

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let out = std::env::temp_dir().join(format!("presence-closed-stdout-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_presence"))
        .args(["check", "--replicas", "2", "--ops", "1", "--faults", "0", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("presence starts");
    // The reader goes away before the first line is written.
    drop(child.stdout.take());
    let finished = child.wait_with_output().expect("presence ends");
    let _ = std::fs::remove_dir_all(&out);
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(finished.status.code(), Some(141), "{stderr}");
}

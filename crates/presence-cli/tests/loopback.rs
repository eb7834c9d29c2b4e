//! Three `presence node` processes on loopback: a presence tracked on one is
//! seen on the other two, and disappears after the down period when its node
//! is killed. Loopback only; every wait is bounded; the nodes also stop by
//! themselves.
#![allow(clippy::disallowed_types)]

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

const DOWN_MS: u64 = 1_500;

struct Process {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
}

impl Process {
    fn start(id: &str, listen: &str, peers: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_presence"))
            .args(["node", "--id", id, "--listen", listen, "--peers", peers])
            .args([
                "--broadcast-ms",
                "200",
                "--down-ms",
                &DOWN_MS.to_string(),
                "--permdown-ms",
                "60000",
            ])
            .args(["--max-runtime-secs", "60"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the presence binary starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if sender.send(value).is_err() {
                        break;
                    }
                }
            }
        });
        Self { child, stdin, lines }
    }

    fn request(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("the node reads stdin");
        self.stdin.flush().expect("flush");
    }

    /// Waits (bounded) for an output line satisfying `wanted`.
    fn wait_for(&self, what: &str, timeout: Duration, wanted: impl Fn(&Value) -> bool) -> Duration {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                if wanted(&line) {
                    return started.elapsed();
                }
            }
        }
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound, then released for the node to take).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn alice(side: &str) -> impl Fn(&Value) -> bool + '_ {
    move |line| line["type"] == "presence_diff" && line["payload"][side].get("alice").is_some()
}

#[test]
fn three_nodes_on_loopback_see_a_presence_and_its_node_going_down() {
    let ports = [free_port(), free_port(), free_port()];
    let address = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let peers = |me: usize| {
        (0..3)
            .filter(|&i| i != me)
            .map(|i| format!("n{i}={}", address(i)))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut nodes: Vec<Process> = (0..3)
        .map(|i| Process::start(&format!("n{i}"), &address(i), &peers(i)))
        .collect();
    for node in &nodes {
        node.wait_for("start", Duration::from_secs(10), |line| line["type"] == "started");
    }

    nodes[0].request(r#"track pid-1 room:lobby alice {"device":"phone"}"#);
    for node in &nodes[1..] {
        node.wait_for("alice to join", Duration::from_secs(10), alice("joins"));
    }

    nodes[0].child.kill().expect("kill the first node");
    let killed = Instant::now();
    for node in &nodes[1..] {
        node.wait_for("alice to leave", Duration::from_secs(10), alice("leaves"));
        let after = killed.elapsed();
        assert!(
            after >= Duration::from_millis(DOWN_MS / 2),
            "alice left {after:?} after the kill, before the down period could pass"
        );
    }
}

//! Three `presence node` processes on loopback: a presence tracked on one is
//! seen on the other two, and disappears after the down period when its node
//! is killed; forged, replayed and strangers' datagrams are refused. Loopback
//! only; every wait is bounded; the nodes also stop by themselves.
#![allow(clippy::disallowed_types)]

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use presence_core::{ReplicaId, State};
use presence_tracker::{Message, Sealer, Secret};
use serde_json::{json, Value};

const DOWN_MS: u64 = 1_500;
/// The cluster's secret in these tests (given to the nodes in the
/// environment, as a deployment would).
const SECRET: &str = "loopback tests' cluster secret";

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
            .env("PRESENCE_SECRET", SECRET)
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

    /// Sends `request` and returns (bounded wait) the next line of type `kind`.
    fn ask(&mut self, request: &str, kind: &str) -> Value {
        self.request(request);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                if line["type"] == kind {
                    return line;
                }
            }
        }
        panic!("timed out waiting for {kind} after {request:?}");
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

/// A heartbeat from `from` joining `key`, as a forger would write it.
fn heartbeat_joining(from: &str, key: &str) -> Message {
    let mut state = State::new(ReplicaId::new(from, 1));
    state.join("pid-x", "room:lobby", key, json!({})).unwrap();
    Message::Heartbeat {
        from: state.replica().clone(),
        clocks: state.clocks(),
        delta: Some(state.take_delta()),
        uptime_ms: 0,
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn forged_replayed_and_strangers_datagrams_are_refused_and_change_nothing() {
    let ports = [free_port(), free_port()];
    let address = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let mut nodes = [
        Process::start("n0", &address(0), &format!("n1={}", address(1))),
        Process::start("n1", &address(1), &format!("n0={}", address(0))),
    ];
    for node in &nodes {
        node.wait_for("start", Duration::from_secs(10), |line| line["type"] == "started");
    }
    let cluster = Secret::from_text(SECRET).unwrap();
    let members = Some(["n0", "n1"].into_iter().map(std::sync::Arc::from).collect());
    let sealer = Sealer::new(&cluster, members, 120_000);
    let other = Sealer::new(
        &Secret::from_text("mallory's own secret!").unwrap(),
        None,
        120_000,
    );
    let now = wall_ms();
    let frames: Vec<Vec<u8>> = vec![
        // Another secret, a member's name.
        other.seal(&heartbeat_joining("n1", "mallory-1"), now),
        // The cluster's secret, a stranger's name.
        sealer.seal(&heartbeat_joining("mallory", "mallory-2"), now),
        // A member's frame replayed an hour later.
        sealer.seal(&heartbeat_joining("n1", "mallory-3"), now - 3_600_000),
        // A member's frame with one bit flipped, and one cut short.
        {
            let mut frame = sealer.seal(&heartbeat_joining("n1", "mallory-4"), now);
            let last = frame.len() - 3;
            frame[last] ^= 0x04;
            frame
        },
        sealer.seal(&heartbeat_joining("n1", "mallory-5"), now)[..30].to_vec(),
        b"not a frame at all, just bytes, but longer than a frame header is".to_vec(),
    ];
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    for frame in &frames {
        attacker.send_to(frame, address(0)).unwrap();
    }
    // Refusals are counted as the node reads its socket: ask until all six
    // are in (bounded).
    let started = Instant::now();
    let mut counts = Value::Null;
    while started.elapsed() < Duration::from_secs(10) {
        counts = nodes[0].ask("refusals", "refusals")["refused"].clone();
        let total: u64 = counts
            .as_object()
            .map_or(0, |all| all.values().filter_map(Value::as_u64).sum());
        if total >= frames.len() as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let listed = nodes[0].ask("list room:lobby", "presence_state")["payload"].clone();
    assert_eq!(counts["bad-mac"], 2, "another secret and a flipped bit: {counts}");
    assert_eq!(counts["not-member"], 1, "{counts}");
    assert_eq!(counts["stale"], 1, "the replay: {counts}");
    assert_eq!(counts["short"], 1, "{counts}");
    assert_eq!(counts["magic"], 1, "{counts}");
    let listed = listed.as_object().expect("a presence state");
    assert!(
        listed.keys().all(|key| !key.starts_with("mallory")),
        "nothing forged is listed: {listed:?}"
    );
    // The honest cluster still works.
    nodes[1].request("track pid-9 room:lobby alice {}");
    nodes[0].wait_for("alice to join", Duration::from_secs(10), alice("joins"));
}

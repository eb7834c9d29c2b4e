//! `presence node`: one presence-tracker node over UDP.
//!
//! A thin transport around the same sans-IO `Node` the simulator and the
//! model drive: datagrams carry the protocol's JSON messages; the real clock
//! feeds `now_ms`. Local requests come on stdin, one per line:
//!
//! ```text
//! track PID TOPIC KEY [META_JSON]
//! update PID TOPIC KEY META_JSON
//! untrack PID TOPIC KEY
//! list TOPIC
//! refusals                  (frames dropped so far, by reason)
//! quit                      (graceful shutdown: peers drop our presences at once)
//! ```
//!
//! Every diff and replica event is printed on stdout as one JSON line:
//! `{"type":"presence_diff","topic":..,"payload":{"joins":..,"leaves":..}}`,
//! `{"type":"replica","event":"down n1@..."}`, `{"type":"presence_state",..}`.
//!
//! Every datagram is a frame sealed under the cluster's secret
//! (`presence_tracker::seal`), read from `--secret-file` or the
//! `PRESENCE_SECRET` environment variable, never from the command line. The
//! members are this node and the peers it is given; a frame that is forged,
//! corrupted, replayed outside the window (`--window-ms`, judged by the wall
//! clock) or from another base is dropped before it is parsed, with a
//! warning on stderr, and counted: `refusals` on stdin prints the counts.
//!
//! It listens on loopback unless told otherwise (`--listen`), warns when it
//! talks beyond this machine, and stops by itself after
//! `--max-runtime-secs`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use presence_core::ReplicaId;
use presence_tracker::seal::{RefusalKind, Refusals};
use presence_tracker::{Config, Input, Message, Node, Output, ReplicaEvent, Sealer, Secret};
use serde_json::{json, Value};

use crate::Failure;

/// The largest datagram this transport sends (UDP's payload limit).
const MAX_DATAGRAM: usize = 65_507;

/// Arguments of `presence node`.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// This node's name (its replica base).
    #[arg(long)]
    pub id: String,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub listen: SocketAddr,
    /// Peers as NAME=ADDRESS, comma separated. With this node, they are
    /// the cluster's members: frames from any other base are refused.
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Broadcast period.
    #[arg(long, default_value_t = 1_500)]
    pub broadcast_ms: u64,
    /// Down period.
    #[arg(long, default_value_t = 30_000)]
    pub down_ms: u64,
    /// Permdown period.
    #[arg(long, default_value_t = 1_200_000)]
    pub permdown_ms: u64,
    /// Stop by itself after this long.
    #[arg(long, default_value_t = 3_600)]
    pub max_runtime_secs: u64,
    /// A file holding the cluster's secret (else `PRESENCE_SECRET`).
    #[arg(long)]
    pub secret_file: Option<std::path::PathBuf>,
    /// Frames sent longer ago (or further ahead) than this, by the wall
    /// clocks of sender and receiver, are refused as replays. Must exceed
    /// the members' clock skew and stay under half the retirement memory.
    #[arg(long, default_value_t = 120_000)]
    pub window_ms: u64,
}

/// The cluster secret, from `--secret-file` or `PRESENCE_SECRET`.
fn read_secret(args: &NodeArgs) -> Result<Secret, Failure> {
    let text = match &args.secret_file {
        Some(path) => std::fs::read_to_string(path).map_err(|error| {
            eprintln!("error: cannot read the secret file {}: {error}", path.display());
            Failure::Usage
        })?,
        None => std::env::var("PRESENCE_SECRET").map_err(|_| {
            eprintln!(
                "error: presence node needs the cluster's secret: --secret-file PATH or PRESENCE_SECRET"
            );
            Failure::Usage
        })?,
    };
    Secret::from_text(&text).map_err(|error| {
        eprintln!("error: {error}");
        Failure::Usage
    })
}

/// The wall clock in milliseconds, for sealing and opening frames.
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn print_line(value: &Value) {
    say!("{value}");
}

/// Says so when the node talks beyond this machine: frames are
/// authenticated, not encrypted, so presences travel readable.
fn warn_if_not_loopback(address: &SocketAddr) {
    if !address.ip().is_loopback() {
        eprintln!("warning: {address} is not a loopback address; frames are authenticated but not encrypted");
    }
}

fn parse_peers(peers: &[String]) -> Result<BTreeMap<String, SocketAddr>, Failure> {
    let mut parsed = BTreeMap::new();
    for peer in peers {
        let Some((name, address)) = peer.split_once('=') else {
            eprintln!("error: peer {peer:?} is not NAME=ADDRESS");
            return Err(Failure::Usage);
        };
        let address: SocketAddr = address.parse().map_err(|_| {
            eprintln!("error: peer {peer:?} has no valid address");
            Failure::Usage
        })?;
        warn_if_not_loopback(&address);
        parsed.insert(name.to_owned(), address);
    }
    Ok(parsed)
}

enum Request {
    Input(Input),
    List(String),
    Refusals,
}

fn parse_request(line: &str) -> Result<Request, String> {
    let mut words = line.splitn(5, ' ');
    let verb = words.next().unwrap_or_default();
    let mut field = |name: &str| {
        words
            .next()
            .map(str::to_owned)
            .ok_or(format!("{verb}: missing {name}"))
    };
    let meta = |text: Option<String>| -> Result<Value, String> {
        text.map_or(Ok(json!({})), |text| {
            serde_json::from_str(&text).map_err(|e| format!("bad meta: {e}"))
        })
    };
    match verb {
        "track" => {
            let (pid, topic, key) = (field("pid")?, field("topic")?, field("key")?);
            let meta = meta(words.next().map(str::to_owned))?;
            Ok(Request::Input(Input::Track {
                pid,
                topic,
                key,
                meta,
            }))
        }
        "update" => {
            let (pid, topic, key) = (field("pid")?, field("topic")?, field("key")?);
            let meta = meta(Some(field("meta")?))?;
            Ok(Request::Input(Input::Update {
                pid,
                topic,
                key,
                meta,
            }))
        }
        "untrack" => {
            let (pid, topic, key) = (field("pid")?, field("topic")?, field("key")?);
            Ok(Request::Input(Input::Untrack { pid, topic, key }))
        }
        "list" => Ok(Request::List(field("topic")?)),
        "refusals" => Ok(Request::Refusals),
        "quit" => Ok(Request::Input(Input::Shutdown)),
        other => Err(format!("unknown request {other:?}")),
    }
}

struct Transport {
    socket: UdpSocket,
    peers: BTreeMap<String, SocketAddr>,
    sealer: Sealer,
    refusals: Refusals,
}

fn refusal_counts(refusals: &Refusals) -> Value {
    RefusalKind::ALL
        .iter()
        .map(|&kind| (kind.name().to_owned(), json!(refusals.get(kind))))
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

impl Transport {
    fn send(&self, to: Option<&ReplicaId>, message: &Message) {
        let bytes = self.sealer.seal(message, wall_ms());
        if bytes.len() > MAX_DATAGRAM {
            eprintln!(
                "warning: a {} of {} bytes exceeds a datagram; dropped",
                message.kind(),
                bytes.len()
            );
            return;
        }
        for (name, address) in &self.peers {
            if to.is_none_or(|to| to.base() == name) {
                // A lost datagram is a lost message: the protocol repairs it.
                let _ = self.socket.send_to(&bytes, address);
            }
        }
    }

    fn carry_out(&self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Broadcast(message) => self.send(None, &message),
                Output::Send { to, message } => self.send(Some(&to), &message),
                Output::Diff(diff) => {
                    for (topic, payload) in diff.by_topic() {
                        print_line(&json!({"type": "presence_diff", "topic": &*topic, "payload": payload}));
                    }
                }
                Output::Event(event) => {
                    let text = match event {
                        ReplicaEvent::Up(id) => format!("up {id}"),
                        ReplicaEvent::Down(id) => format!("down {id}"),
                        ReplicaEvent::Permdown(id) => format!("permdown {id}"),
                        ReplicaEvent::Reincarnated { old, new } => format!("reincarnated {old} -> {new}"),
                    };
                    print_line(&json!({"type": "replica", "event": text}));
                }
            }
        }
    }
}

pub fn run(args: &NodeArgs) -> Result<(), Failure> {
    warn_if_not_loopback(&args.listen);
    let peers = parse_peers(&args.peers)?;
    let secret = read_secret(args)?;
    let config = Config {
        broadcast_period_ms: args.broadcast_ms,
        down_period_ms: args.down_ms,
        permdown_period_ms: args.permdown_ms,
        max_silent_periods: Config::default()
            .max_silent_periods
            .min((args.down_ms / args.broadcast_ms.max(1)).saturating_sub(1) as u32)
            .max(1),
        transfer_timeout_ms: 2 * args.broadcast_ms,
        retirement_memory_ms: Config::default()
            .retirement_memory_ms
            .max(args.permdown_ms.saturating_mul(3)),
        ..Config::default()
    };
    // A new incarnation at every start: the start time in microseconds.
    let incarnation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |since| since.as_micros() as u64);
    let replica = ReplicaId::checked(&args.id, incarnation).map_err(|problem| {
        eprintln!("error: --id {:?}: {problem}", args.id);
        Failure::Usage
    })?;
    let mut node = Node::new(replica.clone(), config, 0).map_err(|error| {
        eprintln!("error: {error}");
        Failure::Usage
    })?;
    let socket = UdpSocket::bind(args.listen).map_err(|error| {
        eprintln!("error: cannot listen on {}: {error}", args.listen);
        Failure::Usage
    })?;
    let tick = Duration::from_millis((args.broadcast_ms / 5).clamp(10, 200));
    socket.set_read_timeout(Some(tick)).map_err(|_| Failure::Usage)?;
    if args.window_ms == 0 || args.window_ms >= node.config().retirement_memory_ms / 2 {
        eprintln!(
            "error: --window-ms must be positive and under half the retirement memory ({} ms)",
            node.config().retirement_memory_ms / 2
        );
        return Err(Failure::Usage);
    }
    let members = peers
        .keys()
        .map(String::as_str)
        .chain([args.id.as_str()])
        .map(std::sync::Arc::from)
        .collect();
    let sealer = Sealer::new(&secret, Some(members), args.window_ms);
    let mut transport = Transport {
        socket,
        peers,
        sealer,
        refusals: Refusals::default(),
    };

    let (requests, incoming) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if requests.send(line).is_err() {
                break;
            }
        }
    });
    print_line(
        &json!({"type": "started", "replica": replica.to_string(), "listen": args.listen.to_string()}),
    );
    let started = Instant::now();
    let deadline = Duration::from_secs(args.max_runtime_secs);
    let mut buffer = vec![0_u8; MAX_DATAGRAM];
    while started.elapsed() < deadline && !node.is_stopped() {
        let now_ms = started.elapsed().as_millis() as u64;
        while let Ok(line) = incoming.try_recv() {
            match parse_request(line.trim()) {
                Ok(Request::Input(input)) => match node.handle(input, now_ms) {
                    Ok(outputs) => transport.carry_out(outputs),
                    Err(error) => print_line(&json!({"type": "error", "error": error.to_string()})),
                },
                Ok(Request::List(topic)) => {
                    let presences = node.state().get_by_topic(&topic);
                    let state = presence_core::presence_state(&presences);
                    print_line(&json!({"type": "presence_state", "topic": topic, "payload": state}));
                }
                Ok(Request::Refusals) => {
                    print_line(&json!({"type": "refusals", "refused": refusal_counts(&transport.refusals)}))
                }
                Err(problem) => print_line(&json!({"type": "error", "error": problem})),
            }
        }
        if let Ok((length, from)) = transport.socket.recv_from(&mut buffer) {
            match transport.sealer.open(&buffer[..length], wall_ms()) {
                Ok(message) => {
                    if let Ok(outputs) = node.handle(Input::Receive(message), now_ms) {
                        transport.carry_out(outputs);
                    }
                }
                Err(refusal) => {
                    transport.refusals.record(&refusal);
                    eprintln!(
                        "warning: dropped a datagram from {from} ({}): {refusal}",
                        refusal.kind().name()
                    );
                }
            }
        }
        let now_ms = started.elapsed().as_millis() as u64;
        if let Ok(outputs) = node.handle(Input::Tick, now_ms) {
            transport.carry_out(outputs);
        }
    }
    if !node.is_stopped() {
        if let Ok(outputs) = node.handle(Input::Shutdown, started.elapsed().as_millis() as u64) {
            transport.carry_out(outputs);
        }
    }
    print_line(&json!({"type": "stopped", "refused": refusal_counts(&transport.refusals)}));
    Ok(())
}

//! `presence node`: one presence-tracker node over UDP on loopback.
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
//! quit                      (graceful shutdown: peers drop our presences at once)
//! ```
//!
//! Every diff and replica event is printed on stdout as one JSON line:
//! `{"type":"presence_diff","topic":..,"payload":{"joins":..,"leaves":..}}`,
//! `{"type":"replica","event":"down n1@..."}`, `{"type":"presence_state",..}`.
//!
//! Only loopback addresses are accepted, and the node stops by itself after
//! `--max-runtime-secs`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use presence_core::ReplicaId;
use presence_tracker::{Config, Input, Message, Node, Output, ReplicaEvent};
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
    /// Loopback address to listen on, e.g. 127.0.0.1:7001.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Peers as NAME=ADDRESS, comma separated (loopback only).
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
}

fn print_line(value: &Value) {
    say!("{value}");
}

fn loopback(address: &SocketAddr) -> Result<(), Failure> {
    if address.ip().is_loopback() {
        return Ok(());
    }
    eprintln!("error: {address} is not a loopback address; presence node only talks on 127.0.0.0/8 or ::1");
    Err(Failure::Usage)
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
        loopback(&address)?;
        parsed.insert(name.to_owned(), address);
    }
    Ok(parsed)
}

enum Request {
    Input(Input),
    List(String),
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
        "quit" => Ok(Request::Input(Input::Shutdown)),
        other => Err(format!("unknown request {other:?}")),
    }
}

struct Transport {
    socket: UdpSocket,
    peers: BTreeMap<String, SocketAddr>,
}

impl Transport {
    fn send(&self, to: Option<&ReplicaId>, message: &Message) {
        let bytes = message.to_json();
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
    loopback(&args.listen)?;
    let peers = parse_peers(&args.peers)?;
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
    let transport = Transport { socket, peers };

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
                Err(problem) => print_line(&json!({"type": "error", "error": problem})),
            }
        }
        if let Ok((length, _from)) = transport.socket.recv_from(&mut buffer) {
            match Message::from_json(&buffer[..length]) {
                Ok(message) => {
                    if let Ok(outputs) = node.handle(Input::Receive(message), now_ms) {
                        transport.carry_out(outputs);
                    }
                }
                Err(error) => eprintln!("warning: dropped a bad datagram: {error}"),
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
    print_line(&json!({"type": "stopped"}));
    Ok(())
}

//! `presence load`: N WebSocket clients joining one topic spread over two
//! `presence serve` nodes on loopback, and the figures of it.
//!
//! The command starts two server processes (this same binary, `serve`),
//! then, from this process:
//! - `--observers` subscribers per node join the topic first, without a
//!   presence, and time every `presence_diff` they receive;
//! - `--clients` clients connect and join the topic with a presence, half
//!   on each node, at most `--in-flight` joins at a time; every client then
//!   keeps reading (and dropping) what the server sends it, as a browser
//!   would, until the end.
//!
//! It reports joins per second (all clients joined, from the first connect
//! to the last join reply), the delay from a join's reply on one node to the
//! `presence_diff` carrying it at an observer of the other node (p50, p99,
//! max), the time until every observer saw every client, and each server's
//! resident memory per connection (the growth of its RSS from before the
//! joins to after, over its connections). Bounded: at most 50,000 clients
//! and `--timeout-secs`; everything is on 127.0.0.1. The servers run with
//! `MIMALLOC_ALLOW_THP=0` (see `start_server`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::Failure;

/// Arguments of `presence load`.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Clients that join the topic with a presence (half per node).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(2..=50_000))]
    pub clients: u32,
    /// Subscribers per node that time the diffs.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub observers: u32,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub in_flight: u32,
    /// The servers' broadcast period (Phoenix's default: 1,500 ms).
    #[arg(long, default_value_t = 1_500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub broadcast_ms: u64,
    /// The servers' `http.flush_interval_ms`: diffs to a topic at most this often.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub flush_ms: u64,
    /// Give up after this long.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub timeout_secs: u64,
    /// Also write the figures as a Markdown report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Microseconds since the run began.
struct Clock(tokio::time::Instant);

impl Clock {
    fn micros(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// A free loopback port (bound, read, released).
fn free_port() -> Result<u16, Failure> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| {
            eprintln!("error: no free loopback port: {error}");
            Failure::Io
        })
}

/// Resident memory of a process, in bytes (Linux), if it can be read.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

struct ServerProcess {
    child: Child,
    http: u16,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(
    dir: &std::path::Path,
    name: &str,
    ports: (u16, u16),
    peer: (&str, u16),
    args: &LoadArgs,
) -> Result<ServerProcess, Failure> {
    let config = format!(
        "node = \"{name}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
         flush_interval_ms = {flush}\n[cluster]\nlisten = \"127.0.0.1:{cluster}\"\nsecret_file = \"{secret}\"\npeers = {{ {peer} = \"127.0.0.1:{peer_port}\" }}\n\
         [tracker]\nbroadcast_period_ms = {broadcast}\n\
         [limits]\nidle_timeout_ms = 3600000\noutbound_queue = 65536\nmax_connections = 60000\n",
        http = ports.0,
        cluster = ports.1,
        secret = dir.join("secret").display(),
        peer = peer.0,
        peer_port = peer.1,
        broadcast = args.broadcast_ms,
        flush = args.flush_ms,
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).map_err(|error| {
        eprintln!("error: cannot write {}: {error}", path.display());
        Failure::Io
    })?;
    let binary = std::env::current_exe().map_err(|_| Failure::Io)?;
    let mut child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--max-runtime-secs", &(args.timeout_secs + 60).to_string()])
        .env("RUST_LOG", "warn")
        // mimalloc backs its arenas with transparent huge pages; a server
        // that sends every joiner a large state zeroes 2 MiB pages most of
        // its time. Off, joins were 15-25% faster and RSS 15% smaller at
        // 5,000 clients (two interleaved pairs; see reports/server).
        .env("MIMALLOC_ALLOW_THP", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|error| {
            eprintln!("error: cannot start a server: {error}");
            Failure::Io
        })?;
    let stdout = child.stdout.take().ok_or(Failure::Io)?;
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .map_err(|_| Failure::Io)?;
    if !first.contains("\"started\"") {
        eprintln!("error: server {name} did not start: {first}");
        return Err(Failure::Io);
    }
    Ok(ServerProcess { child, http: ports.0 })
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(port: u16) -> Result<Socket, String> {
    let url = format!("ws://127.0.0.1:{port}/socket/websocket?vsn=2.0.0");
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(socket, _)| socket)
        .map_err(|error| error.to_string())
}

/// Sends a join and reads until its reply, dropping what comes before it.
async fn join(socket: &mut Socket, payload: Value) -> Result<(), String> {
    let frame = json!(["1", "1", "room:load", "phx_join", payload]).to_string();
    socket
        .send(Message::text(frame))
        .await
        .map_err(|error| error.to_string())?;
    while let Some(message) = socket.next().await {
        if let Message::Text(text) = message.map_err(|error| error.to_string())? {
            if text.contains("\"phx_reply\"") {
                return if text.contains("\"ok\"") {
                    Ok(())
                } else {
                    Err(text.to_string())
                };
            }
        }
    }
    Err("closed before the join reply".to_owned())
}

/// What the observers saw: per client index, when its join first reached
/// an observer of the other node.
struct Seen {
    /// (client, microseconds) per remote sighting.
    remote: Mutex<Vec<(usize, u64)>>,
    /// Observers that have seen every client.
    complete: AtomicUsize,
    last_complete_us: AtomicU64,
}

async fn observe(mut socket: Socket, node: usize, clients: usize, seen: Arc<Seen>, clock: Arc<Clock>) {
    let mut known = vec![false; clients];
    let mut count = 0;
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else { continue };
        let now = clock.micros();
        let Ok(Value::Array(frame)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if frame.get(3).and_then(Value::as_str) != Some("presence_diff") {
            continue;
        }
        let Some(joins) = frame
            .get(4)
            .and_then(|payload| payload.get("joins"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        let mut remote = Vec::new();
        for key in joins.keys() {
            let Some(index) = key.strip_prefix('u').and_then(|n| n.parse::<usize>().ok()) else {
                continue;
            };
            if index < clients && !known[index] {
                known[index] = true;
                count += 1;
                if index % 2 != node {
                    remote.push((index, now));
                }
            }
        }
        if !remote.is_empty() {
            seen.remote.lock().expect("seen").extend(remote);
        }
        if count == clients {
            seen.complete.fetch_add(1, Ordering::SeqCst);
            seen.last_complete_us.fetch_max(now, Ordering::SeqCst);
            // Keep reading so the server never sees a slow client.
            while let Some(Ok(_)) = socket.next().await {}
            return;
        }
    }
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64) * fraction).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The figures of one run.
struct Figures {
    clients: usize,
    joined: usize,
    failed: usize,
    join_secs: f64,
    converge_secs: Option<f64>,
    delays_ms: (f64, f64, f64, usize),
    rss: Vec<(u64, u64)>,
}

pub fn run(args: &LoadArgs) -> Result<(), Failure> {
    let dir = std::env::temp_dir().join(format!("presence-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|_| Failure::Io)?;
    std::fs::write(dir.join("secret"), "presence load, a loopback-only secret").map_err(|_| Failure::Io)?;
    let ports = [free_port()?, free_port()?, free_port()?, free_port()?];
    let servers = [
        start_server(&dir, "n1", (ports[0], ports[1]), ("n2", ports[3]), args)?,
        start_server(&dir, "n2", (ports[2], ports[3]), ("n1", ports[1]), args)?,
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|_| Failure::Io)?;
    let outcome = runtime.block_on(drive(args, &servers));
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
    let figures = outcome?;
    let text = render(args, &figures);
    say!("{text}");
    if let Some(path) = &args.report {
        let mut file = std::fs::File::create(path).map_err(|error| {
            eprintln!("error: cannot write {}: {error}", path.display());
            Failure::Io
        })?;
        file.write_all(text.as_bytes()).map_err(|_| Failure::Io)?;
    }
    if figures.failed > 0 || figures.converge_secs.is_none() {
        return Err(Failure::Liveness);
    }
    Ok(())
}

async fn drive(args: &LoadArgs, servers: &[ServerProcess; 2]) -> Result<Figures, Failure> {
    let clients = args.clients as usize;
    let clock = Arc::new(Clock(tokio::time::Instant::now()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    // Let the nodes find each other before anyone joins.
    tokio::time::sleep(Duration::from_millis(3 * args.broadcast_ms.min(1_000))).await;
    let seen = Arc::new(Seen {
        remote: Mutex::new(Vec::new()),
        complete: AtomicUsize::new(0),
        last_complete_us: AtomicU64::new(0),
    });
    let observers = args.observers as usize * 2;
    for index in 0..observers {
        let node = index % 2;
        let mut socket = connect(servers[node].http).await.map_err(|error| {
            eprintln!("error: observer: {error}");
            Failure::Io
        })?;
        join(&mut socket, json!({})).await.map_err(|error| {
            eprintln!("error: observer join: {error}");
            Failure::Io
        })?;
        tokio::spawn(observe(
            socket,
            node,
            clients,
            Arc::clone(&seen),
            Arc::clone(&clock),
        ));
    }
    let rss_before: Vec<u64> = servers
        .iter()
        .map(|server| rss_bytes(server.child.id()).unwrap_or(0))
        .collect();

    let (stop, stopped) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(args.in_flight as usize));
    let joined = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let joined_at: Arc<Vec<AtomicU64>> = Arc::new((0..clients).map(|_| AtomicU64::new(0)).collect());
    let started = clock.micros();
    for index in 0..clients {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .map_err(|_| Failure::Io)?;
        let port = servers[index % 2].http;
        let (joined, failed, joined_at, clock) = (
            Arc::clone(&joined),
            Arc::clone(&failed),
            Arc::clone(&joined_at),
            Arc::clone(&clock),
        );
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let attempt = async {
                let mut socket = connect(port).await?;
                join(
                    &mut socket,
                    json!({"presence": {"key": format!("u{index}"), "meta": {"i": index}}}),
                )
                .await?;
                Ok::<Socket, String>(socket)
            };
            let mut socket = match attempt.await {
                Ok(socket) => socket,
                Err(error) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("warning: client {index}: {error}");
                    }
                    return;
                }
            };
            joined_at[index].store(clock.micros(), Ordering::Relaxed);
            joined.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            // Read and drop everything until told to stop.
            loop {
                tokio::select! {
                    message = socket.next() => if !matches!(message, Some(Ok(_))) { break },
                    _ = stopped.changed() => break,
                }
            }
            let _ = socket.close(None).await;
        });
    }
    while joined.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < clients
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last_join = joined_at
        .iter()
        .map(|at| at.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let join_secs = last_join.saturating_sub(started) as f64 / 1e6;
    while seen.complete.load(Ordering::SeqCst) < observers && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let converge_secs = (seen.complete.load(Ordering::SeqCst) == observers).then(|| {
        seen.last_complete_us
            .load(Ordering::SeqCst)
            .saturating_sub(started) as f64
            / 1e6
    });
    let rss_after: Vec<u64> = servers
        .iter()
        .map(|server| rss_bytes(server.child.id()).unwrap_or(0))
        .collect();
    let _ = stop.send(true);

    let mut delays: Vec<u64> = seen
        .remote
        .lock()
        .expect("seen")
        .iter()
        .filter_map(|&(index, at)| {
            let joined = joined_at[index].load(Ordering::Relaxed);
            (joined > 0).then(|| at.saturating_sub(joined))
        })
        .collect();
    delays.sort_unstable();
    let ms = |micros: u64| micros as f64 / 1e3;
    Ok(Figures {
        clients,
        joined: joined.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        join_secs,
        converge_secs,
        delays_ms: (
            ms(percentile(&delays, 0.5)),
            ms(percentile(&delays, 0.99)),
            ms(delays.last().copied().unwrap_or(0)),
            delays.len(),
        ),
        rss: rss_before.into_iter().zip(rss_after).collect(),
    })
}

fn render(args: &LoadArgs, figures: &Figures) -> String {
    let mut rows = BTreeMap::new();
    let per_second = if figures.join_secs > 0.0 {
        figures.joined as f64 / figures.join_secs
    } else {
        0.0
    };
    rows.insert(
        "1 clients joined",
        format!(
            "{} of {} ({} failed)",
            figures.joined, figures.clients, figures.failed
        ),
    );
    rows.insert(
        "2 all joined in",
        format!("{:.2} s ({per_second:.0} joins/s)", figures.join_secs),
    );
    rows.insert(
        "3 every observer saw every client",
        figures
            .converge_secs
            .map_or("not within the timeout".to_owned(), |secs| {
                format!("{secs:.2} s after the first connect")
            }),
    );
    let (p50, p99, max, samples) = figures.delays_ms;
    rows.insert(
        "4 join -> diff at the other node",
        format!(
            "p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms ({samples} samples; broadcast period {} ms)",
            args.broadcast_ms
        ),
    );
    for (node, (before, after)) in figures.rss.iter().enumerate() {
        let connections = (figures.joined / 2 + args.observers as usize).max(1);
        rows.insert(
            if node == 0 { "5 n1 memory" } else { "6 n2 memory" },
            format!(
                "RSS {:.1} MiB -> {:.1} MiB: {:.1} KiB per connection",
                *before as f64 / 1048576.0,
                *after as f64 / 1048576.0,
                after.saturating_sub(*before) as f64 / 1024.0 / connections as f64
            ),
        );
    }
    let mut text = format!(
        "# presence load: {} clients on one topic over 2 nodes (loopback)\n\n\
         Command: `presence load --clients {} --observers {} --in-flight {} --broadcast-ms {} --flush-ms {}`\n\n\
         | figure | value |\n|---|---|\n",
        figures.clients, args.clients, args.observers, args.in_flight, args.broadcast_ms, args.flush_ms
    );
    for (name, value) in rows {
        text.push_str(&format!("| {} | {value} |\n", &name[2..]));
    }
    text
}

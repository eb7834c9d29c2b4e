//! The transport between server nodes: TCP on the cluster address, every
//! message a frame sealed under the cluster's secret
//! (`presence_tracker::seal`), prefixed by its length.
//!
//! ```text
//! | length: u32 BE | sealed frame: "PLS1" | sent_ms | tag | message JSON |
//! ```
//!
//! Why TCP and not the datagrams of `presence node`: a heartbeat after a
//! burst of joins, or a full state transfer to a new node, is larger than a
//! datagram can be (a few thousand presences), and a transport that drops
//! every large message never heals.
//!
//! Each node dials each peer and writes its frames on that connection; it
//! reads what peers send on the connections they dialled. A frame longer
//! than `max_frame_bytes` is refused before anything is allocated for it;
//! one that does not open (forged, corrupt, replayed outside the window,
//! from a non-member) is counted and ends the connection. Frames for a peer
//! that is not reachable are dropped (a bounded queue; the protocol repairs
//! losses), and its connection is retried with a growing pause.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use presence_core::ReplicaId;
use presence_tracker::seal::{RefusalKind, Refusals};
use presence_tracker::{Message, Sealer, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The wall clock in milliseconds, for sealing and opening frames.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Counts of what the cluster transport refused or dropped.
#[derive(Debug, Default)]
pub struct ClusterCounts {
    /// Frames refused on arrival, by reason.
    pub refusals: Refusals,
    /// Frames announcing a length over `max_frame_bytes`.
    pub oversized: u64,
    /// Frames not sent because a peer's queue was full.
    pub dropped: u64,
}

/// The sending side, owned by the hub.
pub(crate) struct Cluster {
    sealer: Arc<Sealer>,
    peers: BTreeMap<String, mpsc::Sender<Arc<Vec<u8>>>>,
    writers: Vec<JoinHandle<()>>,
    counts: Arc<Mutex<ClusterCounts>>,
    max_frame_bytes: usize,
}

/// What the cluster needs to start.
pub(crate) struct ClusterSetup {
    pub(crate) node: String,
    pub(crate) peers: BTreeMap<String, SocketAddr>,
    pub(crate) secret: Option<Secret>,
    pub(crate) window_ms: u64,
    pub(crate) max_frame_bytes: usize,
    pub(crate) queue_frames: usize,
}

impl Cluster {
    /// Starts the listener and one writer per peer. Frames that open are
    /// sent on `incoming`, for the hub.
    pub(crate) fn start(
        setup: ClusterSetup,
        listener: TcpListener,
        incoming: mpsc::Sender<Message>,
    ) -> (Self, Arc<Mutex<ClusterCounts>>) {
        // Without peers nothing is sent or accepted; a node alone needs no
        // secret, and any frame that arrives is refused as not from a member.
        let secret = setup.secret.unwrap_or_else(|| {
            Secret::new(vec![0; presence_tracker::seal::MIN_SECRET_BYTES]).expect("a valid length")
        });
        let members: BTreeSet<Arc<str>> = setup
            .peers
            .keys()
            .map(String::as_str)
            .chain([setup.node.as_str()])
            .map(Arc::from)
            .collect();
        let sealer = Arc::new(Sealer::new(&secret, Some(members), setup.window_ms));
        let counts = Arc::new(Mutex::new(ClusterCounts::default()));
        tokio::spawn(accept(
            listener,
            Arc::clone(&sealer),
            incoming,
            setup.max_frame_bytes,
            Arc::clone(&counts),
        ));
        let mut peers = BTreeMap::new();
        let mut writers = Vec::new();
        for (name, address) in setup.peers {
            let (frames, queue) = mpsc::channel(setup.queue_frames);
            writers.push(tokio::spawn(write_to(name.clone(), address, queue)));
            peers.insert(name, frames);
        }
        let cluster = Self {
            sealer,
            peers,
            writers,
            counts: Arc::clone(&counts),
            max_frame_bytes: setup.max_frame_bytes,
        };
        (cluster, counts)
    }

    /// Seals `message` once and queues it for one peer (by base) or all.
    pub(crate) fn send(&mut self, to: Option<&ReplicaId>, message: &Message) {
        if self.peers.is_empty() {
            return;
        }
        let frame = Arc::new(self.sealer.seal(message, wall_ms()));
        if frame.len() > self.max_frame_bytes {
            // Peers would refuse it and close the connection.
            tracing::warn!(
                kind = message.kind(),
                bytes = frame.len(),
                "message over cluster.max_frame_bytes; not sent"
            );
            self.counts.lock().expect("counts").dropped += 1;
            return;
        }
        for (name, queue) in &self.peers {
            if to.is_none_or(|to| to.base() == name) && queue.try_send(Arc::clone(&frame)).is_err() {
                self.counts.lock().expect("counts").dropped += 1;
            }
        }
    }

    /// Closes the queues and gives the writers `grace` to send what is
    /// queued (the shutdown's permdown among it).
    pub(crate) async fn finish(&mut self, grace: Duration) {
        self.peers.clear();
        let writers = std::mem::take(&mut self.writers);
        let _ = tokio::time::timeout(grace, futures_util::future::join_all(writers)).await;
    }
}

async fn accept(
    listener: TcpListener,
    sealer: Arc<Sealer>,
    incoming: mpsc::Sender<Message>,
    max_frame_bytes: usize,
    counts: Arc<Mutex<ClusterCounts>>,
) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(read_from(
            stream,
            from,
            Arc::clone(&sealer),
            incoming.clone(),
            max_frame_bytes,
            Arc::clone(&counts),
        ));
    }
}

/// Reads frames from one peer's connection until it closes or misbehaves.
async fn read_from(
    mut stream: TcpStream,
    from: SocketAddr,
    sealer: Arc<Sealer>,
    incoming: mpsc::Sender<Message>,
    max_frame_bytes: usize,
    counts: Arc<Mutex<ClusterCounts>>,
) {
    let mut buffer = Vec::new();
    loop {
        let Ok(length) = stream.read_u32().await else {
            return;
        };
        let length = length as usize;
        if length > max_frame_bytes {
            counts.lock().expect("counts").oversized += 1;
            tracing::warn!(%from, length, max_frame_bytes, "peer frame too long; connection closed");
            return;
        }
        buffer.resize(length, 0);
        if stream.read_exact(&mut buffer).await.is_err() {
            return;
        }
        match sealer.open(&buffer, wall_ms()) {
            Ok(message) => {
                if incoming.send(message).await.is_err() {
                    return;
                }
            }
            Err(refusal) => {
                counts.lock().expect("counts").refusals.record(&refusal);
                tracing::warn!(%from, kind = refusal.kind().name(), "peer frame refused ({refusal}); connection closed");
                return;
            }
        }
    }
}

/// Writes one peer's queue to it, dialling again when the connection
/// fails. While the peer cannot be reached its queued frames are dropped:
/// stale heartbeats help nobody, and the protocol repairs the gap.
async fn write_to(name: String, address: SocketAddr, mut queue: mpsc::Receiver<Arc<Vec<u8>>>) {
    let mut pause = Duration::from_millis(50);
    let mut reachable = true;
    loop {
        let stream = match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            _ => {
                if reachable {
                    tracing::info!(peer = %name, %address, "peer not reachable; retrying");
                    reachable = false;
                }
                loop {
                    match queue.try_recv() {
                        Ok(_) => continue,
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => return,
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tracing::info!(peer = %name, %address, "connected to peer");
        reachable = true;
        pause = Duration::from_millis(50);
        let mut writer = BufWriter::new(stream);
        loop {
            let Some(frame) = queue.recv().await else {
                let _ = writer.flush().await;
                return;
            };
            if write_frame(&mut writer, &frame).await.is_err() {
                break;
            }
            // Write what else is queued before one flush.
            let mut failed = false;
            while let Ok(frame) = queue.try_recv() {
                if write_frame(&mut writer, &frame).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if failed || writer.flush().await.is_err() {
                break;
            }
        }
        tracing::info!(peer = %name, %address, "connection to peer lost");
    }
}

async fn write_frame(writer: &mut BufWriter<TcpStream>, frame: &[u8]) -> std::io::Result<()> {
    let length = u32::try_from(frame.len()).map_err(|_| std::io::Error::other("frame over 4 GiB"))?;
    writer.write_u32(length).await?;
    writer.write_all(frame).await
}

/// The refusal counts by reason, as JSON, for logs and tests.
pub fn refusal_counts(counts: &ClusterCounts) -> serde_json::Value {
    let mut refused: serde_json::Map<String, serde_json::Value> = RefusalKind::ALL
        .iter()
        .map(|&kind| (kind.name().to_owned(), counts.refusals.get(kind).into()))
        .collect();
    refused.insert("oversized".to_owned(), counts.oversized.into());
    refused.insert("dropped".to_owned(), counts.dropped.into());
    refused.into()
}

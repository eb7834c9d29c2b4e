//! The hub: one task that owns the tracker `Node` and the topics'
//! subscribers, and the [`Presence`] handle through which sockets and Rust
//! code reach it.
//!
//! Everything that changes presence passes through the hub in one order:
//! requests from sockets and from the library API, messages from peers and
//! the timer's ticks. The hub hands each to the same sans-IO node the
//! simulator and the model checker drive, carries out its outputs (frames
//! to peers, diffs to subscribers, replica events to the log), and holds no
//! protocol logic of its own.
//!
//! Diffs are netted between flushes ([`crate::coalesce`]) and sent to each
//! topic's subscribers once per flush, encoded once for every socket (the
//! fastlane of Phoenix's PubSub). Flushes are at least `flush_interval_ms`
//! apart: a request after a quiet spell is sent at once, a burst of joins
//! to a hot topic becomes one `presence_diff` per interval instead of one
//! per join (N joins to N subscribers: N²/interval frames, not N²). A join's
//! reply and `presence_state` wait for the flush, so the joiner's state
//! holds every change before it and its diffs every change after. A socket whose queue is full is dropped
//! from the topic and told to close: a slow reader never holds up the hub
//! or grows its memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use presence_core::{presence_state, PresenceDiff, PresenceState, ReplicaId};
use presence_tracker::{Input, Message, Node, NodeError, Output, PeerStatus, ReplicaEvent};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::cluster::Cluster;
use crate::coalesce::PendingDiff;
use crate::phoenix::{broadcast_text, push_text, Frame, Status};

/// Requests waiting for the hub, at most.
const COMMAND_QUEUE: usize = 4096;
/// Requests (or peer messages) taken at once before the hub looks at its
/// other inputs and its flush timer.
const FLUSH_EVERY: usize = 512;

/// Why a request to the hub was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresenceError {
    /// The tracker refused it; nothing changed.
    Refused(NodeError),
    /// The hub has stopped (the server is shutting down).
    Stopped,
}

impl std::fmt::Display for PresenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(error) => write!(f, "{error}"),
            Self::Stopped => f.write_str("the presence hub has stopped"),
        }
    }
}

impl std::error::Error for PresenceError {}

/// One topic's change, as a `presence_diff` payload, for subscribers of the
/// library API.
#[derive(Debug)]
pub struct TopicDiff {
    /// The topic.
    pub topic: Arc<str>,
    /// The payload Phoenix clients receive.
    pub diff: PresenceDiff,
}

/// A subscription to one topic through the library API: the view when it
/// began, then every diff after it, in order.
#[derive(Debug)]
pub struct Subscription {
    /// The topic's presences when the subscription began.
    pub initial: PresenceState,
    diffs: mpsc::Receiver<Arc<TopicDiff>>,
}

impl Subscription {
    /// The next diff; `None` once the hub stopped or dropped this
    /// subscription because it fell `outbound_queue` diffs behind.
    pub async fn next(&mut self) -> Option<Arc<TopicDiff>> {
        self.diffs.recv().await
    }
}

/// A socket's side of a channel, for the hub.
pub(crate) struct SocketSink {
    /// The channel's join ref, echoed in its join reply.
    pub(crate) join_ref: Option<String>,
    /// The socket's outgoing frames.
    pub(crate) out: mpsc::Sender<Utf8Bytes>,
    /// Rung when the socket fell too far behind.
    pub(crate) kick: Arc<Notify>,
}

enum Subscriber {
    Socket(SocketSink),
    Stream(mpsc::Sender<Arc<TopicDiff>>),
}

/// A liveness summary of the node, for operators and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node's replica.
    pub replica: ReplicaId,
    /// Peers shown (up).
    pub up: Vec<ReplicaId>,
    /// Peers hidden (down).
    pub down: Vec<ReplicaId>,
}

pub(crate) enum Command {
    Track {
        pid: String,
        topic: String,
        key: String,
        meta: Value,
        done: oneshot::Sender<Result<(), PresenceError>>,
    },
    Update {
        pid: String,
        topic: String,
        key: String,
        meta: Value,
        done: oneshot::Sender<Result<(), PresenceError>>,
    },
    Untrack {
        pid: String,
        topic: String,
        key: String,
        done: oneshot::Sender<Result<(), PresenceError>>,
    },
    UntrackAll {
        pid: String,
        done: Option<oneshot::Sender<Result<(), PresenceError>>>,
    },
    List {
        topic: String,
        done: oneshot::Sender<PresenceState>,
    },
    Subscribe {
        topic: String,
        out: mpsc::Sender<Arc<TopicDiff>>,
        done: oneshot::Sender<PresenceState>,
    },
    /// A socket joins a channel: track (if asked), subscribe, and queue the
    /// join reply and `presence_state` ahead of any diff.
    Join {
        frame: Frame,
        channel: u64,
        pid: String,
        presence: Option<(String, Value)>,
        sink: SocketSink,
        done: oneshot::Sender<Result<(), PresenceError>>,
    },
    /// A socket's channel ends: unsubscribe and untrack its presences.
    Leave {
        topic: String,
        channel: u64,
        pid: String,
    },
    Status {
        done: oneshot::Sender<NodeStatus>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// The handle to a running hub: the library API. Cheap to clone; every
/// clone reaches the same node.
#[derive(Clone, Debug)]
pub struct Presence {
    commands: mpsc::Sender<Command>,
}

async fn answer<T>(
    commands: &mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, PresenceError> {
    let (done, answer) = oneshot::channel();
    commands
        .send(make(done))
        .await
        .map_err(|_| PresenceError::Stopped)?;
    answer.await.map_err(|_| PresenceError::Stopped)
}

impl Presence {
    /// Tracks `key` on `topic` through the connection `pid`, with `meta`.
    pub async fn track(&self, pid: &str, topic: &str, key: &str, meta: Value) -> Result<(), PresenceError> {
        let (pid, topic, key) = (pid.to_owned(), topic.to_owned(), key.to_owned());
        answer(&self.commands, |done| Command::Track {
            pid,
            topic,
            key,
            meta,
            done,
        })
        .await?
    }

    /// Replaces the meta of a presence tracked here.
    pub async fn update(&self, pid: &str, topic: &str, key: &str, meta: Value) -> Result<(), PresenceError> {
        let (pid, topic, key) = (pid.to_owned(), topic.to_owned(), key.to_owned());
        answer(&self.commands, |done| Command::Update {
            pid,
            topic,
            key,
            meta,
            done,
        })
        .await?
    }

    /// Stops tracking one presence (no error if it was not tracked).
    pub async fn untrack(&self, pid: &str, topic: &str, key: &str) -> Result<(), PresenceError> {
        let (pid, topic, key) = (pid.to_owned(), topic.to_owned(), key.to_owned());
        answer(&self.commands, |done| Command::Untrack {
            pid,
            topic,
            key,
            done,
        })
        .await?
    }

    /// Stops tracking every presence of `pid` (the connection went away).
    pub async fn untrack_all(&self, pid: &str) -> Result<(), PresenceError> {
        let pid = pid.to_owned();
        answer(&self.commands, |done| Command::UntrackAll {
            pid,
            done: Some(done),
        })
        .await?
    }

    /// The presences visible on `topic`, as a `presence_state` payload.
    pub async fn list(&self, topic: &str) -> Result<PresenceState, PresenceError> {
        let topic = topic.to_owned();
        answer(&self.commands, |done| Command::List { topic, done }).await
    }

    /// Subscribes to `topic`'s diffs, local and from other nodes. The
    /// subscription holds up to `queue` diffs; one that falls further
    /// behind is ended.
    pub async fn subscribe(&self, topic: &str, queue: usize) -> Result<Subscription, PresenceError> {
        let (out, diffs) = mpsc::channel(queue.max(1));
        let topic = topic.to_owned();
        let initial = answer(&self.commands, |done| Command::Subscribe { topic, out, done }).await?;
        Ok(Subscription { initial, diffs })
    }

    /// This node's replica and its peers' liveness.
    pub async fn status(&self) -> Result<NodeStatus, PresenceError> {
        answer(&self.commands, |done| Command::Status { done }).await
    }

    /// Leaves the cluster in order (peers drop this node's presences at
    /// once) and stops the hub. Later requests get [`PresenceError::Stopped`].
    pub async fn shutdown(&self) {
        let _ = answer(&self.commands, |done| Command::Shutdown { done }).await;
    }

    pub(crate) async fn send(&self, command: Command) -> Result<(), PresenceError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| PresenceError::Stopped)
    }

    pub(crate) async fn join(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), PresenceError>>) -> Command,
    ) -> Result<(), PresenceError> {
        answer(&self.commands, make).await?
    }
}

/// The hub's state: the node, the clock it is fed, the topics' subscribers,
/// the diff waiting for the next flush, and the peers' transport.
pub(crate) struct Hub {
    node: Node,
    started: Instant,
    topics: HashMap<Arc<str>, HashMap<u64, Subscriber>>,
    pending: PendingDiff,
    cluster: Cluster,
    /// Joins whose reply and state wait for the next flush.
    joining: Vec<Joining>,
    /// Flushes are this far apart at least (zero: after every request).
    flush_interval: Duration,
    last_flush: Instant,
    next_stream: u64,
}

/// A channel join waiting for the flush that sends what came before it.
struct Joining {
    frame: Frame,
    channel: u64,
    sink: SocketSink,
    done: oneshot::Sender<Result<(), PresenceError>>,
}

/// Stream subscribers are numbered from here down, apart from channels.
const STREAM_IDS: u64 = 1 << 63;

impl Hub {
    pub(crate) fn new(node: Node, cluster: Cluster, flush_interval: Duration) -> Self {
        Self {
            node,
            started: Instant::now(),
            topics: HashMap::new(),
            pending: PendingDiff::default(),
            cluster,
            joining: Vec::new(),
            flush_interval,
            last_flush: Instant::now(),
            next_stream: STREAM_IDS,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Starts the hub's task; returns its handle.
    pub(crate) fn spawn(self, incoming: mpsc::Receiver<Message>) -> (Presence, tokio::task::JoinHandle<()>) {
        let (commands, requests) = mpsc::channel(COMMAND_QUEUE);
        let task = tokio::spawn(self.run(requests, incoming));
        (Presence { commands }, task)
    }

    async fn run(mut self, mut requests: mpsc::Receiver<Command>, mut incoming: mpsc::Receiver<Message>) {
        let period = self.node.config().broadcast_period_ms;
        let mut ticks = tokio::time::interval(Duration::from_millis((period / 5).clamp(5, 200)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = None;
        let mut flush_at: Option<tokio::time::Instant> = None;
        while stopping.is_none() {
            let flush_timer = async {
                match flush_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = requests.recv() => {
                    let Some(command) = command else { break };
                    stopping = self.command(command);
                    for _ in 1..FLUSH_EVERY {
                        if stopping.is_some() {
                            break;
                        }
                        let Ok(command) = requests.try_recv() else { break };
                        stopping = self.command(command);
                    }
                }
                Some(message) = incoming.recv() => {
                    let _ = self.input(Input::Receive(message));
                    for _ in 1..FLUSH_EVERY {
                        let Ok(message) = incoming.try_recv() else { break };
                        let _ = self.input(Input::Receive(message));
                    }
                }
                _ = ticks.tick() => { let _ = self.input(Input::Tick); }
                () = flush_timer => {}
            }
            // Flush now if the last flush is an interval ago; else at that time.
            flush_at = None;
            if !self.pending.is_empty() || !self.joining.is_empty() {
                let due = self.last_flush + self.flush_interval;
                if Instant::now() >= due {
                    self.flush();
                } else {
                    flush_at = Some(tokio::time::Instant::from_std(due));
                }
            }
        }
        self.flush();
        if !self.node.is_stopped() {
            let _ = self.input(Input::Shutdown);
            self.flush();
        }
        // Subscribers see their streams end; sockets see their queues close.
        self.topics.clear();
        self.cluster.finish(Duration::from_secs(2)).await;
        if let Some(done) = stopping {
            let _ = done.send(());
        }
        tracing::info!(replica = %self.node.replica(), "hub stopped");
    }

    /// Hands an input to the node and carries out what it asks.
    fn input(&mut self, input: Input) -> Result<(), NodeError> {
        let now_ms = self.now_ms();
        let outputs = self.node.handle(input, now_ms)?;
        for output in outputs {
            match output {
                Output::Broadcast(message) => self.cluster.send(None, &message),
                Output::Send { to, message } => self.cluster.send(Some(&to), &message),
                Output::Diff(diff) => self.pending.add(diff),
                Output::Event(event) => match event {
                    ReplicaEvent::Up(id) => tracing::info!(peer = %id, "peer up"),
                    ReplicaEvent::Down(id) => {
                        tracing::warn!(peer = %id, "peer down: its presences are hidden")
                    }
                    ReplicaEvent::Permdown(id) => {
                        tracing::warn!(peer = %id, "peer permdown: its presences are gone")
                    }
                    ReplicaEvent::Reincarnated { old, new } => {
                        tracing::warn!(%old, %new, "this node was retired by its peers and took a new incarnation")
                    }
                },
            }
        }
        Ok(())
    }

    fn local(&mut self, input: Input) -> Result<(), PresenceError> {
        self.input(input).map_err(PresenceError::Refused)
    }

    fn list(&self, topic: &str) -> PresenceState {
        presence_state(&self.node.state().get_by_topic(topic))
    }

    /// Applies one request; `Some` when it asks the hub to stop.
    fn command(&mut self, command: Command) -> Option<oneshot::Sender<()>> {
        match command {
            Command::Track {
                pid,
                topic,
                key,
                meta,
                done,
            } => {
                let _ = done.send(self.local(Input::Track {
                    pid,
                    topic,
                    key,
                    meta,
                }));
            }
            Command::Update {
                pid,
                topic,
                key,
                meta,
                done,
            } => {
                let _ = done.send(self.local(Input::Update {
                    pid,
                    topic,
                    key,
                    meta,
                }));
            }
            Command::Untrack {
                pid,
                topic,
                key,
                done,
            } => {
                let _ = done.send(self.local(Input::Untrack { pid, topic, key }));
            }
            Command::UntrackAll { pid, done } => {
                let result = self.local(Input::UntrackAll { pid });
                if let Some(done) = done {
                    let _ = done.send(result);
                }
            }
            Command::List { topic, done } => {
                // Diffs applied so far go out first, so the list a caller
                // sees is never behind a diff it has yet to receive.
                self.flush();
                let _ = done.send(self.list(&topic));
            }
            Command::Subscribe { topic, out, done } => {
                self.flush();
                let id = self.next_stream;
                self.next_stream += 1;
                self.topics
                    .entry(Arc::from(topic.as_str()))
                    .or_default()
                    .insert(id, Subscriber::Stream(out));
                let _ = done.send(self.list(&topic));
            }
            Command::Join {
                frame,
                channel,
                pid,
                presence,
                sink,
                done,
            } => {
                if let Some((key, meta)) = presence {
                    let tracked = self.local(Input::Track {
                        pid,
                        topic: frame.topic.clone(),
                        key,
                        meta,
                    });
                    if tracked.is_err() {
                        let _ = done.send(tracked);
                        return None;
                    }
                }
                // The reply and the state wait for the next flush: everyone
                // else hears of what came before first, and the joiner gets
                // the view then, with itself in it, and only later changes.
                self.joining.push(Joining {
                    frame,
                    channel,
                    sink,
                    done,
                });
            }
            Command::Leave { topic, channel, pid } => {
                if let Some(subscribers) = self.topics.get_mut(topic.as_str()) {
                    subscribers.remove(&channel);
                    if subscribers.is_empty() {
                        self.topics.remove(topic.as_str());
                    }
                }
                let _ = self.local(Input::UntrackAll { pid });
            }
            Command::Status { done } => {
                let mut status = NodeStatus {
                    replica: self.node.replica().clone(),
                    up: Vec::new(),
                    down: Vec::new(),
                };
                for (id, peer) in self.node.peers() {
                    match peer.status {
                        PeerStatus::Up => status.up.push(id.clone()),
                        _ => status.down.push(id.clone()),
                    }
                }
                let _ = done.send(status);
            }
            Command::Shutdown { done } => return Some(done),
        }
        None
    }

    /// Sends the netted diff to each changed topic's subscribers, then
    /// answers the joins that waited for it.
    fn flush(&mut self) {
        self.last_flush = Instant::now();
        self.send_pending();
        // One rendering of a topic's state serves all its joiners of this
        // flush, and one frame all those with the same join ref (phoenix.js
        // numbers refs per socket, so most first joins share one). Under a
        // burst of joins to a hot topic, rendering and copying the state per
        // joiner was most of the hub's time (N joins x N presences).
        let mut states: HashMap<String, String> = HashMap::new();
        let mut frames: HashMap<(String, Option<String>), Utf8Bytes> = HashMap::new();
        for joining in std::mem::take(&mut self.joining) {
            let topic = &joining.frame.topic;
            let join_ref = joining.sink.join_ref.clone();
            let state = match frames.get(&(topic.clone(), join_ref.clone())) {
                Some(frame) => frame.clone(),
                None => {
                    if !states.contains_key(topic) {
                        let rendered =
                            serde_json::to_string(&self.list(topic)).unwrap_or_else(|_| "{}".to_owned());
                        states.insert(topic.clone(), rendered);
                    }
                    let text = push_text(join_ref.as_deref(), topic, "presence_state", &states[topic]);
                    let frame = Utf8Bytes::from(text);
                    frames.insert((topic.clone(), join_ref), frame.clone());
                    frame
                }
            };
            self.answer_join(joining, state);
        }
    }

    fn answer_join(&mut self, joining: Joining, state: Utf8Bytes) {
        let Joining {
            frame,
            channel,
            sink,
            done,
        } = joining;
        let reply = Utf8Bytes::from(frame.reply(Status::Ok, serde_json::json!({})).encode());
        let queued = [reply, state]
            .into_iter()
            .all(|text| sink.out.try_send(text).is_ok());
        if queued {
            self.topics
                .entry(Arc::from(frame.topic.as_str()))
                .or_default()
                .insert(channel, Subscriber::Socket(sink));
        }
        let _ = done.send(Ok(()));
    }

    fn send_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let diff = self.pending.take();
        for (topic, payload) in diff.by_topic() {
            let Some(subscribers) = self.topics.get_mut(&topic) else {
                continue;
            };
            let mut text = None;
            let mut shared = None;
            let mut gone = Vec::new();
            for (&id, subscriber) in subscribers.iter() {
                let sent = match subscriber {
                    Subscriber::Socket(sink) => {
                        let text = text.get_or_insert_with(|| {
                            Utf8Bytes::from(broadcast_text(&topic, "presence_diff", &payload.to_json()))
                        });
                        let sent = sink.out.try_send(text.clone());
                        if matches!(sent, Err(mpsc::error::TrySendError::Full(_))) {
                            sink.kick.notify_one();
                        }
                        sent.is_ok()
                    }
                    Subscriber::Stream(out) => {
                        let shared = shared.get_or_insert_with(|| {
                            Arc::new(TopicDiff {
                                topic: Arc::clone(&topic),
                                diff: payload.clone(),
                            })
                        });
                        out.try_send(Arc::clone(shared)).is_ok()
                    }
                };
                if !sent {
                    gone.push(id);
                }
            }
            for id in gone {
                subscribers.remove(&id);
            }
            if subscribers.is_empty() {
                self.topics.remove(&topic);
            }
        }
    }
}

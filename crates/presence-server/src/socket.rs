//! One client's WebSocket: the Phoenix socket and its channels.
//!
//! The default policy, as the issue and Phoenix apps have it: joining topic
//! T with `{"presence": {"key": K, "meta": {...}}}` tracks K on T through
//! this channel (its own pid), replies, then pushes `presence_state`; every
//! change on T reaches the channel as `presence_diff`. `presence:update`
//! with `{"meta": {...}}` replaces the meta. Leaving, or the socket closing,
//! untracks. A join without `presence` only subscribes.
//!
//! Each channel is its own pid (`<node>.<socket>.<channel>`), as each
//! Phoenix channel is its own process: two tabs of one user on one topic
//! are two presences of one key.
//!
//! Bounds: every text message is at most `max_frame_bytes` (tungstenite
//! refuses longer ones; the socket is closed with 1009); a message that is
//! not a V2 frame closes the socket with 1007, a binary one with 1003. A
//! join past `max_topics_per_socket` or the join rate, or with a meta over
//! `max_meta_bytes` or `max_meta_depth`, is refused with a reason, as
//! Phoenix refuses a join. A socket silent for `idle_timeout_ms` is closed
//! with 1000; one too slow to read its diffs with 1008.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify};

use crate::config::Limits;
use crate::hub::{Command, Presence, PresenceError, SocketSink};
use crate::phoenix::{Frame, Status};

/// WebSocket close codes used here (RFC 6455, section 7.4.1).
pub mod close {
    /// The socket was idle too long.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A binary message: this serializer speaks text.
    pub const UNSUPPORTED: u16 = 1003;
    /// A text message that is not a V2 frame.
    pub const INVALID: u16 = 1007;
    /// The client reads its diffs too slowly.
    pub const POLICY: u16 = 1008;
    /// A message over `max_frame_bytes`.
    pub const TOO_BIG: u16 = 1009;
}

/// What every socket shares.
pub(crate) struct Shared {
    pub(crate) node: String,
    pub(crate) presence: Presence,
    pub(crate) limits: Limits,
    pub(crate) sockets: AtomicU64,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// One joined channel.
struct Channel {
    join_ref: Option<String>,
    id: u64,
    pid: String,
    key: Option<String>,
}

/// A join rate: `rate` per second on average, `burst` at once.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why a meta was refused.
fn check_meta(meta: &Value, limits: &Limits) -> Result<(), String> {
    let bytes = serde_json::to_vec(meta).map_or(usize::MAX, |bytes| bytes.len());
    if bytes > limits.max_meta_bytes {
        return Err(format!(
            "meta is {bytes} bytes, more than {}",
            limits.max_meta_bytes
        ));
    }
    if depth(meta) > limits.max_meta_depth {
        return Err(format!("meta nests deeper than {} levels", limits.max_meta_depth));
    }
    Ok(())
}

/// Nesting depth; bounded by serde_json's recursion limit on parsing.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The join payload's presence, if it asks for one.
fn presence_of(payload: &Value, limits: &Limits) -> Result<Option<(String, Value)>, String> {
    let Some(presence) = payload.get("presence") else {
        return Ok(None);
    };
    let Some(key) = presence.get("key").and_then(Value::as_str) else {
        return Err("presence.key must be a string".to_owned());
    };
    let meta = presence.get("meta").cloned().unwrap_or_else(|| json!({}));
    check_meta(&meta, limits)?;
    Ok(Some((key.to_owned(), meta)))
}

/// What the socket loop does after a message.
enum Next {
    Continue,
    Close(u16, String),
}

struct Connection {
    shared: Arc<Shared>,
    number: u64,
    channels: HashMap<String, Channel>,
    next_channel: u64,
    joins: Bucket,
    out: mpsc::Sender<Utf8Bytes>,
    kick: Arc<Notify>,
    replies: Vec<Frame>,
}

impl Connection {
    async fn leave(&mut self, topic: &str) {
        if let Some(channel) = self.channels.remove(topic) {
            let _ = self
                .shared
                .presence
                .send(Command::Leave {
                    topic: topic.to_owned(),
                    channel: channel.id,
                    pid: channel.pid,
                })
                .await;
        }
    }

    async fn handle_text(&mut self, text: &str) -> Next {
        let frame = match Frame::decode(text) {
            Ok(frame) => frame,
            Err(error) => return Next::Close(close::INVALID, error.to_string()),
        };
        match (frame.topic.as_str(), frame.event.as_str()) {
            ("phoenix", "heartbeat") => self.replies.push(frame.reply(Status::Ok, json!({}))),
            (_, "phx_join") => self.join(frame).await,
            (topic, "phx_leave") if self.channels.contains_key(topic) => {
                let join_ref = self.channels[topic].join_ref.clone();
                self.leave(topic).await;
                self.replies.push(frame.reply(Status::Ok, json!({})));
                if let Some(join_ref) = join_ref {
                    self.replies
                        .push(Frame::channel_event(&join_ref, topic, "phx_close"));
                }
            }
            (topic, "presence:update") if self.channels.contains_key(topic) => self.update(frame).await,
            (topic, _) if self.channels.contains_key(topic) => {
                self.replies.push(frame.refuse("unknown event"));
            }
            _ => self.replies.push(frame.refuse("unmatched topic")),
        }
        Next::Continue
    }

    async fn join(&mut self, frame: Frame) {
        let limits = &self.shared.limits;
        let rejoin = self.channels.contains_key(&frame.topic);
        if !rejoin && self.channels.len() >= limits.max_topics_per_socket {
            tracing::warn!(socket = self.number, topic = %frame.topic, "join refused: too many topics");
            return self.replies.push(frame.refuse("too many topics"));
        }
        if !self.joins.take() {
            tracing::warn!(socket = self.number, topic = %frame.topic, "join refused: join rate exceeded");
            return self.replies.push(frame.refuse("join rate exceeded"));
        }
        let presence = match presence_of(&frame.payload, limits) {
            Ok(presence) => presence,
            Err(reason) => {
                tracing::warn!(socket = self.number, topic = %frame.topic, %reason, "join refused");
                return self.replies.push(frame.refuse(&reason));
            }
        };
        if rejoin {
            // As Phoenix: a second join of a topic closes the first channel.
            let old = self.channels[&frame.topic].join_ref.clone();
            self.leave(&frame.topic).await;
            if let Some(old) = old {
                self.replies
                    .push(Frame::channel_event(&old, &frame.topic, "phx_close"));
            }
        }
        self.next_channel += 1;
        let id = (self.number << 20) | (self.next_channel & 0xF_FFFF);
        let pid = format!("{}.{}.{}", self.shared.node, self.number, self.next_channel);
        let key = presence.as_ref().map(|(key, _)| key.clone());
        let sink = SocketSink {
            join_ref: frame.join_ref.clone(),
            out: self.out.clone(),
            kick: Arc::clone(&self.kick),
        };
        let channel = Channel {
            join_ref: frame.join_ref.clone(),
            id,
            pid: pid.clone(),
            key,
        };
        let topic = frame.topic.clone();
        let refusal = frame.clone();
        let joined = self
            .shared
            .presence
            .join(|done| Command::Join {
                frame,
                channel: id,
                pid,
                presence,
                sink,
                done,
            })
            .await;
        match joined {
            // The hub queued the reply and the state.
            Ok(()) => {
                self.channels.insert(topic, channel);
            }
            Err(error) => {
                tracing::warn!(socket = self.number, %topic, %error, "join refused");
                self.replies.push(refusal.refuse(&error.to_string()));
            }
        }
    }

    async fn update(&mut self, frame: Frame) {
        let channel = &self.channels[&frame.topic];
        let Some(key) = channel.key.clone() else {
            return self.replies.push(frame.refuse("this channel tracks no presence"));
        };
        let Some(meta) = frame.payload.get("meta").cloned() else {
            return self.replies.push(frame.refuse("payload.meta is missing"));
        };
        if let Err(reason) = check_meta(&meta, &self.shared.limits) {
            return self.replies.push(frame.refuse(&reason));
        }
        let pid = channel.pid.clone();
        let updated = self.shared.presence.update(&pid, &frame.topic, &key, meta).await;
        self.replies.push(match updated {
            Ok(()) => frame.reply(Status::Ok, json!({})),
            Err(PresenceError::Stopped) => frame.refuse("server stopping"),
            Err(error) => frame.refuse(&error.to_string()),
        });
    }
}

/// Writes and flushes `texts`, unless the client stops reading: a write
/// that the hub's kick (this socket's queue overflowed) or the idle timeout
/// overtakes ends the socket. Nothing is sent then, as the way to the
/// client is full; the socket is dropped. `Err(None)` is a dropped socket.
async fn write_all(
    sink: &mut futures_util::stream::SplitSink<WebSocket, WsMessage>,
    texts: Vec<Utf8Bytes>,
    kick: &Notify,
    idle: Duration,
) -> Result<(), Option<(u16, String)>> {
    let write = async {
        for text in texts {
            sink.feed(WsMessage::Text(text)).await?;
        }
        sink.flush().await
    };
    tokio::select! {
        written = write => written.map_err(|_| None),
        () = kick.notified() => {
            tracing::warn!("dropping a socket that stopped reading (its queue overflowed)");
            Err(None)
        }
        () = tokio::time::sleep(idle) => {
            tracing::warn!("dropping a socket that took longer than the idle timeout to take a write");
            Err(None)
        }
    }
}

static SOCKETS: AtomicU64 = AtomicU64::new(0);

/// Serves one upgraded WebSocket until it closes.
pub(crate) async fn serve_socket(socket: WebSocket, shared: Arc<Shared>) {
    let number = SOCKETS.fetch_add(1, Ordering::Relaxed) + 1;
    let limits = shared.limits.clone();
    let (out, mut queued) = mpsc::channel(limits.outbound_queue);
    let mut connection = Connection {
        shared: Arc::clone(&shared),
        number,
        channels: HashMap::new(),
        next_channel: 0,
        joins: Bucket::new(limits.joins_per_second, limits.join_burst),
        out,
        kick: Arc::new(Notify::new()),
        replies: Vec::new(),
    };
    let (mut sink, mut stream) = socket.split();
    let mut shutdown = shared.shutdown.clone();
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    let kick = Arc::clone(&connection.kick);
    tracing::debug!(socket = number, "socket opened");
    let ending: Option<(u16, String)> = loop {
        let next = tokio::select! {
            received = tokio::time::timeout(idle, stream.next()) => match received {
                Err(_) => Next::Close(close::NORMAL, "idle".to_owned()),
                Ok(None) | Ok(Some(Ok(WsMessage::Close(_)))) => break None,
                Ok(Some(Err(error))) => {
                    let text = error.to_string();
                    if text.contains("too long") || text.contains("Space limit") {
                        Next::Close(close::TOO_BIG, format!("message over {} bytes", limits.max_frame_bytes))
                    } else {
                        tracing::debug!(socket = number, %error, "socket error");
                        break None;
                    }
                }
                Ok(Some(Ok(WsMessage::Text(text)))) => connection.handle_text(&text).await,
                Ok(Some(Ok(WsMessage::Binary(_)))) => {
                    Next::Close(close::UNSUPPORTED, "binary messages are not supported".to_owned())
                }
                Ok(Some(Ok(_))) => Next::Continue,
            },
            Some(text) = queued.recv() => {
                // Write what else is queued too, then flush once.
                let mut batch = vec![text];
                while batch.len() < 256 {
                    let Ok(text) = queued.try_recv() else { break };
                    batch.push(text);
                }
                match write_all(&mut sink, batch, &kick, idle).await {
                    Ok(()) => Next::Continue,
                    Err(stuck) => break stuck,
                }
            }
            () = kick.notified() => Next::Close(close::POLICY, "too slow to read its messages".to_owned()),
            _ = shutdown.changed() => Next::Close(close::GOING_AWAY, "server shutting down".to_owned()),
        };
        let replies: Vec<Utf8Bytes> = connection
            .replies
            .drain(..)
            .map(|reply| Utf8Bytes::from(reply.encode()))
            .collect();
        if !replies.is_empty() {
            if let Err(stuck) = write_all(&mut sink, replies, &kick, idle).await {
                break stuck;
            }
        }
        if let Next::Close(code, reason) = next {
            break Some((code, reason));
        }
    };
    if let Some((code, reason)) = ending {
        if code != close::NORMAL && code != close::GOING_AWAY {
            tracing::warn!(socket = number, code, %reason, "closing socket");
        }
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        };
        let _ = sink.send(WsMessage::Close(Some(frame))).await;
    }
    let topics: Vec<String> = connection.channels.keys().cloned().collect();
    for topic in topics {
        connection.leave(&topic).await;
    }
    shared.sockets.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(socket = number, "socket closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_bounds_are_checked() {
        let limits = Limits {
            max_meta_bytes: 20,
            max_meta_depth: 2,
            ..Limits::default()
        };
        assert!(check_meta(&json!({"a": [1]}), &limits).is_ok());
        assert!(check_meta(&json!({"a": [[1]]}), &limits)
            .unwrap_err()
            .contains("deeper"));
        assert!(check_meta(&json!({"a": "x".repeat(30)}), &limits)
            .unwrap_err()
            .contains("bytes"));
        assert_eq!(presence_of(&json!({}), &limits), Ok(None));
        assert!(presence_of(&json!({"presence": {"key": 7}}), &limits).is_err());
        assert_eq!(
            presence_of(&json!({"presence": {"key": "k"}}), &limits),
            Ok(Some(("k".to_owned(), json!({}))))
        );
    }

    #[test]
    fn the_join_rate_refills() {
        let mut bucket = Bucket::new(1000, 2);
        assert!(bucket.take() && bucket.take());
        assert!(!bucket.take(), "the burst is spent");
        std::thread::sleep(Duration::from_millis(5));
        assert!(bucket.take(), "refilled at the rate");
    }
}

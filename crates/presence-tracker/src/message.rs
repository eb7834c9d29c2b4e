//! The protocol's messages and their validated JSON encoding.
//!
//! Every message is a JSON object with a `type` and the sender (`from`):
//!
//! ```json
//! {"type":"heartbeat","from":"a@1","uptime_ms":90000,"clocks":{"a@1":3,"b@1":5},"delta":<delta or null>}
//! {"type":"transfer_request","from":"a@1","uptime_ms":90000,"clocks":{"a@1":3},"full":false}
//! {"type":"transfer_ack","from":"b@1","delta":<delta>}
//! {"type":"transfer_ack","from":"b@1","state":<state>}
//! {"type":"graceful_permdown","from":"a@1"}
//! ```
//!
//! `<delta>` and `<state>` are the core's wire shapes (`presence_core::wire`).
//! Decoding refuses unknown fields, duplicate keys, fields that do not belong
//! to the message's type, bad replica names and negative clocks, and caps the
//! size before parsing; every problem is a [`MessageError`].

use std::collections::BTreeMap;
use std::fmt;

use presence_core::wire::{clock, replica, UniqueMap, WireInt};
use presence_core::{DecodeError, DecodeLimits, Delta, ReplicaId, Snapshot};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Per known replica, the highest contiguous clock observed.
pub type Clocks = BTreeMap<ReplicaId, u64>;

/// What a transfer carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// A stored delta generation of the sender that covers the gap.
    Delta(Delta),
    /// The sender's state, limited to replicas the asker knows.
    State(Snapshot),
}

/// A message between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Periodic: the sender is alive; here are its clocks and its local
    /// changes since its last heartbeat (none after quiet periods).
    Heartbeat {
        /// The sender.
        from: ReplicaId,
        /// The sender's clocks.
        clocks: Clocks,
        /// The sender's own changes since its previous heartbeat.
        delta: Option<Delta>,
        /// How long the sender's incarnation has run, by its own clock: a
        /// receiver that has forgotten old retirements refuses a replica
        /// it does not know that is older than what it forgot.
        uptime_ms: u64,
    },
    /// "I lag behind you; here is what I have."
    TransferRequest {
        /// The asker.
        from: ReplicaId,
        /// The asker's clocks.
        clocks: Clocks,
        /// Ask for the state even if a delta could do (a delta did not connect).
        full: bool,
        /// How long the asker's incarnation has run (see `Heartbeat`).
        uptime_ms: u64,
    },
    /// The answer to a transfer request.
    TransferAck {
        /// The answering node.
        from: ReplicaId,
        /// What it sends.
        transfer: Transfer,
    },
    /// The sender is shutting down in order: drop its presences now.
    GracefulPermdown {
        /// The departing replica.
        from: ReplicaId,
    },
}

impl Message {
    #[cfg(feature = "inspect")]
    /// Feeds `hasher` the message's type and every field, without encoding
    /// it: model checkers fingerprint messages in flight by it.
    pub fn hash_canonical<H: std::hash::Hasher>(&self, hasher: &mut H) {
        use std::hash::Hash as _;
        (self.kind(), self.from()).hash(hasher);
        match self {
            Self::Heartbeat {
                clocks,
                delta,
                uptime_ms,
                ..
            } => {
                (clocks, uptime_ms).hash(hasher);
                delta.is_some().hash(hasher);
                if let Some(delta) = delta {
                    delta.hash_canonical(hasher);
                }
            }
            Self::TransferRequest {
                clocks,
                full,
                uptime_ms,
                ..
            } => (clocks, full, uptime_ms).hash(hasher),
            Self::TransferAck { transfer, .. } => match transfer {
                Transfer::Delta(delta) => {
                    0u8.hash(hasher);
                    delta.hash_canonical(hasher);
                }
                Transfer::State(snapshot) => {
                    1u8.hash(hasher);
                    snapshot.hash_canonical(hasher);
                }
            },
            Self::GracefulPermdown { .. } => {}
        }
    }

    #[cfg(feature = "inspect")]
    /// [`Message::hash_canonical`] as if every replica base were renamed by
    /// `rename` (see `State::hash_renamed`): for symmetry reduction.
    pub fn hash_renamed<H: std::hash::Hasher>(
        &self,
        rename: presence_core::digest::Rename<'_>,
        hasher: &mut H,
    ) {
        use presence_core::digest::{hash_id_renamed, hash_per_replica_renamed};
        use std::hash::Hash as _;
        self.kind().hash(hasher);
        hash_id_renamed(self.from(), rename, hasher);
        match self {
            Self::Heartbeat {
                clocks,
                delta,
                uptime_ms,
                ..
            } => {
                hash_per_replica_renamed(clocks, rename, hasher);
                uptime_ms.hash(hasher);
                delta.is_some().hash(hasher);
                if let Some(delta) = delta {
                    delta.hash_renamed(rename, hasher);
                }
            }
            Self::TransferRequest {
                clocks,
                full,
                uptime_ms,
                ..
            } => {
                hash_per_replica_renamed(clocks, rename, hasher);
                (full, uptime_ms).hash(hasher);
            }
            Self::TransferAck { transfer, .. } => match transfer {
                Transfer::Delta(delta) => {
                    0u8.hash(hasher);
                    delta.hash_renamed(rename, hasher);
                }
                Transfer::State(snapshot) => {
                    1u8.hash(hasher);
                    snapshot.hash_renamed(rename, hasher);
                }
            },
            Self::GracefulPermdown { .. } => {}
        }
    }

    /// The sender.
    pub fn from(&self) -> &ReplicaId {
        match self {
            Self::Heartbeat { from, .. }
            | Self::TransferRequest { from, .. }
            | Self::TransferAck { from, .. }
            | Self::GracefulPermdown { from } => from,
        }
    }

    /// A short name for traces: `heartbeat`, `transfer_request`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Heartbeat { .. } => "heartbeat",
            Self::TransferRequest { .. } => "transfer_request",
            Self::TransferAck { .. } => "transfer_ack",
            Self::GracefulPermdown { .. } => "graceful_permdown",
        }
    }
}

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// Malformed JSON, a bad replica or clock, or a bad embedded payload.
    Decode(DecodeError),
    /// The `type` is not one of the four message types.
    UnknownType {
        /// The type found, cut to 32 characters.
        found: String,
    },
    /// A field the message's type needs is missing, or one it must not have
    /// is present.
    Shape {
        /// The message type.
        kind: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(problem) => write!(f, "bad message: {problem}"),
            Self::UnknownType { found } => write!(f, "unknown message type {found:?}"),
            Self::Shape { kind, problem } => write!(f, "bad {kind} message: {problem}"),
        }
    }
}

impl std::error::Error for MessageError {}

impl From<DecodeError> for MessageError {
    fn from(problem: DecodeError) -> Self {
        Self::Decode(problem)
    }
}

impl From<serde_json::Error> for MessageError {
    fn from(problem: serde_json::Error) -> Self {
        Self::Decode(DecodeError::from(problem))
    }
}

// ----- encoding -------------------------------------------------------------------

fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(&mut *out, value).expect("names and numbers always serialize");
}

fn push_clocks(out: &mut Vec<u8>, clocks: &Clocks) {
    let as_text: BTreeMap<String, u64> = clocks
        .iter()
        .map(|(id, clock)| (id.to_string(), *clock))
        .collect();
    push_json(out, &as_text);
}

impl Message {
    /// The message as JSON. Embedded deltas and states are spliced in as the
    /// core encodes them, without a second pass.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(br#"{"type":"#);
        push_json(&mut out, self.kind());
        out.extend_from_slice(br#","from":"#);
        push_json(&mut out, &self.from().to_string());
        match self {
            Self::Heartbeat {
                clocks,
                delta,
                uptime_ms,
                ..
            } => {
                out.extend_from_slice(br#","uptime_ms":"#);
                push_json(&mut out, uptime_ms);
                out.extend_from_slice(br#","clocks":"#);
                push_clocks(&mut out, clocks);
                out.extend_from_slice(br#","delta":"#);
                match delta {
                    Some(delta) => out.extend_from_slice(&delta.to_json()),
                    None => out.extend_from_slice(b"null"),
                }
            }
            Self::TransferRequest {
                clocks,
                full,
                uptime_ms,
                ..
            } => {
                out.extend_from_slice(br#","uptime_ms":"#);
                push_json(&mut out, uptime_ms);
                out.extend_from_slice(br#","clocks":"#);
                push_clocks(&mut out, clocks);
                out.extend_from_slice(br#","full":"#);
                push_json(&mut out, full);
            }
            Self::TransferAck { transfer, .. } => match transfer {
                Transfer::Delta(delta) => {
                    out.extend_from_slice(br#","delta":"#);
                    out.extend_from_slice(&delta.to_json());
                }
                Transfer::State(snapshot) => {
                    out.extend_from_slice(br#","state":"#);
                    out.extend_from_slice(&snapshot.to_json());
                }
            },
            Self::GracefulPermdown { .. } => {}
        }
        out.push(b'}');
        out
    }

    /// Decodes and validates a message with default limits.
    pub fn from_json(bytes: &[u8]) -> Result<Self, MessageError> {
        Self::from_json_with(bytes, DecodeLimits::default())
    }

    /// Decodes and validates a message; `limits` caps its size.
    pub fn from_json_with(bytes: &[u8], limits: DecodeLimits) -> Result<Self, MessageError> {
        if bytes.len() > limits.max_bytes {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: limits.max_bytes,
            }
            .into());
        }
        let wire: MessageIn<'_> = serde_json::from_slice(bytes)?;
        wire.validate(limits)
    }
}

// ----- decoding -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn<'a> {
    #[serde(rename = "type")]
    kind: String,
    from: String,
    #[serde(default)]
    clocks: Option<UniqueMap<WireInt>>,
    #[serde(default, borrow)]
    delta: Option<&'a RawValue>,
    #[serde(default, borrow)]
    state: Option<&'a RawValue>,
    #[serde(default)]
    full: Option<bool>,
    #[serde(default)]
    uptime_ms: Option<WireInt>,
}

fn decode_clocks(clocks: UniqueMap<WireInt>) -> Result<Clocks, MessageError> {
    Ok(clocks.by_replica(|value| clock("clocks", value, false))?)
}

impl MessageIn<'_> {
    fn validate(self, limits: DecodeLimits) -> Result<Message, MessageError> {
        let from = replica(&self.from)?;
        let kind: &'static str = match self.kind.as_str() {
            "heartbeat" => "heartbeat",
            "transfer_request" => "transfer_request",
            "transfer_ack" => "transfer_ack",
            "graceful_permdown" => "graceful_permdown",
            other => {
                return Err(MessageError::UnknownType {
                    found: other.chars().take(32).collect(),
                })
            }
        };
        let shape = |problem| MessageError::Shape { kind, problem };
        let uptime = || -> Result<u64, MessageError> {
            let value = self.uptime_ms.ok_or_else(|| shape("uptime_ms missing"))?;
            Ok(clock("uptime_ms", value, false)?)
        };
        let delta = |raw: &RawValue| -> Result<Delta, MessageError> {
            Ok(Delta::from_json_with(raw.get().as_bytes(), limits)?)
        };
        match kind {
            "heartbeat" => {
                if self.state.is_some() || self.full.is_some() {
                    return Err(shape("only uptime_ms, clocks and delta may follow from"));
                }
                let uptime_ms = uptime()?;
                let clocks = decode_clocks(self.clocks.ok_or_else(|| shape("clocks missing"))?)?;
                let delta = match self.delta {
                    Some(raw) if raw.get() != "null" => Some(delta(raw)?),
                    _ => None,
                };
                Ok(Message::Heartbeat {
                    from,
                    clocks,
                    delta,
                    uptime_ms,
                })
            }
            "transfer_request" => {
                if self.state.is_some() || self.delta.is_some() {
                    return Err(shape("only uptime_ms, clocks and full may follow from"));
                }
                let uptime_ms = uptime()?;
                let clocks = decode_clocks(self.clocks.ok_or_else(|| shape("clocks missing"))?)?;
                let full = self.full.ok_or_else(|| shape("full missing"))?;
                Ok(Message::TransferRequest {
                    from,
                    clocks,
                    full,
                    uptime_ms,
                })
            }
            "transfer_ack" => {
                if self.clocks.is_some() || self.full.is_some() || self.uptime_ms.is_some() {
                    return Err(shape("only a delta or a state may follow from"));
                }
                let transfer = match (self.delta, self.state) {
                    (Some(raw), None) => Transfer::Delta(delta(raw)?),
                    (None, Some(raw)) => {
                        Transfer::State(Snapshot::from_json_with(raw.get().as_bytes(), limits)?)
                    }
                    _ => return Err(shape("exactly one of delta and state")),
                };
                Ok(Message::TransferAck { from, transfer })
            }
            _ => {
                if self.clocks.is_some()
                    || self.delta.is_some()
                    || self.state.is_some()
                    || self.full.is_some()
                    || self.uptime_ms.is_some()
                {
                    return Err(shape("nothing may follow from"));
                }
                Ok(Message::GracefulPermdown { from })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presence_core::State;
    use serde_json::json;

    fn sample_state() -> State {
        let mut state = State::new(ReplicaId::new("a", 1));
        state
            .join("p1", "room:lobby", "alice", json!({"device": "phone"}))
            .unwrap();
        state
    }

    fn round_trip(message: &Message) {
        let bytes = message.to_json();
        serde_json::from_slice::<serde_json::Value>(&bytes).expect("valid JSON");
        assert_eq!(&Message::from_json(&bytes).unwrap(), message);
    }

    fn digest(message: &Message) -> u64 {
        use std::hash::Hasher as _;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        message.hash_canonical(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn messages_digest_alike_exactly_when_they_decode_alike() {
        let mut state = sample_state();
        let clocks = state.clocks();
        let from = state.replica().clone();
        let delta = state.take_delta();
        let messages = [
            Message::Heartbeat {
                from: from.clone(),
                clocks: clocks.clone(),
                delta: Some(delta.clone()),
                uptime_ms: 7,
            },
            Message::Heartbeat {
                from: from.clone(),
                clocks: clocks.clone(),
                delta: None,
                uptime_ms: 7,
            },
            Message::Heartbeat {
                from: from.clone(),
                clocks: clocks.clone(),
                delta: None,
                uptime_ms: 8,
            },
            Message::TransferRequest {
                from: from.clone(),
                clocks: clocks.clone(),
                full: true,
                uptime_ms: 7,
            },
            Message::TransferRequest {
                from: from.clone(),
                clocks,
                full: false,
                uptime_ms: 7,
            },
            Message::TransferAck {
                from: from.clone(),
                transfer: Transfer::Delta(delta),
            },
            Message::TransferAck {
                from: from.clone(),
                transfer: Transfer::State(state.snapshot()),
            },
            Message::GracefulPermdown { from },
        ];
        for (i, one) in messages.iter().enumerate() {
            let decoded = Message::from_json(&one.to_json()).unwrap();
            assert_eq!(digest(one), digest(&decoded), "{}", one.kind());
            for other in &messages[i + 1..] {
                assert_ne!(digest(one), digest(other), "{} and {}", one.kind(), other.kind());
            }
        }
    }

    #[test]
    fn every_message_round_trips() {
        let mut state = sample_state();
        let clocks = state.clocks();
        let from = state.replica().clone();
        let delta = state.take_delta();
        round_trip(&Message::Heartbeat {
            from: from.clone(),
            clocks: clocks.clone(),
            delta: Some(delta.clone()),
            uptime_ms: 0,
        });
        round_trip(&Message::Heartbeat {
            from: from.clone(),
            clocks: clocks.clone(),
            delta: None,
            uptime_ms: 90_000,
        });
        round_trip(&Message::TransferRequest {
            from: from.clone(),
            clocks,
            full: true,
            uptime_ms: 90_000,
        });
        round_trip(&Message::TransferAck {
            from: from.clone(),
            transfer: Transfer::Delta(delta),
        });
        round_trip(&Message::TransferAck {
            from: from.clone(),
            transfer: Transfer::State(state.snapshot()),
        });
        round_trip(&Message::GracefulPermdown { from });
    }

    fn refused(text: &str) -> MessageError {
        Message::from_json(text.as_bytes()).expect_err("message must be refused")
    }

    /// A refusal reads as what was wrong, for the logs.
    #[test]
    fn refusals_read_as_what_was_wrong() {
        assert_eq!(
            refused(r#"{"type":"gossip","from":"a@1"}"#).to_string(),
            r#"unknown message type "gossip""#
        );
        let shape = refused(r#"{"type":"graceful_permdown","from":"a@1","full":true}"#);
        assert_eq!(
            shape.to_string(),
            "bad graceful_permdown message: nothing may follow from"
        );
        assert!(refused("{").to_string().starts_with("bad message: "));
    }

    #[test]
    fn bad_messages_are_typed_errors() {
        assert!(matches!(
            refused("{"),
            MessageError::Decode(DecodeError::Json { .. })
        ));
        assert!(matches!(
            refused(r#"{"type":"hello","from":"a@1"}"#),
            MessageError::UnknownType { .. }
        ));
        assert!(matches!(
            refused(r#"{"type":"heartbeat","from":"a@1"}"#),
            MessageError::Shape {
                kind: "heartbeat",
                ..
            }
        ));
        assert_eq!(
            refused(r#"{"type":"transfer_request","from":"a@1","clocks":{},"full":true}"#),
            MessageError::Shape {
                kind: "transfer_request",
                problem: "uptime_ms missing",
            }
        );
        assert!(matches!(
            refused(r#"{"type":"heartbeat","from":"a@1","uptime_ms":-5,"clocks":{},"delta":null}"#),
            MessageError::Decode(DecodeError::InvalidClock {
                field: "uptime_ms",
                ..
            })
        ));
        assert!(matches!(
            refused(r#"{"type":"graceful_permdown","from":"a@1","uptime_ms":1}"#),
            MessageError::Shape { .. }
        ));
        // A field of another type is refused alone, not only beside another.
        let empty_delta = r#"{"replica":"a@1","from":0,"to":0,"joins":[],"leaves":[]}"#;
        let strays: [(&str, &str, Vec<String>); 3] = [
            (
                "heartbeat",
                r#""uptime_ms":0,"clocks":{},"delta":null"#,
                vec![r#""full":true"#.into(), r#""state":{}"#.into()],
            ),
            (
                "transfer_request",
                r#""uptime_ms":0,"clocks":{},"full":true"#,
                vec![r#""state":{}"#.into(), format!(r#""delta":{empty_delta}"#)],
            ),
            (
                "transfer_ack",
                &format!(r#""delta":{empty_delta}"#),
                vec![
                    r#""clocks":{}"#.into(),
                    r#""full":true"#.into(),
                    r#""uptime_ms":1"#.into(),
                ],
            ),
        ];
        for (kind, fields, extras) in &strays {
            for extra in extras {
                let text = format!(r#"{{"type":"{kind}","from":"a@1",{fields},{extra}}}"#);
                assert!(
                    matches!(refused(&text), MessageError::Shape { kind: found, .. } if found == *kind),
                    "{kind} with {extra}"
                );
            }
        }
        // Each field a permdown must not carry is refused on its own.
        for extra in [
            r#""clocks":{}"#,
            r#""delta":{"replica":"a@1","from":0,"to":0,"joins":[],"leaves":[]}"#,
            r#""state":{}"#,
            r#""full":true"#,
            r#""uptime_ms":1"#,
        ] {
            let text = format!(r#"{{"type":"graceful_permdown","from":"a@1",{extra}}}"#);
            assert!(matches!(refused(&text), MessageError::Shape { .. }), "{extra}");
        }
        assert!(matches!(
            refused(r#"{"type":"transfer_ack","from":"a@1"}"#),
            MessageError::Shape {
                kind: "transfer_ack",
                ..
            }
        ));
        assert!(matches!(
            refused(r#"{"type":"heartbeat","from":"a@1","uptime_ms":0,"clocks":{"a@1":-1},"delta":null}"#),
            MessageError::Decode(DecodeError::InvalidClock { .. })
        ));
        assert!(matches!(
            refused(
                r#"{"type":"heartbeat","from":"a@1","uptime_ms":0,"clocks":{"a@1":1,"a@1":2},"delta":null}"#
            ),
            MessageError::Decode(DecodeError::Json { .. })
        ));
        // Two spellings of one replica are two keys to serde, one to us.
        assert_eq!(
            refused(
                r#"{"type":"heartbeat","from":"a@1","uptime_ms":0,"clocks":{"a@1":1,"a@01":2},"delta":null}"#
            ),
            MessageError::Decode(DecodeError::InvalidReplica {
                text: "a@1".into(),
                problem: "another key names the same replica",
            })
        );
        assert!(matches!(
            refused(r#"{"type":"heartbeat","from":"@","clocks":{},"delta":null}"#),
            MessageError::Decode(DecodeError::InvalidReplica { .. })
        ));
        assert!(matches!(
            refused(
                r#"{"type":"heartbeat","from":"a@1","uptime_ms":0,"clocks":{},"delta":{"replica":"a@1"}}"#
            ),
            MessageError::Decode(DecodeError::Json { .. })
        ));
        assert!(matches!(
            refused(r#"{"type":"graceful_permdown","from":"a@1","extra":1}"#),
            MessageError::Decode(DecodeError::Json { .. })
        ));
    }

    #[test]
    fn oversized_messages_are_refused_before_parsing() {
        let limits = DecodeLimits { max_bytes: 8 };
        let refused = Message::from_json_with(br#"{"type":"graceful_permdown","from":"a@1"}"#, limits);
        assert!(matches!(
            refused,
            Err(MessageError::Decode(DecodeError::TooLarge { .. }))
        ));
        // The limit is inclusive: a message of exactly `max_bytes` is read
        // (mutation testing found `>` replaceable by `>=` unnoticed).
        let bytes = br#"{"type":"graceful_permdown","from":"a@1"}"#;
        let exact = DecodeLimits {
            max_bytes: bytes.len(),
        };
        assert!(Message::from_json_with(bytes, exact).is_ok());
        let short = DecodeLimits {
            max_bytes: bytes.len() - 1,
        };
        assert!(Message::from_json_with(bytes, short).is_err());
    }

    #[test]
    fn clocks_and_incarnations_read_back_over_the_whole_u64_range() {
        for value in [0, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX - 1, u64::MAX] {
            let message = Message::Heartbeat {
                from: ReplicaId::new("a", value),
                clocks: [(ReplicaId::new("b", value), value)].into(),
                delta: None,
                uptime_ms: value,
            };
            assert_eq!(Message::from_json(&message.to_json()), Ok(message));
        }
    }
}

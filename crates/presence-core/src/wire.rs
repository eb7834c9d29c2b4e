//! The JSON wire format of states, snapshots and deltas, with validation.
//!
//! State (and snapshot, and extract) — the seed's field names, plus an
//! optional `retired` map:
//!
//! ```json
//! {"replica": "node-a@1",
//!  "context": {"node-a@1": 3, "node-b@2": 1},
//!  "clouds": {"node-b@2": [4]},
//!  "values": [{"tag": {"replica": "node-a@1", "clock": 1},
//!              "entry": {"topic": "room:lobby", "key": "alice", "pid": "p1",
//!                        "meta": {"device": "phone"}}}],
//!  "retired": {"node-c": 4}}
//! ```
//!
//! An entry made by an update carries `"replaces": <clock>`. A replica is
//! written `base@incarnation`. Local liveness (up / down) is never written.
//!
//! Delta: `{"replica", "from", "to", "joins": [{"clock", "entry"}], "leaves": [clock]}`,
//! covering the replica's clocks in `(from, to]` (see the `delta` module).
//!
//! Decoding never panics and never recurses without bound: serde_json stops
//! nesting at 128 levels, metadata is then held to [`crate::MAX_META_DEPTH`], and the
//! input size is capped by [`DecodeLimits`] before parsing, which bounds every
//! allocation. Every problem is a [`DecodeError`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::delta::Delta;
use crate::entry::{Entry, EntryError};
use crate::log::ReplicaLog;
use crate::merge::{ReplicaLogs, Snapshot};
use crate::replica::ReplicaId;
use crate::state::State;

/// Bounds applied before a payload is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The largest payload accepted, in bytes.
    pub max_bytes: usize,
}

impl Default for DecodeLimits {
    /// 256 MiB: room for a few million entries.
    fn default() -> Self {
        Self { max_bytes: 256 << 20 }
    }
}

/// Why a payload was refused. Nothing was merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The payload is larger than [`DecodeLimits::max_bytes`].
    TooLarge {
        /// Its size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not well-formed JSON of the expected shape: syntax, non-UTF-8 text,
    /// missing or unknown fields, wrong types, duplicate object keys, or
    /// nesting beyond serde_json's limit.
    Json {
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// 1-based column of the problem (0 when unknown).
        column: usize,
        /// What serde_json said.
        message: String,
    },
    /// A replica name that is not `base@incarnation`.
    InvalidReplica {
        /// The text, cut to 64 characters.
        text: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A clock out of its range: context clocks and incarnations must be
    /// `>= 0`, cloud, tag and delta clocks `> 0`.
    InvalidClock {
        /// Where: `context`, `clouds`, `tag`, `replaces`, `retired`, `from`, `to`,
        /// `joins` or `leaves`.
        field: &'static str,
        /// The value found.
        clock: i64,
    },
    /// An entry breaks a limit (names, meta depth).
    InvalidEntry {
        /// The entry's tag, `replica:clock`.
        tag: String,
        /// Which limit.
        problem: EntryError,
    },
    /// Two values carry the same tag.
    DuplicateTag {
        /// The tag, `replica:clock`.
        tag: String,
    },
    /// A value's tag is not observed by the payload's own context or cloud.
    UnobservedTag {
        /// The tag, `replica:clock`.
        tag: String,
    },
    /// A `replaces` clock that is not below the entry's own clock.
    InvalidReplaces {
        /// The tag, `replica:clock`.
        tag: String,
    },
    /// The payload carries data of a replica its own watermarks retire.
    RetiredReplica {
        /// The replica.
        replica: String,
    },
    /// A delta whose clocks do not fit its range.
    InvalidDelta {
        /// What is wrong.
        problem: &'static str,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => write!(f, "payload of {len} bytes exceeds the limit of {max}"),
            Self::Json {
                line,
                column,
                message,
            } => {
                write!(f, "malformed payload at line {line} column {column}: {message}")
            }
            Self::InvalidReplica { text, problem } => write!(f, "invalid replica {text:?}: {problem}"),
            Self::InvalidClock { field, clock } => write!(f, "clock {clock} out of range in {field}"),
            Self::InvalidEntry { tag, problem } => write!(f, "invalid entry {tag}: {problem}"),
            Self::DuplicateTag { tag } => write!(f, "duplicate tag {tag}"),
            Self::UnobservedTag { tag } => write!(f, "tag {tag} is not observed by the payload's context"),
            Self::InvalidReplaces { tag } => write!(f, "entry {tag} replaces a clock not below its own"),
            Self::RetiredReplica { replica } => write!(f, "payload holds data of retired replica {replica}"),
            Self::InvalidDelta { problem } => write!(f, "invalid delta: {problem}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<serde_json::Error> for DecodeError {
    fn from(error: serde_json::Error) -> Self {
        let message = error.to_string();
        Self::Json {
            line: error.line(),
            column: error.column(),
            message: cut(&message, 200),
        }
    }
}

fn cut(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

// ----- encoding ---------------------------------------------------------------

impl Serialize for ReplicaId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Serialize)]
struct EntryOut<'a> {
    topic: &'a str,
    key: &'a str,
    pid: &'a str,
    meta: &'a crate::entry::Meta,
    #[serde(skip_serializing_if = "Option::is_none")]
    replaces: Option<u64>,
}

impl<'a> From<&'a Entry> for EntryOut<'a> {
    fn from(entry: &'a Entry) -> Self {
        Self {
            topic: &entry.topic,
            key: &entry.key,
            pid: &entry.pid,
            meta: &entry.meta,
            replaces: entry.replaces,
        }
    }
}

#[derive(Serialize)]
struct TagOut<'a> {
    /// Rendered once per log, not once per value.
    replica: &'a str,
    clock: u64,
}

#[derive(Serialize)]
struct ValueOut<'a> {
    tag: TagOut<'a>,
    entry: EntryOut<'a>,
}

/// Logs in replica order, serialized as the parts of the state shape.
struct Logs<'a>(Vec<(&'a ReplicaId, &'a ReplicaLog)>);

struct ContextOut<'a>(&'a Logs<'a>);
struct CloudsOut<'a>(&'a Logs<'a>);
struct ValuesOut<'a>(&'a Logs<'a>);

impl Serialize for ContextOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0 .0.len()))?;
        for (id, log) in &self.0 .0 {
            map.serialize_entry(id, &log.context)?;
        }
        map.end()
    }
}

impl Serialize for CloudsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let clouds: Vec<_> = self
            .0
             .0
            .iter()
            .filter(|(_, log)| !log.cloud().is_empty())
            .collect();
        let mut map = serializer.serialize_map(Some(clouds.len()))?;
        for (id, log) in clouds {
            map.serialize_entry(id, &log.cloud())?;
        }
        map.end()
    }
}

impl Serialize for ValuesOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names: Vec<String> = self.0 .0.iter().map(|(replica, _)| replica.to_string()).collect();
        serializer.collect_seq(self.0 .0.iter().zip(&names).flat_map(|(&(_, log), replica)| {
            log.values().iter().map(move |(&clock, entry)| ValueOut {
                tag: TagOut { replica, clock },
                entry: EntryOut::from(&**entry),
            })
        }))
    }
}

#[derive(Serialize)]
struct StateOut<'a> {
    replica: &'a ReplicaId,
    context: ContextOut<'a>,
    clouds: CloudsOut<'a>,
    values: ValuesOut<'a>,
    retired: &'a BTreeMap<Arc<str>, u64>,
}

fn encode_state(replica: &ReplicaId, retired: &BTreeMap<Arc<str>, u64>, logs: &Logs<'_>) -> Vec<u8> {
    let out = StateOut {
        replica,
        context: ContextOut(logs),
        clouds: CloudsOut(logs),
        values: ValuesOut(logs),
        retired,
    };
    // About 160 bytes a value: one allocation instead of a doubling series.
    let values: usize = logs.0.iter().map(|(_, log)| log.values().len()).sum();
    let mut bytes = Vec::with_capacity(256 + values * 160);
    serde_json::to_writer(&mut bytes, &out).expect("states always serialize: string keys, finite numbers");
    bytes
}

impl State {
    /// The state's replicated data as JSON (never its local liveness).
    pub fn to_json(&self) -> Vec<u8> {
        let logs = Logs(self.replicas().map(|(id, log, _)| (id, log)).collect());
        encode_state(&self.replica, &self.retired, &logs)
    }
}

impl Snapshot {
    /// The snapshot as JSON, in the state shape.
    pub fn to_json(&self) -> Vec<u8> {
        let logs = Logs(self.logs.iter().collect());
        encode_state(&self.replica, &self.retired, &logs)
    }

    /// Decodes and validates a state-shaped payload with default limits.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_json_with(bytes, DecodeLimits::default())
    }

    /// Decodes and validates a state-shaped payload.
    pub fn from_json_with(bytes: &[u8], limits: DecodeLimits) -> Result<Self, DecodeError> {
        check_size(bytes, limits)?;
        let wire: StateIn<'_> = serde_json::from_slice(bytes)?;
        let context = ContextRows::read(wire.context, bytes)?;
        wire.validate(context)
    }
}

#[derive(Serialize)]
struct JoinOut<'a> {
    clock: u64,
    entry: EntryOut<'a>,
}

struct JoinsOut<'a>(&'a BTreeMap<u64, Arc<Entry>>);

impl Serialize for JoinsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(&clock, entry)| JoinOut {
            clock,
            entry: EntryOut::from(&**entry),
        }))
    }
}

#[derive(Serialize)]
struct DeltaOut<'a> {
    replica: &'a ReplicaId,
    from: u64,
    to: u64,
    joins: JoinsOut<'a>,
    leaves: &'a BTreeSet<u64>,
}

impl Delta {
    /// The delta as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let out = DeltaOut {
            replica: &self.replica,
            from: self.from,
            to: self.to,
            joins: JoinsOut(&self.joins),
            leaves: &self.leaves,
        };
        serde_json::to_vec(&out).expect("deltas always serialize")
    }

    /// Decodes and validates a delta with default limits.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_json_with(bytes, DecodeLimits::default())
    }

    /// Decodes and validates a delta.
    pub fn from_json_with(bytes: &[u8], limits: DecodeLimits) -> Result<Self, DecodeError> {
        check_size(bytes, limits)?;
        let wire: DeltaIn = serde_json::from_slice(bytes)?;
        wire.validate()
    }
}

fn check_size(bytes: &[u8], limits: DecodeLimits) -> Result<(), DecodeError> {
    if bytes.len() > limits.max_bytes {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: limits.max_bytes,
        });
    }
    Ok(())
}

// ----- decoding -----------------------------------------------------------------

/// A JSON object read into ordered pairs, refusing duplicate keys (serde's
/// maps would keep the last silently). Public so that protocol messages
/// decode their maps as strictly as states do.
pub struct UniqueMap<V>(pub BTreeMap<String, V>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueVisitor<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with distinct keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = BTreeMap::new();
                while let Some((key, value)) = access.next_entry::<String, V>()? {
                    if map.contains_key(&key) {
                        return Err(de::Error::custom(format_args!(
                            "duplicate key {:?}",
                            cut(&key, 64)
                        )));
                    }
                    map.insert(key, value);
                }
                Ok(UniqueMap(map))
            }
        }
        deserializer.deserialize_map(UniqueVisitor(PhantomData))
    }
}

// Names borrow from the payload where they hold no escapes, so that a name
// costs no allocation until `Names` keeps it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryIn<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    pid: Cow<'a, str>,
    meta: MetaIn,
    #[serde(default)]
    replaces: Option<WireInt>,
}

/// A meta as parsed, with whether it nests deeper than
/// [`crate::MAX_META_DEPTH`]: judged while parsing, so validation does not
/// walk a hundred thousand metas again once they have left the caches (that
/// walk was a tenth of the decode). Too deep is not a parse error, so that
/// malformed JSON later in the payload still wins, as it does for every
/// other entry problem.
struct MetaIn {
    value: Value,
    too_deep: bool,
}

impl<'de> Deserialize<'de> for MetaIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut too_deep = false;
        let value = de::DeserializeSeed::deserialize(
            MetaSeed {
                depth: 0,
                too_deep: &mut too_deep,
            },
            deserializer,
        )?;
        Ok(Self { value, too_deep })
    }
}

/// Builds a JSON value as serde_json's own `Value` does, noting any
/// container at or below [`crate::MAX_META_DEPTH`] levels of nesting.
/// Recursion is bounded by serde_json's nesting limit, which refuses the
/// payload first.
struct MetaSeed<'f> {
    depth: usize,
    too_deep: &'f mut bool,
}

impl MetaSeed<'_> {
    /// Notes a container at this depth; the seed for what it holds.
    fn enter(&mut self) {
        if self.depth >= crate::MAX_META_DEPTH {
            *self.too_deep = true;
        }
    }

    fn child(&mut self) -> MetaSeed<'_> {
        MetaSeed {
            depth: self.depth + 1,
            too_deep: self.too_deep,
        }
    }
}

impl<'de> de::DeserializeSeed<'de> for MetaSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetaSeed<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, flag: bool) -> Result<Value, E> {
        Ok(Value::Bool(flag))
    }

    fn visit_i64<E>(self, number: i64) -> Result<Value, E> {
        Ok(Value::Number(number.into()))
    }

    fn visit_u64<E>(self, number: u64) -> Result<Value, E> {
        Ok(Value::Number(number.into()))
    }

    fn visit_f64<E>(self, number: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, text: &str) -> Result<Value, E> {
        Ok(Value::String(text.to_owned()))
    }

    fn visit_string<E>(self, text: String) -> Result<Value, E> {
        Ok(Value::String(text))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.enter();
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.enter();
        let mut fields = serde_json::Map::new();
        // A repeated name keeps its last value, as serde_json's `Value` does.
        while let Some(name) = map.next_key::<String>()? {
            let field = map.next_value_seed(self.child())?;
            fields.insert(name, field);
        }
        Ok(Value::Object(fields))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagIn<'a> {
    #[serde(borrow)]
    replica: Cow<'a, str>,
    clock: WireInt,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueIn<'a> {
    #[serde(borrow)]
    tag: TagIn<'a>,
    #[serde(borrow)]
    entry: EntryIn<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateIn<'a> {
    replica: String,
    /// Read in two passes by [`ContextRows::read`]: it counts first.
    #[serde(borrow)]
    context: &'a RawValue,
    clouds: UniqueMap<Vec<WireInt>>,
    #[serde(borrow)]
    values: ValuesIn<'a>,
    #[serde(default)]
    retired: Option<UniqueMap<WireInt>>,
}

/// A state's values, each made into its entry as soon as it is parsed,
/// while its text is still in the caches, rather than held as parsed text
/// until the whole payload is read (that buffer, and walking it again, were
/// a tenth of the decode). What depends on the rest of the payload (the
/// replica's context, watermarks, duplicates) is judged afterwards, value
/// by value in order, as is reporting a problem found here: malformed JSON
/// anywhere still wins over any value's problem.
struct ValuesIn<'a>(Vec<ValueMade<'a>>);

/// One value, with its entry made, or why it could not be.
struct ValueMade<'a> {
    replica: Cow<'a, str>,
    clock: WireInt,
    entry: Result<Arc<Entry>, EntryFault>,
}

impl<'de: 'a, 'a> Deserialize<'de> for ValuesIn<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValuesVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for ValuesVisitor<'a> {
            type Value = ValuesIn<'a>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an array of values")
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ValuesIn<'a>, A::Error> {
                let mut names = Names::default();
                let mut made = Vec::new();
                while let Some(value) = seq.next_element::<ValueIn<'a>>()? {
                    // A tag clock out of range is reported before the
                    // entry, which is then not judged.
                    let entry = match clock("tag", value.tag.clock, true) {
                        Ok(own_clock) => value.entry.make(own_clock, &mut names).map(Arc::new),
                        Err(_) => Err(EntryFault::Unjudged(value.tag.clock.saturating_i64())),
                    };
                    made.push(ValueMade {
                        replica: value.tag.replica,
                        clock: value.tag.clock,
                        entry,
                    });
                }
                Ok(ValuesIn(made))
            }
        }

        deserializer.deserialize_seq(ValuesVisitor(PhantomData))
    }
}

/// Why an entry could not be made, before its tag is written out.
enum EntryFault {
    /// It breaks a limit.
    Invalid(EntryError),
    /// Its `replaces` clock is out of range.
    ReplacesClock(i64),
    /// Its `replaces` clock is not below its own.
    Replaces,
    /// Not judged: its tag clock (this one) is out of range, which is
    /// what is reported.
    Unjudged(i64),
}

impl EntryFault {
    fn into_error(self, tag: impl Fn() -> String) -> DecodeError {
        match self {
            Self::Invalid(problem) => DecodeError::InvalidEntry { tag: tag(), problem },
            Self::ReplacesClock(value) => DecodeError::InvalidClock {
                field: "replaces",
                clock: value,
            },
            Self::Replaces => DecodeError::InvalidReplaces { tag: tag() },
            Self::Unjudged(clock) => DecodeError::InvalidClock { field: "tag", clock },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinIn<'a> {
    clock: WireInt,
    #[serde(borrow)]
    entry: EntryIn<'a>,
}

/// A delta's joins, each made into its entry as soon as it is parsed (as
/// [`ValuesIn`] does for a state's values): holding every parsed join,
/// metas and all, until the array ended was most of a delta's decoding
/// peak. Problems are reported afterwards, join by join in order.
struct JoinsIn(Vec<JoinMade>);

/// One join, with its entry made, or why it could not be.
struct JoinMade {
    clock: WireInt,
    entry: Result<Arc<Entry>, EntryFault>,
}

impl<'de> Deserialize<'de> for JoinsIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JoinsVisitor;

        impl<'de> Visitor<'de> for JoinsVisitor {
            type Value = JoinsIn;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an array of joins")
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<JoinsIn, A::Error> {
                let mut names = Names::default();
                let mut made = Vec::new();
                while let Some(join) = seq.next_element::<JoinIn<'de>>()? {
                    // A clock out of range is reported (as the join's)
                    // before the entry, which is then not judged.
                    let entry = match clock("joins", join.clock, true) {
                        Ok(own_clock) => join.entry.make(own_clock, &mut names).map(Arc::new),
                        Err(_) => Err(EntryFault::Unjudged(join.clock.saturating_i64())),
                    };
                    made.push(JoinMade {
                        clock: join.clock,
                        entry,
                    });
                }
                Ok(JoinsIn(made))
            }
        }

        deserializer.deserialize_seq(JoinsVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeltaIn {
    replica: String,
    from: WireInt,
    to: WireInt,
    joins: JoinsIn,
    leaves: Vec<WireInt>,
}

/// Reads a replica name of a payload, as a typed error when it is not one.
pub fn replica(text: &str) -> Result<ReplicaId, DecodeError> {
    ReplicaId::parse(text).map_err(|problem| DecodeError::InvalidReplica {
        text: cut(text, 64),
        problem,
    })
}

impl<V> UniqueMap<V> {
    /// The map keyed by replica, each value read by `read`. A key that is
    /// not a replica name is refused, and so is a second key naming a
    /// replica another key names (`a@1` and `a@01`, or `a` and `a@0`):
    /// distinct texts, so serde lets both through, and one would otherwise
    /// overwrite the other silently, in the keys' text order.
    pub fn by_replica<T>(
        self,
        mut read: impl FnMut(V) -> Result<T, DecodeError>,
    ) -> Result<BTreeMap<ReplicaId, T>, DecodeError> {
        let mut map = BTreeMap::new();
        for (text, value) in self.0 {
            if map.insert(replica(&text)?, read(value)?).is_some() {
                return Err(DecodeError::InvalidReplica {
                    text: cut(&text, 64),
                    problem: "another key names the same replica",
                });
            }
        }
        Ok(map)
    }
}

/// A clock, incarnation or watermark as it arrives: any JSON integer,
/// signed or not. The encoder writes them as `u64`, and every such value
/// reads back; a negative one is kept so its error can name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireInt(i128);

impl WireInt {
    /// The value as an `i64` for an error message (negative values fit).
    fn saturating_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(if self.0 < 0 { i64::MIN } else { i64::MAX })
    }
}

impl From<i64> for WireInt {
    fn from(value: i64) -> Self {
        Self(i128::from(value))
    }
}

impl<'de> Deserialize<'de> for WireInt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor;

        impl Visitor<'_> for IntVisitor {
            type Value = WireInt;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an integer")
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<WireInt, E> {
                Ok(WireInt(i128::from(value)))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<WireInt, E> {
                Ok(WireInt(i128::from(value)))
            }
        }

        deserializer.deserialize_i64(IntVisitor)
    }
}

/// A clock of a payload that must be `>= 0` (`positive == false`) or `> 0`,
/// over the whole `u64` range the encoder writes.
pub fn clock(field: &'static str, value: impl Into<WireInt>, positive: bool) -> Result<u64, DecodeError> {
    let value = value.into();
    let minimum = i128::from(positive);
    if value.0 < minimum {
        return Err(DecodeError::InvalidClock {
            field,
            clock: value.saturating_i64(),
        });
    }
    u64::try_from(value.0).map_err(|_| DecodeError::InvalidClock {
        field,
        clock: value.saturating_i64(),
    })
}

/// Shares one `Arc<str>` per distinct topic, so a decoded payload costs one
/// allocation per topic, not per entry. Keys and pids are not shared: most
/// are distinct, and interning them cost a sixth of the decode time.
// Lookups only: this table is never iterated, so its order reaches nothing.
#[derive(Default)]
struct Names(hashbrown::HashTable<Arc<str>>);

impl Names {
    fn get(&mut self, name: &str) -> Arc<str> {
        // Keyed: a payload's topics are client-chosen names.
        let hash = crate::hashing::name_hash(name);
        let rehash = |shared: &Arc<str>| crate::hashing::name_hash(shared);
        match self.0.entry(hash, |shared| **shared == *name, rehash) {
            hashbrown::hash_table::Entry::Occupied(found) => Arc::clone(found.get()),
            hashbrown::hash_table::Entry::Vacant(vacant) => Arc::clone(vacant.insert(Arc::from(name)).get()),
        }
    }
}

impl EntryIn<'_> {
    /// The entry of a value whose own clock is `own_clock`, checked against
    /// every limit.
    fn make(self, own_clock: u64, names: &mut Names) -> Result<Entry, EntryFault> {
        crate::entry::check_name("topic", &self.topic).map_err(EntryFault::Invalid)?;
        crate::entry::check_name("key", &self.key).map_err(EntryFault::Invalid)?;
        crate::entry::check_name("pid", &self.pid).map_err(EntryFault::Invalid)?;
        if self.meta.too_deep {
            return Err(EntryFault::Invalid(EntryError::MetaTooDeep));
        }
        let replaces = match self.replaces {
            None => None,
            Some(value) => {
                let replaced = clock("replaces", value, true)
                    .map_err(|_| EntryFault::ReplacesClock(value.saturating_i64()))?;
                if replaced >= own_clock {
                    return Err(EntryFault::Replaces);
                }
                Some(replaced)
            }
        };
        Ok(Entry::from_checked(
            names.get(&self.topic),
            Arc::from(&*self.key),
            Arc::from(&*self.pid),
            crate::entry::Meta::from_checked(&self.meta.value),
            replaces,
        ))
    }
}

impl StateIn<'_> {
    fn validate(self, context: ContextRows) -> Result<Snapshot, DecodeError> {
        let producer = replica(&self.replica)?;
        let mut retired = BTreeMap::new();
        for (base, incarnation) in self.retired.map(|map| map.0).unwrap_or_default() {
            let id = replica(&base)?;
            if id.incarnation() != 0 || base.contains('@') {
                return Err(DecodeError::InvalidReplica {
                    text: cut(&base, 64),
                    problem: "retired keys are base names, without '@'",
                });
            }
            retired.insert(Arc::clone(id.base_arc()), clock("retired", incarnation, false)?);
        }
        let is_retired = |id: &ReplicaId| {
            retired
                .get(id.base())
                .is_some_and(|&mark| id.incarnation() <= mark)
        };

        if let Some(fault) = context.fault {
            return Err(fault);
        }
        // The context's logs, in replica order, joined by the replicas that
        // have a cloud and no context. A value can name no other replica:
        // its tag would not be observed.
        let mut logs = context.rows;
        let mut extra: Vec<(ReplicaId, ReplicaLog)> = Vec::new();
        let clouds = self.clouds.by_replica(|cloud| {
            cloud
                .into_iter()
                .map(|value| clock("clouds", value, true))
                .collect::<Result<BTreeSet<u64>, _>>()
        })?;
        for (id, cloud) in clouds {
            let log = match find(&logs, &id) {
                Some(at) => &mut logs[at].1,
                None => {
                    extra.push((id, ReplicaLog::default()));
                    &mut extra.last_mut().expect("just pushed").1
                }
            };
            if !cloud.is_empty() {
                *log.cloud_mut() = cloud;
            }
        }
        if !extra.is_empty() {
            // Exactly the room needed: no doubling of a list this long.
            logs.reserve_exact(extra.len());
            logs.append(&mut extra);
            logs.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        }
        // The logs that receive values, found by the replica's text, or by
        // its id when another text names it too (`a@1` and `a@01` are one
        // replica); `None` for a replica the payload does not observe,
        // which its first value reports.
        let mut texts: BTreeMap<Cow<'_, str>, usize> = BTreeMap::new();
        let mut ids: BTreeMap<ReplicaId, usize> = BTreeMap::new();
        let mut filling: Vec<(Option<usize>, ReplicaId, DecodedValues)> = Vec::new();
        let unknown = ReplicaLog::default();
        for value in self.values.0 {
            let at = match texts.get(&value.replica) {
                Some(&at) => at,
                None => {
                    let id = replica(&value.replica)?;
                    let at = *ids.entry(id.clone()).or_insert_with(|| {
                        filling.push((find(&logs, &id), id, DecodedValues::default()));
                        filling.len() - 1
                    });
                    texts.insert(value.replica, at);
                    at
                }
            };
            let (place, id, values) = &mut filling[at];
            let log = place.map_or(&unknown, |at| &logs[at].1);
            let tag_clock = clock("tag", value.clock, true)?;
            let tag_text = || format!("{id}:{tag_clock}");
            if !log.observed(tag_clock) {
                return Err(DecodeError::UnobservedTag { tag: tag_text() });
            }
            let entry = value.entry.map_err(|fault| fault.into_error(tag_text))?;
            if !values.insert(tag_clock, entry) {
                return Err(DecodeError::DuplicateTag { tag: tag_text() });
            }
        }
        for (place, _, values) in filling {
            if let Some(at) = place {
                *logs[at].1.values_mut() = values.into_map();
            }
        }
        for (id, log) in &mut logs {
            if is_retired(id) {
                return Err(DecodeError::RetiredReplica {
                    replica: id.to_string(),
                });
            }
            // Clouds at or next to the context are folded in: harmless redundancy.
            log.compact();
        }
        Ok(Snapshot {
            replica: producer,
            retired,
            logs: ReplicaLogs::from_sorted(logs),
        })
    }
}

/// Where in a payload's sorted logs `id` is.
fn find(logs: &[(ReplicaId, ReplicaLog)], id: &ReplicaId) -> Option<usize> {
    logs.binary_search_by(|(other, _)| other.cmp(id)).ok()
}

/// A state's context, read into logs in replica order.
///
/// Read in two passes over the context's text: the first counts its keys,
/// allocating nothing, so that the list is allocated once at its size. A
/// list grown by doubling is up to twice its length, and for a payload that
/// names many replicas and nothing else (each 17 bytes of JSON, 64 bytes
/// held) that slack alone broke the bound on decoding memory.
struct ContextRows {
    rows: Vec<(ReplicaId, ReplicaLog)>,
    /// The first key or clock that is not allowed, in payload order, or two
    /// spellings of one replica: reported after the producer and the
    /// watermarks, as every validation error is.
    fault: Option<DecodeError>,
}

impl ContextRows {
    /// Reads the context `raw`, a part of `payload`. A JSON error in it
    /// (a value that is not an integer, a key given twice) names its place
    /// in the whole payload.
    fn read(raw: &RawValue, payload: &[u8]) -> Result<Self, DecodeError> {
        let text = raw.get();
        let at_error = |error: serde_json::Error| json_error_within(error, payload, text);
        let count = serde_json::from_str::<CountKeys>(text).map_err(at_error)?.0;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let mut read = de::DeserializeSeed::deserialize(RowsSeed { capacity: count }, &mut deserializer)
            .map_err(at_error)?;
        // Two keys naming one replica: one key given twice is malformed
        // JSON, two spellings of one replica (`a@1` and `a@01`, `a` and
        // `a@0`) are refused by name. Telling them apart takes the texts,
        // read again here, only for that replica: this never happens in a
        // payload this crate wrote.
        if let Some(at) = read.rows.windows(2).position(|pair| pair[0].0 == pair[1].0) {
            let seed = SpellingsOf(&read.rows[at].0);
            let mut deserializer = serde_json::Deserializer::from_str(text);
            let mut texts = de::DeserializeSeed::deserialize(seed, &mut deserializer).map_err(at_error)?;
            texts.sort();
            read.fault.get_or_insert(DecodeError::InvalidReplica {
                text: cut(texts.last().map_or("", String::as_str), 64),
                problem: "another key names the same replica",
            });
        }
        Ok(read)
    }
}

/// The keys of a context that name one replica, as they are spelt; a key
/// given twice is an error at its second place.
struct SpellingsOf<'r>(&'r ReplicaId);

impl<'de> de::DeserializeSeed<'de> for SpellingsOf<'_> {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<String>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SpellingsOf<'_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
        let mut texts: Vec<String> = Vec::new();
        while let Some((KeyText(text), de::IgnoredAny)) = map.next_entry()? {
            if ReplicaId::parse(&text).ok().as_ref() == Some(self.0) {
                if texts.iter().any(|seen| *seen == text) {
                    return Err(de::Error::custom(format_args!(
                        "duplicate key {:?}",
                        cut(&text, 64)
                    )));
                }
                texts.push(text.into_owned());
            }
        }
        Ok(texts)
    }
}

/// A serde_json error found in `part`, a slice of `payload`, placed in the
/// payload: its line and column, and the message's own "at line .. column
/// ..", are moved by where `part` starts.
fn json_error_within(error: serde_json::Error, payload: &[u8], part: &str) -> DecodeError {
    let offset = (part.as_ptr() as usize).saturating_sub(payload.as_ptr() as usize);
    let before = &payload[..offset.min(payload.len())];
    let start_line = 1 + before.iter().filter(|&&byte| byte == b'\n').count();
    let start_column = 1 + before.iter().rev().take_while(|&&byte| byte != b'\n').count();
    let (line, column) = match error.line() {
        0 => (0, 0),
        1 => (start_line, start_column + error.column().saturating_sub(1)),
        line => (start_line + line - 1, error.column()),
    };
    let message = error.to_string();
    let message = match message.rsplit_once(" at line ") {
        Some((what, _)) if line > 0 => format!("{what} at line {line} column {column}"),
        _ => message,
    };
    DecodeError::Json {
        line,
        column,
        message: cut(&message, 200),
    }
}

/// How many keys a JSON object has (its values are skipped unread).
struct CountKeys(usize);

impl<'de> Deserialize<'de> for CountKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl<'de> Visitor<'de> for CountVisitor {
            type Value = CountKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CountKeys, A::Error> {
                let mut count = 0;
                while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {
                    count += 1;
                }
                Ok(CountKeys(count))
            }
        }
        deserializer.deserialize_map(CountVisitor)
    }
}

/// A key as it is in the payload: borrowed when it has no escapes.
struct KeyText<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Reads a context's keys into a list of `capacity` logs.
struct RowsSeed {
    capacity: usize,
}

impl<'de> de::DeserializeSeed<'de> for RowsSeed {
    type Value = ContextRows;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ContextRows, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed {
    type Value = ContextRows;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of clocks by replica")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ContextRows, A::Error> {
        let mut rows: Vec<(ReplicaId, ReplicaLog)> = Vec::with_capacity(self.capacity);
        let mut fault = None;
        while let Some(KeyText(text)) = map.next_key()? {
            let value: WireInt = map.next_value()?;
            let read = replica(&text).and_then(|id| Ok((id, clock("context", value, false)?)));
            match read {
                Ok((id, context)) => {
                    // Incarnations of one base come one after another (the
                    // encoder writes replica order): they share its name.
                    let id = match rows.last() {
                        Some((previous, _)) if previous.base() == id.base() => {
                            previous.with_incarnation(id.incarnation())
                        }
                        _ => id,
                    };
                    rows.push((id, ReplicaLog::with_context(context)));
                }
                Err(error) => {
                    fault.get_or_insert(error);
                }
            }
        }
        if !rows.is_sorted_by(|(a, _), (b, _)| a <= b) {
            rows.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        }
        Ok(ContextRows { rows, fault })
    }
}

/// One log's values as they are decoded: those in ascending clock order
/// (how they are encoded) in a list, built into a map at once at the end;
/// any others in a map of their own. Every clock in `others` is below the
/// list's last, which only grows, so a clock above it is new.
#[derive(Default)]
struct DecodedValues {
    ascending: Vec<(u64, Arc<Entry>)>,
    others: BTreeMap<u64, Arc<Entry>>,
}

impl DecodedValues {
    /// Adds a value; false if its clock was there already.
    fn insert(&mut self, clock: u64, entry: Arc<Entry>) -> bool {
        if self.ascending.last().is_none_or(|&(last, _)| clock > last) {
            self.ascending.push((clock, entry));
            return true;
        }
        if self
            .ascending
            .binary_search_by_key(&clock, |&(held, _)| held)
            .is_ok()
        {
            return false;
        }
        self.others.insert(clock, entry).is_none()
    }

    fn into_map(self) -> BTreeMap<u64, Arc<Entry>> {
        let mut map: BTreeMap<u64, Arc<Entry>> = self.ascending.into_iter().collect();
        map.extend(self.others);
        map
    }
}

impl DeltaIn {
    fn validate(self) -> Result<Delta, DecodeError> {
        let id = replica(&self.replica)?;
        let from = clock("from", self.from, false)?;
        let to = clock("to", self.to, false)?;
        let mut joins = BTreeMap::new();
        for join in self.joins.0 {
            let join_clock = clock("joins", join.clock, true)?;
            let tag_text = || format!("{id}:{join_clock}");
            let entry = join.entry.map_err(|fault| fault.into_error(tag_text))?;
            if joins.insert(join_clock, entry).is_some() {
                return Err(DecodeError::DuplicateTag { tag: tag_text() });
            }
        }
        let mut leaves = BTreeSet::new();
        for leave in self.leaves {
            leaves.insert(clock("leaves", leave, true)?);
        }
        Delta::from_parts(id, from, to, joins, leaves)
            .map_err(|problem| DecodeError::InvalidDelta { problem })
    }
}

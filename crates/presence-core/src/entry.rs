//! Presence entries (topic, key, pid, meta) and the limits every entry obeys.

use std::sync::Arc;

use serde::ser::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::replica::{ReplicaId, Tag};

/// The longest topic, key or pid, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// The deepest metadata allowed: a scalar is depth 0, `[]` or `{}` depth 1.
pub const MAX_META_DEPTH: usize = 64;

/// One presence: a pid of a key on a topic, with its metadata.
///
/// Entries are immutable and shared (`Arc<Entry>`) between the state, its
/// indexes, diffs and payloads, so a merge moves pointers, not strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The channel, e.g. `room:lobby`.
    pub topic: Arc<str>,
    /// Who is present, e.g. a user id.
    pub key: Arc<str>,
    /// The connection of that key.
    pub pid: Arc<str>,
    /// Arbitrary JSON metadata, at most [`MAX_META_DEPTH`] levels deep.
    pub meta: Meta,
    /// For an entry made by an update: the clock of the entry it replaced, an
    /// entry of the same replica. It renders as `phx_ref_prev`.
    pub replaces: Option<u64>,
    /// Hashes of topic, key and pid, computed once when the entry is made, so
    /// that indexing it never reads the strings again.
    pub(crate) hashes: NameHashes,
}

/// Hashes of an entry's topic, key and pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NameHashes {
    pub(crate) topic: u64,
    pub(crate) key: u64,
    pub(crate) pid: u64,
}

pub(crate) use crate::hashing::name_hash;

/// Why an entry is not allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// A topic, key or pid is empty.
    EmptyName {
        /// Which field: `topic`, `key` or `pid`.
        field: &'static str,
    },
    /// A topic, key or pid is longer than [`MAX_NAME_LEN`] bytes.
    NameTooLong {
        /// Which field: `topic`, `key` or `pid`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The metadata nests deeper than [`MAX_META_DEPTH`].
    MetaTooDeep,
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EmptyName { field } => write!(f, "{field} is empty"),
            Self::NameTooLong { field, len } => {
                write!(f, "{field} is {len} bytes, more than {MAX_NAME_LEN}")
            }
            Self::MetaTooDeep => write!(f, "meta nests deeper than {MAX_META_DEPTH} levels"),
        }
    }
}

impl std::error::Error for EntryError {}

impl Entry {
    /// A new entry, checked against the limits.
    pub fn new(topic: &str, key: &str, pid: &str, meta: Value) -> Result<Self, EntryError> {
        Self::with_topic(topic, None, key, pid, meta)
    }

    /// A new entry whose topic reuses `shared` when it is given (and equal to
    /// `topic`), checked against the limits.
    pub(crate) fn with_topic(
        topic: &str,
        shared: Option<&Arc<str>>,
        key: &str,
        pid: &str,
        meta: Value,
    ) -> Result<Self, EntryError> {
        check_name("topic", topic)?;
        check_name("key", key)?;
        check_name("pid", pid)?;
        let meta = Meta::new(&meta)?;
        let topic = match shared {
            Some(shared) if **shared == *topic => Arc::clone(shared),
            _ => Arc::from(topic),
        };
        Ok(Self::from_checked(
            topic,
            Arc::from(key),
            Arc::from(pid),
            meta,
            None,
        ))
    }

    /// An entry from parts already checked against the limits.
    pub(crate) fn from_checked(
        topic: Arc<str>,
        key: Arc<str>,
        pid: Arc<str>,
        meta: Meta,
        replaces: Option<u64>,
    ) -> Self {
        let hashes = NameHashes {
            topic: name_hash(&topic),
            key: name_hash(&key),
            pid: name_hash(&pid),
        };
        Self {
            topic,
            key,
            pid,
            meta,
            replaces,
            hashes,
        }
    }
}

/// A presence's metadata: any JSON value at most [`MAX_META_DEPTH`] levels
/// deep, held as its canonical compact text (object fields in name order, no
/// spaces, numbers as serde_json writes them). Equality, hashing and the
/// wire all use that text, so two metas are equal exactly when their JSON
/// values are (except that `0.0` and `-0.0` differ, as their texts do).
///
/// Text, not a parsed [`Value`]: a parsed object is a B-tree whose first
/// node has room for eleven fields, about 650 bytes for `{"n":1}`, which
/// made a decoded state of small metas nine times its payload. The text
/// costs its own length and is written to the wire as it is.
#[derive(Clone)]
pub struct Meta(Box<RawValue>);

impl Meta {
    /// The meta of `value`, if it nests no deeper than [`MAX_META_DEPTH`].
    pub fn new(value: &Value) -> Result<Self, EntryError> {
        check_meta_depth(value)?;
        Ok(Self::from_checked(value))
    }

    /// The meta of a value already checked against the depth limit.
    pub(crate) fn from_checked(value: &Value) -> Self {
        // Writing a `Value` cannot fail: its keys are strings and its
        // numbers finite.
        Self(serde_json::value::to_raw_value(value).expect("a JSON value always serializes"))
    }

    /// The canonical JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The meta as a JSON value (parsed from its text: a copy).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.as_str()).expect("a meta's text is JSON it wrote itself")
    }

    /// Whether the meta is a JSON object.
    pub fn is_object(&self) -> bool {
        self.as_str().starts_with('{')
    }
}

impl PartialEq for Meta {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Meta {}

impl std::hash::Hash for Meta {
    fn hash<H: std::hash::Hasher>(&self, hasher: &mut H) {
        self.as_str().hash(hasher);
    }
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Meta {
    /// As the JSON it holds, not as a string of it.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

pub(crate) fn check_name(field: &'static str, name: &str) -> Result<(), EntryError> {
    if name.is_empty() {
        return Err(EntryError::EmptyName { field });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(EntryError::NameTooLong {
            field,
            len: name.len(),
        });
    }
    Ok(())
}

/// Checks the nesting depth of `meta` against [`MAX_META_DEPTH`], allocating
/// nothing; its recursion stops at the limit.
pub fn check_meta_depth(meta: &Value) -> Result<(), EntryError> {
    // Recursion is bounded: a container deeper than the limit stops it.
    fn within(value: &Value, depth: usize) -> bool {
        match value {
            Value::Array(items) => depth < MAX_META_DEPTH && items.iter().all(|item| within(item, depth + 1)),
            Value::Object(fields) => {
                depth < MAX_META_DEPTH && fields.values().all(|field| within(field, depth + 1))
            }
            _ => true,
        }
    }
    if within(meta, 0) {
        Ok(())
    } else {
        Err(EntryError::MetaTooDeep)
    }
}

/// One visible presence: its tag and its entry. Views, queries and diffs are
/// made of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    /// The join that made it.
    pub tag: Tag,
    /// What was joined.
    pub entry: Arc<Entry>,
}

impl Presence {
    /// The presence of `entry`, joined by `replica` at `clock`.
    pub fn new(replica: &ReplicaId, clock: u64, entry: &Arc<Entry>) -> Self {
        Self {
            tag: Tag::new(replica.clone(), clock),
            entry: Arc::clone(entry),
        }
    }
}

impl PartialOrd for Presence {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Presence {
    /// Presences order by tag: a tag names exactly one entry.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.tag.cmp(&other.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..depth {
            value = Value::Array(vec![value]);
        }
        value
    }

    /// A meta is an object by its text, and two metas are equal when their
    /// texts are.
    #[test]
    fn metas_compare_and_classify_by_their_text() {
        let meta = |value: Value| Meta::new(&value).unwrap();
        assert!(meta(json!({})).is_object());
        assert!(meta(json!({"a": [1]})).is_object());
        for other in [json!([{}]), json!("{"), json!(1), json!(null)] {
            assert!(!meta(other.clone()).is_object(), "{other}");
        }
        assert_eq!(meta(json!({"a": 1})), meta(json!({"a": 1})));
        assert_ne!(meta(json!({"a": 1})), meta(json!({"a": 2})));
        assert_ne!(meta(json!({"a": 1})), meta(json!([1])));
        // It prints as its JSON, in both forms.
        let shown = meta(json!({"a": [1, "b"]}));
        assert_eq!(format!("{shown}"), r#"{"a":[1,"b"]}"#);
        assert_eq!(format!("{shown:?}"), r#"{"a":[1,"b"]}"#);
    }

    /// The topic a state already holds is shared only when it is the same
    /// name: the index finds it by hash, and two names can share a hash.
    #[test]
    fn an_entry_shares_a_held_topic_only_of_the_same_name() {
        let held: Arc<str> = Arc::from("room:1");
        let same = Entry::with_topic("room:1", Some(&held), "k", "p", json!({})).unwrap();
        assert!(Arc::ptr_eq(&same.topic, &held));
        let other = Entry::with_topic("room:2", Some(&held), "k", "p", json!({})).unwrap();
        assert_eq!(&*other.topic, "room:2");
        assert!(!Arc::ptr_eq(&other.topic, &held));
    }

    #[test]
    fn meta_depth_limit_is_inclusive() {
        assert_eq!(check_meta_depth(&nested(MAX_META_DEPTH)), Ok(()));
        assert_eq!(
            check_meta_depth(&nested(MAX_META_DEPTH + 1)),
            Err(EntryError::MetaTooDeep)
        );
        assert_eq!(check_meta_depth(&json!({"a": {"b": [1, 2]}})), Ok(()));
        // Objects alike, and mixed (mutation testing found the object
        // branch's `&&` replaceable by `||`: only arrays nested deep here).
        let objects = |depth: usize| (0..depth).fold(json!(1), |value, _| json!({ "a": value }));
        assert_eq!(check_meta_depth(&objects(MAX_META_DEPTH)), Ok(()));
        assert_eq!(
            check_meta_depth(&objects(MAX_META_DEPTH + 1)),
            Err(EntryError::MetaTooDeep)
        );
        let mixed = json!({ "list": nested(MAX_META_DEPTH) });
        assert_eq!(check_meta_depth(&mixed), Err(EntryError::MetaTooDeep));
    }

    #[test]
    fn names_are_bounded() {
        let refusals = [
            EntryError::EmptyName { field: "topic" },
            EntryError::NameTooLong {
                field: "key",
                len: 2000,
            },
            EntryError::MetaTooDeep,
        ]
        .map(|error| error.to_string());
        assert_eq!(
            refusals,
            [
                "topic is empty",
                "key is 2000 bytes, more than 1024",
                "meta nests deeper than 64 levels",
            ]
        );
        assert_eq!(
            Entry::new("", "k", "p", json!({})),
            Err(EntryError::EmptyName { field: "topic" })
        );
        let longest = "k".repeat(MAX_NAME_LEN);
        assert!(
            Entry::new("t", &longest, "p", json!({})).is_ok(),
            "the limit is inclusive"
        );
        let long = "k".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            Entry::new("t", &long, "p", json!({})),
            Err(EntryError::NameTooLong { field: "key", .. })
        ));
    }
}

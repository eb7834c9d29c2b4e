//! Single-node presence (the pure layer of the `march-presence` seed): a pure
//! value `topic -> key -> metas`, each meta a `(pid, meta_json)`.
//!
//! Two defects of the seed are fixed here. Its diff builders spliced raw
//! strings into JSON; here keys are escaped and metas embedded as JSON values,
//! so the output is valid JSON whatever the input. Its `untrack` promised a
//! leave only when a user's last connection went away but did not tell; here
//! [`Untracked::key_left`] says whether the key is gone, and that alone
//! decides a key-level leave.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// One connection's metadata: the pid and its JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceMeta {
    pid: String,
    data: String,
}

/// `make_meta(pid, data_json)`.
pub fn make_meta(pid: &str, data_json: &str) -> PresenceMeta {
    PresenceMeta {
        pid: pid.to_owned(),
        data: data_json.to_owned(),
    }
}

/// `meta_pid(m)`.
pub fn meta_pid(meta: &PresenceMeta) -> &str {
    &meta.pid
}

/// `meta_data(m)`.
pub fn meta_data(meta: &PresenceMeta) -> &str {
    &meta.data
}

/// A key's presence on a topic: one meta per connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceEntry {
    metas: Vec<PresenceMeta>,
}

/// `make_entry(metas)`.
pub fn make_entry(metas: Vec<PresenceMeta>) -> PresenceEntry {
    PresenceEntry { metas }
}

/// `entry_metas(e)`.
pub fn entry_metas(entry: &PresenceEntry) -> &[PresenceMeta] {
    &entry.metas
}

/// `entry_count(e)`: active connections of the entry.
pub fn entry_count(entry: &PresenceEntry) -> usize {
    entry.metas.len()
}

/// What [`PresenceState::untrack_state`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Untracked {
    /// The metas of the pid that were removed (empty if it was not tracked).
    pub removed: Vec<PresenceMeta>,
    /// True when the key's last connection went away: broadcast a leave now.
    pub key_left: bool,
}

/// Presences of one node: topic -> key -> entry, ordered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceState {
    topics: BTreeMap<String, BTreeMap<String, PresenceEntry>>,
}

/// `new_state()`.
pub fn new_state() -> PresenceState {
    PresenceState::default()
}

impl PresenceState {
    /// `track_state(topic, key, pid, meta_json)`: adds a meta. A second pid
    /// under the same key adds a second meta (multi-device).
    pub fn track_state(&mut self, topic: &str, key: &str, pid: &str, meta_json: &str) {
        self.topics
            .entry(topic.to_owned())
            .or_default()
            .entry(key.to_owned())
            .or_default()
            .metas
            .push(make_meta(pid, meta_json));
    }

    /// `untrack_state(topic, key, pid)`: removes every meta of `pid` under
    /// `key`; a key with no metas left is removed, and so is an empty topic.
    pub fn untrack_state(&mut self, topic: &str, key: &str, pid: &str) -> Untracked {
        let Some(keys) = self.topics.get_mut(topic) else {
            return Untracked::default();
        };
        let Some(entry) = keys.get_mut(key) else {
            return Untracked::default();
        };
        let (removed, kept): (Vec<_>, Vec<_>) = entry.metas.drain(..).partition(|meta| meta.pid == pid);
        entry.metas = kept;
        let key_left = entry.metas.is_empty() && !removed.is_empty();
        if entry.metas.is_empty() {
            keys.remove(key);
            if keys.is_empty() {
                self.topics.remove(topic);
            }
        }
        Untracked { removed, key_left }
    }

    /// `list_state(topic)`: key -> entry; empty when the topic is unknown.
    pub fn list_state(&self, topic: &str) -> BTreeMap<String, PresenceEntry> {
        self.topics.get(topic).cloned().unwrap_or_default()
    }

    /// `count_presences(topic)`: distinct keys present.
    pub fn count_presences(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, BTreeMap::len)
    }

    /// `is_present(topic, key)`.
    pub fn is_present(&self, topic: &str, key: &str) -> bool {
        self.connection_count(topic, key) > 0
    }

    /// `connection_count(topic, key)`: metas of the key (more than 1 means
    /// several devices).
    pub fn connection_count(&self, topic: &str, key: &str) -> usize {
        self.topics
            .get(topic)
            .and_then(|keys| keys.get(key))
            .map_or(0, entry_count)
    }
}

/// The meta text as a JSON value: parsed when it is valid JSON, otherwise
/// carried as a JSON string, so the output is valid whatever the input.
fn meta_value(meta_json: &str) -> Value {
    serde_json::from_str(meta_json).unwrap_or_else(|_| Value::String(meta_json.to_owned()))
}

fn one_key_diff(key: &str, meta_json: &str) -> Value {
    let mut keys = Map::new();
    keys.insert(key.to_owned(), json!({ "metas": [meta_value(meta_json)] }));
    Value::Object(keys)
}

/// `join_diff_json(key, meta_json)`:
/// `{"joins":{"<key>":{"metas":[<meta>]}},"leaves":{}}`, always valid JSON.
pub fn join_diff_json(key: &str, meta_json: &str) -> String {
    json!({ "joins": one_key_diff(key, meta_json), "leaves": {} }).to_string()
}

/// `leave_diff_json(key, meta_json)`: the mirror image of [`join_diff_json`].
pub fn leave_diff_json(key: &str, meta_json: &str) -> String {
    json!({ "joins": {}, "leaves": one_key_diff(key, meta_json) }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_made_of_its_metas() {
        let metas = vec![make_meta("p1", "{}"), make_meta("p2", "[]")];
        let entry = make_entry(metas.clone());
        assert_eq!(entry_metas(&entry), metas.as_slice());
        assert_eq!(entry_count(&entry), 2);
    }

    #[test]
    fn multi_device_adds_a_second_meta() {
        let mut state = new_state();
        state.track_state("room:lobby", "alice", "p1", r#"{"device":"phone"}"#);
        state.track_state("room:lobby", "alice", "p2", r#"{"device":"laptop"}"#);
        assert_eq!(state.connection_count("room:lobby", "alice"), 2);
        assert_eq!(state.count_presences("room:lobby"), 1);
        let entry = &state.list_state("room:lobby")["alice"];
        assert_eq!(meta_pid(&entry_metas(entry)[1]), "p2");
        assert_eq!(meta_data(&entry_metas(entry)[0]), r#"{"device":"phone"}"#);
    }

    #[test]
    fn leave_only_when_the_last_connection_goes() {
        let mut state = new_state();
        state.track_state("t", "alice", "p1", "{}");
        state.track_state("t", "alice", "p2", "{}");
        let first = state.untrack_state("t", "alice", "p1");
        assert_eq!(first.removed.len(), 1);
        assert!(!first.key_left);
        assert!(state.is_present("t", "alice"));
        let last = state.untrack_state("t", "alice", "p2");
        assert!(last.key_left);
        assert!(!state.is_present("t", "alice"));
        assert!(state.list_state("t").is_empty());
    }

    #[test]
    fn untrack_removes_every_meta_of_the_pid() {
        let mut state = new_state();
        state.track_state("t", "alice", "p1", "{}");
        state.track_state("t", "alice", "p1", r#"{"again":true}"#);
        let untracked = state.untrack_state("t", "alice", "p1");
        assert_eq!(untracked.removed.len(), 2);
        assert!(untracked.key_left);
    }

    #[test]
    fn untracking_the_unknown_changes_nothing() {
        let mut state = new_state();
        state.track_state("t", "alice", "p1", "{}");
        assert_eq!(state.untrack_state("t", "bob", "p1"), Untracked::default());
        assert_eq!(state.untrack_state("other", "alice", "p1"), Untracked::default());
        assert_eq!(state.untrack_state("t", "alice", "p9"), Untracked::default());
        assert!(state.is_present("t", "alice"));
    }

    #[test]
    fn unknown_topic_lists_empty() {
        let state = new_state();
        assert!(state.list_state("nowhere").is_empty());
        assert_eq!(state.count_presences("nowhere"), 0);
    }

    #[test]
    fn diff_json_escapes_keys_and_embeds_metas() {
        let text = join_diff_json("al\"ice\n\\", r#"{"device":"phone"}"#);
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed["joins"]["al\"ice\n\\"]["metas"][0]["device"], "phone");
        assert_eq!(parsed["leaves"], json!({}));
    }

    #[test]
    fn invalid_meta_json_is_carried_as_a_string() {
        let text = leave_diff_json("bob", r#"{"broken": "#);
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed["leaves"]["bob"]["metas"][0], r#"{"broken": "#);
        assert_eq!(parsed["joins"], json!({}));
    }
}

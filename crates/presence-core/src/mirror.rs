//! The client mirror: what a browser running Phoenix's JavaScript `Presence`
//! does with `presence_state` and `presence_diff` payloads (`syncState` and
//! `syncDiff`). It is the judge of diff exactness (invariant I1).
//!
//! Per key, the metas sit in phoenix.js's order under a sequence number,
//! and an index from `phx_ref` to sequence numbers finds the metas a diff
//! names. So a diff costs what it names, whatever the key holds: a join or
//! leave on a key with 50,000 devices touches one meta, where filtering the
//! key's list (as phoenix.js does) would read all of them.

use std::collections::{BTreeMap, BTreeSet};

use hashbrown::hash_table::{self, HashTable};
use serde_json::Value;

use crate::diff::{Diff, PresenceDiff, PresenceMetas, PresenceState};
use crate::hashing::name_hash;

/// One key's metas, in order, with their `phx_ref` index.
#[derive(Clone, Debug, Default)]
struct KeyMetas {
    /// Sequence number -> meta, in the order phoenix.js keeps them.
    order: BTreeMap<u64, Value>,
    /// `phx_ref` -> sequence numbers of the metas that carry it (one, unless
    /// a server sent the same ref twice). Lookups only: never iterated.
    by_ref: HashTable<(String, Vec<u64>)>,
    next: u64,
}

impl KeyMetas {
    fn push(&mut self, meta: Value) {
        let sequence = self.next;
        self.next += 1;
        if let Some(reference) = phx_ref(&meta) {
            let hash = name_hash(reference);
            let found = self.by_ref.entry(
                hash,
                |(filed, _)| filed == reference,
                |(filed, _)| name_hash(filed),
            );
            match found {
                hash_table::Entry::Occupied(mut filed) => filed.get_mut().1.push(sequence),
                hash_table::Entry::Vacant(vacant) => {
                    vacant.insert((reference.to_owned(), vec![sequence]));
                }
            }
        }
        self.order.insert(sequence, meta);
    }

    /// Drops every meta carrying `reference`.
    fn drop_ref(&mut self, reference: &str) {
        let found = self
            .by_ref
            .find_entry(name_hash(reference), |(filed, _)| filed == reference);
        if let Ok(found) = found {
            let ((_, sequences), _) = found.remove();
            for sequence in sequences {
                self.order.remove(&sequence);
            }
        }
    }

    fn metas(&self) -> PresenceMetas {
        PresenceMetas {
            metas: self.order.values().cloned().collect(),
        }
    }
}

impl PartialEq for KeyMetas {
    /// Equal when they hold the same metas in the same order (sequence
    /// numbers and the index follow from the history, not the content).
    fn eq(&self, other: &Self) -> bool {
        self.order.len() == other.order.len() && self.order.values().eq(other.order.values())
    }
}

impl Eq for KeyMetas {}

/// A client's local copy of presences, per topic, fed by diffs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientMirror {
    topics: BTreeMap<String, BTreeMap<String, KeyMetas>>,
}

pub(crate) fn phx_ref(meta: &Value) -> Option<&str> {
    meta.get("phx_ref").and_then(Value::as_str)
}

fn refs(metas: &[Value]) -> BTreeSet<&str> {
    metas.iter().filter_map(phx_ref).collect()
}

impl ClientMirror {
    /// An empty mirror.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies every topic of a core diff, as the payloads a server would
    /// broadcast for it.
    pub fn apply(&mut self, diff: &Diff) {
        for (topic, payload) in diff.by_topic() {
            self.sync_diff(&topic, &payload);
        }
    }

    /// `syncDiff`: joins first, then leaves. A join on a known key keeps the
    /// metas whose `phx_ref` it does not repeat, then adds its own; a leave
    /// removes metas by `phx_ref` and drops a key left with none; a leave for
    /// an unknown key is ignored. A meta without a `phx_ref` is never matched.
    pub fn sync_diff(&mut self, topic: &str, diff: &PresenceDiff) {
        let state = self.topics.entry(topic.to_owned()).or_default();
        for (key, joined) in &diff.joins {
            let metas = state.entry(key.clone()).or_default();
            // Every ref of the join first, so a join's own metas never drop
            // each other; then the join's metas, after the ones kept.
            for reference in refs(&joined.metas) {
                metas.drop_ref(reference);
            }
            for meta in &joined.metas {
                metas.push(meta.clone());
            }
        }
        for (key, left) in &diff.leaves {
            let Some(current) = state.get_mut(key) else {
                continue;
            };
            for reference in refs(&left.metas) {
                current.drop_ref(reference);
            }
            if current.order.is_empty() {
                state.remove(key);
            }
        }
        if state.is_empty() {
            self.topics.remove(topic);
        }
    }

    /// `syncState`: replaces a topic's presences with a full `presence_state`,
    /// by way of the diff between the two, which it returns (what `onJoin` and
    /// `onLeave` callbacks would see).
    pub fn sync_state(&mut self, topic: &str, new_state: &PresenceState) -> PresenceDiff {
        let current = self.topic(topic);
        let mut diff = PresenceDiff::default();
        for (key, presence) in &current {
            if !new_state.contains_key(key) {
                diff.leaves.insert(key.clone(), presence.clone());
            }
        }
        for (key, new_presence) in new_state {
            let Some(current_presence) = current.get(key) else {
                diff.joins.insert(key.clone(), new_presence.clone());
                continue;
            };
            let new_refs = refs(&new_presence.metas);
            let current_refs = refs(&current_presence.metas);
            let joined: Vec<Value> = new_presence
                .metas
                .iter()
                .filter(|meta| phx_ref(meta).is_none_or(|r| !current_refs.contains(r)))
                .cloned()
                .collect();
            let left: Vec<Value> = current_presence
                .metas
                .iter()
                .filter(|meta| phx_ref(meta).is_none_or(|r| !new_refs.contains(r)))
                .cloned()
                .collect();
            if !joined.is_empty() {
                diff.joins.insert(key.clone(), PresenceMetas { metas: joined });
            }
            if !left.is_empty() {
                diff.leaves.insert(key.clone(), PresenceMetas { metas: left });
            }
        }
        self.sync_diff(topic, &diff);
        diff
    }

    /// The presences of one topic (empty when none), as a `presence_state`.
    pub fn topic(&self, topic: &str) -> PresenceState {
        self.topics
            .get(topic)
            .map(|keys| {
                keys.iter()
                    .map(|(key, metas)| (key.clone(), metas.metas()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The presences of `topic`, borrowed: each key, sorted, with its metas
    /// in order. Empty when the topic has none.
    pub fn keyed_metas<'a>(
        &'a self,
        topic: &str,
    ) -> impl Iterator<Item = (&'a str, impl ExactSizeIterator<Item = &'a Value> + 'a)> + 'a {
        self.topics
            .get(topic)
            .into_iter()
            .flatten()
            .map(|(key, metas)| (key.as_str(), metas.order.values()))
    }

    /// The metas of `key` on `topic`, in the order the client shows them,
    /// or `None` when the key is absent.
    pub fn key_metas<'a>(
        &'a self,
        topic: &str,
        key: &str,
    ) -> Option<impl ExactSizeIterator<Item = &'a Value> + 'a> {
        self.topics
            .get(topic)
            .and_then(|keys| keys.get(key))
            .map(|metas| metas.order.values())
    }

    /// The metas of `key` on `topic` that carry `reference` as their
    /// `phx_ref` (one, unless a server sent the same ref twice).
    pub fn metas_with_ref<'a>(
        &'a self,
        topic: &str,
        key: &str,
        reference: &str,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let metas = self.topics.get(topic).and_then(|keys| keys.get(key));
        let sequences = metas.and_then(|metas| {
            metas
                .by_ref
                .find(name_hash(reference), |(filed, _)| filed == reference)
                .map(|(_, sequences)| sequences)
        });
        sequences
            .into_iter()
            .flatten()
            .filter_map(move |sequence| metas.and_then(|metas| metas.order.get(sequence)))
    }

    /// Topics with at least one presence, sorted.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.keys().map(String::as_str)
    }

    /// Keys present on `topic`, sorted.
    pub fn keys(&self, topic: &str) -> Vec<String> {
        self.topics
            .get(topic)
            .map(|state| state.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metas(refs: &[&str]) -> PresenceMetas {
        PresenceMetas {
            metas: refs.iter().map(|r| json!({"phx_ref": r})).collect(),
        }
    }

    fn diff(joins: &[(&str, &[&str])], leaves: &[(&str, &[&str])]) -> PresenceDiff {
        PresenceDiff {
            joins: joins.iter().map(|(k, r)| (k.to_string(), metas(r))).collect(),
            leaves: leaves.iter().map(|(k, r)| (k.to_string(), metas(r))).collect(),
        }
    }

    /// Mirrors are equal when they show the same metas in the same order.
    #[test]
    fn mirrors_differ_by_metas_and_by_their_order() {
        let mut a = ClientMirror::new();
        a.sync_diff("t", &diff(&[("k", &["1", "2"])], &[]));
        let mut same = ClientMirror::new();
        same.sync_diff("t", &diff(&[("k", &["1"])], &[]));
        same.sync_diff("t", &diff(&[("k", &["2"])], &[]));
        assert_eq!(a, same);
        let mut other = ClientMirror::new();
        other.sync_diff("t", &diff(&[("k", &["1", "3"])], &[]));
        assert_ne!(a, other);
        let mut reordered = ClientMirror::new();
        reordered.sync_diff("t", &diff(&[("k", &["2", "1"])], &[]));
        assert_ne!(a, reordered);
    }

    #[test]
    fn join_on_existing_key_adds_metas_and_leave_drops_empty_key() {
        let mut mirror = ClientMirror::new();
        mirror.sync_diff("t", &diff(&[("alice", &["1"])], &[]));
        mirror.sync_diff("t", &diff(&[("alice", &["2"])], &[]));
        assert_eq!(mirror.topic("t")["alice"], metas(&["1", "2"]));
        assert_eq!(mirror.topics().collect::<Vec<_>>(), ["t"]);
        mirror.sync_diff("t", &diff(&[], &[("alice", &["1"])]));
        assert_eq!(mirror.topic("t")["alice"], metas(&["2"]));
        mirror.sync_diff("t", &diff(&[], &[("alice", &["2"])]));
        assert!(mirror.topic("t").is_empty());
        assert_eq!(mirror.topics().count(), 0);
        assert_eq!(mirror, ClientMirror::new(), "an emptied mirror is an empty one");
    }

    #[test]
    fn a_join_repeating_a_ref_replaces_that_meta_after_the_others() {
        // As presence.js: the current metas whose refs the join does not
        // repeat, in their order, then the join's own.
        let mut mirror = ClientMirror::new();
        mirror.sync_diff("t", &diff(&[("alice", &["1", "2", "3"])], &[]));
        let update = PresenceDiff {
            joins: [(
                "alice".to_string(),
                PresenceMetas {
                    metas: vec![json!({"phx_ref": "2", "status": "away"}), json!({"phx_ref": "4"})],
                },
            )]
            .into_iter()
            .collect(),
            leaves: Default::default(),
        };
        mirror.sync_diff("t", &update);
        assert_eq!(
            mirror.topic("t")["alice"].metas,
            [
                json!({"phx_ref": "1"}),
                json!({"phx_ref": "3"}),
                json!({"phx_ref": "2", "status": "away"}),
                json!({"phx_ref": "4"}),
            ]
        );
    }

    #[test]
    fn a_meta_without_a_ref_is_never_matched_and_a_repeated_ref_goes_whole() {
        let mut mirror = ClientMirror::new();
        let bare = PresenceDiff {
            joins: [(
                "alice".to_string(),
                PresenceMetas {
                    metas: vec![json!({"x": 1})],
                },
            )]
            .into_iter()
            .collect(),
            leaves: Default::default(),
        };
        mirror.sync_diff("t", &bare);
        mirror.sync_diff("t", &diff(&[("alice", &["1", "1", "2"])], &[]));
        assert_eq!(mirror.topic("t")["alice"].metas.len(), 4);
        mirror.sync_diff("t", &diff(&[], &[("alice", &["1"])]));
        assert_eq!(
            mirror.topic("t")["alice"].metas,
            [json!({"x": 1}), json!({"phx_ref": "2"})],
            "both metas of ref 1 left; the bare one stays"
        );
    }

    #[test]
    fn a_diff_on_a_hot_key_keeps_its_order() {
        let mut mirror = ClientMirror::new();
        let many: Vec<String> = (0..1_000).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        mirror.sync_diff("t", &diff(&[("guest", &refs)], &[]));
        mirror.sync_diff("t", &diff(&[("guest", &["500"])], &[("guest", &["7"])]));
        let metas = mirror.topic("t")["guest"].metas.clone();
        assert_eq!(metas.len(), 999);
        assert_eq!(
            metas.last(),
            Some(&json!({"phx_ref": "500"})),
            "a rejoined ref goes last"
        );
        assert_eq!(metas[7], json!({"phx_ref": "8"}), "the others keep their order");
    }

    #[test]
    fn leave_for_unknown_key_is_ignored() {
        let mut mirror = ClientMirror::new();
        mirror.sync_diff("t", &diff(&[], &[("ghost", &["9"])]));
        assert!(mirror.topic("t").is_empty());
    }

    #[test]
    fn update_in_one_diff_keeps_the_key_present() {
        let mut mirror = ClientMirror::new();
        mirror.sync_diff("t", &diff(&[("alice", &["1"])], &[]));
        mirror.sync_diff("t", &diff(&[("alice", &["2"])], &[("alice", &["1"])]));
        assert_eq!(mirror.topic("t")["alice"], metas(&["2"]));
    }

    #[test]
    fn sync_state_reports_joins_and_leaves() {
        let mut mirror = ClientMirror::new();
        mirror.sync_diff("t", &diff(&[("alice", &["1"]), ("bob", &["2"])], &[]));
        let new_state: PresenceState = [("alice".to_string(), metas(&["1", "3"]))].into_iter().collect();
        let changes = mirror.sync_state("t", &new_state);
        assert_eq!(changes, diff(&[("alice", &["3"])], &[("bob", &["2"])]));
        assert_eq!(mirror.topic("t"), new_state);
    }
}

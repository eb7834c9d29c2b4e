//! The client mirror: what a browser running Phoenix's JavaScript `Presence`
//! does with `presence_state` and `presence_diff` payloads (`syncState` and
//! `syncDiff`). It is the judge of diff exactness (invariant I1).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::diff::{Diff, PresenceDiff, PresenceMetas, PresenceState};

/// A client's local copy of presences, per topic, fed by diffs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientMirror {
    topics: BTreeMap<String, PresenceState>,
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
    /// an unknown key is ignored.
    pub fn sync_diff(&mut self, topic: &str, diff: &PresenceDiff) {
        let state = self.topics.entry(topic.to_owned()).or_default();
        for (key, joined) in &diff.joins {
            // The metas kept stay where they are: a join on a key with many
            // presences copies none of them.
            let metas = &mut state.entry(key.clone()).or_default().metas;
            if !metas.is_empty() {
                let joined_refs = refs(&joined.metas);
                metas.retain(|meta| phx_ref(meta).is_none_or(|r| !joined_refs.contains(r)));
            }
            metas.extend(joined.metas.iter().cloned());
        }
        for (key, left) in &diff.leaves {
            let Some(current) = state.get_mut(key) else {
                continue;
            };
            let left_refs = refs(&left.metas);
            current
                .metas
                .retain(|meta| phx_ref(meta).is_none_or(|r| !left_refs.contains(r)));
            if current.metas.is_empty() {
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
        let current = self.topics.get(topic).cloned().unwrap_or_default();
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

    /// The presences of one topic (empty when none).
    pub fn topic(&self, topic: &str) -> PresenceState {
        self.topics.get(topic).cloned().unwrap_or_default()
    }

    /// The presences of `topic`, borrowed; `None` when it has none.
    pub fn topic_ref(&self, topic: &str) -> Option<&PresenceState> {
        self.topics.get(topic)
    }

    /// Topics with at least one presence, sorted.
    pub fn topics(&self) -> impl Iterator<Item = (&str, &PresenceState)> {
        self.topics.iter().map(|(topic, state)| (topic.as_str(), state))
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

    #[test]
    fn join_on_existing_key_adds_metas_and_leave_drops_empty_key() {
        let mut mirror = ClientMirror::new();
        mirror.sync_diff("t", &diff(&[("alice", &["1"])], &[]));
        mirror.sync_diff("t", &diff(&[("alice", &["2"])], &[]));
        assert_eq!(mirror.topic("t")["alice"], metas(&["1", "2"]));
        mirror.sync_diff("t", &diff(&[], &[("alice", &["1"])]));
        assert_eq!(mirror.topic("t")["alice"], metas(&["2"]));
        mirror.sync_diff("t", &diff(&[], &[("alice", &["2"])]));
        assert!(mirror.topic("t").is_empty());
        assert_eq!(mirror.topics().count(), 0);
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

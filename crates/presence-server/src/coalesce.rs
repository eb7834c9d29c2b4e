//! Diffs gathered between two flushes, netted per presence.
//!
//! The hub applies every request and message that is waiting, then tells
//! each topic's subscribers once. Under a burst of joins to one hot topic,
//! this sends one `presence_diff` per flush instead of one per join; idle,
//! a flush follows every request. The net is exact: a presence that joins
//! and leaves before the flush is in neither list, and one that leaves and
//! comes back (a peer down, then up) is in neither, as the view before and
//! after the flush agree on it.

use std::collections::BTreeMap;

use presence_core::{Diff, Presence, Tag};

/// The net change since the last flush.
#[derive(Debug, Default)]
pub(crate) struct PendingDiff {
    joins: BTreeMap<Tag, Presence>,
    leaves: BTreeMap<Tag, Presence>,
}

impl PendingDiff {
    /// Adds a later diff.
    pub(crate) fn add(&mut self, diff: Diff) {
        for presence in diff.joins {
            if self.leaves.remove(&presence.tag).is_none() {
                self.joins.insert(presence.tag.clone(), presence);
            }
        }
        for presence in diff.leaves {
            if self.joins.remove(&presence.tag).is_none() {
                self.leaves.insert(presence.tag.clone(), presence);
            }
        }
    }

    /// Whether nothing changed since the last flush.
    pub(crate) fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }

    /// The net diff, in tag order; empties this.
    pub(crate) fn take(&mut self) -> Diff {
        Diff {
            joins: std::mem::take(&mut self.joins).into_values().collect(),
            leaves: std::mem::take(&mut self.leaves).into_values().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presence_core::{ReplicaId, State};
    use serde_json::json;

    fn tags(presences: &[Presence]) -> Vec<Tag> {
        presences.iter().map(|presence| presence.tag.clone()).collect()
    }

    /// The netted diff of a run of operations is the difference between
    /// the views before and after, whatever the operations were.
    #[test]
    fn the_net_is_the_difference_of_the_views() {
        let mut state = State::new(ReplicaId::new("a", 1));
        state.join("p0", "t", "kept", json!({})).unwrap();
        let before = state.get_by_topic("t");
        let mut pending = PendingDiff::default();
        pending.add(state.join("p1", "t", "brief", json!({})).unwrap());
        pending.add(state.join("p2", "t", "stays", json!({})).unwrap());
        pending.add(state.leave("p1", "t", "brief"));
        pending.add(state.update("p0", "t", "kept", json!({"n": 1})).unwrap());
        let after = state.get_by_topic("t");
        let net = pending.take();
        let mut expected_joins: Vec<Tag> = tags(&after)
            .into_iter()
            .filter(|tag| !tags(&before).contains(tag))
            .collect();
        let mut expected_leaves: Vec<Tag> = tags(&before)
            .into_iter()
            .filter(|tag| !tags(&after).contains(tag))
            .collect();
        expected_joins.sort();
        expected_leaves.sort();
        assert_eq!(tags(&net.joins), expected_joins);
        assert_eq!(tags(&net.leaves), expected_leaves);
        assert_eq!(net.joins.len(), 2, "stays, and kept's new meta");
        assert!(pending.is_empty());
    }

    #[test]
    fn a_leave_then_a_join_of_one_presence_cancel() {
        let mut state = State::new(ReplicaId::new("a", 1));
        let joined = state.join("p", "t", "k", json!({})).unwrap();
        let mut pending = PendingDiff::default();
        pending.add(Diff {
            joins: vec![],
            leaves: joined.joins.clone(),
        });
        pending.add(joined);
        assert!(pending.is_empty());
    }
}

//! What a state knows of one replica: its causal context, cloud and live values.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use crate::entry::Entry;

/// Everything one state knows about the joins one replica issued.
///
/// - `context`: the highest clock `c` such that every clock `1..=c` is observed.
/// - `cloud`: clocks observed above a gap; always strictly above `context` and
///   never `context + 1` (that would be compacted into the context).
/// - `values`: the live entries of that replica, by clock. Every held clock is
///   observed; an observed clock that is not held was removed.
///
/// Values are ordered by clock so that merges walk two logs in step (O(n), no
/// lookups), deltas touch a clock range (O(log n + k)) and every iteration is
/// deterministic.
///
/// The cloud and values live behind one box, absent while both are empty:
/// most replicas a payload names carry only a context (departed ones,
/// replicas with nothing live), and two empty B-trees inline made such a
/// log 56 bytes instead of 16, most of a decoded context's memory.
#[derive(Clone, Default)]
pub struct ReplicaLog {
    pub(crate) context: u64,
    held: Option<Box<Held>>,
}

/// A log's cloud and values.
#[derive(Clone, Default)]
struct Held {
    cloud: BTreeSet<u64>,
    values: BTreeMap<u64, Arc<Entry>>,
}

static NO_CLOUD: BTreeSet<u64> = BTreeSet::new();
static NO_VALUES: BTreeMap<u64, Arc<Entry>> = BTreeMap::new();

impl PartialEq for ReplicaLog {
    /// By content: an emptied box equals no box.
    fn eq(&self, other: &Self) -> bool {
        self.context == other.context && self.cloud() == other.cloud() && self.values() == other.values()
    }
}

impl Eq for ReplicaLog {}

impl std::fmt::Debug for ReplicaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaLog")
            .field("context", &self.context)
            .field("cloud", self.cloud())
            .field("values", self.values())
            .finish()
    }
}

impl ReplicaLog {
    /// A log of `context` alone.
    pub(crate) fn with_context(context: u64) -> Self {
        Self { context, held: None }
    }

    /// The contiguous observed clock.
    pub fn context(&self) -> u64 {
        self.context
    }

    /// Clocks observed above a gap.
    pub fn cloud(&self) -> &BTreeSet<u64> {
        self.held.as_ref().map_or(&NO_CLOUD, |held| &held.cloud)
    }

    /// The live entries, by clock.
    pub fn values(&self) -> &BTreeMap<u64, Arc<Entry>> {
        self.held.as_ref().map_or(&NO_VALUES, |held| &held.values)
    }

    /// The cloud, to change.
    pub(crate) fn cloud_mut(&mut self) -> &mut BTreeSet<u64> {
        &mut self.held.get_or_insert_default().cloud
    }

    /// The values, to change.
    pub(crate) fn values_mut(&mut self) -> &mut BTreeMap<u64, Arc<Entry>> {
        &mut self.held.get_or_insert_default().values
    }

    /// Whether `clock` has been observed.
    pub fn observed(&self, clock: u64) -> bool {
        clock <= self.context || self.cloud().contains(&clock)
    }

    /// The highest clock observed, contiguous or not.
    pub fn max_observed(&self) -> u64 {
        self.cloud().last().copied().unwrap_or(0).max(self.context)
    }

    /// Folds cloud clocks that are covered by, or contiguous with, the context
    /// into it. Keeps invariant I6 (no cloud clock at or next to the context).
    /// Drops the box once cloud and values are both empty.
    pub(crate) fn compact(&mut self) {
        if crate::sabotage::active(crate::sabotage::Sabotage::SkipCompaction) {
            return;
        }
        let Some(held) = self.held.as_mut() else {
            return;
        };
        while let Some(&first) = held.cloud.first() {
            if first <= self.context {
                held.cloud.pop_first();
            } else if self.context.checked_add(1) == Some(first) {
                held.cloud.pop_first();
                self.context = first;
            } else {
                break;
            }
        }
        if held.cloud.is_empty() && held.values.is_empty() {
            self.held = None;
        }
    }
}

/// The clocks `(from, to]` as `BTreeMap` range bounds. Never panics: an empty
/// or inverted span (`to <= from`, possible in untrusted payloads) is empty,
/// and no bound is computed with `+ 1`, so nothing overflows.
pub(crate) fn span(from: u64, to: u64) -> (Bound<u64>, Bound<u64>) {
    (Bound::Excluded(from), Bound::Included(to.max(from)))
}

/// The clocks above `from`.
pub(crate) fn above(from: u64) -> (Bound<u64>, Bound<u64>) {
    (Bound::Excluded(from), Bound::Unbounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_folds_contiguous_cloud_clocks() {
        let mut log = ReplicaLog::with_context(2);
        log.cloud_mut().extend([1, 3, 4, 6]);
        log.compact();
        assert_eq!(log.context, 4);
        assert_eq!(*log.cloud(), [6].into_iter().collect());
        assert!(log.observed(6));
        assert!(!log.observed(5));
        assert_eq!(log.max_observed(), 6);
    }

    #[test]
    fn a_log_of_a_context_alone_is_small_and_equal_to_an_emptied_one() {
        assert_eq!(std::mem::size_of::<ReplicaLog>(), 16);
        let mut emptied = ReplicaLog::with_context(3);
        emptied.cloud_mut().insert(5);
        emptied.cloud_mut().remove(&5);
        assert_eq!(emptied, ReplicaLog::with_context(3));
        assert_ne!(emptied, ReplicaLog::with_context(4));
        // Compaction gives the box back once both are empty.
        emptied.compact();
        assert!(emptied.held.is_none());
    }

    /// A log prints as its content, the same whether or not its box is
    /// allocated.
    #[test]
    fn a_log_prints_as_its_content() {
        let mut log = ReplicaLog::with_context(2);
        assert_eq!(
            format!("{log:?}"),
            "ReplicaLog { context: 2, cloud: {}, values: {} }"
        );
        log.cloud_mut().insert(5);
        assert_eq!(
            format!("{log:?}"),
            "ReplicaLog { context: 2, cloud: {5}, values: {} }"
        );
    }

    #[test]
    fn spans_never_panic() {
        let values: BTreeMap<u64, ()> = (1..=5).map(|clock| (clock, ())).collect();
        assert_eq!(values.range(span(2, 4)).count(), 2);
        assert_eq!(values.range(span(3, 3)).count(), 0);
        assert_eq!(values.range(span(4, 1)).count(), 0);
        assert_eq!(values.range(above(u64::MAX)).count(), 0);
        assert_eq!(values.range(above(3)).count(), 2);
    }
}

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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaLog {
    pub(crate) context: u64,
    pub(crate) cloud: BTreeSet<u64>,
    pub(crate) values: BTreeMap<u64, Arc<Entry>>,
}

impl ReplicaLog {
    /// The contiguous observed clock.
    pub fn context(&self) -> u64 {
        self.context
    }

    /// Clocks observed above a gap.
    pub fn cloud(&self) -> &BTreeSet<u64> {
        &self.cloud
    }

    /// The live entries, by clock.
    pub fn values(&self) -> &BTreeMap<u64, Arc<Entry>> {
        &self.values
    }

    /// Whether `clock` has been observed.
    pub fn observed(&self, clock: u64) -> bool {
        clock <= self.context || self.cloud.contains(&clock)
    }

    /// The highest clock observed, contiguous or not.
    pub fn max_observed(&self) -> u64 {
        self.cloud.last().copied().unwrap_or(0).max(self.context)
    }

    /// Folds cloud clocks that are covered by, or contiguous with, the context
    /// into it. Keeps invariant I6 (no cloud clock at or next to the context).
    pub(crate) fn compact(&mut self) {
        if crate::sabotage::active(crate::sabotage::Sabotage::SkipCompaction) {
            return;
        }
        while let Some(&first) = self.cloud.first() {
            if first <= self.context {
                self.cloud.pop_first();
            } else if self.context.checked_add(1) == Some(first) {
                self.cloud.pop_first();
                self.context = first;
            } else {
                break;
            }
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
        let mut log = ReplicaLog {
            context: 2,
            cloud: [1, 3, 4, 6].into_iter().collect(),
            values: BTreeMap::new(),
        };
        log.compact();
        assert_eq!(log.context, 4);
        assert_eq!(log.cloud, [6].into_iter().collect());
        assert!(log.observed(6));
        assert!(!log.observed(5));
        assert_eq!(log.max_observed(), 6);
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

//! Deltas: what one replica changed locally over a clock range.
//!
//! A delta of replica `r` covers r's clocks in `(from, to]`: it holds every
//! join of that range that is still live (`joins`) and the clocks at or below
//! `from` that r removed meanwhile (`leaves`). A clock of the range that is not
//! in `joins` was joined and removed again within the range. A receiver can
//! merge a delta only if it has observed r up to at least `from`; otherwise
//! the delta has a gap and is refused whole ([`DeltaError::Gap`]), so that the
//! caller asks for a transfer instead (bug class B5).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::entry::Entry;
use crate::log::{above, span};
use crate::replica::ReplicaId;

/// A replica's local changes over the clock range `(from, to]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    pub(crate) replica: ReplicaId,
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) joins: BTreeMap<u64, Arc<Entry>>,
    pub(crate) leaves: BTreeSet<u64>,
}

/// Why a delta could not be merged or extended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeltaError {
    /// The receiver has observed the origin only up to `have`, but the delta
    /// starts after `from`: clocks `have + 1 ..= from` are missing. Nothing was
    /// changed; ask the origin (or any peer) for a transfer.
    Gap {
        /// The delta's origin.
        replica: ReplicaId,
        /// What the receiver has observed of the origin.
        have: u64,
        /// Where the delta starts (exclusive).
        from: u64,
    },
    /// Two deltas of different replicas cannot be composed.
    OtherReplica {
        /// The replica of the delta being extended.
        expected: ReplicaId,
        /// The replica of the delta offered.
        found: ReplicaId,
    },
}

impl std::fmt::Display for DeltaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gap { replica, have, from } => write!(
                f,
                "delta of {replica} starts after clock {from} but only {have} is observed"
            ),
            Self::OtherReplica { expected, found } => {
                write!(f, "cannot extend a delta of {expected} with one of {found}")
            }
        }
    }
}

impl std::error::Error for DeltaError {}

impl Delta {
    /// An empty delta of `replica` at clock `at`.
    pub(crate) fn empty(replica: ReplicaId, at: u64) -> Self {
        Self {
            replica,
            from: at,
            to: at,
            joins: BTreeMap::new(),
            leaves: BTreeSet::new(),
        }
    }

    /// The replica whose changes these are.
    pub fn replica(&self) -> &ReplicaId {
        &self.replica
    }

    /// The clock range covered: `(from, to]`.
    pub fn range(&self) -> (u64, u64) {
        (self.from, self.to)
    }

    /// Live joins of the range, by clock.
    pub fn joins(&self) -> &BTreeMap<u64, Arc<Entry>> {
        &self.joins
    }

    /// Clocks at or below `from` removed within the range.
    pub fn leaves(&self) -> &BTreeSet<u64> {
        &self.leaves
    }

    /// Whether the delta carries no change at all.
    pub fn is_empty(&self) -> bool {
        self.from == self.to && self.leaves.is_empty()
    }

    /// How many operations' worth of data it carries (joins plus leaves).
    pub fn len(&self) -> usize {
        self.joins.len() + self.leaves.len()
    }

    /// Records a local join at `clock`, the replica's new context.
    pub(crate) fn record_join(&mut self, clock: u64, entry: Arc<Entry>) {
        self.joins.insert(clock, entry);
        self.to = clock;
    }

    /// Records a local removal of the replica's own `clock` by the leave
    /// event that took clock `event`, the replica's new context.
    pub(crate) fn record_leave(&mut self, clock: u64, event: u64) {
        self.forget(clock);
        self.to = self.to.max(event);
    }

    /// Notes that `clock` is no longer live.
    fn forget(&mut self, clock: u64) {
        if clock > self.from {
            self.joins.remove(&clock);
        } else {
            self.leaves.insert(clock);
        }
    }

    /// Composes `self` with a later delta of the same replica, so that the
    /// result covers `(self.from, max(self.to, later.to)]`. The later delta must
    /// start within this one's range: `self.from <= later.from <= self.to`.
    pub fn extend(&mut self, later: &Delta) -> Result<(), DeltaError> {
        if later.replica != self.replica {
            return Err(DeltaError::OtherReplica {
                expected: self.replica.clone(),
                found: later.replica.clone(),
            });
        }
        if later.from > self.to || later.from < self.from {
            return Err(DeltaError::Gap {
                replica: self.replica.clone(),
                have: self.to,
                from: later.from,
            });
        }
        for &clock in &later.leaves {
            self.forget(clock);
        }
        // Clocks of the overlap that the later delta no longer holds were removed.
        let overlap_end = self.to.min(later.to);
        let removed: Vec<u64> = self
            .joins
            .range(span(later.from, overlap_end))
            .map(|(&clock, _)| clock)
            .filter(|clock| !later.joins.contains_key(clock))
            .collect();
        for clock in removed {
            self.joins.remove(&clock);
        }
        for (&clock, entry) in later.joins.range(above(self.to)) {
            self.joins.insert(clock, Arc::clone(entry));
        }
        self.to = self.to.max(later.to);
        Ok(())
    }

    /// Builds a delta from parts, checking its shape. Used by the decoder.
    pub(crate) fn from_parts(
        replica: ReplicaId,
        from: u64,
        to: u64,
        joins: BTreeMap<u64, Arc<Entry>>,
        leaves: BTreeSet<u64>,
    ) -> Result<Self, &'static str> {
        if from > to {
            return Err("delta range has from > to");
        }
        if joins.keys().any(|&clock| clock <= from || clock > to) {
            return Err("delta join clock outside (from, to]");
        }
        if leaves.iter().any(|&clock| clock == 0 || clock > from) {
            return Err("delta leave clock not in 1..=from");
        }
        Ok(Self {
            replica,
            from,
            to,
            joins,
            leaves,
        })
    }
}

//! The deterministic workloads of SPEC section 9, built one way for everyone
//! who measures them: the `merge_scale` example, the criterion benches in
//! `benches/` and the tests that keep both honest.
//!
//! Entry `i` of a workload with prefix `p` is key `p-user:i` on topic
//! `room:{i % 100}` through pid `p-pid:i`, with a small metadata object. The
//! same arguments always build the same state.

use std::collections::BTreeMap;

use serde_json::json;

use crate::{Delta, ReplicaId, State};

/// Topics a workload spreads its entries over.
pub const TOPICS: usize = 100;

/// Operations in one [`DeltaStream`] delta.
pub const DELTA_OPS: usize = 100;

fn topic(i: usize) -> String {
    format!("room:{}", i % TOPICS)
}

/// A readable size label, `1k`, `100k`, `1m`: how benchmark ids name their
/// state sizes, and how `presence report` finds them again.
pub fn size_label(size: usize) -> String {
    match size {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}m", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Joins entries `first..first + count` of `prefix` at `state`.
pub fn populate(state: &mut State, prefix: &str, first: usize, count: usize) {
    for i in first..first + count {
        state
            .join(
                &format!("{prefix}-pid:{i}"),
                &topic(i),
                &format!("{prefix}-user:{i}"),
                json!({"online_at": i, "device": "phone"}),
            )
            .expect("workload joins are valid");
    }
}

/// A replica `node-{prefix}` holding `count` entries of its own.
pub fn replica(prefix: &str, count: usize) -> State {
    let mut state = State::new(ReplicaId::new(&format!("node-{prefix}"), 1));
    populate(&mut state, prefix, 0, count);
    state.take_delta();
    state
}

/// Two replicas `a` and `b` of `count` entries each, none shared: the
/// full-merge workload.
pub fn disjoint_pair(count: usize) -> (State, State) {
    (replica("a", count), replica("b", count))
}

/// `a` after merging `b`: both replicas' entries, all up.
pub fn merged(a: &State, b: &State) -> State {
    let mut merged = a.clone();
    merged.merge(b);
    merged
}

/// The clocks of a peer that knows every replica of `state` but lags `lag`
/// clocks behind on `behind`.
pub fn lagging_clocks(state: &State, behind: &ReplicaId, lag: u64) -> BTreeMap<ReplicaId, u64> {
    let mut clocks = state.clocks();
    if let Some(clock) = clocks.get_mut(behind) {
        *clock = clock.saturating_sub(lag);
    }
    clocks
}

/// A replica `c` producing consecutive 100-operation deltas, and a receiver
/// `r` that holds `c`'s `size` entries. Each delta mixes joins, leaves of the
/// oldest entries and updates of the newest, about a third each: 33 joins,
/// 33 leaves and 34 updates, so the state keeps its size however many deltas
/// a benchmark merges.
pub struct DeltaStream {
    origin: State,
    next_join: usize,
    next_leave: usize,
    size: usize,
}

impl DeltaStream {
    /// The origin of the stream with `size` entries, and a receiver that has
    /// merged all of them. `size` must be at least [`DELTA_OPS`].
    pub fn new(size: usize) -> (Self, State) {
        assert!(
            size >= DELTA_OPS,
            "a delta stream needs {DELTA_OPS} entries to work on"
        );
        let origin = replica("c", size);
        let mut receiver = State::new(ReplicaId::new("node-r", 1));
        receiver.merge(&origin);
        let stream = DeltaStream {
            origin,
            next_join: size,
            next_leave: 0,
            size,
        };
        (stream, receiver)
    }

    /// Merges deltas into `receiver` until every entry it started with has
    /// left and been replaced, as in a node that has run for a while: a
    /// freshly built state lies in memory in join order, which a long-running
    /// node's never does, and which flatters small states most. Measure after
    /// this, so that every size is measured in the same condition.
    pub fn churn(&mut self, receiver: &mut State) {
        while self.next_leave < self.size {
            let delta = self.next_delta();
            receiver.merge_delta(&delta).expect("consecutive deltas connect");
        }
    }

    /// The next delta: 33 joins, 33 leaves of the oldest entries and 34
    /// updates of the newest. The origin keeps its size.
    pub fn next_delta(&mut self) -> Delta {
        let (leaves, joins) = (DELTA_OPS / 3, DELTA_OPS / 3);
        let updates = DELTA_OPS - leaves - joins;
        for _ in 0..leaves {
            let i = self.next_leave;
            self.origin
                .leave(&format!("c-pid:{i}"), &topic(i), &format!("c-user:{i}"));
            self.next_leave += 1;
        }
        for k in 0..updates {
            // The newest entries, well clear of the oldest that leave.
            let i = self.next_join - 1 - k;
            self.origin
                .update(
                    &format!("c-pid:{i}"),
                    &topic(i),
                    &format!("c-user:{i}"),
                    json!({"online_at": i, "away": true}),
                )
                .expect("updated entries are present");
        }
        populate(&mut self.origin, "c", self.next_join, joins);
        self.next_join += joins;
        self.origin.take_delta()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_carries_one_hundred_operations_and_merges_exactly() {
        let (mut stream, mut receiver) = DeltaStream::new(1_000);
        for _ in 0..20 {
            let delta = stream.next_delta();
            // An update removes the old tag and adds a new one.
            assert_eq!(delta.len(), DELTA_OPS + 34);
            let diff = receiver.merge_delta(&delta).expect("consecutive deltas connect");
            // 33 joins and 33 leaves, plus an update as one leave and one join each.
            assert_eq!(diff.joins.len(), 33 + 34);
            assert_eq!(diff.leaves.len(), 33 + 34);
        }
        assert_eq!(receiver.view_fingerprint(), stream.origin.view_fingerprint());
        // Joins and leaves balance: however many deltas a benchmark merges,
        // the state it measures keeps its size.
        assert_eq!(receiver.len(), 1_000);
        stream.churn(&mut receiver);
        assert!(stream.next_leave >= 1_000, "every first entry left");
        assert_eq!(receiver.view_fingerprint(), stream.origin.view_fingerprint());
    }

    #[test]
    fn deltas_into_a_state_beyond_the_caches_merge_exactly() {
        // Large enough that merge_delta reads its slots ahead first.
        let (mut stream, mut receiver) = DeltaStream::new(60_000);
        let origin = stream.origin.replica().clone();
        let slot = receiver.slot_of[&origin];
        assert!(receiver.known(slot).indexes.beyond_caches());
        for _ in 0..5 {
            let delta = stream.next_delta();
            let diff = receiver.merge_delta(&delta).expect("consecutive deltas connect");
            assert_eq!(diff.joins.len(), 33 + 34);
            assert_eq!(diff.leaves.len(), 33 + 34);
        }
        assert_eq!(receiver.view_fingerprint(), stream.origin.view_fingerprint());
        crate::invariants::check_bounded_memory(&receiver, Default::default())
            .expect("indexes match the values");
    }

    #[test]
    fn size_labels() {
        assert_eq!(size_label(1_000), "1k");
        assert_eq!(size_label(1_000_000), "1m");
        assert_eq!(size_label(1_500), "1500");
    }

    #[test]
    fn workloads_are_deterministic() {
        let (a, b) = disjoint_pair(50);
        assert_eq!(a.to_json(), replica("a", 50).to_json());
        let all = merged(&a, &b);
        assert_eq!(all.len(), 100);
        let clocks = lagging_clocks(&all, b.replica(), 10);
        assert_eq!(clocks[b.replica()], 40);
    }
}

//! The deterministic workloads of the benches (`benches/README.md`), built one way for everyone
//! who measures them: the `merge_scale` example, the criterion benches in
//! `benches/` and the tests that keep both honest.
//!
//! A workload spreads entries over names in one of four [`Shape`]s. In the
//! uniform shape (the first wave's), entry `i` of a workload with prefix `p`
//! is key `p-user:i` on topic `room:{i % 100}` through pid `p-pid:i`; the
//! skewed shapes put every entry in one room under one key, in one room
//! under Zipf-distributed keys, or on a topic of its own through one pid.
//! Every entry has a small metadata object. The same arguments always build
//! the same state.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::json;

use crate::{Delta, ReplicaId, State};

/// Topics a uniform workload spreads its entries over.
pub const TOPICS: usize = 100;

/// Operations in one [`DeltaStream`] delta.
pub const DELTA_OPS: usize = 100;

/// The room of the skewed shapes that put everyone in one room.
pub const ROOM: &str = "room:lobby";

/// Distinct keys the Zipf shape draws from.
pub const ZIPF_KEYS: usize = 100_000;

/// The Zipf shape's exponent.
pub const ZIPF_EXPONENT: f64 = 1.1;

/// How a workload spreads its entries over topics, keys and pids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shape {
    /// Distinct keys and pids over 100 topics (the first wave's workload).
    Uniform,
    /// Every entry in [`ROOM`] under key `guest`, each through its own pid:
    /// a guest account, or one user with thousands of tabs.
    OneKey,
    /// Every entry in [`ROOM`], keys `user:r` with rank `r` drawn from
    /// Zipf([`ZIPF_EXPONENT`]) over [`ZIPF_KEYS`] keys, each through its own
    /// pid: a few users with many devices and a long tail.
    Zipf,
    /// One pid (and one key) on a topic of its own per entry: one
    /// connection subscribed to every room.
    PidEverywhere,
}

impl Shape {
    /// Every shape, uniform first.
    pub const ALL: [Shape; 4] = [Shape::Uniform, Shape::OneKey, Shape::Zipf, Shape::PidEverywhere];

    /// The name benchmark ids and reports use.
    pub fn label(self) -> &'static str {
        match self {
            Shape::Uniform => "uniform",
            Shape::OneKey => "one_key",
            Shape::Zipf => "zipf",
            Shape::PidEverywhere => "pid_everywhere",
        }
    }

    /// (topic, key, pid) of entry `i` of replica `prefix`.
    pub fn names(self, prefix: &str, i: usize) -> (String, String, String) {
        match self {
            Shape::Uniform => (
                topic(i),
                format!("{prefix}-user:{i}"),
                format!("{prefix}-pid:{i}"),
            ),
            Shape::OneKey => (ROOM.to_owned(), "guest".to_owned(), format!("{prefix}-pid:{i}")),
            Shape::Zipf => (
                ROOM.to_owned(),
                format!("user:{}", zipf_rank(i)),
                format!("{prefix}-pid:{i}"),
            ),
            Shape::PidEverywhere => (
                format!("room:{i}"),
                format!("{prefix}-user:0"),
                format!("{prefix}-pid:0"),
            ),
        }
    }

    /// The (topic, key) with the most entries of replica `prefix`.
    pub fn hottest(self, prefix: &str) -> (String, String) {
        let (topic, key, _) = self.names(prefix, 0);
        match self {
            Shape::Zipf => (topic, "user:0".to_owned()),
            _ => (topic, key),
        }
    }

    /// The pid with the most entries of replica `prefix`.
    pub fn hottest_pid(self, prefix: &str) -> String {
        self.names(prefix, 0).2
    }
}

/// The cumulative weights of Zipf(`exponent`) over `names` ranks,
/// normalised: rank `r` (from 0) has weight `(r + 1)^-exponent`. A uniform
/// draw in `[0, 1)` maps to the first rank whose cumulative weight is above
/// it. The simulator's skewed workloads draw from the same table.
pub fn zipf_cumulative(names: usize, exponent: f64) -> Vec<f64> {
    let weights: Vec<f64> = (1..=names).map(|rank| (rank as f64).powf(-exponent)).collect();
    let total: f64 = weights.iter().sum();
    let mut running = 0.0;
    weights
        .iter()
        .map(|weight| {
            running += weight / total;
            running
        })
        .collect()
}

/// The rank of entry `i`'s key in the Zipf shape: a deterministic draw
/// (splitmix64 of `i`) through the inverse of the distribution.
fn zipf_rank(i: usize) -> usize {
    static CDF: OnceLock<Vec<f64>> = OnceLock::new();
    let cdf = CDF.get_or_init(|| zipf_cumulative(ZIPF_KEYS, ZIPF_EXPONENT));
    let draw = (crate::hashing::splitmix64(i as u64) >> 11) as f64 / (1u64 << 53) as f64;
    cdf.partition_point(|&below| below < draw).min(ZIPF_KEYS - 1)
}

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
    populate_shaped(state, Shape::Uniform, prefix, first, count);
}

/// Joins entries `first..first + count` of `prefix` in `shape` at `state`.
pub fn populate_shaped(state: &mut State, shape: Shape, prefix: &str, first: usize, count: usize) {
    for i in first..first + count {
        let (topic, key, pid) = shape.names(prefix, i);
        state
            .join(&pid, &topic, &key, json!({"online_at": i, "device": "phone"}))
            .expect("workload joins are valid");
    }
}

/// A replica `node-{prefix}` holding `count` entries of its own.
pub fn replica(prefix: &str, count: usize) -> State {
    replica_shaped(Shape::Uniform, prefix, count)
}

/// A replica `node-{prefix}` holding `count` entries of its own in `shape`.
pub fn replica_shaped(shape: Shape, prefix: &str, count: usize) -> State {
    let mut state = State::new(ReplicaId::new(&format!("node-{prefix}"), 1));
    populate_shaped(&mut state, shape, prefix, 0, count);
    state.take_delta();
    state
}

/// Two replicas `a` and `b` of `count` entries each, none shared: the
/// full-merge workload.
pub fn disjoint_pair(count: usize) -> (State, State) {
    disjoint_pair_shaped(Shape::Uniform, count)
}

/// Two replicas `a` and `b` of `count` entries each in `shape`, no entry
/// shared (in the skewed shapes, rooms and keys are shared).
pub fn disjoint_pair_shaped(shape: Shape, count: usize) -> (State, State) {
    (
        replica_shaped(shape, "a", count),
        replica_shaped(shape, "b", count),
    )
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
    shape: Shape,
    origin: State,
    next_join: usize,
    next_leave: usize,
    size: usize,
}

impl DeltaStream {
    /// The origin of the stream with `size` entries, and a receiver that has
    /// merged all of them. `size` must be at least [`DELTA_OPS`].
    pub fn new(size: usize) -> (Self, State) {
        Self::shaped(Shape::Uniform, size)
    }

    /// The same, with entries in `shape`.
    pub fn shaped(shape: Shape, size: usize) -> (Self, State) {
        assert!(
            size >= DELTA_OPS,
            "a delta stream needs {DELTA_OPS} entries to work on"
        );
        let origin = replica_shaped(shape, "c", size);
        let mut receiver = State::new(ReplicaId::new("node-r", 1));
        receiver.merge(&origin);
        let stream = DeltaStream {
            shape,
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
            let (topic, key, pid) = self.shape.names("c", self.next_leave);
            self.origin.leave(&pid, &topic, &key);
            self.next_leave += 1;
        }
        for k in 0..updates {
            // The newest entries, well clear of the oldest that leave.
            let i = self.next_join - 1 - k;
            let (topic, key, pid) = self.shape.names("c", i);
            self.origin
                .update(&pid, &topic, &key, json!({"online_at": i, "away": true}))
                .expect("updated entries are present");
        }
        populate_shaped(&mut self.origin, self.shape, "c", self.next_join, joins);
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
        // Large enough that the indexes are larger than the caches.
        let (mut stream, mut receiver) = DeltaStream::new(60_000);
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
    fn every_shape_streams_exact_deltas() {
        for shape in Shape::ALL {
            let (mut stream, mut receiver) = DeltaStream::shaped(shape, 500);
            for _ in 0..8 {
                let diff = receiver
                    .merge_delta(&stream.next_delta())
                    .expect("consecutive deltas connect");
                assert_eq!(diff.joins.len(), 33 + 34, "{shape:?}");
            }
            assert_eq!(receiver.view_fingerprint(), stream.origin.view_fingerprint());
            assert_eq!(receiver.len(), 500);
        }
    }

    #[test]
    fn the_skewed_shapes_are_skewed() {
        let one_key = replica_shaped(Shape::OneKey, "a", 1_000);
        let (topic, key) = Shape::OneKey.hottest("a");
        assert_eq!(one_key.get_by_key(&topic, &key).len(), 1_000);
        let zipf = replica_shaped(Shape::Zipf, "a", 10_000);
        let (topic, key) = Shape::Zipf.hottest("a");
        let hottest = zipf.get_by_key(&topic, &key).len();
        // Zipf(1.1) over 100,000 keys gives the first about 12%.
        assert!((800..1_600).contains(&hottest), "hottest key has {hottest}");
        assert!(zipf.count_keys(ROOM) > 1_000, "and a long tail");
        let everywhere = replica_shaped(Shape::PidEverywhere, "a", 1_000);
        assert_eq!(
            everywhere
                .get_by_pid(&Shape::PidEverywhere.hottest_pid("a"))
                .len(),
            1_000
        );
        assert_eq!(everywhere.count_presences("room:7"), 1);
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

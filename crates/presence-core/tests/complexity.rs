//! Deterministic complexity: the index work an operation does (probes, as
//! `presence_core::work` counts them) must not grow with how many entries
//! share one name. Each test measures the same operation on a small and a
//! large skewed state and demands the same count within a small constant; a
//! count, unlike a time, cannot be flaky.
//!
//! `flat` is the checker; `the_checker_bites` shows it fails on work that
//! does grow.

use presence_core::fixtures::{self, DeltaStream, Shape, ROOM};
use presence_core::work::probes_of;
use presence_core::{ReplicaId, Snapshot, State};
use serde_json::json;

const SMALL: usize = 1_000;
const LARGE: usize = 100_000;

/// How far a large state's count may exceed a small one's: a hash table's
/// probe length varies a little with its load, never with the data's shape.
const SLACK: u64 = 8;

/// Whether `large` (per unit) is within [`SLACK`] of `small` (per unit).
fn flat(what: &str, small: (u64, usize), large: (u64, usize)) -> Result<(), String> {
    let per = |(probes, units): (u64, usize)| probes.div_ceil(units.max(1) as u64);
    let (small_per, large_per) = (per(small), per(large));
    if large_per <= small_per + SLACK {
        Ok(())
    } else {
        Err(format!(
            "{what}: {large_per} probes per unit at {LARGE} entries, {small_per} at {SMALL}"
        ))
    }
}

fn assert_flat(what: &str, small: (u64, usize), large: (u64, usize)) {
    if let Err(problem) = flat(what, small, large) {
        panic!("{problem}");
    }
}

/// `measure` on a fresh `shape` replica of `size` entries: (probes, units).
fn at(shape: Shape, size: usize, measure: impl Fn(&mut State) -> (u64, usize)) -> (u64, usize) {
    let mut state = fixtures::replica_shaped(shape, "a", size);
    measure(&mut state)
}

#[test]
fn own_operations_on_a_hot_key_do_flat_work() {
    let join = |state: &mut State| {
        let size = state.len();
        let ((), probes) = probes_of(|| fixtures::populate_shaped(state, Shape::OneKey, "a", size, 100));
        (probes, 100)
    };
    assert_flat(
        "join",
        at(Shape::OneKey, SMALL, join),
        at(Shape::OneKey, LARGE, join),
    );

    let leave = |state: &mut State| {
        let (_, key, pid) = Shape::OneKey.names("a", state.len() / 2);
        let (diff, probes) = probes_of(|| state.leave(&pid, ROOM, &key));
        assert_eq!(diff.leaves.len(), 1);
        (probes, 1)
    };
    assert_flat(
        "leave",
        at(Shape::OneKey, SMALL, leave),
        at(Shape::OneKey, LARGE, leave),
    );

    let update = |state: &mut State| {
        let (_, key, pid) = Shape::OneKey.names("a", 7);
        let (diff, probes) = probes_of(|| state.update(&pid, ROOM, &key, json!({"away": true})));
        assert_eq!(diff.expect("tracked").joins.len(), 1);
        (probes, 1)
    };
    assert_flat(
        "update",
        at(Shape::OneKey, SMALL, update),
        at(Shape::OneKey, LARGE, update),
    );

    let again = |state: &mut State| {
        let (_, key, pid) = Shape::OneKey.names("a", 3);
        let (refused, probes) = probes_of(|| state.join(&pid, ROOM, &key, json!({})));
        assert!(refused.is_err(), "already tracked");
        (probes, 1)
    };
    assert_flat(
        "own lookup",
        at(Shape::OneKey, SMALL, again),
        at(Shape::OneKey, LARGE, again),
    );
}

#[test]
fn queries_do_flat_work_per_presence_returned() {
    let by_key = |state: &mut State| {
        let (topic, key) = Shape::OneKey.hottest("a");
        let (found, probes) = probes_of(|| state.get_by_key(&topic, &key));
        (probes, found.len())
    };
    assert_flat(
        "get_by_key",
        at(Shape::OneKey, SMALL, by_key),
        at(Shape::OneKey, LARGE, by_key),
    );

    let count = |state: &mut State| {
        let (counts, probes) = probes_of(|| (state.count_presences(ROOM), state.count_keys(ROOM)));
        assert_eq!(counts.1, 1);
        (probes, 1)
    };
    assert_flat(
        "count",
        at(Shape::OneKey, SMALL, count),
        at(Shape::OneKey, LARGE, count),
    );
}

#[test]
fn leave_by_pid_does_flat_work_per_entry_removed() {
    let by_pid = |state: &mut State| {
        let pid = Shape::PidEverywhere.hottest_pid("a");
        let (diff, probes) = probes_of(|| state.leave_by_pid(&pid));
        (probes, diff.leaves.len())
    };
    assert_flat(
        "leave_by_pid",
        at(Shape::PidEverywhere, SMALL, by_pid),
        at(Shape::PidEverywhere, LARGE, by_pid),
    );
}

#[test]
fn merges_do_flat_work_per_entry() {
    for shape in [Shape::OneKey, Shape::Zipf, Shape::PidEverywhere] {
        let snapshot = |state: &mut State| {
            let payload = Snapshot::from_json(&state.to_json()).expect("own encoding decodes");
            let mut peer = State::new(ReplicaId::new("node-p", 1));
            let (diff, probes) = probes_of(|| peer.merge_snapshot(&payload));
            (probes, diff.joins.len())
        };
        assert_flat(
            &format!("merge_snapshot {shape:?}"),
            at(shape, SMALL, snapshot),
            at(shape, LARGE, snapshot),
        );

        let delta = |size: usize| {
            let (mut stream, mut receiver) = DeltaStream::shaped(shape, size);
            let next = stream.next_delta();
            let (diff, probes) = probes_of(|| receiver.merge_delta(&next).expect("connects"));
            (probes, diff.joins.len() + diff.leaves.len())
        };
        assert_flat(&format!("merge_delta {shape:?}"), delta(SMALL), delta(LARGE));
    }
}

#[test]
fn a_peer_going_down_up_and_away_does_flat_work_per_entry() {
    let cycle = |size: usize| {
        let peer = fixtures::replica_shaped(Shape::OneKey, "b", size);
        let mut state = fixtures::replica_shaped(Shape::OneKey, "a", 10);
        state.merge(&peer);
        let id = peer.replica().clone();
        let (changed, probes) = probes_of(|| {
            let down = state.replica_down(&id).leaves.len();
            let up = state.replica_up(&id).joins.len();
            let down_again = state.replica_down(&id).leaves.len();
            state.remove_down_replica(&id).expect("a foreign replica");
            down + up + down_again
        });
        assert_eq!(changed, 3 * size);
        (probes, changed)
    };
    assert_flat("down, up, down, permdown", cycle(SMALL), cycle(LARGE));
}

#[test]
fn names_that_collided_under_the_old_fixed_hash_cost_no_more() {
    // The first wave filed names by an unkeyed FxHash, Fibonacci-mixed, with
    // the top bits as the home slot: names sharing those bits shared one
    // probe cluster. Pick 2,000 keys whose old home slot (in a 2^12-slot
    // table) is the same, and 2,000 plain keys: joining either set on one
    // topic must cost the same.
    use std::hash::BuildHasher;
    let old_home = |name: &str| {
        rustc_hash::FxBuildHasher
            .hash_one(name)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            >> (64 - 12)
    };
    let target = old_home("user:0");
    let colliding: Vec<String> = (0..)
        .map(|i| format!("user:{i}"))
        .filter(|name| old_home(name) == target)
        .take(2_000)
        .collect();
    let plain: Vec<String> = (0..2_000).map(|i| format!("plain:{i}")).collect();
    let join_all = |keys: &[String]| {
        let mut state = State::new(ReplicaId::new("node-a", 1));
        let ((), probes) = probes_of(|| {
            for (i, key) in keys.iter().enumerate() {
                state
                    .join(&format!("pid:{i}"), ROOM, key, json!({}))
                    .expect("valid");
            }
        });
        (probes, keys.len())
    };
    assert_flat("joins of colliding keys", join_all(&plain), join_all(&colliding));
}

#[test]
fn the_checker_bites() {
    // Work that does grow with the entries under one name: get_by_key
    // counted per call, not per presence returned.
    let whole = |state: &mut State| {
        let (topic, key) = Shape::OneKey.hottest("a");
        let (_, probes) = probes_of(|| state.get_by_key(&topic, &key));
        (probes, 1)
    };
    assert!(flat(
        "get_by_key per call",
        at(Shape::OneKey, SMALL, whole),
        at(Shape::OneKey, LARGE, whole)
    )
    .is_err());
    // And a probe count that grows by less than the slack passes.
    assert!(flat("within slack", (10, 1), (10 + SLACK, 1)).is_ok());
    assert!(flat("over slack", (10, 1), (11 + SLACK, 1)).is_err());
}

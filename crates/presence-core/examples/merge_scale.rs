//! Builds the merge workloads of SPEC section 9 and prints one line per figure,
//! so anyone can read them without the benchmark suite:
//!
//! ```text
//! cargo run --release -p presence-core --example merge_scale
//! ```
//!
//! Each figure is the median of several runs; states are cloned before the
//! clock starts, so only the operation itself is timed. The criterion benches
//! in `benches/` measure the same workloads with statistics.
#![allow(clippy::print_stdout, clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use presence_core::{ReplicaId, State};
use serde_json::json;

/// Entry `i` of a workload: 100 topics, one key and one pid per entry.
fn populate(state: &mut State, prefix: &str, count: usize) {
    for i in 0..count {
        let topic = format!("room:{}", i % 100);
        let key = format!("{prefix}-user:{i}");
        let pid = format!("{prefix}-pid:{i}");
        state
            .join(&pid, &topic, &key, json!({"online_at": i, "device": "phone"}))
            .expect("workload joins are valid");
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Times `operation` on a fresh clone of `setup` for each of `runs` runs.
fn time_on_clone(setup: &State, runs: usize, mut operation: impl FnMut(&mut State)) -> Duration {
    let samples = (0..runs)
        .map(|_| {
            let mut state = setup.clone();
            let start = Instant::now();
            operation(&mut state);
            let elapsed = start.elapsed();
            drop(state);
            elapsed
        })
        .collect();
    median(samples)
}

/// A receiver holding `size` entries of replica C, and C itself.
fn delta_workload(size: usize) -> (State, State) {
    let mut origin = State::new(ReplicaId::new("node-c", 1));
    populate(&mut origin, "c", size);
    let mut receiver = State::new(ReplicaId::new("node-r", 1));
    receiver.merge(&origin);
    origin.take_delta();
    (receiver, origin)
}

/// Median time to merge a 100-operation delta (50 joins, 50 leaves) into a
/// state of `size` entries, over `rounds` consecutive deltas.
fn delta_merge(size: usize, rounds: usize) -> Duration {
    let (mut receiver, mut origin) = delta_workload(size);
    let mut next_join = size;
    let mut next_leave = 0;
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        for _ in 0..50 {
            let topic = format!("room:{}", next_leave % 100);
            origin.leave(
                &format!("c-pid:{next_leave}"),
                &topic,
                &format!("c-user:{next_leave}"),
            );
            next_leave += 1;
        }
        populate_from(&mut origin, next_join, 50);
        next_join += 50;
        let delta = origin.take_delta();
        assert_eq!(delta.len(), 100, "a 100-operation delta");
        let start = Instant::now();
        let diff = receiver.merge_delta(&delta).expect("consecutive deltas connect");
        samples.push(start.elapsed());
        assert_eq!(diff.joins.len() + diff.leaves.len(), 100);
    }
    median(samples)
}

fn populate_from(state: &mut State, first: usize, count: usize) {
    for i in first..first + count {
        let topic = format!("room:{}", i % 100);
        state
            .join(
                &format!("c-pid:{i}"),
                &topic,
                &format!("c-user:{i}"),
                json!({"online_at": i}),
            )
            .expect("workload joins are valid");
    }
}

fn main() {
    let size = 100_000;
    let mut a = State::new(ReplicaId::new("node-a", 1));
    let mut b = State::new(ReplicaId::new("node-b", 1));
    populate(&mut a, "a", size);
    populate(&mut b, "b", size);

    let full = time_on_clone(&a, 7, |state| {
        state.merge(&b);
    });
    println!("full_merge_100k_ms={:.2}", full.as_secs_f64() * 1e3);

    // The wire path: a decoded snapshot carries no indexes, so they are built.
    let snapshot = presence_core::Snapshot::from_json(&b.to_json()).expect("own encoding decodes");
    let from_snapshot = time_on_clone(&a, 7, |state| {
        state.merge_snapshot(&snapshot);
    });
    println!(
        "full_merge_snapshot_100k_ms={:.2}",
        from_snapshot.as_secs_f64() * 1e3
    );

    let mut merged = a.clone();
    merged.merge(&b);
    let remerge = time_on_clone(&merged, 7, |state| {
        let diff = state.merge(&b);
        assert!(diff.is_empty());
    });
    println!("full_remerge_100k_ms={:.2}", remerge.as_secs_f64() * 1e3);

    let b_id = b.replica().clone();
    let down = time_on_clone(&merged, 7, |state| {
        state.replica_down(&b_id);
    });
    println!("replica_down_100k_ms={:.2}", down.as_secs_f64() * 1e3);

    let mut merged_down = merged.clone();
    merged_down.replica_down(&b_id);
    let permdown = time_on_clone(&merged_down, 7, |state| {
        state.remove_down_replica(&b_id).expect("b is foreign");
    });
    println!("permdown_100k_ms={:.2}", permdown.as_secs_f64() * 1e3);

    // A peer that knows both replicas and lags by 1% of the state: 2,000
    // clocks behind on b. Extracts go per replica, so b's whole log is sent.
    let mut clocks = merged.clocks();
    *clocks.get_mut(&b_id).expect("merged knows b") -= (2 * size / 100) as u64;
    let peer = ReplicaId::new("node-p", 1);
    let extract_samples = (0..7)
        .map(|_| {
            let start = Instant::now();
            let extract = merged.extract(&peer, &clocks);
            let elapsed = start.elapsed();
            assert_eq!(extract.len(), size, "b's log is offered whole");
            elapsed
        })
        .collect();
    println!(
        "extract_lag_1pct_ms={:.2}",
        median(extract_samples).as_secs_f64() * 1e3
    );

    let small = delta_merge(10_000, 201);
    let large = delta_merge(1_000_000, 201);
    println!("delta_merge_10k_us={:.1}", small.as_secs_f64() * 1e6);
    println!("delta_merge_1m_us={:.1}", large.as_secs_f64() * 1e6);
    println!(
        "delta_merge_ratio_1m_vs_10k={:.2}",
        large.as_secs_f64() / small.as_secs_f64()
    );
}

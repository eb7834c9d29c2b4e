//! Builds the merge workloads of `benches/README.md` and prints one line per figure,
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

use presence_core::fixtures::{self, DeltaStream};
use presence_core::{ReplicaId, State};

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

/// Median time to merge a 100-operation delta (joins, leaves and updates)
/// into a state of `size` entries, over `rounds` consecutive deltas, once
/// churn has replaced every entry the state started with (see
/// `DeltaStream::churn`). Joins and leaves balance, so the state keeps its
/// size and its tables never grow: every round does the same work, and the
/// median sets aside rounds that another process on the machine slowed.
fn delta_merge(size: usize, rounds: usize) -> Duration {
    let (mut stream, mut receiver) = DeltaStream::new(size);
    stream.churn(&mut receiver);
    let samples = (0..rounds)
        .map(|_| {
            let delta = stream.next_delta();
            let start = Instant::now();
            let diff = receiver.merge_delta(&delta).expect("consecutive deltas connect");
            let elapsed = start.elapsed();
            assert!(!diff.is_empty());
            elapsed
        })
        .collect();
    median(samples)
}

fn main() {
    let size = 100_000;
    let (a, b) = fixtures::disjoint_pair(size);

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

    let merged = fixtures::merged(&a, &b);
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
    let clocks = fixtures::lagging_clocks(&merged, &b_id, (2 * size / 100) as u64);
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

    let small = delta_merge(10_000, 1_001);
    let large = delta_merge(1_000_000, 1_001);
    println!("delta_merge_10k_us={:.1}", small.as_secs_f64() * 1e6);
    println!("delta_merge_1m_us={:.1}", large.as_secs_f64() * 1e6);
    println!(
        "delta_merge_ratio_1m_vs_10k={:.2}",
        large.as_secs_f64() / small.as_secs_f64()
    );
}

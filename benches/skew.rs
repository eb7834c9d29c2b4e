//! Skewed workloads beside the uniform one, at 100,000 and 1,000,000
//! entries: everyone in one room under one key, one room with Zipf(1.1)
//! keys, one pid on every topic, and the first wave's uniform spread
//! (`presence_core::fixtures::Shape`). For each: 10,000 own joins, one
//! leave, leave_by_pid of the busiest pid (per entry removed), a full merge
//! of two replicas, a snapshot merged into an empty peer, a 100-operation
//! delta, get_by_key of the hottest key (per presence returned) and the
//! counts of the busiest topic. Every skewed figure should stay within 2x
//! of the uniform one at the same size; `presence report` shows the ratios.
// Timing half of a join-and-leave pair needs a clock of our own.
#![allow(clippy::disallowed_types)]

use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use presence_benches::SKEW_SIZES;
use presence_core::fixtures::{self, size_label, DeltaStream, Shape, DELTA_OPS};
use presence_core::{ReplicaId, Snapshot, State};

/// Joins in the `skew_joins` figure.
const JOINS: usize = 10_000;

fn id(shape: Shape, size: usize) -> BenchmarkId {
    BenchmarkId::new(shape.label(), size_label(size))
}

fn group<'a>(c: &'a mut Criterion, name: &str, elements: u64) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .throughput(Throughput::Elements(elements));
    group
}

/// Times `timed` on `state`, then runs `restore` untimed, `iters` times.
fn timed_then_restored(
    state: &mut State,
    iters: u64,
    mut timed: impl FnMut(&mut State),
    mut restore: impl FnMut(&mut State),
) -> Duration {
    let mut elapsed = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        timed(state);
        elapsed += start.elapsed();
        restore(state);
        // The delta buffer would otherwise grow with every iteration.
        state.take_delta();
    }
    elapsed
}

/// Local operations on one replica of `size` entries in `shape`.
fn local(c: &mut Criterion, shape: Shape, size: usize) {
    let mut state = fixtures::replica_shaped(shape, "a", size);

    group(c, "skew_joins", JOINS as u64).bench_function(id(shape, size), |bench| {
        bench.iter_custom(|iters| {
            timed_then_restored(
                &mut state,
                iters,
                |state| fixtures::populate_shaped(state, shape, "a", size, JOINS),
                |state| {
                    for i in size..size + JOINS {
                        let (topic, key, pid) = shape.names("a", i);
                        state.leave(&pid, &topic, &key);
                    }
                },
            )
        })
    });

    let (topic, key, pid) = shape.names("a", size / 2);
    group(c, "skew_leave", 1).bench_function(id(shape, size), |bench| {
        bench.iter_custom(|iters| {
            timed_then_restored(
                &mut state,
                iters,
                |state| {
                    state.leave(&pid, &topic, &key);
                },
                |state| {
                    state
                        .join(&pid, &topic, &key, serde_json::json!({"back": true}))
                        .expect("rejoins");
                },
            )
        })
    });

    let busiest = shape.hottest_pid("a");
    let removed = state.get_by_pid(&busiest).len();
    group(c, "skew_leave_by_pid", removed as u64).bench_function(id(shape, size), |bench| {
        bench.iter_batched_ref(
            || state.clone(),
            |state| state.leave_by_pid(&busiest),
            BatchSize::PerIteration,
        )
    });

    let (hot_topic, hot_key) = shape.hottest("a");
    let returned = state.get_by_key(&hot_topic, &hot_key).len();
    group(c, "skew_get_by_key", returned as u64).bench_function(id(shape, size), |bench| {
        bench.iter(|| state.get_by_key(&hot_topic, &hot_key))
    });

    group(c, "skew_count", 1).bench_function(id(shape, size), |bench| {
        bench.iter(|| (state.count_presences(&hot_topic), state.count_keys(&hot_topic)))
    });
}

/// Merges into a replica: full states, a snapshot, a delta.
fn merges(c: &mut Criterion, shape: Shape, size: usize) {
    let (a, b) = fixtures::disjoint_pair_shaped(shape, size);
    group(c, "skew_full_merge", size as u64).bench_function(id(shape, size), |bench| {
        bench.iter_batched_ref(|| a.clone(), |state| state.merge(&b), BatchSize::PerIteration)
    });

    let snapshot = Snapshot::from_json(&b.to_json()).expect("own encoding decodes");
    drop((a, b));
    group(c, "skew_snapshot_merge", size as u64).bench_function(id(shape, size), |bench| {
        bench.iter_batched_ref(
            || State::new(ReplicaId::new("node-p", 1)),
            |peer| peer.merge_snapshot(&snapshot),
            BatchSize::PerIteration,
        )
    });
    drop(snapshot);

    let (mut stream, mut receiver) = DeltaStream::shaped(shape, size);
    group(c, "skew_delta", DELTA_OPS as u64).bench_function(id(shape, size), |bench| {
        bench.iter_batched_ref(
            || stream.next_delta(),
            |delta| receiver.merge_delta(delta).expect("consecutive deltas connect"),
            BatchSize::PerIteration,
        )
    });
}

fn skew(c: &mut Criterion) {
    for size in SKEW_SIZES {
        for shape in Shape::ALL {
            local(c, shape, size);
            merges(c, shape, size);
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(presence_benches::WARM_UP).measurement_time(presence_benches::MEASUREMENT);
    targets = skew
}
criterion_main!(benches);

//! Whole-replica operations on a state of two replicas of 100,000 entries
//! each: extract for a peer lagging by 1% of the state, replica_down and
//! replica_up of one replica, and its permdown. Phoenix permdown: 293-310 ms.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use presence_core::fixtures;

const SIZE: usize = 100_000;

fn replicas(c: &mut Criterion) {
    let (a, b) = fixtures::disjoint_pair(SIZE);
    let merged = fixtures::merged(&a, &b);
    let b_id = b.replica().clone();
    let mut merged_down = merged.clone();
    merged_down.replica_down(&b_id);

    let mut group = c.benchmark_group("replicas");
    group.sampling_mode(SamplingMode::Flat).sample_size(20);
    group.throughput(Throughput::Elements(SIZE as u64));

    // 1% of 200,000 entries: the peer lags 2,000 clocks on b.
    let clocks = fixtures::lagging_clocks(&merged, &b_id, (2 * SIZE / 100) as u64);
    let peer = presence_core::ReplicaId::new("node-p", 1);
    group.bench_function("extract_lag_1pct", |bench| {
        bench.iter(|| merged.extract(&peer, &clocks))
    });

    group.bench_function("replica_down_100k", |bench| {
        bench.iter_batched_ref(
            || merged.clone(),
            |state| state.replica_down(&b_id),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("replica_up_100k", |bench| {
        bench.iter_batched_ref(
            || merged_down.clone(),
            |state| state.replica_up(&b_id),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("permdown_100k", |bench| {
        bench.iter_batched_ref(
            || merged_down.clone(),
            |state| state.remove_down_replica(&b_id).expect("b is foreign"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(presence_benches::WARM_UP).measurement_time(presence_benches::MEASUREMENT);
    targets = replicas
}
criterion_main!(benches);

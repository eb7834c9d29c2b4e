//! Full-state merge of two disjoint replicas of N entries each, with every
//! query index kept up to date, beside the `crdts` crate's `Orswot` merging
//! the same members. Phoenix.Tracker.State: 271-300 ms at 100k + 100k.

use crdts::CvRDT;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use presence_benches::{orswot_replica, FULL_MERGE_SIZES};
use presence_core::fixtures::{self, size_label};

fn full_merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_merge");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for size in FULL_MERGE_SIZES {
        let (a, b) = fixtures::disjoint_pair(size);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(BenchmarkId::from_parameter(size_label(size)), |bench| {
            bench.iter_batched_ref(|| a.clone(), |state| state.merge(&b), BatchSize::PerIteration)
        });
    }
    group.finish();
}

fn full_merge_orswot(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_merge_orswot");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for size in FULL_MERGE_SIZES {
        let a = orswot_replica("a", size);
        let b = orswot_replica("b", size);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(BenchmarkId::from_parameter(size_label(size)), |bench| {
            // Orswot::merge consumes its argument: both clones are set-up.
            bench.iter_batched_ref(
                || (a.clone(), b.clone()),
                |(set, other)| set.merge(std::mem::take(other)),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(presence_benches::WARM_UP).measurement_time(presence_benches::MEASUREMENT);
    targets = full_merge, full_merge_orswot
}
criterion_main!(benches);

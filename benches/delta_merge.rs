//! Merging one 100-operation delta (33 joins, 33 leaves, 34 updates) into a
//! state of N entries, after churn has replaced every entry the state started
//! with. The cost must follow the delta, not the state: this
//! curve must stay flat. Phoenix, into 200,000 entries: 60 ms.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use presence_benches::DELTA_MERGE_SIZES;
use presence_core::fixtures::{size_label, DeltaStream, DELTA_OPS};

fn delta_merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("delta_merge");
    group.throughput(Throughput::Elements(DELTA_OPS as u64));
    for size in DELTA_MERGE_SIZES {
        let (mut stream, mut receiver) = DeltaStream::new(size);
        stream.churn(&mut receiver);
        group.bench_function(BenchmarkId::from_parameter(size_label(size)), |bench| {
            // Each delta is made and then merged at once, as a node merges a
            // heartbeat it has just decoded; deltas stay consecutive, so every
            // one applies. Deltas and diffs are freed outside the timed region.
            // (Batches of ten made first and merged after read 40-55% higher:
            // the cost here is where the data sits in the caches.)
            bench.iter_batched_ref(
                || stream.next_delta(),
                |delta| receiver.merge_delta(delta).expect("consecutive deltas connect"),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(presence_benches::WARM_UP).measurement_time(presence_benches::MEASUREMENT);
    targets = delta_merge
}
criterion_main!(benches);

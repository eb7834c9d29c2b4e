//! Merging one 100-operation delta (34 joins, 33 leaves, 33 updates) into a
//! state of N entries. The cost must follow the delta, not the state: this
//! curve must stay flat. Phoenix, into 200,000 entries: 60 ms.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use presence_benches::{size_label, DELTA_MERGE_SIZES};
use presence_core::workload::{DeltaStream, DELTA_OPS};

fn delta_merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("delta_merge");
    group.throughput(Throughput::Elements(DELTA_OPS as u64));
    for size in DELTA_MERGE_SIZES {
        let (mut stream, mut receiver) = DeltaStream::new(size);
        group.bench_function(BenchmarkId::from_parameter(size_label(size)), |bench| {
            // Criterion builds a batch of inputs in order, then merges them in
            // order: the deltas stay consecutive, so every one applies.
            bench.iter_batched(
                || stream.next_delta(),
                |delta| receiver.merge_delta(&delta).expect("consecutive deltas connect"),
                BatchSize::SmallInput,
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

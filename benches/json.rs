//! The wire format: encoding a 100,000-entry state to JSON, and decoding it
//! with full validation, in bytes per second. Targets: encode 300 MB/s,
//! decode 150 MB/s.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use presence_core::{fixtures, Snapshot};

const SIZE: usize = 100_000;

fn json(c: &mut Criterion) {
    let state = fixtures::replica("a", SIZE);
    let bytes = state.to_json();
    let mut group = c.benchmark_group("json");
    group.sampling_mode(SamplingMode::Flat).sample_size(20);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    // Freeing the output is the caller's business, not the codec's.
    group.bench_function("encode_100k", |bench| {
        bench.iter_with_large_drop(|| state.to_json())
    });
    group.bench_function("decode_100k", |bench| {
        bench.iter_with_large_drop(|| Snapshot::from_json(&bytes).expect("own encoding decodes"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(presence_benches::WARM_UP).measurement_time(presence_benches::MEASUREMENT);
    targets = json
}
criterion_main!(benches);

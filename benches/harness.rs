//! The harness's own speed: simulator events per second on the default
//! swarm preset, and stateright unique states per second on the CRDT and
//! protocol models (single-thread DFS, so figures compare across machines
//! with different core counts).

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use presence_model::crdt::CrdtModelCfg;
use presence_model::protocol::ProtocolModelCfg;
use stateright::{Checker, Model};

/// Swarm seeds per iteration: enough to mix cluster sizes and fault kinds.
const SEEDS: std::ops::Range<u64> = 1..11;

fn simulator(c: &mut Criterion) {
    let scenarios: Vec<_> = SEEDS
        .map(|seed| (presence_sim::swarm::draw(seed), seed))
        .collect();
    let run_all = || -> u64 {
        scenarios
            .iter()
            .map(|(scenario, seed)| {
                let report = presence_sim::world::run(scenario, *seed, false);
                assert!(report.verdict.passed(), "swarm seed {seed} passes");
                report.events
            })
            .sum()
    };
    let events = run_all();
    let mut group = c.benchmark_group("simulator");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.throughput(Throughput::Elements(events));
    group.bench_function("swarm_events", |bench| bench.iter(run_all));
    group.finish();
}

fn model_checking(c: &mut Criterion) {
    let crdt = CrdtModelCfg {
        replicas: 2,
        ops: 2,
        faults: 1,
        restarts: true,
    };
    let protocol = ProtocolModelCfg {
        nodes: 3,
        ticks: 1,
        crashes: 0,
        partitions: false,
        lossy: false,
        synchrony: None,
    };
    let crdt_states = crdt
        .into_model()
        .checker()
        .spawn_dfs()
        .join()
        .unique_state_count();
    let protocol_states = protocol
        .into_model()
        .checker()
        .spawn_dfs()
        .join()
        .unique_state_count();

    let mut group = c.benchmark_group("stateright");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.throughput(Throughput::Elements(crdt_states as u64));
    group.bench_function("crdt_states", |bench| {
        bench.iter(|| {
            crdt.into_model()
                .checker()
                .spawn_dfs()
                .join()
                .unique_state_count()
        })
    });
    group.throughput(Throughput::Elements(protocol_states as u64));
    group.bench_function("protocol_states", |bench| {
        bench.iter(|| {
            protocol
                .into_model()
                .checker()
                .spawn_dfs()
                .join()
                .unique_state_count()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(presence_benches::WARM_UP).measurement_time(presence_benches::MEASUREMENT);
    targets = simulator, model_checking
}
criterion_main!(benches);

//! Local operations on a replica whose topic `room:lobby` holds 10,000
//! presences: join, leave and update of one presence, and get_by_topic of
//! the whole topic.
// Timing a join apart from its matching leave needs a clock of our own.
#![allow(clippy::disallowed_types)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use presence_core::{ReplicaId, State};
use serde_json::json;

const TOPIC: &str = "room:lobby";
const SIZE: usize = 10_000;

fn lobby() -> State {
    let mut state = State::new(ReplicaId::new("node-a", 1));
    for i in 0..SIZE {
        state
            .join(
                &format!("pid:{i}"),
                TOPIC,
                &format!("user:{i}"),
                json!({"online_at": i}),
            )
            .expect("valid join");
    }
    state.take_delta();
    state
}

/// Joins (`timed_join`) or leaves (`!timed_join`) `iters` extra presences,
/// timing only that half; the other half restores the topic's size.
fn join_then_leave(state: &mut State, iters: u64, timed_join: bool) -> Duration {
    let names: Vec<(String, String)> = (0..iters)
        .map(|i| (format!("pid:x{i}"), format!("user:x{i}")))
        .collect();
    let join = |state: &mut State| {
        for (pid, key) in &names {
            state
                .join(pid, TOPIC, key, json!({"online_at": 0}))
                .expect("valid join");
        }
    };
    let leave = |state: &mut State| {
        for (pid, key) in &names {
            state.leave(pid, TOPIC, key);
        }
    };
    let elapsed = if timed_join {
        let start = Instant::now();
        join(state);
        let elapsed = start.elapsed();
        leave(state);
        elapsed
    } else {
        join(state);
        let start = Instant::now();
        leave(state);
        start.elapsed()
    };
    // The delta buffer would otherwise grow with every iteration.
    state.take_delta();
    elapsed
}

fn local_ops(c: &mut Criterion) {
    let mut state = lobby();
    let mut group = c.benchmark_group("local_ops_10k_topic");
    group.bench_function("join", |bench| {
        bench.iter_custom(|iters| join_then_leave(&mut state, iters, true))
    });
    group.bench_function("leave", |bench| {
        bench.iter_custom(|iters| join_then_leave(&mut state, iters, false))
    });
    let mut online_at = 0u64;
    group.bench_function("update", |bench| {
        bench.iter(|| {
            online_at += 1;
            let diff = state.update("pid:0", TOPIC, "user:0", json!({"online_at": online_at}));
            if online_at % 1_024 == 0 {
                state.take_delta();
            }
            diff
        })
    });
    assert_eq!(state.count_presences(TOPIC), SIZE, "the topic kept its size");
    group.bench_function("get_by_topic", |bench| bench.iter(|| state.get_by_topic(TOPIC)));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(presence_benches::WARM_UP).measurement_time(presence_benches::MEASUREMENT);
    targets = local_ops
}
criterion_main!(benches);

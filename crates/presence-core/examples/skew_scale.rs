//! The skewed workloads that a hot key, a user with many tabs or a pid on
//! every topic make, timed one figure a line, beside Phoenix's figures for
//! the same workloads (measured with phoenix_pubsub 2.2 on the same kind of
//! machine):
//!
//! ```text
//! cargo run --release -p presence-core --example skew_scale
//! ```
//!
//! Each figure is the median of five runs, each on a fresh state. The `skew`
//! criterion bench measures the same shapes at 100,000 and 1,000,000
//! entries with statistics.
#![allow(clippy::print_stdout, clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use presence_core::fixtures::{self, Shape};
use presence_core::{ReplicaId, Snapshot, State};
use serde_json::json;

const RUNS: usize = 5;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Median over [`RUNS`] of `timed` on what `setup` builds afresh each run.
fn time<T>(mut setup: impl FnMut() -> T, mut timed: impl FnMut(&mut T)) -> Duration {
    median(
        (0..RUNS)
            .map(|_| {
                let mut state = setup();
                let start = Instant::now();
                timed(&mut state);
                start.elapsed()
            })
            .collect(),
    )
}

fn joins(state: &mut State, shape: Shape, first: usize, count: usize) {
    fixtures::populate_shaped(state, shape, "a", first, count);
}

fn fresh() -> State {
    State::new(ReplicaId::new("node-a", 1))
}

fn line(name: &str, phoenix_ms: Option<f64>, took: Duration) {
    let ms = took.as_secs_f64() * 1e3;
    match phoenix_ms {
        Some(phoenix) => println!("{name:<58} {ms:>10.3} ms   (Phoenix {phoenix} ms)"),
        None => println!("{name:<58} {ms:>10.3} ms"),
    }
}

fn main() {
    // Distinct keys on one topic: the uniform names, all in one room.
    let distinct = time(fresh, |state| {
        for i in 0..10_000 {
            let key = format!("user:{i}");
            let pid = format!("pid:{i}");
            state
                .join(&pid, fixtures::ROOM, &key, json!({"i": i}))
                .expect("valid");
        }
    });
    line(
        "10,000 own joins of distinct keys on one topic",
        Some(40.0),
        distinct,
    );

    let one_key = time(fresh, |state| joins(state, Shape::OneKey, 0, 10_000));
    line(
        "10,000 own joins of distinct pids under one key",
        Some(49.0),
        one_key,
    );

    let one_key_50k = time(fresh, |state| joins(state, Shape::OneKey, 0, 50_000));
    line("50,000 own joins under one key", Some(308.0), one_key_50k);

    let mut hot = fresh();
    joins(&mut hot, Shape::OneKey, 0, 50_000);
    let (_, key, pid) = Shape::OneKey.names("a", 25_000);
    let leave = time(
        || hot.clone(),
        |state| {
            state.leave(&pid, fixtures::ROOM, &key);
        },
    );
    line("one leave under that key (50,000)", Some(0.05), leave);

    let everywhere = time(fresh, |state| joins(state, Shape::PidEverywhere, 0, 10_000));
    line(
        "one pid joined on 10,000 topics: the joins",
        Some(35.0),
        everywhere,
    );

    let mut subscribed = fresh();
    joins(&mut subscribed, Shape::PidEverywhere, 0, 10_000);
    let by_pid = time(
        || subscribed.clone(),
        |state| {
            state.leave_by_pid(&Shape::PidEverywhere.hottest_pid("a"));
        },
    );
    line("leave_by_pid of that pid", Some(1_597.0), by_pid);

    let mut lobby = fresh();
    for i in 0..10_000 {
        let key = format!("user:{i}");
        lobby
            .join(&format!("pid:{i}"), fixtures::ROOM, &key, json!({"i": i}))
            .expect("valid");
    }
    let get = time(
        || (),
        |()| {
            std::hint::black_box(lobby.get_by_topic(fixtures::ROOM));
        },
    );
    line(
        "get_by_topic of 10,000 presences with distinct keys",
        Some(1.65),
        get,
    );
    let count = time(
        || (),
        |()| {
            std::hint::black_box((
                lobby.count_presences(fixtures::ROOM),
                lobby.count_keys(fixtures::ROOM),
            ));
        },
    );
    line("count_presences and count_keys of that topic", None, count);

    let million = fixtures::replica_shaped(Shape::OneKey, "b", 1_000_000);
    let snapshot = Snapshot::from_json(&million.to_json()).expect("own encoding decodes");
    let merge = time(fresh, |state| {
        state.merge_snapshot(&snapshot);
    });
    line(
        "merge_snapshot of 1,000,000 under one key into a fresh peer",
        None,
        merge,
    );
}

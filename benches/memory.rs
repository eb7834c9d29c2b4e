//! Memory per entry at 1,000,000 entries, metadata excluded (every meta is
//! `{}`, which allocates nothing): what the allocator holds for the state
//! and every index the queries need. Not a criterion bench (criterion times,
//! it does not weigh): it counts live bytes through a wrapping allocator and
//! writes `presence-memory.json` beside criterion's output for
//! `presence report`.
#![allow(clippy::print_stdout)]

use std::alloc::System;
use std::path::PathBuf;

use cap::Cap;
use presence_core::fixtures::Shape;
use presence_core::{ReplicaId, State};
use serde_json::json;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const SIZE: usize = 1_000_000;

/// Replica `a` with `SIZE` entries in `shape` (the uniform shape is the
/// first wave's workload), every meta `{}`.
fn own_replica_shaped(shape: Shape) -> State {
    let mut state = State::new(ReplicaId::new("node-a", 1));
    for i in 0..SIZE {
        let (topic, key, pid) = shape.names("a", i);
        state.join(&pid, &topic, &key, json!({})).expect("valid join");
    }
    state.take_delta();
    state
}

fn own_replica() -> State {
    own_replica_shaped(Shape::Uniform)
}

/// Live bytes that `build` leaves behind, per entry.
fn bytes_per_entry<T>(build: impl FnOnce() -> T) -> (T, f64) {
    let before = ALLOCATOR.allocated();
    let value = build();
    let after = ALLOCATOR.allocated();
    (value, (after - before) as f64 / SIZE as f64)
}

/// Where criterion writes, as criterion finds it (`$CRITERION_HOME`, then
/// `$CARGO_TARGET_DIR/criterion`, then the workspace's `target/criterion`).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

fn main() {
    // `cargo test --benches` runs bench binaries with no `--bench`: nothing
    // to weigh then.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let baseline = ALLOCATOR.allocated();
    let (own, own_bytes) = bytes_per_entry(own_replica);
    // A peer's copy of the same replica, with the indexes of a foreign log.
    // The origin is dropped afterwards, so that what the two share is
    // counted once, as the peer's.
    let mut peer = State::new(ReplicaId::new("node-p", 1));
    peer.merge(&own);
    drop(own);
    let peer_bytes = ALLOCATOR.allocated().saturating_sub(baseline) as f64 / SIZE as f64;
    drop(peer);
    let (_orswot, orswot_bytes) = bytes_per_entry(|| presence_benches::orswot_replica("a", SIZE));
    let mut skewed = serde_json::Map::new();
    for shape in [Shape::OneKey, Shape::Zipf, Shape::PidEverywhere] {
        let (state, bytes) = bytes_per_entry(|| own_replica_shaped(shape));
        drop(state);
        println!("  own replica, {:<14} {bytes:>8.1} bytes/entry", shape.label());
        skewed.insert(format!("{}_bytes_per_entry", shape.label()), json!(bytes));
    }

    let figures = json!({
        "entries": SIZE,
        "own_replica_bytes_per_entry": own_bytes,
        "peer_copy_bytes_per_entry": peer_bytes,
        "orswot_bytes_per_member": orswot_bytes,
        "skewed_own_replica": skewed,
    });
    println!("memory at {SIZE} entries, meta excluded:");
    println!("  own replica          {own_bytes:>8.1} bytes/entry");
    println!("  a peer's copy        {peer_bytes:>8.1} bytes/entry");
    println!("  crdts Orswot         {orswot_bytes:>8.1} bytes/member");
    let dir = criterion_dir();
    let path = dir.join("presence-memory.json");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(&figures).expect("plain JSON")));
    if let Err(error) = written {
        eprintln!("cannot write {}: {error}", path.display());
        std::process::exit(1);
    }
}

//! Decoding takes memory in proportion to the payload: every byte the
//! decoder allocates while reading a payload (an upper bound on its peak)
//! is bounded by a multiple of the payload's size, for the shapes an
//! attacker would pick (a context of many replicas with nothing else, many
//! small values, long names) and for a plain state.
//!
//! The multiple is not yet the 4x aimed at. Measured here (release): a
//! context of 100,000 replicas allocates 19.3x (17 bytes of JSON per
//! replica against a replica id, its log and its map node, about 300 bytes
//! in all with the decoder's transient copies); 20,000 small values 9.0x;
//! a delta of 20,000 joins 12.7x; 200-byte names under 3x. The bound below
//! (24x) guards against a return to the 45x an attack once found; the
//! figures are printed on failure.

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

use presence_core::{Delta, ReplicaId, Snapshot, State};
use serde_json::json;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated while decoding `payload` with `decode`, over its size.
fn allocated_per_byte<T, E: std::fmt::Debug>(payload: &[u8], decode: fn(&[u8]) -> Result<T, E>) -> f64 {
    let region = Region::new(GLOBAL);
    let decoded = decode(payload).expect("the payload decodes");
    let allocated = region.change().bytes_allocated;
    drop(decoded);
    allocated as f64 / payload.len() as f64
}

/// A state-shaped payload naming `replicas` replicas with a context and no
/// values: the shape that once took 45 times its size.
fn context_only(replicas: usize) -> Vec<u8> {
    let context: serde_json::Map<String, serde_json::Value> = (0..replicas)
        .map(|index| (format!("r{index}@1"), json!(index + 1)))
        .collect();
    let mut payload = serde_json::to_value(
        serde_json::from_slice::<serde_json::Value>(&State::new(ReplicaId::new("a", 1)).to_json()).unwrap(),
    )
    .unwrap();
    payload["context"] = context.into();
    serde_json::to_vec(&payload).unwrap()
}

fn state_with(values: usize, name_len: usize) -> State {
    let mut state = State::new(ReplicaId::new("a", 1));
    let long = "x".repeat(name_len);
    for index in 0..values {
        state
            .join(
                &format!("p{index}{long}"),
                "room",
                &format!("k{index}{long}"),
                json!({"n": index}),
            )
            .unwrap();
    }
    state
}

/// A decoder, its result dropped.
type Decode = fn(&[u8]) -> Result<(), String>;

#[test]
fn decoding_allocates_a_bounded_multiple_of_the_payload() {
    let mut plain = state_with(20_000, 0);
    let mut long_names = state_with(2_000, 200);
    let cases: Vec<(&str, Vec<u8>, Decode)> = vec![
        ("a context of 100,000 replicas", context_only(100_000), |bytes| {
            Snapshot::from_json(bytes).map(drop).map_err(|e| e.to_string())
        }),
        ("a state of 20,000 values", plain.to_json(), |bytes| {
            Snapshot::from_json(bytes).map(drop).map_err(|e| e.to_string())
        }),
        ("a state with 200-byte names", long_names.to_json(), |bytes| {
            Snapshot::from_json(bytes).map(drop).map_err(|e| e.to_string())
        }),
        ("a delta of 20,000 joins", plain.take_delta().to_json(), |bytes| {
            Delta::from_json(bytes).map(drop).map_err(|e| e.to_string())
        }),
        (
            "a delta with 200-byte names",
            long_names.take_delta().to_json(),
            |bytes| Delta::from_json(bytes).map(drop).map_err(|e| e.to_string()),
        ),
    ];
    let mut report = Vec::new();
    for (what, payload, decode) in &cases {
        let ratio = allocated_per_byte(payload, *decode);
        report.push(format!("{what}: {} bytes, {ratio:.2}x", payload.len()));
    }
    let worst = cases
        .iter()
        .map(|(_, payload, decode)| allocated_per_byte(payload, *decode))
        .fold(0.0_f64, f64::max);
    assert!(
        worst <= 24.0,
        "decoding allocates more than 24x:\n{}",
        report.join("\n")
    );
}

//! Fuzzing message decoding and frame opening with bolero, under plain
//! `cargo test` (see presence-core's tests/fuzz.rs for the knobs; the
//! longer run is `scripts/fuzz`).
//!
//! Properties: no bytes make `Message::from_json` or `Sealer::open` panic;
//! every message the encoder writes decodes back to itself; a sealed frame
//! with any one byte changed is refused.

use std::sync::Arc;

use bolero::check;
use presence_core::{ReplicaId, State};
use presence_tracker::{Message, Sealer, Secret, Transfer};
use serde_json::json;

/// Operations that build a state: (what, key, a number).
type Ops = Vec<(u8, u8, u64)>;

fn sealer() -> Sealer {
    let secret = Secret::from_text("the fuzzed cluster's secret").unwrap();
    Sealer::new(
        &secret,
        Some(["a", "b"].into_iter().map(Arc::from).collect()),
        60_000,
    )
}

#[test]
fn no_bytes_make_decoding_or_opening_panic() {
    let sealer = sealer();
    check!().for_each(|bytes: &[u8]| {
        let _ = Message::from_json(bytes);
        let _ = sealer.open(bytes, 1_000);
    });
}

/// Every kind of message, from a state built by `ops`.
fn messages_of(ops: &[(u8, u8, u64)], uptime_ms: u64) -> Vec<Message> {
    let mut state = State::new(ReplicaId::new("a", 1 + uptime_ms % 5));
    for &(what, key, number) in ops {
        let key = format!("k{}", key % 4);
        match what % 3 {
            0 => {
                let _ = state.join("p", "room", &key, json!({ "n": number }));
            }
            1 => {
                state.leave("p", "room", &key);
            }
            _ => {
                let _ = state.remove_down_replica(&ReplicaId::new("gone", number));
            }
        }
    }
    let from = state.replica().clone();
    let clocks = state.clocks();
    let snapshot = state.snapshot();
    let delta = state.take_delta();
    vec![
        Message::Heartbeat {
            from: from.clone(),
            clocks: clocks.clone(),
            delta: Some(delta.clone()),
            uptime_ms,
        },
        Message::TransferRequest {
            from: from.clone(),
            clocks,
            full: uptime_ms % 2 == 0,
            uptime_ms,
        },
        Message::TransferAck {
            from: from.clone(),
            transfer: Transfer::Delta(delta),
        },
        Message::TransferAck {
            from: from.clone(),
            transfer: Transfer::State(snapshot),
        },
        Message::GracefulPermdown { from },
    ]
}

#[test]
fn every_message_the_encoder_writes_reads_back() {
    check!()
        .with_type::<(Ops, u64)>()
        .for_each(|(ops, uptime_ms): &(Ops, u64)| {
            for message in messages_of(ops, *uptime_ms) {
                assert_eq!(Message::from_json(&message.to_json()).as_ref(), Ok(&message));
            }
        });
}

#[test]
fn a_sealed_frame_with_any_byte_changed_is_refused() {
    let sealer = sealer();
    check!()
        .with_type::<(Ops, u16, u8)>()
        .for_each(|(ops, at, flip): &(Ops, u16, u8)| {
            for message in messages_of(ops, 7) {
                let mut frame = sealer.seal(&message, 1_000);
                assert_eq!(sealer.open(&frame, 1_000).as_ref(), Ok(&message));
                let at = usize::from(*at) % frame.len();
                frame[at] ^= flip.max(&1);
                assert!(sealer.open(&frame, 1_000).is_err(), "byte {at} changed");
            }
        });
}

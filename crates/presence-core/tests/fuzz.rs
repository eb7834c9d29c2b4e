//! Fuzzing the decoders with bolero, under plain `cargo test` (its random
//! engine: one second per target unless `BOLERO_RANDOM_TEST_TIME_MS` or
//! `BOLERO_RANDOM_ITERATIONS` says otherwise; `BOLERO_RANDOM_SEED` replays a
//! run). The longer run is `scripts/fuzz`.
//!
//! Properties: decoding any bytes returns a value or a typed error, never a
//! panic; every state and delta the encoder writes decodes back to itself,
//! watermarks and clocks over the whole u64 range included; and an encoding
//! with one byte changed still decodes or errs, never panics.

use bolero::check;
use presence_core::{Delta, ReplicaId, Snapshot, State};
use serde_json::json;

/// Operations that build a state: (what, pid, key, a number).
type Ops = Vec<(u8, u8, u8, u64)>;

#[test]
fn decoding_any_bytes_never_panics() {
    check!().for_each(|bytes: &[u8]| {
        let _ = Snapshot::from_json(bytes);
        let _ = Delta::from_json(bytes);
    });
}

/// A state built by `ops`: (what, pid, key, a number for metas and
/// retired incarnations).
fn state_of(ops: &[(u8, u8, u8, u64)]) -> State {
    let mut state = State::new(ReplicaId::new("a", 1 + ops.len() as u64 % 3));
    for &(what, pid_at, key_at, number) in ops {
        let (pid, key) = (format!("p{}", pid_at % 4), format!("k{}", key_at % 4));
        match what % 4 {
            0 => {
                let _ = state.join(&pid, "room", &key, json!({ "n": number }));
            }
            1 => {
                state.leave(&pid, "room", &key);
            }
            2 => {
                let _ = state.update(&pid, "room", &key, json!({ "n": number, "s": "é\u{1F600}" }));
            }
            _ => {
                let _ = state.remove_down_replica(&ReplicaId::new(&format!("b{}", pid_at % 3), number));
            }
        }
    }
    state
}

#[test]
fn what_the_encoder_writes_the_decoder_reads_back() {
    check!().with_type::<Ops>().for_each(|ops: &Ops| {
        let mut state = state_of(ops);
        let snapshot = state.snapshot();
        assert_eq!(Snapshot::from_json(&snapshot.to_json()).as_ref(), Ok(&snapshot));
        let delta = state.take_delta();
        assert_eq!(Delta::from_json(&delta.to_json()).as_ref(), Ok(&delta));
    });
}

#[test]
fn an_encoding_with_one_byte_changed_never_panics() {
    check!()
        .with_type::<(Ops, u16, u8)>()
        .for_each(|(ops, at, byte): &(Ops, u16, u8)| {
            let mut state = state_of(ops);
            for mut bytes in [state.snapshot().to_json(), state.take_delta().to_json()] {
                let at = usize::from(*at) % bytes.len();
                bytes[at] = *byte;
                let _ = Snapshot::from_json(&bytes);
                let _ = Delta::from_json(&bytes);
            }
        });
}

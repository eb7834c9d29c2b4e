//! Presence as a CRDT: who is present on which topic, through which
//! connections, replicated across nodes with no coordinator.
//!
//! - [`single`]: single-node presence, a pure value (the seed's pure layer).
//! - [`State`]: one replica of a delta-state add-wins observed-remove set with
//!   a causal context, in the line of Phoenix's `Phoenix.Tracker.State`
//!   (layer 2). Every operation returns the exact [`Diff`] of the replica's
//!   view; merges of full states, [`Snapshot`]s and [`Delta`]s, and
//!   [`State::extract`] for peers that lag.
//! - [`ClientMirror`]: what Phoenix's JavaScript client does with the
//!   `presence_state` / `presence_diff` payloads (layer 4).
//! - [`wire`]: the validated JSON format of states and deltas.
//!
//! With the `inspect` feature (for checkers, models and benches; no product
//! needs it) the crate also has:
//!
//! - `invariants`: the invariants of `docs/invariants.md` as named check
//!   functions, and the one chain of safety checks every harness runs.
//! - `digest`: canonical hashing field by field, and under renamings of
//!   replicas, for model checkers.
//! - `fixtures`: the deterministic workloads that benches and examples
//!   measure.
//! - the inspection methods of [`State`] (`view_fingerprint`, `holds`,
//!   `is_observed`, `census_totals`, `check_structure`), in `inspect.rs`:
//!   the only way those modules read a state beyond its product queries.
//!
//! Where `impl State` lives, one file per concept: `state.rs` (the replica,
//! local operations, liveness, queries), `merge.rs` (merging full states,
//! snapshots and deltas, extracts), `wire.rs` (the JSON encoding),
//! `digest.rs` (canonical hashing) and `inspect.rs` (inspection).
//!
//! The core does no I/O, reads no clock and draws no randomness.
//!
//! # Example
//!
//! ```
//! use presence_core::{ClientMirror, ReplicaId, State};
//! use serde_json::json;
//!
//! let mut a = State::new(ReplicaId::new("node-a", 1));
//! let mut b = State::new(ReplicaId::new("node-b", 1));
//! a.join("pid-1", "room:lobby", "alice", json!({"device": "phone"})).unwrap();
//! b.join("pid-2", "room:lobby", "bob", json!({})).unwrap();
//!
//! // b catches up with a's change through a delta, as a heartbeat carries it.
//! let delta = a.take_delta();
//! let diff = b.merge_delta(&delta).unwrap();
//! assert_eq!(diff.joins.len(), 1);
//!
//! // A client of b keeps a mirror from b's diffs.
//! let mut mirror = ClientMirror::new();
//! mirror.apply(&diff);
//! assert_eq!(mirror.keys("room:lobby"), ["alice"]);
//!
//! // b believes a is down: a's presences are hidden and reported as leaves.
//! let diff = b.replica_down(a.replica());
//! mirror.apply(&diff);
//! assert_eq!(b.online_keys("room:lobby").len(), 1);
//! assert!(mirror.keys("room:lobby").is_empty());
//!
//! // States travel as JSON.
//! let payload = a.to_json();
//! let snapshot = presence_core::Snapshot::from_json(&payload).unwrap();
//! assert_eq!(snapshot.len(), 1);
//! ```

mod census;
pub mod delta;
pub mod diff;
#[cfg(feature = "inspect")]
pub mod digest;
pub mod entry;
#[cfg(feature = "inspect")]
pub mod fixtures;
pub mod hashing;
#[cfg(feature = "inspect")]
mod inspect;
#[cfg(feature = "inspect")]
pub mod invariants;
pub mod log;
pub mod merge;
pub mod mirror;
pub mod replica;
pub mod sabotage;
pub mod single;
pub mod state;
pub mod wire;
pub mod work;

mod index;

/// The README's example, compiled and run as a doctest so it cannot rot.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use delta::{Delta, DeltaError};
pub use diff::{
    is_rendering_of, presence_state, render_meta, Diff, PresenceDiff, PresenceMetas, PresenceState,
};
pub use entry::{Entry, EntryError, Meta, Presence, MAX_META_DEPTH, MAX_NAME_LEN};
pub use log::ReplicaLog;
pub use merge::{ReplicaLogs, Snapshot};
pub use mirror::ClientMirror;
pub use replica::{ReplicaId, Tag};
pub use state::{LocalError, RetireError, State, Status};
pub use wire::{DecodeError, DecodeLimits};

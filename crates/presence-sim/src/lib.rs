//! Deterministic simulation of presence-tracker nodes over a faulty network.
//!
//! A [`Scenario`] (one TOML file in `sims/`, or one drawn by [`swarm::draw`])
//! describes nodes, a workload, network behaviour and faults; [`run`] plays
//! it on virtual time from one `u64` seed and checks the invariants of
//! `docs/invariants.md` with the functions of `presence_core::invariants`.
//! The same scenario and seed give the same trace, byte for byte (its hash
//! is in every report).
//!
//! The simulator reads no clock and draws no randomness but from its seed:
//! every random choice comes from [`rng::SimRng`] (ChaCha8, pinned).
//!
//! ```
//! use presence_sim::{run, Scenario};
//! use std::path::Path;
//!
//! let scenario = Scenario::parse(r#"
//!     name = "two-nodes"
//!     seeds = [7]
//!     nodes = 2
//!     fault_phase_ms = 20000
//!     liveness_bound_ms = 60000
//! "#, Path::new("inline.toml")).unwrap();
//! let report = run(&scenario, 7, false);
//! assert!(report.verdict.passed(), "{}", report.verdict);
//! assert_eq!(run(&scenario, 7, false).trace.hash(), report.trace.hash());
//! ```

pub mod distribution;
pub mod network;
pub mod rng;
pub mod scenario;
pub mod shrink;
pub mod svg;
pub mod swarm;
pub mod timeline;
pub mod trace;
pub mod world;

pub use scenario::{Fault, Scenario, ScenarioError};
pub use world::{run, RunReport, Verdict};

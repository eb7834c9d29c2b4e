//! Exhaustive model checking of the presence CRDT with stateright.
//!
//! The simulator samples huge runs; the model checker explores every
//! interleaving of a small cluster. Both judge the product with the same
//! functions, those of `presence_core::invariants`.
//!
//! ```
//! use presence_model::{crdt::CrdtModelCfg, property_names};
//! use stateright::{Checker, Expectation, Model};
//!
//! let checker = CrdtModelCfg { replicas: 2, ops: 1, faults: 0, restarts: false }
//!     .into_model()
//!     .checker()
//!     .spawn_dfs()
//!     .join();
//! for property in property_names(checker.model(), Expectation::Always) {
//!     checker.assert_no_discovery(property);
//! }
//! assert_eq!(checker.unique_state_count(), 12);
//! ```
//!
//! # Contents
//!
//! - [`crdt`]: replicas of `presence_core::State` exchanging full states
//!   and deltas. `crdt/mod.rs` is the model (bounds, state, actions,
//!   properties); `crdt/gossip.rs` what replicas send; `crdt/convergence.rs`
//!   how I2 is judged; `crdt/outcomes.rs` what the model remembers of local
//!   operations and deliveries; `crdt/symmetry.rs` its symmetry reduction.
//! - [`protocol`]: presence-tracker nodes as stateright actors over a
//!   faulty network, laid out the same way (`protocol/mod.rs`,
//!   `protocol/convergence.rs`, `protocol/outcomes.rs`,
//!   `protocol/symmetry.rs`), with `protocol/packet.rs` for a message in
//!   flight.
//! - `memo.rs`: the bounded tables both models remember outcomes in.
//! - `symmetry.rs`: renamings and the process-independent hasher both
//!   symmetry reductions use.
//! - [`breaks`] and [`shrink_counterexample`] (`shrink.rs`): counterexamples
//!   replayed before they are shown, and shortened.

pub mod crdt;
pub mod protocol;
pub mod walk;

mod memo;
mod shrink;
mod symmetry;

pub use shrink::{breaks, shrink_counterexample};

use stateright::{Expectation, Model};

/// The names of a model's properties of one kind, in the order the model
/// declares them: derived from [`Model::properties`], so no second list can
/// drift from it.
pub fn property_names<M: Model>(model: &M, expectation: Expectation) -> Vec<&'static str> {
    model
        .properties()
        .into_iter()
        .filter(|property| property.expectation == expectation)
        .map(|property| property.name)
        .collect()
}

/// I3 for one step of a replica from `before` (`None`: a fresh replica)
/// to `after`, with `check_no_resurrection`. What its watch holds after a
/// check is a function of the state checked alone, so the watch of
/// `before` is rebuilt from it rather than carried in every model state;
/// once a model state has broken I3 its later checks no longer matter,
/// since only the first violation is kept.
pub(crate) fn no_resurrection_since(
    before: Option<&presence_core::State>,
    after: &presence_core::State,
) -> Result<(), String> {
    use presence_core::invariants::{check_no_resurrection, ResurrectionWatch};
    let mut watch = ResurrectionWatch::default();
    if let Some(before) = before {
        // Nothing is observed yet, so nothing can be violated.
        let fresh = check_no_resurrection(&mut watch, before);
        debug_assert!(fresh.is_ok());
    }
    check_no_resurrection(&mut watch, after).map_err(|violation| violation.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watch rebuilt from the state before a step judges the step as a
    /// watch carried along would: a removal once observed stays removed.
    #[test]
    fn a_step_that_undoes_an_observed_removal_breaks_i3() {
        use presence_core::{ReplicaId, State};
        let mut joined = State::new(ReplicaId::new("n0", 1));
        joined
            .join("p", "room", "alice", serde_json::json!({}))
            .expect("a valid entry");
        let mut left = joined.clone();
        left.leave("p", "room", "alice");
        assert_eq!(no_resurrection_since(None, &joined), Ok(()));
        assert_eq!(no_resurrection_since(Some(&joined), &left), Ok(()));
        assert_eq!(no_resurrection_since(Some(&left), &left), Ok(()));
        let undone = no_resurrection_since(Some(&left), &joined).expect_err("alice is back");
        assert!(undone.contains("again"), "{undone}");
    }
}

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
//! assert_eq!(checker.unique_state_count(), 32);
//! ```

pub mod crdt;
pub mod protocol;

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

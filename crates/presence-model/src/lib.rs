//! Exhaustive model checking of the presence CRDT with stateright.
//!
//! The simulator samples huge runs; the model checker explores every
//! interleaving of a small cluster. Both judge the product with the same
//! functions, those of `presence_core::invariants`.
//!
//! ```
//! use presence_model::crdt::{CrdtModelCfg, ALWAYS};
//! use stateright::{Checker, Model};
//!
//! let checker = CrdtModelCfg { replicas: 2, ops: 1, faults: 0, restarts: false }
//!     .into_model()
//!     .checker()
//!     .spawn_dfs()
//!     .join();
//! for property in ALWAYS {
//!     checker.assert_no_discovery(property);
//! }
//! assert_eq!(checker.unique_state_count(), 43);
//! ```

pub mod crdt;
pub mod protocol;

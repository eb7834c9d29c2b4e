//! How a run ended, and what it reports.

use presence_core::invariants::Invariant;

use crate::trace::Trace;

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held and the replicas converged.
    Pass {
        /// Virtual time the liveness phase took to converge.
        converged_after_ms: u64,
    },
    /// A safety invariant broke.
    Violation {
        /// Which one.
        invariant: Invariant,
        /// When.
        at_ms: u64,
        /// Where.
        node: usize,
        /// What was found.
        detail: String,
    },
    /// The replicas did not converge within the liveness bound (I2).
    NoConvergence {
        /// When the bound ran out.
        at_ms: u64,
        /// What still differed.
        detail: String,
    },
    /// The harness could not go on judging the run: a message the product
    /// encoded did not decode. That is a defect (the encoder wrote what the
    /// decoder cannot read), but of no invariant of the view.
    HarnessError {
        /// When.
        at_ms: u64,
        /// The receiving node.
        node: usize,
        /// What failed.
        detail: String,
    },
}

impl Verdict {
    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        matches!(self, Self::Pass { .. })
    }

    /// The invariant at fault, if any (`I2` for no convergence).
    pub fn invariant(&self) -> Option<Invariant> {
        match self {
            Self::Pass { .. } => None,
            Self::Violation { invariant, .. } => Some(*invariant),
            Self::NoConvergence { .. } => Some(Invariant::Convergence),
            Self::HarnessError { .. } => None,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pass { converged_after_ms } => {
                write!(f, "pass (converged {converged_after_ms} ms after heal)")
            }
            Self::Violation {
                invariant,
                at_ms,
                node,
                detail,
            } => write!(
                f,
                "{} {} violated at {at_ms} ms on node {node}: {detail}",
                invariant.id(),
                invariant.name()
            ),
            Self::HarnessError { at_ms, node, detail } => {
                write!(f, "harness error at {at_ms} ms on node {node}: {detail}")
            }
            Self::NoConvergence { at_ms, detail } => {
                write!(
                    f,
                    "I2 convergence violated: not converged by {at_ms} ms: {detail}"
                )
            }
        }
    }
}

/// What a run did and how it ended.
#[derive(Debug)]
pub struct RunReport {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Virtual time at the end.
    pub virtual_ms: u64,
    /// Events processed.
    pub events: u64,
    /// Messages sent (before loss).
    pub messages: u64,
    /// Client operations performed.
    pub ops: u64,
    /// How it ended.
    pub verdict: Verdict,
    /// The trace: its hash always, its events when asked for.
    pub trace: Trace,
    /// How often the run reached each coverage mark, in the order of
    /// `presence_tracker::marks::Mark::ALL`.
    pub marks: presence_tracker::marks::Counts,
}

//! Shrinking: reduce a failing run (fewer faults, nodes, operations, a
//! shorter fault phase, a calmer network) to a small run that still fails
//! the same invariant, so a person can read what went wrong.

use crate::scenario::Scenario;
use crate::world::{run, Verdict};

/// A shrunk failing run.
#[derive(Debug)]
pub struct Shrunk {
    /// The smallest scenario found that still fails.
    pub scenario: Scenario,
    /// The seed (unchanged).
    pub seed: u64,
    /// How that scenario fails.
    pub verdict: Verdict,
    /// Runs tried.
    pub attempts: usize,
}

/// Simpler variants of `scenario`, most promising first.
fn candidates(scenario: &Scenario, ops_done: u64) -> Vec<Scenario> {
    let mut out = Vec::new();
    let mut push = |change: &dyn Fn(&mut Scenario)| {
        let mut candidate = scenario.clone();
        change(&mut candidate);
        if candidate != *scenario && candidate.validate().is_ok() {
            out.push(candidate);
        }
    };
    push(&|s| s.random_faults.interval_ms = 0);
    for index in 0..scenario.faults.len() {
        push(&|s| {
            s.faults.remove(index);
        });
    }
    push(&|s| {
        let last = s.nodes - 1;
        if s.faults.iter().all(|fault| !fault.nodes().contains(&last)) {
            s.nodes = last;
        }
    });
    push(&|s| s.workload.max_ops = Some(ops_done / 2));
    push(&|s| s.workload.max_ops = Some(ops_done.saturating_sub(1)));
    push(&|s| {
        let half = s.fault_phase_ms / 2;
        if s.faults.iter().all(|fault| fault.at_ms() <= half) {
            s.fault_phase_ms = half;
        }
    });
    push(&|s| s.network.loss = 0.0);
    push(&|s| s.network.duplicate = 0.0);
    push(&|s| s.network.reorder = 0.0);
    push(&|s| s.workload.clients_per_node = (s.workload.clients_per_node / 2).max(1));
    push(&|s| s.workload.initial_presences_per_node /= 2);
    out
}

/// Shrinks the failing run `(scenario, seed)` within `budget` runs.
/// Returns `None` if it does not fail.
pub fn shrink(scenario: &Scenario, seed: u64, budget: usize) -> Option<Shrunk> {
    let first = run(scenario, seed, false);
    let target = first.verdict.invariant()?;
    let mut best = scenario.clone();
    let mut best_verdict = first.verdict;
    let mut ops_done = first.ops;
    let mut attempts = 1;
    'improve: while attempts < budget {
        for candidate in candidates(&best, ops_done) {
            if attempts >= budget {
                break 'improve;
            }
            attempts += 1;
            let report = run(&candidate, seed, false);
            if report.verdict.invariant() == Some(target) {
                best = candidate;
                best_verdict = report.verdict;
                ops_done = report.ops;
                continue 'improve;
            }
        }
        break;
    }
    best.name = format!("{}-shrunk", scenario.name);
    best.seeds = vec![seed];
    Some(Shrunk {
        scenario: best,
        seed,
        verdict: best_verdict,
        attempts,
    })
}

//! Safety checks after every step of a node, and the liveness phase that
//! judges convergence (I2) once everything heals.

use presence_core::invariants::{
    check_clouds_empty, check_convergence, check_mirror_matches, check_mirror_matches_tag, check_safety,
    check_view_fingerprint, Invariant, MemoryBounds, SafetyInputs, Violation,
};
use presence_tracker::checks::{check_node_forgets, check_timeliness};
use presence_tracker::{Config, Node, PeerStatus};

use super::{Event, Phase, Verdict, World};
use crate::scenario::Scenario;
use crate::trace::TraceEvent;

impl World {
    /// The safety checks on one node after one step: I1 by fingerprint
    /// always (O(replicas)), and every `checks.full_every_steps` steps I1
    /// in detail (the mirror against the view) and I3-I7.
    ///
    /// The detailed checks judge what changed since they last passed:
    ///
    /// - The mirror is compared on the presences the diffs it applied since
    ///   named (every topic when the fingerprint differs, or at a node's
    ///   first check). It changes only by those diffs' refs, and the view
    ///   shows no other tag differently because the fingerprint of the
    ///   whole view still equals the sum of the diffs' (and an entry never
    ///   changes under its tag).
    /// - I3-I7 are skipped, as already passed, when the state's revision is
    ///   the one they passed at and no diff came since (most steps: a tick
    ///   that sends nothing, a heartbeat taken in without touching the
    ///   state). Their other inputs cannot turn a pass into a failure
    ///   meanwhile: the history's joins and issued clocks only grow, and the
    ///   live joins of this node's replica change only by its own
    ///   operations, which revise its state.
    ///
    /// The checks that read the node or the clock (what a departed node
    /// left behind) run every time.
    pub(super) fn check_node(&mut self, index: usize) {
        if self.verdict.is_some() {
            return;
        }
        let full_every = self.scenario.checks.full_every_steps;
        let sim_node = &mut self.nodes[index];
        let Some(node) = &sim_node.node else {
            return;
        };
        sim_node.steps += 1;
        let state = node.state();
        let fingerprint = check_view_fingerprint(sim_node.diffs_fingerprint, state);
        if fingerprint.is_ok() && sim_node.steps % full_every != 0 {
            return;
        }
        let first = sim_node.checked_revision.is_none();
        let unchanged = fingerprint.is_ok()
            && sim_node.checked_revision == Some(state.revision())
            && sim_node.diffed.is_empty();
        let mut result = Ok(());
        if !unchanged {
            // The mirror comparison names the topic and key that differ.
            result = if fingerprint.is_err() || first {
                check_mirror_matches(&sim_node.mirror, state)
            } else {
                sim_node
                    .diffed
                    .values()
                    .try_for_each(|named| check_mirror_matches_tag(&sim_node.mirror, state, named))
            };
            let mut inputs = SafetyInputs {
                diffs_fingerprint: sim_node.diffs_fingerprint,
                watch: Some(&mut sim_node.watch),
                history: &self.history,
                own_history: &self.history,
                memory: Some(MemoryBounds::default()),
            };
            result = result.and_then(|()| check_safety(state, &mut inputs));
            if result.is_ok() {
                sim_node.checked_revision = Some(state.revision());
                sim_node.diffed.clear();
            }
        }
        result = result.and_then(|()| check_node_forgets(node));
        if result.is_ok() {
            result = self.check_departed_forgotten(index);
        }
        if let Err(violation) = result {
            self.violate(index, violation);
        }
    }

    /// I7 per departed base, from the world's truth: a node keeps a
    /// departed node's retirement watermark no longer than
    /// [`forgotten_within_ms`] after it left.
    fn check_departed_forgotten(&self, index: usize) -> Result<(), Violation> {
        let Some(node) = &self.nodes[index].node else {
            return Ok(());
        };
        let within_ms = self.forgotten_within_ms;
        for base in node.state().retired().keys() {
            let Some(departed_ms) = super::node_index_of_base(base)
                .and_then(|index| self.nodes.get(index))
                .and_then(|sim_node| sim_node.departed_at_ms)
            else {
                continue;
            };
            if self.now_ms > departed_ms.saturating_add(within_ms) {
                return Err(Violation {
                    invariant: Invariant::BoundedMemory,
                    detail: format!(
                        "{} still keeps the watermark of {base}, which departed at {departed_ms} ms, \
                         {} ms later (past {within_ms} ms)",
                        node.replica(),
                        self.now_ms - departed_ms
                    ),
                });
            }
        }
        Ok(())
    }

    /// I10 on node `index` right after its tick: on the clock it was
    /// given, no silent peer is overdue; and in true time, the node itself
    /// is heard, broadcasting at least every `max_silent_periods + 1`
    /// broadcast periods (each stretched by the clock's worst drift and a
    /// tick), whatever its clock did.
    pub(super) fn check_timeliness(&mut self, index: usize) {
        let Some(node) = &self.nodes[index].node else {
            return;
        };
        let mut result = check_timeliness(node, self.node_now(index));
        let periods = u64::from(self.config.max_silent_periods) + 1;
        let drift = 1.0 + self.scenario.clock.max_drift_ppm as f64 / 1e6;
        // Each period starts at the first tick after the last one ended, so
        // a period lasts up to a tick longer.
        let period_ms = (self.config.broadcast_period_ms as f64 * drift) as u64 + self.tick_ms;
        let mute_after_ms = periods * period_ms + self.tick_ms;
        let silent_ms = self.now_ms - self.nodes[index].last_spoke_ms.min(self.now_ms);
        if result.is_ok() && silent_ms > mute_after_ms {
            result = Err(Violation {
                invariant: Invariant::Timeliness,
                detail: format!(
                    "{} has not broadcast for {silent_ms} ms of true time, past {mute_after_ms} ms",
                    node.replica()
                ),
            });
        }
        if let Err(violation) = result {
            self.violate(index, violation);
        }
    }

    pub(super) fn violate(&mut self, node: usize, violation: Violation) {
        if self.verdict.is_none() {
            self.verdict = Some(Verdict::Violation {
                invariant: violation.invariant,
                at_ms: self.now_ms,
                node,
                detail: violation.detail,
            });
        }
    }

    pub(super) fn fail_liveness(&mut self, detail: String) {
        if self.verdict.is_none() {
            self.verdict = Some(Verdict::NoConvergence {
                at_ms: self.now_ms,
                detail,
            });
        }
    }

    /// Heals everything and stops the workload; from now on, replicas must
    /// converge within the liveness bound.
    pub(super) fn start_liveness(&mut self) {
        self.phase = Phase::Liveness {
            since_ms: self.now_ms,
        };
        self.links.heal();
        let held = self.links.unclog_all();
        self.release(held);
        for index in 0..self.nodes.len() {
            if self.nodes[index].paused {
                self.nodes[index].paused = false;
                self.nodes[index].last_spoke_ms = self.now_ms;
            }
            if self.nodes[index].node.is_none() {
                self.restart(index);
            }
        }
        self.trace.record(TraceEvent::Heal { t: self.now_ms });
        self.schedule(
            self.now_ms + self.config.broadcast_period_ms,
            Event::ConvergenceCheck,
        );
    }

    /// I2: every live node shows every other as up, every view equals the
    /// ground truth, and every cloud is empty.
    pub(super) fn check_convergence_now(&mut self) {
        let Phase::Liveness { since_ms } = self.phase else {
            return;
        };
        match self.divergence() {
            None => {
                self.verdict = Some(Verdict::Pass {
                    converged_after_ms: self.now_ms - since_ms,
                });
            }
            Some(detail) => {
                self.last_divergence = detail;
                self.schedule(
                    self.now_ms + self.config.broadcast_period_ms,
                    Event::ConvergenceCheck,
                );
            }
        }
    }

    pub(super) fn divergence(&self) -> Option<String> {
        let live: Vec<&Node> = self
            .nodes
            .iter()
            .filter_map(|sim_node| sim_node.node.as_ref())
            .collect();
        for node in &live {
            for other in &live {
                if node.replica() == other.replica() {
                    continue;
                }
                let up = node
                    .peers()
                    .get(other.replica())
                    .is_some_and(|peer| peer.status == PeerStatus::Up);
                if !up {
                    return Some(format!(
                        "{} does not show {} as up",
                        node.replica(),
                        other.replica()
                    ));
                }
            }
        }
        let truth = self.history.live_view();
        if let Err(violation) = check_convergence(live.iter().map(|node| node.state()), &truth) {
            return Some(violation.detail);
        }
        live.iter()
            .find_map(|node| check_clouds_empty(node.state()).err())
            .map(|violation| violation.detail)
    }
}

/// How long after a node departs for good every other node may still keep
/// its retirement watermark: the time to permdown it (twice over: once to
/// notice, once more for a peer that still named it to be permdowned or
/// heard again), plus the retirement memory stretched by the worst drift,
/// plus what forgetting tolerates of delays and jumps, plus a few
/// heartbeats for peers' clocks to show the base gone.
pub(super) fn forgotten_within_ms(scenario: &Scenario, config: &Config) -> u64 {
    let drift = 1.0 + 2.0 * scenario.clock.max_drift_ppm as f64 / 1e6;
    let memory_ms = (config.retirement_memory_ms as f64 * drift) as u64;
    let heartbeats_ms = (u64::from(config.max_silent_periods) + 2) * config.broadcast_period_ms;
    2 * config.permdown_period_ms
        + memory_ms
        + scenario.forgetting_tolerates_ms()
        + 2 * config.down_period_ms
        + heartbeats_ms
}

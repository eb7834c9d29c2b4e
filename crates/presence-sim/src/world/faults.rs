//! Faults: scheduled ones from the scenario, and random ones drawn from its
//! rates, each paired with the fault that ends it.

use std::collections::BTreeSet;

use presence_tracker::Input;

use super::{Event, Phase, SimNode, World};
use crate::scenario::{Fault, RandomFaults};
use crate::trace::TraceEvent;

impl World {
    pub(super) fn apply_fault(&mut self, fault: &Fault) {
        let nodes = self.nodes.len();
        let what = match fault {
            Fault::Isolate { nodes: group, .. } => {
                self.links.split(nodes, std::slice::from_ref(group));
                format!("isolate {group:?}")
            }
            Fault::Split { groups, .. } => {
                self.links.split(nodes, groups);
                format!("split {groups:?}")
            }
            Fault::OneWay { from, to, .. } => {
                self.links.cut(*from, *to);
                format!("one-way cut {from}->{to}")
            }
            Fault::Cut { a, b, .. } => {
                self.links.cut_both(*a, *b);
                format!("cut {a}<->{b}")
            }
            Fault::Heal { .. } => {
                self.links.heal();
                let held = self.links.unclog_all();
                self.release(held);
                "heal".to_owned()
            }
            Fault::Clog { a, b, .. } => {
                self.links.clog(*a, *b);
                format!("clog {a}->{b}")
            }
            Fault::Unclog { a, b, .. } => {
                let held = self.links.unclog(*a, *b);
                self.release(held);
                format!("unclog {a}->{b}")
            }
            Fault::Crash { node, .. } => {
                self.crash(*node);
                format!("crash {node}")
            }
            Fault::Restart { node, .. } => {
                self.restart(*node);
                format!("restart {node}")
            }
            Fault::Pause { node, .. } => {
                self.nodes[*node].paused = self.nodes[*node].node.is_some();
                format!("pause {node}")
            }
            Fault::Resume { node, .. } => {
                self.nodes[*node].paused = false;
                self.nodes[*node].last_spoke_ms = self.now_ms;
                format!("resume {node}")
            }
            Fault::Shutdown { node, .. } => {
                self.shut_down(*node);
                format!("shutdown {node}")
            }
            Fault::Depart { node, graceful, .. } => {
                if *graceful {
                    self.shut_down(*node);
                } else {
                    self.crash(*node);
                }
                self.nodes[*node].departed_at_ms = Some(self.now_ms);
                format!("depart {node}{}", if *graceful { " (graceful)" } else { "" })
            }
            Fault::ClockJump { node, by_ms, .. } => {
                let clock = &mut self.nodes[*node].clock;
                clock.jumped_ms = clock.jumped_ms.saturating_add(*by_ms);
                format!("clock-jump {node} {by_ms:+} ms")
            }
        };
        self.trace.record(TraceEvent::Fault {
            t: self.now_ms,
            what,
            nodes: fault.nodes(),
        });
    }

    pub(super) fn crash(&mut self, index: usize) {
        let sim_node = &mut self.nodes[index];
        if let Some(node) = sim_node.node.take() {
            self.history.record_dead(node.replica());
        }
        sim_node.paused = false;
        sim_node.clients.iter_mut().for_each(BTreeSet::clear);
    }

    /// An orderly shutdown: a running node announces its permdown, then
    /// stops. A paused node is frozen and cannot announce anything, so it
    /// is stopped as by a kill; before, it was left as it was, and the
    /// `resume` already scheduled brought a node that had departed for good
    /// back to life (found by swarm seeds 332584, 748048 and 890856, as a
    /// departed base's watermark kept past its bound).
    fn shut_down(&mut self, index: usize) {
        if self.nodes[index].running() {
            self.step(index, Input::Shutdown, false);
        }
        self.crash(index);
    }

    /// Node `index` starts again as a new incarnation, unless it left for
    /// good.
    pub(super) fn restart(&mut self, index: usize) {
        if self.nodes[index].departed_at_ms.is_some() {
            return;
        }
        self.crash(index);
        let incarnation = self.nodes[index].incarnation + 1;
        let clients = self.scenario.workload.clients_per_node;
        let clock = self.nodes[index].clock;
        self.nodes[index] =
            SimNode::start(index, incarnation, &self.config, clock.read(self.now_ms), clients);
        self.nodes[index].clock = clock;
        self.nodes[index].last_spoke_ms = self.now_ms;
    }

    /// Draws one fault from the scenario's rates, applies it, schedules the
    /// fault that ends it, and schedules the next draw.
    pub(super) fn random_fault(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        let rates = self.scenario.random_faults.clone();
        let nodes = self.nodes.len();
        let total: u32 = RandomFault::ALL.iter().map(|kind| kind.weight(&rates)).sum();
        if total > 0 && nodes > 1 {
            let mut roll = self.fault_rng.below(total as usize) as u32;
            let kind = RandomFault::ALL
                .into_iter()
                .find(|kind| {
                    let weight = kind.weight(&rates);
                    let hit = roll < weight;
                    roll = roll.saturating_sub(weight);
                    hit
                })
                .expect("a roll below the total hits a weight");
            let node = self.fault_rng.below(nodes);
            let other = (node + 1 + self.fault_rng.below(nodes - 1)) % nodes;
            match kind {
                RandomFault::Partition => self.partition_then_heal(node, other),
                RandomFault::Crash => self.crash_then_restart(node),
                RandomFault::Pause => self.pause_then_resume(node),
                RandomFault::Clog => self.clog_then_unclog(node, other),
                RandomFault::Shutdown => self.shutdown_then_restart(node),
                RandomFault::Depart => self.depart_for_good(node),
                RandomFault::ClockJump => self.jump_clock(node),
                RandomFault::Forge => self.forge(node, other),
            }
        }
        let next = self.now_ms + 1 + self.fault_rng.exponential_ms(rates.interval_ms);
        self.schedule(next, Event::RandomFault);
    }

    /// A time after now, at least 200 ms and at most `most_ms` later.
    pub(super) fn later(&mut self, most_ms: u64) -> u64 {
        self.now_ms + self.fault_rng.between(200, most_ms.max(201))
    }

    /// One of five partitions (isolate `node`, a random split, a one-way cut
    /// from `node` to `other`, a cut both ways, or a heal), healed within
    /// three down periods.
    pub(super) fn partition_then_heal(&mut self, node: usize, other: usize) {
        let at_ms = self.now_ms;
        let nodes = self.nodes.len();
        let fault = match self.fault_rng.below(5) {
            0 => Fault::Isolate {
                at_ms,
                nodes: vec![node],
            },
            1 => {
                let group = (0..nodes).filter(|_| self.fault_rng.chance(0.5)).collect();
                Fault::Split {
                    at_ms,
                    groups: vec![group],
                }
            }
            2 => Fault::OneWay {
                at_ms,
                from: node,
                to: other,
            },
            3 => Fault::Cut {
                at_ms,
                a: node,
                b: other,
            },
            _ => Fault::Heal { at_ms },
        };
        self.apply_fault(&fault);
        let heal_at = self.later(3 * self.config.down_period_ms);
        self.schedule(heal_at, Event::Fault(Fault::Heal { at_ms: heal_at }));
    }

    /// Crashes `node`; it restarts within two down periods.
    pub(super) fn crash_then_restart(&mut self, node: usize) {
        self.apply_fault(&Fault::Crash {
            at_ms: self.now_ms,
            node,
        });
        let back = self.later(2 * self.config.down_period_ms);
        self.schedule(back, Event::Fault(Fault::Restart { at_ms: back, node }));
    }

    /// Freezes `node`; it resumes within two down periods.
    pub(super) fn pause_then_resume(&mut self, node: usize) {
        self.apply_fault(&Fault::Pause {
            at_ms: self.now_ms,
            node,
        });
        let back = self.later(2 * self.config.down_period_ms);
        self.schedule(back, Event::Fault(Fault::Resume { at_ms: back, node }));
    }

    /// Holds messages from `node` to `other`; released within a down period.
    pub(super) fn clog_then_unclog(&mut self, node: usize, other: usize) {
        self.apply_fault(&Fault::Clog {
            at_ms: self.now_ms,
            a: node,
            b: other,
        });
        let back = self.later(self.config.down_period_ms);
        self.schedule(
            back,
            Event::Fault(Fault::Unclog {
                at_ms: back,
                a: node,
                b: other,
            }),
        );
    }

    /// Shuts `node` down gracefully; it restarts within a down period.
    pub(super) fn shutdown_then_restart(&mut self, node: usize) {
        self.apply_fault(&Fault::Shutdown {
            at_ms: self.now_ms,
            node,
        });
        let back = self.later(self.config.down_period_ms);
        self.schedule(back, Event::Fault(Fault::Restart { at_ms: back, node }));
    }
}

impl World {
    /// Steps node `node`'s clock forward or back by up to
    /// `clock.max_jump_ms`.
    pub(super) fn jump_clock(&mut self, node: usize) {
        let most = self.scenario.clock.max_jump_ms.max(1);
        let magnitude = i64::try_from(self.fault_rng.between(1, most)).unwrap_or(i64::MAX);
        let by_ms = if self.fault_rng.chance(0.5) {
            -magnitude
        } else {
            magnitude
        };
        self.apply_fault(&Fault::ClockJump {
            at_ms: self.now_ms,
            node,
            by_ms,
        });
    }

    /// Node `node` leaves for good, by a crash or (half the time) an
    /// orderly shutdown, unless that would leave fewer than two nodes.
    pub(super) fn depart_for_good(&mut self, node: usize) {
        let staying = self
            .nodes
            .iter()
            .filter(|sim_node| sim_node.departed_at_ms.is_none())
            .count();
        if self.nodes[node].departed_at_ms.is_some() || staying <= 2 {
            return;
        }
        let graceful = self.fault_rng.chance(0.5);
        self.apply_fault(&Fault::Depart {
            at_ms: self.now_ms,
            node,
            graceful,
        });
    }
}

/// The kinds of random fault, each drawn with its weight in the scenario's
/// `random_faults`, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RandomFault {
    Partition,
    Crash,
    Pause,
    Clog,
    Shutdown,
    Depart,
    ClockJump,
    Forge,
}

impl RandomFault {
    const ALL: [RandomFault; 8] = [
        RandomFault::Partition,
        RandomFault::Crash,
        RandomFault::Pause,
        RandomFault::Clog,
        RandomFault::Shutdown,
        RandomFault::Depart,
        RandomFault::ClockJump,
        RandomFault::Forge,
    ];

    pub(super) fn weight(self, rates: &RandomFaults) -> u32 {
        match self {
            RandomFault::Partition => rates.partition,
            RandomFault::Crash => rates.crash,
            RandomFault::Pause => rates.pause,
            RandomFault::Clog => rates.clog,
            RandomFault::Shutdown => rates.shutdown,
            RandomFault::Depart => rates.depart,
            RandomFault::ClockJump => rates.clock_jump,
            RandomFault::Forge => rates.forge,
        }
    }
}

//! The clients: the presences each node starts with, and the operations
//! (track, untrack, update, untrack all) drawn during the fault phase.

use std::collections::BTreeSet;

use presence_tracker::Input;
use serde_json::json;

use super::{Event, Phase, World};
use crate::rng::SimRng;
use crate::trace::TraceEvent;

impl World {
    /// Tracks the scenario's initial presences on node `index`: client
    /// `i mod clients` each time, on a (topic, key) drawn at random among
    /// those that client does not track yet, so presences spread over every
    /// topic and key as a real population would.
    pub(super) fn preload(&mut self, index: usize) {
        let workload = self.scenario.workload.clone();
        for i in 0..workload.initial_presences_per_node {
            let client = i % workload.clients_per_node;
            // Bounded retries: validation guarantees room for every presence.
            for _attempt in 0..64 {
                let choice = self.pick_topic_and_key();
                if self.nodes[index].clients[client].insert(choice) {
                    self.client_op(index, "track", client, Some(choice));
                    break;
                }
            }
        }
    }

    pub(super) fn workload_op(&mut self, index: usize) {
        if self.phase != Phase::Faults {
            return;
        }
        let limit_reached = self.scenario.workload.max_ops.is_some_and(|max| self.ops >= max);
        if self.nodes[index].running() && !limit_reached {
            self.random_client_op(index);
        }
        let next = self.now_ms
            + 1
            + self
                .workload_rng
                .exponential_ms(self.scenario.workload.op_interval_ms);
        self.schedule(next, Event::Op(index));
    }

    /// A (topic, key) drawn by the workload's distributions.
    pub(super) fn pick_topic_and_key(&mut self) -> (usize, usize) {
        let topic = self.topic_picker.pick(&mut self.workload_rng);
        (topic, self.key_picker.pick(&mut self.workload_rng))
    }

    pub(super) fn random_client_op(&mut self, index: usize) {
        let workload = &self.scenario.workload;
        let client = self.workload_rng.below(workload.clients_per_node);
        let tracked = &self.nodes[index].clients[client];
        let roll = if tracked.is_empty() {
            0
        } else {
            self.workload_rng.below(10)
        };
        let pick =
            |rng: &mut SimRng, set: &BTreeSet<(usize, usize)>| set.iter().nth(rng.below(set.len())).copied();
        match roll {
            0..=3 => {
                let choice = self.pick_topic_and_key();
                if self.nodes[index].clients[client].insert(choice) {
                    self.client_op(index, "track", client, Some(choice));
                }
            }
            4..=6 => {
                let choice = pick(&mut self.workload_rng, tracked);
                if let Some(choice) = choice {
                    self.nodes[index].clients[client].remove(&choice);
                    self.client_op(index, "untrack", client, Some(choice));
                }
            }
            7..=8 => {
                let choice = pick(&mut self.workload_rng, tracked);
                self.client_op(index, "update", client, choice);
            }
            _ => {
                self.nodes[index].clients[client].clear();
                self.client_op(index, "untrack_all", client, None);
            }
        }
    }

    pub(super) fn client_op(
        &mut self,
        index: usize,
        action: &'static str,
        client: usize,
        target: Option<(usize, usize)>,
    ) {
        self.ops += 1;
        self.op_counter += 1;
        let pid = if self.scenario.workload.shared_pids {
            format!("c{client}")
        } else {
            format!("n{index}-c{client}")
        };
        let (topic, key) = target.map_or((String::new(), String::new()), |(topic, key)| {
            (format!("room:{topic}"), format!("user{key}"))
        });
        self.trace.record(TraceEvent::Op {
            t: self.now_ms,
            node: index,
            action,
            pid: pid.clone(),
            topic: topic.clone(),
            key: key.clone(),
        });
        let meta = json!({"client": client, "v": self.op_counter});
        let input = match action {
            "track" => Input::Track {
                pid,
                topic,
                key,
                meta,
            },
            "untrack" => Input::Untrack { pid, topic, key },
            "update" => Input::Update {
                pid,
                topic,
                key,
                meta,
            },
            _ => Input::UntrackAll { pid },
        };
        self.step(index, input, true);
    }
}

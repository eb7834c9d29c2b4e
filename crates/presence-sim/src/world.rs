//! The discrete-event simulation: nodes, clients, the network, faults, the
//! ground truth, and the checkers, on virtual time.
//!
//! A run has two phases. In the *fault phase* the workload runs and faults
//! are injected (scheduled and random). Then the *liveness phase* heals
//! everything (links, clogs, paused and crashed nodes), stops the workload
//! and the network's loss, duplication and reordering, and requires every
//! live replica to converge on the ground truth within the scenario's bound.
//! Safety checks (SPEC I1, I3-I7) run throughout; I2 is judged at the end.
//!
//! The world reads no clock and draws no randomness but from its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use presence_core::invariants::{
    check_bounded_memory, check_causal_sanity, check_clouds_empty, check_convergence, check_mirror_matches,
    check_no_resurrection, check_own_authority, check_provenance, check_view_fingerprint, History, Invariant,
    MemoryBounds, ResurrectionWatch, Violation,
};
use presence_core::{ClientMirror, ReplicaId};
use presence_tracker::{Config, Input, Message, Node, Output, PeerStatus, ReplicaEvent};
use serde_json::json;

use crate::distribution::Picker;
use crate::network::{Envelope, Links, Payload};
use crate::rng::SimRng;
use crate::scenario::{Fault, Scenario};
use crate::trace::{Trace, TraceEvent};

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
}

#[derive(Debug)]
enum Event {
    Tick(usize),
    Deliver(Envelope),
    Op(usize),
    Fault(Fault),
    RandomFault,
    Liveness,
    ConvergenceCheck,
}

#[derive(Debug)]
struct SimNode {
    node: Option<Node>,
    paused: bool,
    incarnation: u64,
    mirror: ClientMirror,
    watch: ResurrectionWatch,
    /// XOR of the fingerprints of every diff this incarnation emitted (I1).
    diffs_fingerprint: u64,
    /// Per client, the (topic, key) it tracks.
    clients: Vec<BTreeSet<(usize, usize)>>,
    steps: u64,
}

impl SimNode {
    /// Node `index` starting as `incarnation` at `now_ms`: fresh memory, a
    /// fresh client mirror, no client tracking anything.
    fn start(index: usize, incarnation: u64, config: &Config, now_ms: u64, clients: usize) -> Self {
        let id = node_id(index, incarnation);
        Self {
            node: Some(Node::new(id, config.clone(), now_ms).expect("validated config")),
            paused: false,
            incarnation,
            mirror: ClientMirror::new(),
            watch: ResurrectionWatch::default(),
            diffs_fingerprint: 0,
            clients: vec![BTreeSet::new(); clients],
            steps: 0,
        }
    }

    fn running(&self) -> bool {
        self.node.is_some() && !self.paused
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Faults,
    Liveness { since_ms: u64 },
}

/// One simulated run. Build with [`World::new`], then [`World::run`].
#[derive(Debug)]
pub struct World {
    scenario: Scenario,
    seed: u64,
    config: Config,
    tick_ms: u64,
    now_ms: u64,
    sequence: u64,
    queue: BTreeMap<(u64, u64), Event>,
    nodes: Vec<SimNode>,
    links: Links,
    network_rng: SimRng,
    workload_rng: SimRng,
    topic_picker: Picker,
    key_picker: Picker,
    fault_rng: SimRng,
    history: History,
    trace: Trace,
    phase: Phase,
    events: u64,
    messages: u64,
    ops: u64,
    op_counter: u64,
    verdict: Option<Verdict>,
    last_divergence: String,
}

/// The most events one run may process: a bound, never a hang.
const MAX_EVENTS: u64 = 50_000_000;

fn node_id(index: usize, incarnation: u64) -> ReplicaId {
    ReplicaId::new(&format!("n{index}"), incarnation)
}

fn node_index(replica: &ReplicaId) -> Option<usize> {
    replica.base().strip_prefix('n')?.parse().ok()
}

impl World {
    /// A world for `scenario` with `seed`; `keep_trace` keeps every event.
    pub fn new(scenario: &Scenario, seed: u64, keep_trace: bool) -> Self {
        let config = scenario.config();
        let nodes = (0..scenario.nodes)
            .map(|index| SimNode::start(index, 1, &config, 0, scenario.workload.clients_per_node))
            .collect();
        Self {
            tick_ms: (config.broadcast_period_ms / 5).max(1),
            config,
            scenario: scenario.clone(),
            seed,
            now_ms: 0,
            sequence: 0,
            queue: BTreeMap::new(),
            nodes,
            links: Links::new(scenario.network.queue_limit),
            network_rng: SimRng::fork(seed, "network"),
            workload_rng: SimRng::fork(seed, "workload"),
            topic_picker: Picker::new(scenario.workload.topic_distribution, scenario.workload.topics),
            key_picker: Picker::new(scenario.workload.key_distribution, scenario.workload.keys),
            fault_rng: SimRng::fork(seed, "faults"),
            history: History::new(),
            trace: Trace::new(keep_trace),
            phase: Phase::Faults,
            events: 0,
            messages: 0,
            ops: 0,
            op_counter: 0,
            verdict: None,
            last_divergence: String::new(),
        }
    }

    fn schedule(&mut self, at_ms: u64, event: Event) {
        self.sequence += 1;
        self.queue.insert((at_ms, self.sequence), event);
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> RunReport {
        self.start();
        let deadline = self.scenario.fault_phase_ms + self.scenario.liveness_bound_ms;
        while self.verdict.is_none() {
            let Some(((at_ms, _), event)) = self.queue.pop_first() else {
                self.fail_liveness("no events left".into());
                break;
            };
            if at_ms > deadline {
                self.now_ms = deadline;
                let detail = std::mem::take(&mut self.last_divergence);
                self.fail_liveness(detail);
                break;
            }
            self.now_ms = at_ms;
            self.events += 1;
            if self.events > MAX_EVENTS {
                self.fail_liveness(format!("event bound of {MAX_EVENTS} reached"));
                break;
            }
            self.process(event);
        }
        let verdict = self.verdict.take().expect("the loop ends with a verdict");
        self.trace.record(TraceEvent::End {
            t: self.now_ms,
            verdict: verdict.to_string(),
        });
        RunReport {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            virtual_ms: self.now_ms,
            events: self.events,
            messages: self.messages,
            ops: self.ops,
            verdict,
            trace: self.trace,
        }
    }

    fn start(&mut self) {
        for index in 0..self.nodes.len() {
            let offset = self.network_rng.between(1, self.tick_ms);
            self.schedule(offset, Event::Tick(index));
            let first_op = self
                .workload_rng
                .exponential_ms(self.scenario.workload.op_interval_ms);
            self.schedule(first_op, Event::Op(index));
            self.preload(index);
        }
        for fault in self.scenario.faults.clone() {
            self.schedule(fault.at_ms(), Event::Fault(fault));
        }
        if self.scenario.random_faults.interval_ms > 0 {
            let first = self
                .fault_rng
                .exponential_ms(self.scenario.random_faults.interval_ms);
            self.schedule(first, Event::RandomFault);
        }
        self.schedule(self.scenario.fault_phase_ms, Event::Liveness);
    }

    /// Tracks the scenario's initial presences on node `index`: client
    /// `i mod clients` each time, on a (topic, key) drawn at random among
    /// those that client does not track yet, so presences spread over every
    /// topic and key as a real population would.
    fn preload(&mut self, index: usize) {
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

    fn process(&mut self, event: Event) {
        match event {
            Event::Tick(index) => {
                if self.nodes[index].running() {
                    self.step(index, Input::Tick, false);
                }
                let next = self.now_ms + self.tick_ms;
                self.schedule(next, Event::Tick(index));
            }
            Event::Deliver(envelope) => self.deliver(envelope),
            Event::Op(index) => self.workload_op(index),
            Event::Fault(fault) => {
                if self.phase == Phase::Faults {
                    self.apply_fault(&fault);
                }
            }
            Event::RandomFault => self.random_fault(),
            Event::Liveness => self.start_liveness(),
            Event::ConvergenceCheck => self.check_convergence_now(),
        }
    }

    // ----- nodes ----------------------------------------------------------------------

    /// Feeds `input` to node `index` and carries out what it asks.
    fn step(&mut self, index: usize, input: Input, local: bool) {
        let now_ms = self.now_ms;
        let Some(node) = self.nodes[index].node.as_mut() else {
            return;
        };
        let outputs = match node.handle(input, now_ms) {
            Ok(outputs) => outputs,
            // The workload only asks what is valid; a stopped node refuses.
            Err(_) => return,
        };
        for output in outputs {
            match output {
                Output::Broadcast(message) => {
                    let message = Arc::new(message);
                    for to in 0..self.nodes.len() {
                        if to != index {
                            self.send(index, to, &message);
                        }
                    }
                }
                Output::Send { to, message } => {
                    if let Some(to) = node_index(&to).filter(|&to| to < self.nodes.len() && to != index) {
                        self.send(index, to, &Arc::new(message));
                    }
                }
                Output::Diff(diff) => {
                    self.nodes[index].diffs_fingerprint ^= diff.fingerprint();
                    self.nodes[index].mirror.apply(&diff);
                    self.trace.record_diff(now_ms, index, &diff);
                    if local {
                        let state = self.nodes[index].node.as_ref().expect("running").state();
                        if let Err(violation) = self.history.record_local(state, &diff) {
                            self.violate(index, violation);
                        }
                    }
                }
                Output::Event(event) => {
                    if let ReplicaEvent::Reincarnated { old, new } = &event {
                        self.nodes[index].incarnation = new.incarnation();
                        let state = self.nodes[index].node.as_ref().expect("running").state();
                        if let Err(violation) = self.history.record_reincarnation(old, state) {
                            self.violate(index, violation);
                        }
                    }
                    self.trace.record(TraceEvent::Replica {
                        t: now_ms,
                        node: index,
                        event: describe(&event),
                    });
                }
            }
        }
        self.check_node(index);
    }

    /// The safety checks on one node after one step: I1 by fingerprint
    /// always (O(replicas)); I1 on every topic, with details, and I3-I7 every
    /// `checks.full_every_steps` steps.
    fn check_node(&mut self, index: usize) {
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
        let mut result = Ok(());
        if fingerprint.is_err() || sim_node.steps % full_every == 0 {
            // The mirror comparison names the topic and key that differ.
            result = check_mirror_matches(&sim_node.mirror, state)
                .and(fingerprint)
                .and_then(|()| check_no_resurrection(&mut sim_node.watch, state))
                .and_then(|()| check_provenance(&self.history, state))
                .and_then(|()| check_own_authority(&self.history, state))
                .and_then(|()| check_causal_sanity(&self.history, state))
                .and_then(|()| check_bounded_memory(state, MemoryBounds::default()));
        }
        if let Err(violation) = result {
            self.violate(index, violation);
        }
    }

    fn violate(&mut self, node: usize, violation: Violation) {
        if self.verdict.is_none() {
            self.verdict = Some(Verdict::Violation {
                invariant: violation.invariant,
                at_ms: self.now_ms,
                node,
                detail: violation.detail,
            });
        }
    }

    fn fail_liveness(&mut self, detail: String) {
        if self.verdict.is_none() {
            self.verdict = Some(Verdict::NoConvergence {
                at_ms: self.now_ms,
                detail,
            });
        }
    }

    // ----- network --------------------------------------------------------------------

    fn send(&mut self, from: usize, to: usize, message: &Arc<Message>) {
        self.messages += 1;
        let kind = message.kind();
        let faulty = self.phase == Phase::Faults;
        let network = &self.scenario.network;
        let reason = if self.links.is_cut(from, to) {
            Some("cut")
        } else if faulty && self.network_rng.chance(network.loss) {
            Some("loss")
        } else {
            None
        };
        if let Some(reason) = reason {
            self.dropped(from, to, kind, reason);
            return;
        }
        let payload = if network.encode_messages {
            Payload::Bytes(Arc::from(message.to_json()))
        } else {
            Payload::Message(Arc::clone(message))
        };
        let envelope = Envelope {
            from,
            to,
            sent_ms: self.now_ms,
            kind,
            payload,
        };
        let copies = if faulty && self.network_rng.chance(network.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.transmit(envelope.clone());
        }
    }

    /// Records that a message from `from` to `to` was lost, and why.
    fn dropped(&mut self, from: usize, to: usize, kind: &'static str, reason: &'static str) {
        self.trace.record(TraceEvent::Drop {
            t: self.now_ms,
            from,
            to,
            msg: kind,
            reason,
        });
    }

    /// Puts a message on its link: held if clogged, else delivered after a
    /// drawn delay; dropped if the link's queue is full.
    fn transmit(&mut self, envelope: Envelope) {
        let (from, to, kind) = (envelope.from, envelope.to, envelope.kind);
        let accepted = if self.links.is_clogged(from, to) {
            self.links.hold(envelope.clone())
        } else {
            self.links.enqueue(from, to)
        };
        if !accepted {
            self.dropped(from, to, kind, "overflow");
            return;
        }
        if self.links.is_clogged(from, to) {
            return;
        }
        let network = &self.scenario.network;
        let mut delay = network.delay_min_ms + self.network_rng.exponential_ms(network.delay_mean_ms);
        if self.phase == Phase::Faults && self.network_rng.chance(network.reorder) {
            delay += self.network_rng.exponential_ms(network.reorder_delay_ms);
        }
        self.schedule(self.now_ms + delay, Event::Deliver(envelope));
    }

    fn release(&mut self, held: Vec<Envelope>) {
        for envelope in held {
            self.transmit(envelope);
        }
    }

    fn deliver(&mut self, envelope: Envelope) {
        let (from, to, kind) = (envelope.from, envelope.to, envelope.kind);
        self.links.dequeue(from, to);
        let reason = if self.links.is_cut(from, to) {
            Some("cut")
        } else if !self.nodes[to].running() {
            Some("down")
        } else {
            None
        };
        if let Some(reason) = reason {
            self.dropped(from, to, kind, reason);
            return;
        }
        let message = match envelope.payload {
            Payload::Message(message) => Message::clone(&message),
            Payload::Bytes(bytes) => match Message::from_json(&bytes) {
                Ok(message) => message,
                Err(error) => {
                    let violation = Violation {
                        invariant: Invariant::DiffExactness,
                        detail: format!("a {kind} message failed to decode: {error}"),
                    };
                    self.violate(to, violation);
                    return;
                }
            },
        };
        self.trace.record(TraceEvent::Deliver {
            t: self.now_ms,
            sent: envelope.sent_ms,
            from,
            to,
            msg: kind,
        });
        self.step(to, Input::Receive(message), false);
    }

    // ----- workload -------------------------------------------------------------------

    fn workload_op(&mut self, index: usize) {
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
    fn pick_topic_and_key(&mut self) -> (usize, usize) {
        let topic = self.topic_picker.pick(&mut self.workload_rng);
        (topic, self.key_picker.pick(&mut self.workload_rng))
    }

    fn random_client_op(&mut self, index: usize) {
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

    fn client_op(
        &mut self,
        index: usize,
        action: &'static str,
        client: usize,
        target: Option<(usize, usize)>,
    ) {
        self.ops += 1;
        self.op_counter += 1;
        let pid = format!("n{index}-c{client}");
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

    // ----- faults ---------------------------------------------------------------------

    fn apply_fault(&mut self, fault: &Fault) {
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
                format!("resume {node}")
            }
            Fault::Shutdown { node, .. } => {
                if self.nodes[*node].running() {
                    self.step(*node, Input::Shutdown, false);
                    self.crash(*node);
                }
                format!("shutdown {node}")
            }
        };
        self.trace.record(TraceEvent::Fault {
            t: self.now_ms,
            what,
            nodes: fault.nodes(),
        });
    }

    fn crash(&mut self, index: usize) {
        let sim_node = &mut self.nodes[index];
        if let Some(node) = sim_node.node.take() {
            self.history.record_dead(node.replica());
        }
        sim_node.paused = false;
        sim_node.clients.iter_mut().for_each(BTreeSet::clear);
    }

    fn restart(&mut self, index: usize) {
        self.crash(index);
        let incarnation = self.nodes[index].incarnation + 1;
        let clients = self.scenario.workload.clients_per_node;
        self.nodes[index] = SimNode::start(index, incarnation, &self.config, self.now_ms, clients);
    }

    /// Draws one fault from the scenario's rates, and schedules its end.
    fn random_fault(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        let rates = self.scenario.random_faults.clone();
        let nodes = self.nodes.len();
        let weights = [
            rates.partition,
            rates.crash,
            rates.pause,
            rates.clog,
            rates.shutdown,
        ];
        let total: u32 = weights.iter().sum();
        let down = self.config.down_period_ms;
        if total > 0 && nodes > 1 {
            let mut roll = self.fault_rng.below(total as usize) as u32;
            let kind = weights
                .iter()
                .position(|&weight| {
                    let hit = roll < weight;
                    roll = roll.saturating_sub(weight);
                    hit
                })
                .expect("a roll below the total hits a weight");
            let node = self.fault_rng.below(nodes);
            let other = (node + 1 + self.fault_rng.below(nodes - 1)) % nodes;
            let at_ms = self.now_ms;
            let later = |rng: &mut SimRng, most: u64| at_ms + rng.between(200, most.max(201));
            match kind {
                0 => {
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
                    let heal_at = later(&mut self.fault_rng, 3 * down);
                    self.schedule(heal_at, Event::Fault(Fault::Heal { at_ms: heal_at }));
                }
                1 => {
                    self.apply_fault(&Fault::Crash { at_ms, node });
                    let back = later(&mut self.fault_rng, 2 * down);
                    self.schedule(back, Event::Fault(Fault::Restart { at_ms: back, node }));
                }
                2 => {
                    self.apply_fault(&Fault::Pause { at_ms, node });
                    let back = later(&mut self.fault_rng, 2 * down);
                    self.schedule(back, Event::Fault(Fault::Resume { at_ms: back, node }));
                }
                3 => {
                    self.apply_fault(&Fault::Clog {
                        at_ms,
                        a: node,
                        b: other,
                    });
                    let back = later(&mut self.fault_rng, down);
                    self.schedule(
                        back,
                        Event::Fault(Fault::Unclog {
                            at_ms: back,
                            a: node,
                            b: other,
                        }),
                    );
                }
                _ => {
                    self.apply_fault(&Fault::Shutdown { at_ms, node });
                    let back = later(&mut self.fault_rng, down);
                    self.schedule(back, Event::Fault(Fault::Restart { at_ms: back, node }));
                }
            }
        }
        let next = self.now_ms + 1 + self.fault_rng.exponential_ms(rates.interval_ms);
        self.schedule(next, Event::RandomFault);
    }

    // ----- liveness -------------------------------------------------------------------

    /// Heals everything and stops the workload; from now on, replicas must
    /// converge within the liveness bound.
    fn start_liveness(&mut self) {
        self.phase = Phase::Liveness {
            since_ms: self.now_ms,
        };
        self.links.heal();
        let held = self.links.unclog_all();
        self.release(held);
        for index in 0..self.nodes.len() {
            self.nodes[index].paused = false;
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
    fn check_convergence_now(&mut self) {
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

    fn divergence(&self) -> Option<String> {
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

fn describe(event: &ReplicaEvent) -> String {
    match event {
        ReplicaEvent::Up(id) => format!("up {id}"),
        ReplicaEvent::Down(id) => format!("down {id}"),
        ReplicaEvent::Permdown(id) => format!("permdown {id}"),
        ReplicaEvent::Reincarnated { old, new } => format!("reincarnated {old} -> {new}"),
    }
}

/// Runs one scenario with one seed.
pub fn run(scenario: &Scenario, seed: u64, keep_trace: bool) -> RunReport {
    World::new(scenario, seed, keep_trace).run()
}

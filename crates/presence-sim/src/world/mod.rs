//! The discrete-event simulation: nodes, clients, the network, faults, the
//! ground truth, and the checkers, on virtual time.
//!
//! A run has two phases. In the *fault phase* the workload runs and faults
//! are injected (scheduled and random). Then the *liveness phase* heals
//! everything (links, clogs, paused and crashed nodes), stops the workload
//! and the network's loss, duplication and reordering, and requires every
//! live replica to converge on the ground truth within the scenario's bound.
//! Safety checks (I1, I3-I7) run throughout; I2 is judged at the end.
//!
//! The world reads no clock and draws no randomness but from its seed.
//!
//! Its rooms: this file holds the event loop and the stepping of nodes;
//! `delivery.rs` the network between them; `workload.rs` the clients;
//! `faults.rs` scheduled and random faults; `checks.rs` the safety checks
//! after each step and the liveness phase; `verdict.rs` how a run ended.

mod checks;
mod delivery;
mod faults;
mod nemesis;
mod verdict;
mod workload;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use presence_core::invariants::{History, ResurrectionWatch};
use presence_core::{ClientMirror, Presence, ReplicaId, Tag};
use presence_tracker::checks::{asker_of, check_output_sanity};
use presence_tracker::{Config, Input, Node, Output, ReplicaEvent, Sealer, Secret};

use crate::distribution::Picker;
use crate::network::{Envelope, Links};
use crate::rng::SimRng;
use crate::scenario::{ClockFaults, Fault, Scenario};
use crate::trace::{Trace, TraceEvent};

pub use verdict::{RunReport, Verdict};

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
    /// Sum of the fingerprints of every diff this incarnation emitted (I1).
    diffs_fingerprint: u64,
    /// Per client, the (topic, key) it tracks.
    clients: Vec<BTreeSet<(usize, usize)>>,
    steps: u64,
    /// When (true time) it left for good, if it did: never restarted, not
    /// even to heal.
    departed_at_ms: Option<u64>,
    /// How its machine's clock is off; kept across restarts.
    clock: NodeClock,
    /// True time it last broadcast, started or resumed (I10: a running
    /// node is heard).
    last_spoke_ms: u64,
    /// The state's revision when its checks last ran and passed, and the
    /// presences the diffs that reached the mirror since named (by tag,
    /// topic and key): with the same revision and no diff, state and
    /// mirror are what those checks judged.
    checked_revision: Option<u64>,
    diffed: BTreeMap<(Tag, Arc<str>, Arc<str>), Presence>,
}

/// A node's clock, as far off the true time as the scenario's clock
/// faults drew: `epoch + true + offset + true * drift / 10^6 + jumps`,
/// never below zero. With clock faults on, the epoch is a year, so an
/// offset or a step back reads as an earlier time rather than stopping at
/// zero (a real clock does not stand still at its origin).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct NodeClock {
    epoch_ms: i64,
    offset_ms: i64,
    drift_ppm: i64,
    jumped_ms: i64,
}

impl NodeClock {
    fn read(self, true_ms: u64) -> u64 {
        let true_ms = i128::from(true_ms);
        let drift = true_ms * i128::from(self.drift_ppm) / 1_000_000;
        let local = i128::from(self.epoch_ms)
            + true_ms
            + i128::from(self.offset_ms)
            + drift
            + i128::from(self.jumped_ms);
        u64::try_from(local.max(0)).unwrap_or(u64::MAX)
    }
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
            departed_at_ms: None,
            clock: NodeClock::default(),
            last_spoke_ms: 0,
            checked_revision: None,
            diffed: BTreeMap::new(),
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
    /// Seals and opens every frame, under a secret drawn from the seed,
    /// with the nodes' bases as the members.
    sealer: Sealer,
    /// The latest frames sent, with their senders, for the nemesis to
    /// replay or corrupt.
    recent_frames: VecDeque<(usize, Arc<[u8]>)>,
    /// How long after departing a node's watermark may still be kept (see
    /// `checks::forgotten_within_ms`).
    forgotten_within_ms: u64,
}

/// The most events one run may process: a bound, never a hang.
const MAX_EVENTS: u64 = 50_000_000;

/// Where faulty clocks start: a year.
const CLOCK_EPOCH_MS: i64 = 365 * 24 * 3_600_000;

/// A node's clock as `faults` draw it (perfect when they are all zero,
/// with no draw taken).
fn draw_clock(rng: &mut SimRng, faults: &ClockFaults) -> NodeClock {
    let mut signed = |most: u64| -> i64 {
        if most == 0 {
            return 0;
        }
        let magnitude = i64::try_from(rng.between(0, most)).unwrap_or(i64::MAX);
        if rng.chance(0.5) {
            -magnitude
        } else {
            magnitude
        }
    };
    let faulty = *faults != ClockFaults::default();
    NodeClock {
        epoch_ms: if faulty { CLOCK_EPOCH_MS } else { 0 },
        offset_ms: signed(faults.max_offset_ms),
        drift_ppm: signed(faults.max_drift_ppm),
        jumped_ms: 0,
    }
}

fn node_id(index: usize, incarnation: u64) -> ReplicaId {
    ReplicaId::new(&format!("n{index}"), incarnation)
}

fn node_index(replica: &ReplicaId) -> Option<usize> {
    node_index_of_base(replica.base())
}

/// The cluster's sealer: a secret drawn from the seed, the nodes' bases as
/// members, the scenario's replay window.
fn cluster_sealer(scenario: &Scenario, seed: u64) -> Sealer {
    let mut rng = SimRng::fork(seed, "secret");
    let secret = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    let secret = Secret::from_text(&secret).expect("32 bytes is a valid secret");
    let members = (0..scenario.nodes)
        .map(|index| Arc::from(format!("n{index}")))
        .collect();
    Sealer::new(&secret, Some(members), scenario.auth_window_ms())
}

fn node_index_of_base(base: &str) -> Option<usize> {
    base.strip_prefix('n')?.parse().ok()
}

impl World {
    /// A world for `scenario` with `seed`; `keep_trace` keeps every event.
    pub fn new(scenario: &Scenario, seed: u64, keep_trace: bool) -> Self {
        let config = scenario.config();
        let mut clock_rng = SimRng::fork(seed, "clocks");
        let nodes = (0..scenario.nodes)
            .map(|index| {
                let clock = draw_clock(&mut clock_rng, &scenario.clock);
                let mut node = SimNode::start(
                    index,
                    1,
                    &config,
                    clock.read(0),
                    scenario.workload.clients_per_node,
                );
                node.clock = clock;
                node
            })
            .collect();
        let forgotten_within_ms = checks::forgotten_within_ms(scenario, &config);
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
            sealer: cluster_sealer(scenario, seed),
            recent_frames: VecDeque::new(),
            forgotten_within_ms,
        }
    }

    fn schedule(&mut self, at_ms: u64, event: Event) {
        self.sequence += 1;
        self.queue.insert((at_ms, self.sequence), event);
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> RunReport {
        // Counted per thread: what an earlier run on it left goes.
        presence_tracker::marks::take();
        presence_tracker::buggify::arm(self.scenario.buggify.then_some(self.seed));
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
        presence_tracker::buggify::arm(None);
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
            marks: presence_tracker::marks::take(),
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

    /// What node `index`'s clock reads now.
    fn node_now(&self, index: usize) -> u64 {
        self.nodes[index].clock.read(self.now_ms)
    }

    /// Feeds `input` to node `index` and carries out what it asks.
    fn step(&mut self, index: usize, input: Input, local: bool) {
        let now_ms = self.now_ms;
        let node_now_ms = self.node_now(index);
        let Some(node) = self.nodes[index].node.as_mut() else {
            return;
        };
        let ticked = matches!(input, Input::Tick);
        let asker = asker_of(node, &input);
        let sender = node.replica().clone();
        let outputs = match node.handle(input, node_now_ms) {
            Ok(outputs) => outputs,
            // The workload only asks what is valid; a stopped node refuses.
            Err(_) => return,
        };
        for output in outputs {
            if let Err(violation) = check_output_sanity(&sender, &output, asker.as_ref()) {
                self.violate(index, violation);
            }
            match output {
                Output::Broadcast(message) => {
                    self.nodes[index].last_spoke_ms = now_ms;
                    let message = Arc::new(message);
                    let mut frame = None;
                    for to in 0..self.nodes.len() {
                        if to != index {
                            self.send(index, to, &message, &mut frame);
                        }
                    }
                }
                Output::Send { to, message } => {
                    if let Some(to) = node_index(&to).filter(|&to| to < self.nodes.len() && to != index) {
                        self.send(index, to, &Arc::new(message), &mut None);
                    }
                }
                Output::Diff(diff) => {
                    self.nodes[index].diffs_fingerprint = self.nodes[index]
                        .diffs_fingerprint
                        .wrapping_add(diff.fingerprint());
                    self.nodes[index].mirror.apply(&diff);
                    let diffed = &mut self.nodes[index].diffed;
                    for presence in diff.joins.iter().chain(&diff.leaves) {
                        let entry = &presence.entry;
                        let named = (
                            presence.tag.clone(),
                            Arc::clone(&entry.topic),
                            Arc::clone(&entry.key),
                        );
                        diffed.entry(named).or_insert_with(|| presence.clone());
                    }
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
        if ticked {
            self.check_timeliness(index);
        }
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

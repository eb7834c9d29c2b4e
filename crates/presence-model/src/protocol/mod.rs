//! The protocol model: presence-tracker nodes as stateright actors over an
//! unordered, duplicating, lossy network, with crashes and recoveries (a
//! recovered node is a new incarnation), timers for heartbeats and failure
//! detection, and a nemesis that isolates one node and heals, all chosen
//! nondeterministically within budgets.
//!
//! Time is logical: each heartbeat timer that fires advances that node's
//! clock by one broadcast period, so "down after two silent periods" means
//! two of its own ticks without hearing a peer. Ticks per node are bounded,
//! which bounds the space.
//!
//! Every node tracks one presence of the shared key at start, and may
//! untrack it once (a timer).
//!
//! Convergence (I2) is judged from every state in two ways: an abstract
//! complete exchange of full states ([`exchange_converges`]), and the
//! protocol itself run onward once faults heal ([`heals_to_convergence`]).
//!
//! Ground truth for I3-I5 is kept as ghosts, left out of hashing and
//! equality (so a state is checked against the history of the first path
//! that reached it): each node's local operations, in its [`Stored`] memory
//! so they survive its crashes. I3 is checked after every step, against
//! what the node observed before it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use presence_core::invariants::{
    check_no_resurrection, check_safety_of, History, Invariant, MemoryBounds, ResurrectionWatch, SafetyInputs,
};
use presence_core::{Diff, ReplicaId, State};
use presence_tracker::checks::{check_node_forgets, check_timeliness};
use presence_tracker::{Config, Input, Message, Node, Output};
use serde_json::json;
use stateright::actor::{
    Actor, ActorModel, ActorModelAction, ActorModelState, Id, LossyNetwork, Network, Out,
};
use stateright::{Model, Property};

mod convergence;
mod outcomes;
mod packet;
mod symmetry;

pub use convergence::{exchange_converges, heals_to_convergence, HEAL_ROUNDS};
pub use packet::Packet;
pub use symmetry::representative;

use crate::memo::Memo;
use crate::no_resurrection_since;
use crate::symmetry::digester;
use outcomes::{StepOutcome, Steps, Stimulus};
use symmetry::Renamed;

/// Bounds of the protocol model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolModelCfg {
    /// Nodes (2 or 3).
    pub nodes: usize,
    /// Heartbeat timer firings per node incarnation.
    pub ticks: u8,
    /// Crashes (each node may recover as a new incarnation).
    pub crashes: usize,
    /// Whether the nemesis may isolate a node (once) and heal.
    pub partitions: bool,
    /// Whether the network may lose messages.
    pub lossy: bool,
    /// Bounded synchrony, under which nodes forget departed bases'
    /// watermarks; `None`: the asynchronous model, which keeps them all.
    pub synchrony: Option<Synchrony>,
}

/// The bounds forgetting rests on, as rounds: in each round every live
/// node ticks once (so clocks advance at one rate, within a period of each
/// other), and a message is deliverable only within `max_age_rounds` rounds
/// of its first sending (later, it is as lost). A crashed node departs for
/// good (it does not recover), and the others forget its base's watermark
/// after [`SYNCHRONOUS_MEMORY_MS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Synchrony {
    /// Rounds a message stays deliverable after it was first sent. `None`
    /// lets a message arrive at any age, which breaks the bound forgetting
    /// rests on: a check that forgetting is safe must fail then.
    pub max_age_rounds: Option<u16>,
}

impl Synchrony {
    /// Whether `action` may happen now: a node ticks once a round, and a
    /// message is deliverable within its age.
    fn allows(&self, rounds: &Rounds, action: &ActorModelAction<Packet, Timer, ()>) -> bool {
        match action {
            ActorModelAction::Timeout(id, Timer::Tick) => rounds.ticked & (1 << usize::from(*id)) == 0,
            // A crash is a departure for good: restarts are the
            // asynchronous configurations' to explore, and a node that
            // never returns is what forgetting is for.
            ActorModelAction::Recover(_) => false,
            ActorModelAction::Deliver { src, dst, msg } => self.in_time(rounds, *src, *dst, msg),
            _ => true,
        }
    }

    /// Whether the message `packet` from `src` to `dst` is still within its
    /// age, if there is a bound.
    fn in_time(&self, rounds: &Rounds, src: Id, dst: Id, packet: &Packet) -> bool {
        let Some(max_age) = self.max_age_rounds else {
            return true;
        };
        rounds
            .sent
            .get(&envelope_key(src, dst, packet))
            .is_none_or(|&sent| rounds.round - sent <= max_age)
    }
}

/// How [`Rounds::sent`] names a message in flight.
fn envelope_key(src: Id, dst: Id, packet: &Packet) -> (usize, usize, u64) {
    (usize::from(src), usize::from(dst), packet.digest)
}

impl Rounds {
    /// After a step (a tick of node `ticked`, if it was one): stamps the
    /// messages first sent in it, and starts the next round once every
    /// live node that has ticks left has ticked in this one.
    /// Returns whether a new round started.
    fn after_step(&mut self, inner: &InnerState, ticked: Option<usize>) -> bool {
        if let Some(node) = ticked {
            self.ticked |= 1 << node;
        }
        for envelope in inner.network.iter_all() {
            self.sent
                .entry(envelope_key(envelope.src, envelope.dst, envelope.msg))
                .or_insert(self.round);
        }
        let waiting = (0..inner.actor_states.len()).any(|node| {
            !inner.crashed[node]
                && self.ticked & (1 << node) == 0
                && inner.timers_set[node].iter().any(|timer| *timer == Timer::Tick)
        });
        if self.ticked != 0 && !waiting {
            self.round += 1;
            self.ticked = 0;
            return true;
        }
        false
    }

    /// Takes the messages older than `max_age` rounds out of the network:
    /// they can no longer arrive, and kept, they would only tell apart
    /// states that behave alike. A message sent again later is new.
    fn expire(&mut self, inner: &mut Arc<InnerState>, max_age: u16) {
        let oldest = self.round.saturating_sub(max_age);
        let before = self.sent.len();
        self.sent.retain(|_, &mut sent| sent >= oldest);
        if self.sent.len() == before {
            return;
        }
        if let Network::UnorderedDuplicating(envelopes, _) = &mut Arc::make_mut(inner).network {
            envelopes.retain(|envelope| {
                self.sent
                    .contains_key(&envelope_key(envelope.src, envelope.dst, &envelope.msg))
            });
        }
    }
}

/// The `sometimes` property of a synchronous configuration: without it
/// reached, the check said nothing about forgetting.
pub const FORGETS: &str = "a node forgets a departed base's watermark";

/// The retirement memory under [`Synchrony`]: eight broadcast periods, so
/// that half of it (what forgetting tolerates of a message's age) exceeds
/// a message one round old by at least a round's skew.
pub const SYNCHRONOUS_MEMORY_MS: u64 = 8_000;

/// The rounds of a synchronous run: the current round, the live nodes that
/// have ticked in it, and the round each message in flight was first sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rounds {
    /// The current round.
    pub round: u16,
    /// Bit `i`: node `i` has ticked in this round.
    pub ticked: u8,
    /// (from, to, message digest) -> the round it was first sent.
    pub sent: BTreeMap<(usize, usize, u64), u16>,
}

/// The timers of a node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Heartbeat period: advance the clock one period and tick.
    Tick,
    /// Untrack the node's presence (once).
    Leave,
}

/// One node's state in the model.
#[derive(Clone)]
pub struct NodeState {
    /// The tracker node, shared between the model states that hold it
    /// unchanged.
    pub node: Arc<Node>,
    /// Its logical clock.
    pub now_ms: u64,
    /// Heartbeat timers fired so far.
    pub ticks: u8,
    /// Sum of the fingerprints of every diff it emitted (I1).
    pub diffs_fingerprint: u64,
    /// The first I3 violation on the way here, if any.
    pub resurrection: Option<String>,
    /// The first I11 violation in what it sent on the way here, if any.
    pub unsound_payload: Option<String>,
    /// This node's local operations, all incarnations (I4-I6; ghost).
    history: Arc<History>,
    /// Every retirement watermark this node has held, all incarnations,
    /// including those it has since forgotten (I3; ghost).
    remembered: Arc<BTreeMap<Arc<str>, u64>>,
    /// The node's digests.
    digests: Digests,
    /// The node's digests under renamings (`Node::hash_renamed`), shared
    /// with every state that holds the same node.
    renamed: Renamed,
}

/// The digests kept beside a node, functions of the node alone: worked out
/// whenever the node changes outside the step table, and carried by the
/// table's steps otherwise.
#[derive(Clone, Copy, Debug, Default)]
struct Digests {
    /// Digest of the node (`Node::hash_canonical`).
    canonical: u64,
    /// Digest of its replica state (`State::hash_canonical`), which is all
    /// of it the convergence checks read.
    replica: u64,
}

impl Digests {
    fn of(node: &Node) -> Self {
        let mut canonical = digester();
        node.hash_canonical(&mut canonical);
        let mut replica = digester();
        node.state().hash_canonical(&mut replica);
        Self {
            canonical: canonical.finish(),
            replica: replica.finish(),
        }
    }
}

impl NodeState {
    /// After every step from `before` (the node's state before it, `None`
    /// for a fresh start): a reincarnation recorded as ground truth (and
    /// remembered across crashes), the canonical digest, and I3 against
    /// `before`.
    fn settle(&mut self, before: Option<&State>, o: &mut Out<TrackerActor>) {
        let mut before = before;
        if let Some(previous) = before.filter(|previous| previous.replica() != self.node.replica()) {
            let recorded =
                Arc::make_mut(&mut self.history).record_reincarnation(previous.replica(), self.node.state());
            if let Err(violation) = recorded {
                self.resurrection.get_or_insert(violation.to_string());
            }
            self.save(o);
            // The new incarnation is a new replica: nothing it observed
            // before binds it.
            before = None;
        }
        self.digests = Digests::of(&self.node);
        self.renamed = Renamed::default();
        if let Err(violation) = no_resurrection_since(before, self.node.state()) {
            self.resurrection.get_or_insert(violation);
        }
        self.keep_forgotten_dead();
    }

    /// I3 across forgetting: the per-step check rebuilds its watch from the
    /// state before the step, which no longer holds a watermark the node
    /// has forgotten, so the watermarks the node ever held are kept here and
    /// a tag of a forgotten incarnation held again is a resurrection. Costs
    /// nothing until the node has forgotten one, or learns a new one.
    pub(super) fn keep_forgotten_dead(&mut self) {
        let retired = self.node.state().retired();
        let forgot = self.has_forgotten();
        let learned = retired
            .iter()
            .any(|(base, watermark)| self.remembered.get(base) < Some(watermark));
        if !forgot && !learned {
            return;
        }
        let mut watch = ResurrectionWatch::remembering(self.remembered.iter());
        if let Err(violation) = check_no_resurrection(&mut watch, self.node.state()) {
            self.resurrection.get_or_insert(violation.to_string());
        }
        if learned {
            self.remembered = Arc::new(watch.remembered().clone());
        }
    }

    /// Whether the node has forgotten a retirement watermark it held.
    pub fn has_forgotten(&self) -> bool {
        let retired = self.node.state().retired();
        self.remembered.keys().any(|base| !retired.contains_key(base))
    }

    /// The node's ground truth.
    pub fn history(&self) -> &History {
        &self.history
    }

    fn save(&self, o: &mut Out<TrackerActor>) {
        o.save(Stored {
            incarnation: self.node.replica().incarnation(),
            history: Arc::clone(&self.history),
        });
    }
}

/// What a node keeps across crashes: its last incarnation, and (a ghost,
/// left out of hashing and equality) the history of its local operations.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The last incarnation started.
    pub incarnation: u64,
    history: Arc<History>,
}

impl PartialEq for Stored {
    fn eq(&self, other: &Self) -> bool {
        self.incarnation == other.incarnation
    }
}

impl Hash for Stored {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        self.incarnation.hash(hasher);
    }
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {} ms", self.node.replica(), self.now_ms)
    }
}

impl PartialEq for NodeState {
    fn eq(&self, other: &Self) -> bool {
        (self.now_ms, self.ticks, self.diffs_fingerprint)
            == (other.now_ms, other.ticks, other.diffs_fingerprint)
            && self.resurrection == other.resurrection
            && self.unsound_payload == other.unsound_payload
            && self.digests.canonical == other.digests.canonical
    }
}

impl Hash for NodeState {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        (self.now_ms, self.ticks, self.diffs_fingerprint).hash(hasher);
        self.resurrection.hash(hasher);
        self.unsound_payload.hash(hasher);
        self.digests.canonical.hash(hasher);
    }
}

/// A presence-tracker node as a stateright actor.
#[derive(Clone, Debug)]
pub struct TrackerActor {
    config: Config,
    max_ticks: u8,
    nodes: usize,
    /// What deliveries and ticks do: on a duplicating network the same
    /// message reaches the same node state in a great many model states,
    /// and the healed runs of [`heals_to_convergence`] from neighbouring
    /// states take mostly the same steps. Shared by the model's actors and
    /// threads; each of 16 shards holds at most 2^18.
    steps: Arc<Steps>,
}

fn node_index(replica: &ReplicaId) -> Option<usize> {
    replica.base().strip_prefix('n')?.parse().ok()
}

/// Where node `from`'s output goes in a cluster of `count` nodes: its
/// message and the nodes it reaches (a broadcast every other node, a send
/// its addressee if that is a node). `None` for outputs that are not
/// messages. The model's network and the healed run of
/// [`heals_to_convergence`] both route by it.
fn addressed(from: usize, count: usize, output: Output) -> Option<(Message, Vec<usize>)> {
    match output {
        Output::Broadcast(message) => Some((message, (0..count).filter(|&to| to != from).collect())),
        Output::Send { to, message } => Some((
            message,
            node_index(&to).filter(|&to| to < count).into_iter().collect(),
        )),
        Output::Diff(_) | Output::Event(_) => None,
    }
}

impl TrackerActor {
    /// Carries out a local operation's outputs, recording its diffs as
    /// ground truth and saving that across crashes.
    fn local(state: &mut NodeState, outputs: Vec<Output>, me: Id, peers: usize, o: &mut Out<Self>) {
        for output in &outputs {
            if let Output::Diff(diff) = output {
                let after = Arc::clone(&state.node);
                Self::record_local(state, after.state(), diff);
            }
        }
        state.save(o);
        Self::carry_out(state, outputs, me, peers, o);
    }

    /// Records a local operation's diff, with the node's replica state
    /// after it, as ground truth.
    fn record_local(state: &mut NodeState, after: &State, diff: &Diff) {
        if let Err(violation) = Arc::make_mut(&mut state.history).record_local(after, diff) {
            state.resurrection.get_or_insert(violation.to_string());
        }
    }

    fn carry_out(state: &mut NodeState, outputs: Vec<Output>, me: Id, peers: usize, o: &mut Out<Self>) {
        let (diffs, sends) = Self::sort_out(outputs, me, peers);
        state.diffs_fingerprint = state.diffs_fingerprint.wrapping_add(diffs);
        for (to, wire) in &sends {
            o.broadcast(to, wire);
        }
    }

    /// A step's outputs: the sum of its diffs' fingerprints, and its
    /// messages with the nodes they reach.
    fn sort_out(outputs: Vec<Output>, me: Id, peers: usize) -> (u64, Vec<(Vec<Id>, Packet)>) {
        let mut diffs: u64 = 0;
        let mut sends = Vec::new();
        for output in outputs {
            if let Output::Diff(diff) = &output {
                diffs = diffs.wrapping_add(diff.fingerprint());
            }
            if let Some((message, to)) = addressed(usize::from(me), peers, output) {
                sends.push((to.into_iter().map(Id::from).collect(), Packet::new(message)));
            }
        }
        (diffs, sends)
    }
}

impl Actor for TrackerActor {
    type Msg = Packet;
    type Timer = Timer;
    type State = NodeState;
    type Storage = Stored;
    type Random = ();

    fn on_start(&self, id: Id, storage: &Option<Self::Storage>, o: &mut Out<Self>) -> Self::State {
        let index = usize::from(id);
        let incarnation = storage.as_ref().map_or(1, |last| last.incarnation + 1);
        let mut history = storage
            .as_ref()
            .map(|last| Arc::clone(&last.history))
            .unwrap_or_default();
        if let Some(last) = storage {
            // The crashed incarnation's presences died with it.
            Arc::make_mut(&mut history).record_dead(&ReplicaId::new(&format!("n{index}"), last.incarnation));
        }
        let replica = ReplicaId::new(&format!("n{index}"), incarnation);
        let node = Arc::new(Node::new(replica, self.config.clone(), 0).expect("the model's config is valid"));
        let mut state = NodeState {
            node,
            now_ms: 0,
            ticks: 0,
            diffs_fingerprint: 0,
            resurrection: None,
            unsound_payload: None,
            history,
            remembered: Arc::default(),
            digests: Digests::default(),
            renamed: Renamed::default(),
        };
        let track = Input::Track {
            pid: PID.into(),
            topic: "room".into(),
            key: "alice".into(),
            meta: json!({}),
        };
        let outputs = Arc::make_mut(&mut state.node)
            .handle(track, 0)
            .unwrap_or_default();
        Self::local(&mut state, outputs, id, self.peers(), o);
        o.set_timer(Timer::Tick, Duration::from_secs(1)..Duration::from_secs(2));
        o.set_timer(Timer::Leave, Duration::from_secs(1)..Duration::from_secs(2));
        state.settle(None, o);
        state
    }

    fn on_msg(&self, id: Id, state: &mut Cow<'_, Self::State>, _src: Id, msg: Self::Msg, o: &mut Out<Self>) {
        match self.step(
            id,
            &state.node,
            state.digests.canonical,
            state.now_ms,
            Stimulus::Message(&msg),
        ) {
            StepOutcome::Rejected => {}
            StepOutcome::Reincarnated(node, outputs) => {
                self.reincarnated(id, state.to_mut(), Stimulus::Message(&msg), node, outputs, o);
            }
            // A delivery that changes nothing and sends nothing leaves the
            // state borrowed, which tells stateright it is a no-op: on a
            // duplicating network every message stays deliverable, and most
            // deliveries are repeats that would only lead back to this state.
            StepOutcome::Remembered(step) => {
                if !step.changes_nothing(state) {
                    step.apply(state.to_mut(), o);
                }
            }
        }
    }

    fn on_timeout(&self, id: Id, state: &mut Cow<'_, Self::State>, timer: &Self::Timer, o: &mut Out<Self>) {
        let state = state.to_mut();
        match timer {
            Timer::Tick => {
                state.ticks += 1;
                state.now_ms += self.config.broadcast_period_ms;
                if state.ticks < self.max_ticks {
                    o.set_timer(Timer::Tick, Duration::from_secs(1)..Duration::from_secs(2));
                }
                match self.step(
                    id,
                    &state.node,
                    state.digests.canonical,
                    state.now_ms,
                    Stimulus::Tick,
                ) {
                    StepOutcome::Rejected => {}
                    StepOutcome::Reincarnated(node, outputs) => {
                        self.reincarnated(id, state, Stimulus::Tick, node, outputs, o);
                    }
                    StepOutcome::Remembered(step) => step.apply(state, o),
                }
            }
            Timer::Leave => match self.step(
                id,
                &state.node,
                state.digests.canonical,
                state.now_ms,
                Stimulus::Leave,
            ) {
                StepOutcome::Rejected => {}
                StepOutcome::Reincarnated(node, outputs) => {
                    self.reincarnated(id, state, Stimulus::Leave, node, outputs, o);
                }
                StepOutcome::Remembered(step) => {
                    for diff in &step.local {
                        Self::record_local(state, step.node.state(), diff);
                    }
                    state.save(o);
                    step.apply(state, o);
                }
            },
        }
    }
}

impl TrackerActor {
    fn peers(&self) -> usize {
        self.nodes
    }

    /// Carries out a step that made the node a new incarnation, which the
    /// step table never keeps: the new node, its outputs (a local
    /// operation's recorded as ground truth), and settling against the
    /// node before it.
    fn reincarnated(
        &self,
        id: Id,
        state: &mut NodeState,
        stimulus: Stimulus<'_>,
        node: Box<Node>,
        outputs: Vec<Output>,
        o: &mut Out<Self>,
    ) {
        let before = std::mem::replace(&mut state.node, Arc::from(node));
        match stimulus {
            Stimulus::Leave => Self::local(state, outputs, id, self.peers(), o),
            Stimulus::Message(_) | Stimulus::Tick => Self::carry_out(state, outputs, id, self.peers(), o),
        }
        state.settle(Some(before.state()), o);
    }
}

type Inner = ActorModel<TrackerActor, ProtocolModelCfg, ()>;
type InnerState = ActorModelState<TrackerActor, ()>;

/// The protocol model: the actor model plus a nemesis (isolate one node,
/// heal) that filters deliveries across the split.
pub struct ProtocolModel {
    cfg: ProtocolModelCfg,
    inner: Inner,
    /// Verdicts of [`exchange_converges`] by the live nodes' replica
    /// digests: it reads nothing else, and the same replica states recur
    /// under a great many networks and peer tables. Each of 16 shards holds at most 2^16.
    exchanges: Memo<u64, bool>,
    /// Verdicts of [`healed_views_converge`] by the live nodes' replica
    /// digests, for the rounds of the healed runs. Each of 16 shards holds
    /// at most 2^16.
    views: Memo<u64, Result<(), String>>,
}

/// Every node's connection. Pids and metas name no node, so that nodes are
/// interchangeable (see [`representative`]); entries of different nodes
/// differ by their tags.
const PID: &str = "p";

/// A state of the protocol model.
#[derive(Clone, Debug)]
pub struct ProtocolState {
    /// The actors, network, timers and crashes.
    pub inner: Arc<InnerState>,
    /// The node cut off from the others, if any.
    pub isolated: Option<usize>,
    /// Whether the nemesis may still isolate a node.
    pub partition_left: bool,
    /// Set only in a [`representative`]: the state's digest under symmetry,
    /// which is then all that hashes and compares.
    pub symmetric_digest: Option<u64>,
    /// Under [`Synchrony`] only: the rounds.
    pub rounds: Option<Arc<Rounds>>,
}

impl PartialEq for ProtocolState {
    fn eq(&self, other: &Self) -> bool {
        if self.symmetric_digest.is_some() || other.symmetric_digest.is_some() {
            return self.symmetric_digest == other.symmetric_digest;
        }
        self.inner == other.inner
            && (self.isolated, self.partition_left) == (other.isolated, other.partition_left)
            && self.rounds == other.rounds
    }
}

/// Hashes everything but the duplicating network's memory of the last
/// message delivered, which stateright keeps only so that a delivery
/// changing nothing still reaches a new fingerprint. No action depends on
/// it, so it only multiplied states that behave alike.
impl Hash for ProtocolState {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        if let Some(digest) = self.symmetric_digest {
            digest.hash(hasher);
            return;
        }
        let inner = &*self.inner;
        inner.actor_states.hash(hasher);
        match &inner.network {
            Network::UnorderedDuplicating(envelopes, _last_delivered) => envelopes.hash(hasher),
            network => network.hash(hasher),
        }
        inner.timers_set.hash(hasher);
        inner.random_choices.hash(hasher);
        inner.crashed.hash(hasher);
        inner.actor_storages.hash(hasher);
        (self.isolated, self.partition_left).hash(hasher);
        if let Some(rounds) = &self.rounds {
            rounds.hash(hasher);
        }
    }
}

/// What can happen next.
#[derive(Clone, Debug, PartialEq)]
pub enum ProtocolAction {
    /// Something the actor model offers (delivery, drop, timer, crash, recovery).
    Actor(ActorModelAction<Packet, Timer, ()>),
    /// The nemesis cuts one node off.
    Isolate(usize),
    /// The nemesis heals the cut.
    Heal,
}

impl ProtocolModelCfg {
    /// The model these bounds describe.
    pub fn into_model(self) -> ProtocolModel {
        assert!(
            (2..=3).contains(&self.nodes),
            "the protocol model takes 2 or 3 nodes"
        );
        let config = Config {
            broadcast_period_ms: 1_000,
            max_silent_periods: 1,
            down_period_ms: 2_000,
            permdown_period_ms: 3_000,
            clock_sample_periods: 1,
            max_delta_sizes: vec![4, 16],
            transfer_timeout_ms: 1_000,
            // Past every tick budget: forgetting rests on bounds on message
            // age and clock rates that this asynchronous model does not
            // have (its network holds a message forever, and one node may
            // tick many times while another ticks none), so the model keeps
            // every watermark; the simulator checks forgetting. Under
            // `Synchrony` those bounds hold, and nodes forget.
            retirement_memory_ms: if self.synchrony.is_some() {
                SYNCHRONOUS_MEMORY_MS
            } else {
                1_000_000
            },
        };
        let actor = TrackerActor {
            config,
            max_ticks: self.ticks,
            nodes: self.nodes,
            steps: Arc::new(Memo::new(1 << 18)),
        };
        let inner = ActorModel::new(self, ())
            .actors(std::iter::repeat_n(actor, self.nodes))
            .init_network(Network::new_unordered_duplicating([]))
            .lossy_network(if self.lossy {
                LossyNetwork::Yes
            } else {
                LossyNetwork::No
            })
            .max_crashes(self.crashes)
            // max_crashes bounds the nodes down at once, not crash-recover
            // cycles: bound the incarnations each node may reach.
            .within_boundary(|cfg, state| {
                let most = 1 + cfg.crashes as u64;
                state
                    .actor_storages
                    .iter()
                    .all(|stored| stored.as_ref().map_or(1, |stored| stored.incarnation) <= most)
            });
        ProtocolModel {
            cfg: self,
            inner,
            exchanges: Memo::new(1 << 16),
            views: Memo::new(1 << 16),
        }
    }
}

impl ProtocolModel {
    /// Whether a message in flight may still arrive: always, but under
    /// [`Synchrony`] only within its age (the healed run of
    /// [`heals_to_convergence`] delivers only those).
    fn deliverable(&self, state: &ProtocolState, envelope: &stateright::actor::Envelope<&Packet>) -> bool {
        let (Some(synchrony), Some(rounds)) = (self.cfg.synchrony, &state.rounds) else {
            return true;
        };
        synchrony.in_time(rounds, envelope.src, envelope.dst, envelope.msg)
    }
}

fn crosses(isolated: Option<usize>, src: Id, dst: Id) -> bool {
    isolated.is_some_and(|cut| (usize::from(src) == cut) != (usize::from(dst) == cut))
}

fn live_nodes(state: &ProtocolState) -> impl Iterator<Item = &NodeState> {
    state
        .inner
        .actor_states
        .iter()
        .zip(&state.inner.crashed)
        .filter(|(_, crashed)| !**crashed)
        .map(|(node, _)| &**node)
}

/// A digest of which nodes are live and of their replica states: all that
/// [`exchange_converges`] reads.
fn live_digest(state: &ProtocolState) -> u64 {
    let mut hasher = digester();
    for (node, crashed) in state.inner.actor_states.iter().zip(&state.inner.crashed) {
        (!crashed).then_some(node.digests.replica).hash(&mut hasher);
    }
    hasher.finish()
}

impl Model for ProtocolModel {
    type State = ProtocolState;
    type Action = ProtocolAction;

    fn init_states(&self) -> Vec<Self::State> {
        self.inner
            .init_states()
            .into_iter()
            .map(|inner| ProtocolState {
                inner: Arc::new(inner),
                isolated: None,
                partition_left: self.cfg.partitions,
                symmetric_digest: None,
                rounds: self.cfg.synchrony.map(|_| Arc::default()),
            })
            .collect()
    }

    fn actions(&self, state: &Self::State, actions: &mut Vec<Self::Action>) {
        let mut inner = Vec::new();
        self.inner.actions(&state.inner, &mut inner);
        for action in inner {
            if let ActorModelAction::Deliver { src, dst, .. } = &action {
                if crosses(state.isolated, *src, *dst) {
                    continue;
                }
            }
            if let (Some(synchrony), Some(rounds)) = (self.cfg.synchrony, &state.rounds) {
                if !synchrony.allows(rounds, &action) {
                    continue;
                }
            }
            actions.push(ProtocolAction::Actor(action));
        }
        if state.partition_left && state.isolated.is_none() {
            actions.extend((0..self.cfg.nodes).map(ProtocolAction::Isolate));
        }
        if state.isolated.is_some() {
            actions.push(ProtocolAction::Heal);
        }
    }

    fn next_state(&self, last: &Self::State, action: Self::Action) -> Option<Self::State> {
        let mut next = last.clone();
        match action {
            ProtocolAction::Actor(action) => {
                let ticked = match &action {
                    ActorModelAction::Timeout(id, Timer::Tick) => Some(usize::from(*id)),
                    _ => None,
                };
                next.inner = Arc::new(self.inner.next_state(&last.inner, action)?);
                if let Some(rounds) = &mut next.rounds {
                    let rounds = Arc::make_mut(rounds);
                    let max_age = self.cfg.synchrony.and_then(|synchrony| synchrony.max_age_rounds);
                    if let (true, Some(max_age)) = (rounds.after_step(&next.inner, ticked), max_age) {
                        rounds.expire(&mut next.inner, max_age);
                    }
                }
            }
            ProtocolAction::Isolate(node) => {
                next.isolated = Some(node);
                next.partition_left = false;
            }
            ProtocolAction::Heal => next.isolated = None,
        }
        Some(next)
    }

    fn within_boundary(&self, state: &Self::State) -> bool {
        Model::within_boundary(&self.inner, &state.inner)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = self.safety_and_reach();
        if self.cfg.synchrony.is_some() {
            properties.push(Property::sometimes(FORGETS, |_, state: &ProtocolState| {
                live_nodes(state).any(NodeState::has_forgotten)
            }));
        }
        properties
    }
}

impl ProtocolModel {
    /// The properties every configuration checks.
    fn safety_and_reach(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("I1 diff exactness", |_, state: &ProtocolState| {
                every_node_keeps(state, Invariant::DiffExactness, &History::new())
            }),
            Property::always("I3 no resurrection", |_, state: &ProtocolState| {
                live_nodes(state).all(|n| n.resurrection.is_none())
            }),
            Property::always("I10 timeliness", |_, state: &ProtocolState| {
                live_nodes(state).all(|n| check_timeliness(&n.node, n.now_ms).is_ok())
            }),
            Property::always("I11 payload sanity", |_, state: &ProtocolState| {
                live_nodes(state).all(|n| n.unsound_payload.is_none())
            }),
            Property::always("I4 provenance", |_, state: &ProtocolState| {
                cluster_history(state)
                    .is_some_and(|history| every_node_keeps(state, Invariant::Provenance, &history))
            }),
            Property::always("I5 own authority", |_, state: &ProtocolState| {
                every_node_keeps(state, Invariant::OwnAuthority, &History::new())
            }),
            Property::always("I6 causal sanity", |_, state: &ProtocolState| {
                cluster_history(state)
                    .is_some_and(|history| every_node_keeps(state, Invariant::CausalSanity, &history))
            }),
            Property::always("I7 bounded memory", |_, state: &ProtocolState| {
                every_node_keeps(state, Invariant::BoundedMemory, &History::new())
                    && live_nodes(state).all(|n| {
                        check_node_forgets(&n.node).is_ok()
                            && n.node.footprint().peers < state.inner.actor_states.len()
                    })
            }),
            Property::always(
                "I2 a complete anti-entropy exchange converges",
                |model: &ProtocolModel, state: &ProtocolState| {
                    let key = live_digest(state);
                    model
                        .exchanges
                        .get_or_compute(key, key, || exchange_converges(state))
                },
            ),
            Property::always(
                "I2 once faults heal, the protocol converges",
                |model: &ProtocolModel, state: &ProtocolState| heals_to_convergence(model, state).is_ok(),
            ),
            Property::sometimes("a node marks a peer down", |_, state: &ProtocolState| {
                live_nodes(state).any(|n| {
                    n.node
                        .peers()
                        .values()
                        .any(|peer| peer.status == presence_tracker::PeerStatus::Down)
                })
            }),
            Property::sometimes(
                "a recovered node is a new incarnation",
                |_, state: &ProtocolState| live_nodes(state).any(|n| n.node.replica().incarnation() > 1),
            ),
            Property::sometimes(
                "a presence replicated to every node",
                |_, state: &ProtocolState| {
                    let nodes: Vec<&NodeState> = live_nodes(state).collect();
                    nodes.len() == state.inner.actor_states.len()
                        && nodes
                            .iter()
                            .all(|n| n.node.state().get_by_key("room", "alice").len() == nodes.len())
                },
            ),
        ]
    }
}

/// Whether every live node of `state` keeps `invariant`, one of the core's
/// per-replica safety chain, with `cluster` as the ground truth of I4 and
/// I6 (I5 takes the node's own history; I3 is judged per step instead).
fn every_node_keeps(state: &ProtocolState, invariant: Invariant, cluster: &History) -> bool {
    live_nodes(state).all(|n| {
        let mut inputs = SafetyInputs {
            diffs_fingerprint: n.diffs_fingerprint,
            watch: None,
            history: cluster,
            own_history: &n.history,
            memory: Some(MemoryBounds::default()),
        };
        check_safety_of(invariant, n.node.state(), &mut inputs).is_ok()
    })
}

/// Every node's local operations, all incarnations, crashed nodes' too,
/// from what each keeps across crashes: a node saves its history in the
/// same step as every change to it, so a live node's copy adds nothing.
/// `None` when two nodes recorded one tag with different entries.
fn cluster_history(state: &ProtocolState) -> Option<History> {
    let mut cluster = History::new();
    for stored in state.inner.actor_storages.iter().flatten() {
        cluster.absorb(&stored.history).ok()?;
    }
    Some(cluster)
}

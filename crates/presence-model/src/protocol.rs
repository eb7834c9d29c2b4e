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
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use presence_core::digest::Rename;
use presence_core::invariants::{
    check_convergence, check_safety_of, exchange_full_states, History, Invariant, MemoryBounds, SafetyInputs,
};
use presence_core::{Diff, ReplicaId, State};
use presence_tracker::{Config, Input, Message, Node, Output};
use serde_json::json;
use stateright::actor::{
    Actor, ActorModel, ActorModelAction, ActorModelState, Id, LossyNetwork, Network, Out,
};
use stateright::{Model, Property};

use crate::{digester, no_resurrection_since, permutations, Memo};

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
}

/// A message on the wire: the protocol message and its digest (see
/// `Message::hash_canonical`), by which it hashes and orders.
#[derive(Clone)]
pub struct Wire {
    body: Arc<Body>,
    digest: u64,
}

/// What copies of a message on the wire share: the message, and its
/// digests under each renaming of nodes for [`representative`], worked
/// out on first use (one allocation, so that copying a network costs one
/// count per message).
struct Body {
    message: Message,
    renamed: std::sync::OnceLock<Box<[u64]>>,
}

/// Digests of a node under each renaming of the model's nodes, in the
/// order of `permutations`, worked out on first use and shared by every
/// copy. Not part of any state's hash or equality: a function of the node
/// it is kept beside.
type Renamed = Arc<std::sync::OnceLock<Box<[u64]>>>;

/// The digests of whatever `hash_renamed` hashes, under each renaming of
/// `count` nodes named `n0`, `n1`, ..., in the order of `permutations`.
fn renamed_digests(count: usize, hash_renamed: impl Fn(Rename<'_>, &mut ahash::AHasher)) -> Box<[u64]> {
    let names: Vec<Arc<str>> = (0..count).map(|index| Arc::from(format!("n{index}"))).collect();
    permutations(count)
        .iter()
        .map(|perm| {
            let rename = |base: &str| -> Arc<str> {
                match base
                    .strip_prefix('n')
                    .and_then(|digits| digits.parse::<usize>().ok())
                {
                    Some(index) if index < count => Arc::clone(&names[perm[index]]),
                    _ => Arc::from(base),
                }
            };
            let mut hasher = digester();
            hash_renamed(&rename, &mut hasher);
            hasher.finish()
        })
        .collect()
}

impl Wire {
    /// The protocol message.
    pub fn message(&self) -> &Message {
        &self.body.message
    }

    fn new(message: Message) -> Self {
        let mut hasher = digester();
        message.hash_canonical(&mut hasher);
        Self {
            body: Arc::new(Body {
                message,
                renamed: std::sync::OnceLock::new(),
            }),
            digest: hasher.finish(),
        }
    }
}

/// What a counterexample shows of a message: its kind, sender and enough of
/// its content to tell apart the messages one node sends.
impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn clocks(f: &mut std::fmt::Formatter<'_>, clocks: &presence_tracker::Clocks) -> std::fmt::Result {
            let shown: Vec<String> = clocks.iter().map(|(id, clock)| format!("{id}={clock}")).collect();
            write!(f, " [{}]", shown.join(" "))
        }
        fn delta(f: &mut std::fmt::Formatter<'_>, delta: &presence_core::Delta) -> std::fmt::Result {
            let (from, to) = delta.range();
            write!(
                f,
                " delta {from}..{to} +{} -{}",
                delta.joins().len(),
                delta.leaves().len()
            )
        }
        let message = self.message();
        write!(f, "{} from {}", message.kind(), message.from())?;
        match message {
            Message::Heartbeat {
                clocks: sent,
                delta: carried,
                ..
            } => {
                clocks(f, sent)?;
                carried.as_ref().map_or(Ok(()), |carried| delta(f, carried))
            }
            Message::TransferRequest {
                clocks: sent, full, ..
            } => {
                clocks(f, sent)?;
                if *full {
                    write!(f, " full")?;
                }
                Ok(())
            }
            Message::TransferAck { transfer, .. } => match transfer {
                presence_tracker::Transfer::Delta(carried) => delta(f, carried),
                presence_tracker::Transfer::State(snapshot) => {
                    write!(f, " state of {} replicas", snapshot.logs().len())
                }
            },
            Message::GracefulPermdown { .. } => Ok(()),
        }
    }
}

impl PartialEq for Wire {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest && self.message() == other.message()
    }
}

impl Eq for Wire {}

impl PartialOrd for Wire {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Messages order by their digest, and by their encoding in the unlikely
/// case two different messages share one, so the order is stable.
impl Ord for Wire {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.digest.cmp(&other.digest).then_with(|| {
            if self.message() == other.message() {
                std::cmp::Ordering::Equal
            } else {
                self.message().to_json().cmp(&other.message().to_json())
            }
        })
    }
}

impl Hash for Wire {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        self.digest.hash(hasher);
    }
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
    /// XOR of the fingerprints of every diff it emitted (I1).
    pub diffs_fingerprint: u64,
    /// The first I3 violation on the way here, if any.
    pub resurrection: Option<String>,
    /// This node's local operations, all incarnations (I4-I6; ghost).
    history: Arc<History>,
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
            && self.digests.canonical == other.digests.canonical
    }
}

impl Hash for NodeState {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        (self.now_ms, self.ticks, self.diffs_fingerprint).hash(hasher);
        self.resurrection.hash(hasher);
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

/// Steps by (node digest, node clock, [`Taken::key`]). `None` for an
/// input the node rejects.
type Steps = Memo<(u64, u64, u64), Option<Arc<Step>>>;

/// What a node takes in one step.
#[derive(Clone, Copy, Debug)]
enum Taken<'m> {
    /// A message delivered.
    Message(&'m Wire),
    /// Its heartbeat timer.
    Tick,
    /// Its one local operation: untracking its presence.
    Leave,
}

impl Taken<'_> {
    /// Its part of a step's key: a message's digest, or a value standing
    /// for the timer.
    fn key(self) -> u64 {
        match self {
            Taken::Message(wire) => wire.digest,
            Taken::Tick => u64::MAX,
            Taken::Leave => u64::MAX - 1,
        }
    }

    fn input(self) -> Input {
        match self {
            Taken::Message(wire) => Input::Receive(wire.message().clone()),
            Taken::Tick => Input::Tick,
            Taken::Leave => Input::Untrack {
                pid: PID.into(),
                topic: "room".into(),
                key: "alice".into(),
            },
        }
    }
}

/// What one step of a tracker node (a delivery or a tick) does, when it
/// does not reincarnate the node (a reincarnation writes ground truth,
/// which is ghost state, so it is never remembered).
#[derive(Debug)]
struct Step {
    /// The node afterwards.
    node: Arc<Node>,
    /// Its digests.
    digests: Digests,
    /// Its digests under renamings.
    renamed: Renamed,
    /// XOR of the fingerprints of the diffs it emitted (I1).
    diffs: u64,
    /// The diffs of a local operation, which its ghost history records
    /// (empty for other steps).
    local: Vec<Diff>,
    /// The I3 violation of the step, if any.
    resurrection: Option<String>,
    /// What it sends, in order: the message and the nodes it reaches.
    sends: Vec<(Vec<Id>, Wire)>,
}

/// What a step came to.
enum Stepped {
    /// The node rejected the input; it is unchanged.
    Rejected,
    /// The node became a new incarnation, with these outputs.
    Reincarnated(Box<Node>, Vec<Output>),
    /// Anything else.
    Known(Arc<Step>),
}

impl Step {
    /// Whether applying it to `state` changes nothing and sends nothing.
    fn changes_nothing(&self, state: &NodeState) -> bool {
        self.sends.is_empty()
            && self.diffs == 0
            && self.digests.canonical == state.digests.canonical
            && (self.resurrection.is_none() || state.resurrection.is_some())
    }

    fn apply(&self, state: &mut NodeState, o: &mut Out<TrackerActor>) {
        state.node = Arc::clone(&self.node);
        state.digests = self.digests;
        state.renamed = Arc::clone(&self.renamed);
        state.diffs_fingerprint ^= self.diffs;
        if let Some(violation) = &self.resurrection {
            state.resurrection.get_or_insert_with(|| violation.clone());
        }
        for (to, wire) in &self.sends {
            o.broadcast(to, wire);
        }
    }
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
        state.diffs_fingerprint ^= diffs;
        for (to, wire) in &sends {
            o.broadcast(to, wire);
        }
    }

    /// A step's outputs: the XOR of its diffs' fingerprints, and its
    /// messages with the nodes they reach.
    fn sort_out(outputs: Vec<Output>, me: Id, peers: usize) -> (u64, Vec<(Vec<Id>, Wire)>) {
        let mut diffs = 0;
        let mut sends = Vec::new();
        for output in outputs {
            if let Output::Diff(diff) = &output {
                diffs ^= diff.fingerprint();
            }
            if let Some((message, to)) = addressed(usize::from(me), peers, output) {
                sends.push((to.into_iter().map(Id::from).collect(), Wire::new(message)));
            }
        }
        (diffs, sends)
    }
}

impl Actor for TrackerActor {
    type Msg = Wire;
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
            history,
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
            Taken::Message(&msg),
        ) {
            Stepped::Rejected => {}
            Stepped::Reincarnated(node, outputs) => {
                self.reincarnated(id, state.to_mut(), Taken::Message(&msg), node, outputs, o);
            }
            // A delivery that changes nothing and sends nothing leaves the
            // state borrowed, which tells stateright it is a no-op: on a
            // duplicating network every message stays deliverable, and most
            // deliveries are repeats that would only lead back to this state.
            Stepped::Known(step) => {
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
                    Taken::Tick,
                ) {
                    Stepped::Rejected => {}
                    Stepped::Reincarnated(node, outputs) => {
                        self.reincarnated(id, state, Taken::Tick, node, outputs, o);
                    }
                    Stepped::Known(step) => step.apply(state, o),
                }
            }
            Timer::Leave => match self.step(
                id,
                &state.node,
                state.digests.canonical,
                state.now_ms,
                Taken::Leave,
            ) {
                Stepped::Rejected => {}
                Stepped::Reincarnated(node, outputs) => {
                    self.reincarnated(id, state, Taken::Leave, node, outputs, o);
                }
                Stepped::Known(step) => {
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
        taken: Taken<'_>,
        node: Box<Node>,
        outputs: Vec<Output>,
        o: &mut Out<Self>,
    ) {
        let before = std::mem::replace(&mut state.node, Arc::from(node));
        match taken {
            Taken::Leave => Self::local(state, outputs, id, self.peers(), o),
            Taken::Message(_) | Taken::Tick => Self::carry_out(state, outputs, id, self.peers(), o),
        }
        state.settle(Some(before.state()), o);
    }

    /// What taking `taken` does to `node` (of digest `canonical`) at
    /// `now_ms`, remembered: it is a function of those alone.
    fn step(&self, me: Id, node: &Arc<Node>, canonical: u64, now_ms: u64, taken: Taken<'_>) -> Stepped {
        let key = (canonical, now_ms, taken.key());
        let spread = canonical ^ key.2;
        if let Some(known) = self.steps.get(&key, spread) {
            return known.map_or(Stepped::Rejected, Stepped::Known);
        }
        let mut next = Node::clone(node);
        let Ok(outputs) = next.handle(taken.input(), now_ms) else {
            self.steps.insert(key, spread, None);
            return Stepped::Rejected;
        };
        if next.replica() != node.replica() {
            return Stepped::Reincarnated(Box::new(next), outputs);
        }
        let local = match taken {
            Taken::Leave => outputs
                .iter()
                .filter_map(|output| match output {
                    Output::Diff(diff) => Some(diff.clone()),
                    _ => None,
                })
                .collect(),
            Taken::Message(_) | Taken::Tick => Vec::new(),
        };
        let (diffs, sends) = Self::sort_out(outputs, me, self.peers());
        let step = Arc::new(Step {
            local,
            resurrection: no_resurrection_since(Some(node.state()), next.state()).err(),
            digests: Digests::of(&next),
            renamed: Renamed::default(),
            node: Arc::new(next),
            diffs,
            sends,
        });
        self.steps.insert(key, spread, Some(Arc::clone(&step)));
        Stepped::Known(step)
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

impl ProtocolModel {
    fn healed_views_converge(&self, nodes: &[Option<Healing>]) -> Result<(), String> {
        let mut hasher = digester();
        for node in nodes {
            node.as_ref().map(|node| node.digests.replica).hash(&mut hasher);
        }
        let key = hasher.finish();
        self.views
            .get_or_compute(key, key, || healed_views_converge(nodes))
    }
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
}

impl PartialEq for ProtocolState {
    fn eq(&self, other: &Self) -> bool {
        if self.symmetric_digest.is_some() || other.symmetric_digest.is_some() {
            return self.symmetric_digest == other.symmetric_digest;
        }
        self.inner == other.inner
            && (self.isolated, self.partition_left) == (other.isolated, other.partition_left)
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
    }
}

/// What can happen next.
#[derive(Clone, Debug, PartialEq)]
pub enum ProtocolAction {
    /// Something the actor model offers (delivery, drop, timer, crash, recovery).
    Actor(ActorModelAction<Wire, Timer, ()>),
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
                next.inner = Arc::new(self.inner.next_state(&last.inner, action)?);
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
        vec![
            Property::always("I1 diff exactness", |_, state: &ProtocolState| {
                every_node_keeps(state, Invariant::DiffExactness, &History::new())
            }),
            Property::always("I3 no resurrection", |_, state: &ProtocolState| {
                live_nodes(state).all(|n| n.resurrection.is_none())
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
                    && live_nodes(state)
                        .all(|n| n.node.footprint().peers < 2 * state.inner.actor_states.len())
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

/// Heartbeat rounds a healed cluster gets to converge: enough for a silent
/// peer to be marked down (two periods) and permdowned (three), with room
/// for the transfers that follow.
pub const HEAL_ROUNDS: usize = 8;

/// Messages a healed cluster may exchange before it is judged to loop.
const HEAL_MESSAGES: usize = 10_000;

/// I2 in its liveness form, "once faults heal, the cluster converges",
/// judged from every state: from here on the partition is healed, nothing
/// is lost, no node crashes or recovers, and no local operation happens.
/// Every message in flight is delivered, then every live node runs
/// heartbeat rounds (tick, deliver everything that follows) through its own
/// protocol code, with no tick budget. Within [`HEAL_ROUNDS`] every live
/// node must show exactly the presences the live nodes own.
///
/// This is the form of "quiet and healed implies converged" that a bounded
/// model can check soundly: the model's tick budget makes nodes fall
/// silent, so a quiet state of the model can be unconverged only because
/// time stopped. Here time goes on. Messages are delivered in one fixed
/// order (sorted), so the check is deterministic; other orders of the
/// healed run are not tried.
pub fn heals_to_convergence(model: &ProtocolModel, state: &ProtocolState) -> Result<(), String> {
    let actor = &model.inner.actors[0];
    let period = actor.config.broadcast_period_ms;
    let mut nodes: Vec<Option<Healing>> = state
        .inner
        .actor_states
        .iter()
        .zip(&state.inner.crashed)
        .map(|(node, crashed)| {
            (!crashed).then(|| Healing {
                node: Arc::clone(&node.node),
                digests: node.digests,
                now_ms: node.now_ms,
            })
        })
        .collect();
    // stateright keeps the network in a hash set whose order differs from
    // one copy of a state to another: sort, so the verdict is the state's.
    let mut in_flight: Vec<(Id, Id, &Wire)> = state
        .inner
        .network
        .iter_deliverable()
        .map(|envelope| (envelope.src, envelope.dst, envelope.msg))
        .collect();
    in_flight.sort_unstable();
    let mut queue: VecDeque<(usize, Wire)> = in_flight
        .into_iter()
        .map(|(_, dst, wire)| (usize::from(dst), wire.clone()))
        .collect();
    let mut delivered = 0;
    let mut drain = |nodes: &mut Vec<Option<Healing>>, queue: &mut VecDeque<(usize, Wire)>| {
        while let Some((to, wire)) = queue.pop_front() {
            delivered += 1;
            if delivered > HEAL_MESSAGES {
                return Err(format!("more than {HEAL_MESSAGES} messages after healing"));
            }
            if let Some(node) = nodes[to].as_mut() {
                node.take(actor, to, Taken::Message(&wire), queue);
            }
        }
        Ok(())
    };
    drain(&mut nodes, &mut queue)?;
    for _ in 0..HEAL_ROUNDS {
        if model.healed_views_converge(&nodes).is_ok() {
            return Ok(());
        }
        for at in 0..nodes.len() {
            let Some(node) = nodes[at].as_mut() else {
                continue;
            };
            node.now_ms += period;
            node.take(actor, at, Taken::Tick, &mut queue);
            drain(&mut nodes, &mut queue)?;
        }
    }
    model.healed_views_converge(&nodes)
}

/// A live node in the healed run of [`heals_to_convergence`].
struct Healing {
    node: Arc<Node>,
    digests: Digests,
    now_ms: u64,
}

impl Healing {
    /// Node `at` takes `input` (a message or a tick) through the
    /// actor's own step, and its messages join the healed network's queue.
    fn take(
        &mut self,
        actor: &TrackerActor,
        at: usize,
        input: Taken<'_>,
        queue: &mut VecDeque<(usize, Wire)>,
    ) {
        let enqueue = |sends: &[(Vec<Id>, Wire)], queue: &mut VecDeque<(usize, Wire)>| {
            for (to, wire) in sends {
                queue.extend(to.iter().map(|&to| (usize::from(to), wire.clone())));
            }
        };
        match actor.step(
            Id::from(at),
            &self.node,
            self.digests.canonical,
            self.now_ms,
            input,
        ) {
            Stepped::Rejected => {}
            Stepped::Reincarnated(node, outputs) => {
                self.digests = Digests::of(&node);
                self.node = Arc::from(node);
                let (_, sends) = TrackerActor::sort_out(outputs, Id::from(at), actor.peers());
                enqueue(&sends, queue);
            }
            Stepped::Known(step) => {
                self.node = Arc::clone(&step.node);
                self.digests = step.digests;
                enqueue(&step.sends, queue);
            }
        }
    }
}

/// Whether every live node's view is the live nodes' own presences.
fn healed_views_converge(nodes: &[Option<Healing>]) -> Result<(), String> {
    let replicas: Vec<&State> = nodes
        .iter()
        .flatten()
        .map(|healing| healing.node.state())
        .collect();
    check_convergence(replicas.iter().copied(), &own_presences(replicas.iter().copied()))
        .map_err(|violation| violation.to_string())
}

/// The presences the given replicas own: the ground truth of a healed
/// cluster made of them.
fn own_presences<'s>(replicas: impl Iterator<Item = &'s State>) -> presence_core::invariants::View {
    replicas
        .flat_map(|replica| {
            let own = replica.replica().clone();
            replica
                .log(&own)
                .map(|log| {
                    log.values()
                        .iter()
                        .map(|(&clock, entry)| {
                            (presence_core::Tag::new(own.clone(), clock), Arc::clone(entry))
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect()
}

/// Once faults heal, failure detection hides every replica that is not a
/// live node's current incarnation: crashed nodes, and old incarnations
/// whose successor a peer may never have heard (down_period would).
fn hide_silent(replicas: &mut [State]) {
    let live: Vec<ReplicaId> = replicas.iter().map(|replica| replica.replica().clone()).collect();
    for replica in replicas {
        let silent: Vec<ReplicaId> = replica
            .replicas()
            .map(|(id, _, _)| id.clone())
            .filter(|id| !live.contains(id))
            .collect();
        for id in &silent {
            replica.replica_down(id);
        }
    }
}

/// I2 from any protocol state: the live nodes' replicas, hiding every
/// replica that is not live (as failure detection eventually does), all
/// believing each other up and exchanging full states until quiet
/// (reincarnating when they learn they were retired), show exactly the
/// presences the live nodes own.
pub fn exchange_converges(state: &ProtocolState) -> bool {
    let mut replicas: Vec<State> = live_nodes(state).map(|n| n.node.state().clone()).collect();
    hide_silent(&mut replicas);
    if exchange_full_states(&mut replicas, 3, |_, _| Ok(())).is_err() {
        return false;
    }
    // A replica first learned in the exchange (a crashed node's, through a
    // peer that holds its entries) comes in up; no node will ever hear it,
    // so failure detection hides it too.
    hide_silent(&mut replicas);
    check_convergence(replicas.iter(), &own_presences(replicas.iter())).is_ok()
}

/// Symmetry reduction for stateright (`checker().symmetry_fn(representative)`,
/// DFS only): nodes are interchangeable, since each starts alike (same
/// config, timers and budgets, one presence under the same pid and meta)
/// and every action is offered for every node. The representative carries
/// the least digest over every renaming of nodes of: each node's state with
/// replica names renamed (`Node::hash_renamed`), its clock, ticks, crash,
/// timers and last incarnation, every message in flight with its ends and
/// its names renamed, and the nemesis's cut. It is hollow otherwise: the
/// checker fingerprints it and carries on with the original.
///
/// I1 stands in as "holds here" for a node's diff fingerprint, which names
/// replicas, as in the CRDT model. Whether the protocol's behaviour is
/// really the same under renaming (it breaks ties between equally advanced
/// peers by replica order) is checked, not assumed: a test compares the
/// representatives reached with and without the reduction.
pub fn representative(state: &ProtocolState) -> ProtocolState {
    let inner = &*state.inner;
    let count = inner.actor_states.len();
    let fixed: Vec<u64> = inner
        .actor_states
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let mut hasher = digester();
            let i1 =
                presence_core::invariants::check_view_fingerprint(node.diffs_fingerprint, node.node.state())
                    .is_ok();
            (node.now_ms, node.ticks, i1, node.resurrection.is_some()).hash(&mut hasher);
            inner.crashed[index].hash(&mut hasher);
            inner.timers_set[index].hash(&mut hasher);
            inner.actor_storages[index]
                .as_ref()
                .map(|stored| stored.incarnation)
                .hash(&mut hasher);
            hasher.finish()
        })
        .collect();
    let nodes: Vec<&[u64]> = inner
        .actor_states
        .iter()
        .map(|node| -> &[u64] {
            node.renamed.get_or_init(|| {
                renamed_digests(count, |rename, hasher| node.node.hash_renamed(rename, hasher))
            })
        })
        .collect();
    let in_flight: Vec<(usize, usize, &[u64])> = inner
        .network
        .iter_deliverable()
        .map(|envelope| {
            let message = &envelope.msg;
            let renamed: &[u64] = message.body.renamed.get_or_init(|| {
                renamed_digests(count, |rename, hasher| {
                    message.message().hash_renamed(rename, hasher)
                })
            });
            (usize::from(envelope.src), usize::from(envelope.dst), renamed)
        })
        .collect();
    let mut order: Vec<usize> = (0..count).collect();
    let mut renamed_in_flight: Vec<(usize, usize, u64)> = Vec::with_capacity(in_flight.len());
    let digest = permutations(count)
        .iter()
        .enumerate()
        .map(|(renaming, perm)| {
            let mut hasher = digester();
            order.sort_unstable_by_key(|&old| perm[old]);
            for &old in &order {
                (fixed[old], nodes[old][renaming]).hash(&mut hasher);
            }
            renamed_in_flight.clear();
            renamed_in_flight.extend(
                in_flight
                    .iter()
                    .map(|&(src, dst, renamed)| (perm[src], perm[dst], renamed[renaming])),
            );
            renamed_in_flight.sort_unstable();
            renamed_in_flight.hash(&mut hasher);
            (state.isolated.map(|cut| perm[cut]), state.partition_left).hash(&mut hasher);
            hasher.finish()
        })
        .min()
        .expect("at least one permutation");
    ProtocolState {
        inner: Arc::clone(&state.inner),
        isolated: state.isolated,
        partition_left: state.partition_left,
        symmetric_digest: Some(digest),
    }
}

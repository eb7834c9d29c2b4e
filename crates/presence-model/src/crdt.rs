//! The CRDT model: a few replicas of `presence_core::State`, every
//! interleaving of local operations, deliveries of any earlier payload (full
//! state or delta, so loss, duplication and reordering are all covered),
//! liveness changes, permdowns and restarts, within budgets.
//!
//! Every replica tracks one pid under the *same* key, so concurrent adds of
//! one key are the norm. Properties are the invariants of
//! `docs/invariants.md`, through the
//! functions of `presence_core::invariants`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use presence_core::invariants::{
    check_convergence, check_safety_of, exchange_full_states, History, Invariant, SafetyInputs,
};
use presence_core::{Delta, Diff, ReplicaId, Snapshot, State};
use serde_json::json;
use stateright::{Model, Property};

use crate::{digester, no_resurrection_since, permutations, Memo, Near};

const TOPIC: &str = "room";
const KEY: &str = "alice";

/// Bounds of the CRDT model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrdtModelCfg {
    /// Replicas (2 to 4).
    pub replicas: usize,
    /// Local operations (join, leave, update) each replica may perform.
    pub ops: u8,
    /// Liveness changes (down, up, permdown) and restarts, in all.
    pub faults: u8,
    /// Whether restarts are among the faults.
    pub restarts: bool,
}

impl CrdtModelCfg {
    /// The model these bounds describe.
    pub fn into_model(self) -> CrdtModel {
        assert!(
            (2..=4).contains(&self.replicas),
            "the CRDT model takes 2 to 4 replicas"
        );
        CrdtModel {
            cfg: self,
            audit: false,
            caches: Arc::new(Caches::new()),
        }
    }
}

/// The CRDT model (see the module docs).
#[derive(Clone, Debug)]
pub struct CrdtModel {
    cfg: CrdtModelCfg,
    /// Whether pruned payloads are kept aside and checked (see
    /// [`CrdtModel::auditing_pruning`]).
    audit: bool,
    /// What this model has computed once and remembers (see [`Caches`]).
    caches: Arc<Caches>,
}

/// Results that are functions of replica and payload digests alone, which
/// recur across a great many model states: each is computed once per
/// distinct input and kept in a bounded [`Memo`] shared by the checker's
/// threads. They belong to one model (and its clones), so every check
/// starts cold and measures what it computes. Deliveries and spent
/// verdicts, looked up for nearly every successor, go through each
/// thread's [`Near`] table first.
#[derive(Debug)]
struct Caches {
    /// [`delivery`] by (replica digest, payload digest, replica count); each
    /// of the 16 shards holds at most 2^13 outcomes, each with a state.
    deliveries: Memo<(u64, u64, usize), Option<Arc<Delivery>>>,
    /// [`spent_on`] by (replica digest, payload digest); at most 2^18 per
    /// shard.
    spent: Memo<(u64, u64), bool>,
    /// [`local_step`] by (replica digest, operation, budget left); at most
    /// 2^12 per shard.
    locals: Memo<(u64, LocalOp, u8), Option<Arc<LocalStep>>>,
    /// The complete exchange of I2 by the replicas' digests; at most 2^12
    /// per shard.
    exchanges: Memo<Vec<u64>, Arc<Result<Exchange, String>>>,
    /// The verdict of I2 by the replicas' digests and the ground truth's
    /// (see [`History::hash_canonical`]); at most 2^14 per shard.
    convergence: Memo<(Vec<u64>, u64), Result<(), String>>,
}

/// A thread's recent deliveries, as [`Caches::deliveries`] holds them.
type NearDeliveries = Near<(u64, u64, usize), Option<Arc<Delivery>>>;

thread_local! {
    /// The thread's recent [`Caches::deliveries`].
    static NEAR_DELIVERIES: std::cell::RefCell<NearDeliveries> = std::cell::RefCell::default();
    /// The thread's recent [`Caches::spent`].
    static NEAR_SPENT: std::cell::RefCell<Near<(u64, u64), bool>> = std::cell::RefCell::default();
}

impl Caches {
    fn new() -> Self {
        Self {
            deliveries: Memo::new(1 << 13),
            spent: Memo::new(1 << 18),
            locals: Memo::new(1 << 12),
            exchanges: Memo::new(1 << 12),
            convergence: Memo::new(1 << 14),
        }
    }
}

/// A payload some replica produced: what a later delivery may carry.
#[derive(Clone, Debug)]
pub enum Payload {
    /// A replica's full state at the time.
    Full {
        /// The producer.
        from: usize,
        /// Its state.
        snapshot: Arc<Snapshot>,
    },
    /// A replica's delta of one local operation.
    Delta {
        /// The producer.
        from: usize,
        /// Its delta.
        delta: Arc<Delta>,
    },
}

impl Payload {
    fn from(&self) -> usize {
        match self {
            Self::Full { from, .. } | Self::Delta { from, .. } => *from,
        }
    }

    fn encoded(&self) -> Vec<u8> {
        match self {
            Self::Full { snapshot, .. } => snapshot.to_json(),
            Self::Delta { delta, .. } => delta.to_json(),
        }
    }
}

/// One replica of the model.
#[derive(Clone, Debug)]
pub struct ModelReplica {
    /// The replica (shared with other model states, and with the delivery
    /// cache, until changed).
    pub state: Arc<State>,
    /// XOR of the fingerprints of every diff it emitted (I1).
    pub diffs_fingerprint: u64,
    /// Local operations left.
    pub ops_left: u8,
    /// Digest of the replicated data and local liveness (see
    /// [`canonical_digest`]).
    canonical: u64,
    /// Its state's view fingerprint, which I1 compares the diff
    /// fingerprint with. A function of the state alone.
    view: u64,
    /// Its state's digest under each renaming of the model's replicas (see
    /// [`representative`]), kept with the state so only a changed replica
    /// is digested again. A function of the state alone.
    renamed: Arc<[u64]>,
}

impl ModelReplica {
    fn new(state: State, ops_left: u8, replicas: usize) -> Self {
        let mut replica = Self {
            state: Arc::new(state),
            diffs_fingerprint: 0,
            ops_left,
            canonical: 0,
            view: 0,
            renamed: Arc::from(Vec::new()),
        };
        replica.recanonicalize(replicas);
        replica
    }

    /// Recomputes what is kept of the state, in a model of `replicas`
    /// replicas: to be called after every change.
    fn recanonicalize(&mut self, replicas: usize) {
        (self.canonical, self.view, self.renamed) = digests(&self.state, replicas);
    }

    /// Takes the state a remembered step leads to, with its digests.
    fn adopt(&mut self, next: &Digested) {
        self.state = Arc::clone(&next.state);
        self.canonical = next.canonical;
        self.view = next.view;
        self.renamed = Arc::clone(&next.renamed);
    }

    /// What identifies it beyond its state, under any renaming: its budget,
    /// and whether I1 holds, which stands for the diff fingerprint (that
    /// names replicas): while I1 holds the fingerprint is the view's, and
    /// once it breaks the state is a counterexample either way.
    /// (I1's verdict is read as [`check_view_fingerprint`] reads it, from
    /// the view fingerprint kept with the state: this runs for every
    /// successor the checker looks at, the property only for new states.)
    fn fixed(&self) -> (u8, bool) {
        (self.ops_left, self.diffs_fingerprint == self.view)
    }

    fn apply(&mut self, diff: &Diff) {
        self.diffs_fingerprint ^= diff.fingerprint();
    }
}

/// A payload as produced, with what the checker reads of it.
#[derive(Clone, Debug)]
pub struct Produced {
    /// The payload and what is derived from it, in one allocation shared by
    /// every state that holds it (copying a state's payloads costs one
    /// count each).
    body: Arc<ProducedBody>,
    /// The replicas it is spent on: bit `q` is set once delivering it to
    /// replica `q` changes nothing, which stays so until `q` restarts (see
    /// [`CrdtModel::prune`]). Follows from the payload and the replicas, so
    /// it is not hashed.
    spent: u8,
}

#[derive(Debug)]
struct ProducedBody {
    payload: Payload,
    /// Its wire encoding, which stands for it in equality.
    encoded: Box<[u8]>,
    /// A digest of its encoding, which stands for it in hashing.
    digest: u64,
    /// Its digest under each renaming of replicas (see [`representative`]).
    renamed: Arc<[u64]>,
}

impl Produced {
    fn new(payload: Payload, replicas: usize) -> Self {
        let encoded = payload.encoded().into_boxed_slice();
        let mut digest = digester();
        encoded.hash(&mut digest);
        Self {
            body: Arc::new(ProducedBody {
                digest: digest.finish(),
                encoded,
                renamed: Parts::payload(&payload).renamed(replicas),
                payload,
            }),
            spent: 0,
        }
    }

    /// The payload.
    pub fn payload(&self) -> &Payload {
        &self.body.payload
    }

    /// Its wire encoding, which stands for it in equality.
    pub fn encoded(&self) -> &[u8] {
        &self.body.encoded
    }

    fn digest(&self) -> u64 {
        self.body.digest
    }
}

/// A state of the model. Hashing and equality use the replicas' canonical
/// digests, the payloads and the budgets; the ground truth (`history`) is a
/// ghost, left out. I3 is checked on every step against the changed
/// replica's state before it. Discoveries are judged one delivery ahead
/// (see [`CrdtModel::can_deliver`]), so the state records none.
///
/// Replicas and the history are shared between a state and its successors
/// until a step changes them, so a step copies only what it changes.
#[derive(Clone, Debug)]
pub struct CrdtState {
    /// The replicas.
    pub replicas: Vec<Arc<ModelReplica>>,
    /// Every payload produced so far.
    pub payloads: Vec<Produced>,
    /// Liveness changes and restarts left.
    pub faults_left: u8,
    /// Whether I3 broke on the way here.
    pub resurrection: Option<String>,
    /// Ground truth (ghost).
    pub history: Arc<History>,
    /// Payloads pruned on the way here, kept only when the model audits
    /// pruning (ghost).
    pub pruned: Arc<Vec<Payload>>,
    /// Set only in a [`representative`]: the state's digest under symmetry,
    /// which is then all that hashes and compares.
    pub symmetric_digest: Option<u64>,
}

impl Hash for CrdtState {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        if let Some(digest) = self.symmetric_digest {
            digest.hash(hasher);
            return;
        }
        for replica in &self.replicas {
            replica.canonical.hash(hasher);
            replica.diffs_fingerprint.hash(hasher);
            replica.ops_left.hash(hasher);
        }
        for produced in &self.payloads {
            produced.digest().hash(hasher);
        }
        self.faults_left.hash(hasher);
        self.resurrection.hash(hasher);
    }
}

impl PartialEq for CrdtState {
    fn eq(&self, other: &Self) -> bool {
        if self.symmetric_digest.is_some() || other.symmetric_digest.is_some() {
            return self.symmetric_digest == other.symmetric_digest;
        }
        let replicas_equal = self.replicas.len() == other.replicas.len()
            && self.replicas.iter().zip(&other.replicas).all(|(a, b)| {
                a.canonical == b.canonical
                    && a.diffs_fingerprint == b.diffs_fingerprint
                    && a.ops_left == b.ops_left
            });
        let payloads_equal = self.payloads.len() == other.payloads.len()
            && self
                .payloads
                .iter()
                .zip(&other.payloads)
                .all(|(a, b)| Arc::ptr_eq(&a.body, &b.body) || a.encoded() == b.encoded());
        replicas_equal
            && payloads_equal
            && self.faults_left == other.faults_left
            && self.resurrection == other.resurrection
    }
}

/// What can happen next.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CrdtAction {
    /// Replica `at` tracks its pid under the shared key.
    Join {
        /// The replica.
        at: usize,
    },
    /// Replica `at` untracks its pid.
    Leave {
        /// The replica.
        at: usize,
    },
    /// Replica `at` updates its presence's meta.
    Update {
        /// The replica.
        at: usize,
    },
    /// Payload `payload` (an index into all produced so far) reaches `to`.
    /// Not taken when it would change nothing.
    Deliver {
        /// Which payload.
        payload: usize,
        /// The receiver.
        to: usize,
    },
    /// Replica `at` believes `of` down.
    Down {
        /// The replica.
        at: usize,
        /// The peer.
        of: usize,
    },
    /// Replica `at` believes `of` up.
    Up {
        /// The replica.
        at: usize,
        /// The peer.
        of: usize,
    },
    /// Replica `at` permdowns `of`'s current incarnation.
    Permdown {
        /// The replica.
        at: usize,
        /// The peer.
        of: usize,
    },
    /// Replica `at` restarts as a new incarnation with empty memory.
    Restart {
        /// The replica.
        at: usize,
    },
}

fn replica_id(index: usize, incarnation: u64) -> ReplicaId {
    ReplicaId::new(&format!("r{index}"), incarnation)
}

fn pid(at: usize) -> String {
    format!("p{at}")
}

fn tracked(state: &State, at: usize) -> bool {
    state
        .get_by_pid(&pid(at))
        .iter()
        .any(|presence| presence.tag.replica == *state.replica())
}

impl CrdtModel {
    /// The bounds.
    pub fn cfg(&self) -> CrdtModelCfg {
        self.cfg
    }

    /// Replica `at` performs `operation`, and offers its delta and full
    /// state. False when the operation is refused.
    fn local(&self, state: &mut CrdtState, at: usize, operation: LocalOp) -> bool {
        let key = (
            state.replicas[at].canonical,
            operation,
            state.replicas[at].ops_left,
        );
        let step = self.caches.locals.get_or_compute(key, key.0, || {
            local_step(&state.replicas[at], at, operation, self.cfg.replicas).map(Arc::new)
        });
        let Some(step) = step else {
            return false;
        };
        let replica = Arc::make_mut(&mut state.replicas[at]);
        replica.adopt(&step.next);
        replica.apply(&step.diff);
        replica.ops_left -= 1;
        let recorded = Arc::make_mut(&mut state.history).record_local(&step.next.state, &step.diff);
        if let Err(violation) = recorded {
            state.resurrection.get_or_insert(violation.to_string());
        }
        if let Some(violation) = &step.resurrection {
            state.resurrection.get_or_insert_with(|| violation.clone());
        }
        state.payloads.extend(step.produced.iter().cloned());
        true
    }

    fn deliver(&self, state: &mut CrdtState, payload: usize, to: usize) -> bool {
        let Some(delivery) = self.delivery_cached(&state.replicas[to], &state.payloads[payload]) else {
            return false;
        };
        // A delivery that changes nothing (a duplicate, or one already
        // covered) only leads back here: leave it out, so the checker does
        // not digest and look up a state it has just seen.
        if delivery.changes_nothing(state.replicas[to].canonical) {
            return false;
        }
        let replica = Arc::make_mut(&mut state.replicas[to]);
        replica.adopt(&delivery.next);
        replica.diffs_fingerprint ^= delivery.diffs;
        if let Some(violation) = &delivery.resurrection {
            state.resurrection.get_or_insert_with(|| violation.clone());
        }
        if let Some(old) = &delivery.reincarnated_from {
            let recorded = Arc::make_mut(&mut state.history).record_reincarnation(old, &delivery.next.state);
            if let Err(violation) = recorded {
                state.resurrection.get_or_insert(violation.to_string());
            }
        }
        true
    }

    /// Marks the payloads from index `first` on that are now spent on
    /// replica `at` (see [`Produced::spent`]).
    fn mark_spent(&self, state: &mut CrdtState, at: usize, first: usize) {
        let replica = &state.replicas[at];
        for produced in &mut state.payloads[first..] {
            let unmarked = produced.payload().from() != at && produced.spent & (1 << at) == 0;
            if unmarked && self.spent_on_cached(replica, produced) {
                produced.spent |= 1 << at;
            }
        }
    }

    /// Drops the payloads spent on every replica but their producer, once no
    /// replica can restart any more.
    ///
    /// Why this keeps the explored behaviour exact: a payload spent on a
    /// replica stays spent while that replica does not restart. Every other
    /// step moves a replica up in the lattice the payload is merged into
    /// (local operations and merges only add to contexts, retirements only
    /// add watermarks, and merges skip retired replicas), or changes only
    /// liveness, which merging never reads or writes. So a spent payload's
    /// deliveries are no-ops in every later state, and no-op deliveries are
    /// never taken: a state with the payload and one without it have the
    /// same successors. [`CrdtModel::auditing_pruning`] checks the claim
    /// instead of trusting it.
    ///
    /// What a pruned payload can still do is witness a discovery: after a
    /// later retirement, its entries would arrive stale (see
    /// [`CrdtModel::properties`]). Pruning can only hide such a witness,
    /// never make one up, and the tests assert that the discovery is still
    /// made.
    fn prune(&self, state: &mut CrdtState) {
        if self.cfg.restarts && state.faults_left > 0 {
            return;
        }
        let everyone = (1u8 << self.cfg.replicas) - 1;
        let done = |produced: &Produced| produced.spent | (1 << produced.payload().from()) == everyone;
        if !state.payloads.iter().any(done) {
            return;
        }
        if self.audit {
            let pruned = Arc::make_mut(&mut state.pruned);
            pruned.extend(
                state
                    .payloads
                    .iter()
                    .filter(|produced| done(produced))
                    .map(|produced| produced.payload().clone()),
            );
        }
        state.payloads.retain(|produced| !done(produced));
    }

    /// This model, keeping every pruned payload aside and checking, as the
    /// property "pruned payloads stay spent", that delivering any of them to
    /// any replica still changes nothing. For tests: it costs a merge per
    /// pruned payload and replica in every state.
    pub fn auditing_pruning(mut self) -> Self {
        self.audit = true;
        self
    }
}

/// What the checker reads of a replica state: its digest (see
/// [`canonical_digest`]), its view fingerprint, and its digests under every
/// renaming of `replicas` replicas (see [`representative`]).
fn digests(state: &State, replicas: usize) -> (u64, u64, Arc<[u64]>) {
    (
        canonical_digest(state),
        state.view_fingerprint(),
        Parts::replica(state).renamed(replicas),
    )
}

/// A replica state a remembered step leads to, with its [`digests`], made
/// once for every model state that takes the step.
struct Digested {
    state: Arc<State>,
    canonical: u64,
    view: u64,
    renamed: Arc<[u64]>,
}

impl Digested {
    fn new(state: State, replicas: usize) -> Self {
        let (canonical, view, renamed) = digests(&state, replicas);
        Self {
            state: Arc::new(state),
            canonical,
            view,
            renamed,
        }
    }
}

/// A local operation: every replica tracks its pid `p{i}` under the shared
/// key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum LocalOp {
    Join,
    Leave,
    Update,
}

/// What a local operation does to one replica state: a function of the
/// state and the budget left (an update's meta is that number), so
/// remembered (see [`Caches`]).
struct LocalStep {
    /// The state after the operation, its delta taken.
    next: Digested,
    /// The operation's diff.
    diff: Diff,
    /// The I3 violation of the step, if any.
    resurrection: Option<String>,
    /// The delta, then the full state, as offered to the others.
    produced: [Produced; 2],
}

/// Replica `at` (`replica`) performing `operation` in a model of `replicas`
/// replicas. `None` when the operation is refused.
fn local_step(replica: &ModelReplica, at: usize, operation: LocalOp, replicas: usize) -> Option<LocalStep> {
    let mut next = State::clone(&replica.state);
    let diff = match operation {
        LocalOp::Join => next.join(&pid(at), TOPIC, KEY, json!({"v": 0})).ok()?,
        LocalOp::Leave => next.leave(&pid(at), TOPIC, KEY),
        LocalOp::Update => next
            .update(&pid(at), TOPIC, KEY, json!({"v": replica.ops_left}))
            .ok()?,
    };
    let delta = Payload::Delta {
        from: at,
        delta: Arc::new(next.take_delta()),
    };
    let full = Payload::Full {
        from: at,
        snapshot: Arc::new(next.snapshot()),
    };
    Some(LocalStep {
        resurrection: no_resurrection_since(Some(&replica.state), &next).err(),
        next: Digested::new(next, replicas),
        diff,
        produced: [Produced::new(delta, replicas), Produced::new(full, replicas)],
    })
}

/// Merges `payload` into `state`: its diff, and whether the payload carried
/// entries of a replica `state` had retired. `None` when a delta is refused
/// for a gap (it changes nothing).
fn merge_payload(state: &mut State, payload: &Payload) -> Option<(Diff, bool)> {
    match payload {
        Payload::Full { snapshot, .. } => {
            let stale = snapshot
                .logs()
                .iter()
                .any(|(id, log)| !log.values().is_empty() && state.is_retired_id(id));
            Some((state.merge_snapshot(snapshot), stale))
        }
        Payload::Delta { delta, .. } => {
            let stale = state.is_retired_id(delta.replica()) && !delta.joins().is_empty();
            state.merge_delta(delta).ok().map(|diff| (diff, stale))
        }
    }
}

/// Whether delivering `payload` to `replica` (in a model of `replicas`
/// replicas) changes nothing now and will change nothing later while the
/// replica does not restart. Computed afresh: the pruning audit's
/// independent check.
fn spent_on(replica: &ModelReplica, payload: &Payload, replicas: usize) -> bool {
    delivery(&replica.state, payload, replicas)
        .is_some_and(|delivered| delivered.changes_nothing(replica.canonical))
}

/// What delivering one payload to one replica state does: a function of
/// the two, so remembered (see [`Caches`]).
struct Delivery {
    /// The state after the merge, and after the reincarnation if the
    /// payload told the replica it was retired.
    next: Digested,
    /// XOR of the fingerprints of the diffs emitted.
    diffs: u64,
    /// Whether the merge's diff was empty.
    quiet: bool,
    /// Whether the payload carried entries of a replica the receiver had
    /// retired.
    stale: bool,
    /// Whether the merge removed a presence of a replica other than the
    /// payload's producer.
    relayed_removal: bool,
    /// Whether it removed a presence while the key stayed present.
    add_wins: bool,
    /// The incarnation the replica left, if it reincarnated.
    reincarnated_from: Option<ReplicaId>,
    /// The I3 violation of the step, if any.
    resurrection: Option<String>,
}

impl Delivery {
    /// Whether it changes nothing for a replica whose digest was `before`.
    fn changes_nothing(&self, before: u64) -> bool {
        self.quiet && self.next.canonical == before
    }

    /// Whether delivering either of two payloads to one replica state
    /// leads to the same model state: everything [`CrdtModel::deliver`]
    /// takes from a delivery agrees (the new state by its digest).
    fn same_outcome(&self, other: &Self) -> bool {
        self.next.canonical == other.next.canonical
            && self.diffs == other.diffs
            && self.reincarnated_from == other.reincarnated_from
            && self.resurrection == other.resurrection
    }
}

/// Delivers `payload` to a replica in `state`, in a model of `replicas`
/// replicas. `None` when a delta is refused for a gap.
fn delivery(state: &State, payload: &Payload, replicas: usize) -> Option<Delivery> {
    let mut next = State::clone(state);
    let (diff, stale) = merge_payload(&mut next, payload)?;
    let producer = replica_id(payload.from(), 0);
    let relayed_removal = diff
        .leaves
        .iter()
        .any(|p| p.tag.replica.base() != producer.base());
    let add_wins = !diff.leaves.is_empty() && next.count_keys(TOPIC) > 0;
    let quiet = diff.is_empty();
    let mut diffs = diff.fingerprint();
    let mut reincarnated_from = None;
    if next.is_retired() {
        let old = next.replica().clone();
        let incarnation = next.next_incarnation();
        let diff = next
            .reincarnate(incarnation)
            .expect("next incarnation is accepted");
        diffs ^= diff.fingerprint();
        reincarnated_from = Some(old);
    }
    Some(Delivery {
        resurrection: no_resurrection_since(Some(state), &next).err(),
        next: Digested::new(next, replicas),
        diffs,
        quiet,
        stale,
        relayed_removal,
        add_wins,
        reincarnated_from,
    })
}

impl CrdtModel {
    /// [`delivery`], remembered (see [`Caches`]): the same replica state
    /// receives the same payload in a great many states, and each time would
    /// cost a copy, a merge and two digests.
    fn delivery_cached(&self, replica: &ModelReplica, produced: &Produced) -> Option<Arc<Delivery>> {
        let replicas = self.cfg.replicas;
        self.caches.deliveries.get_or_compute_near(
            &NEAR_DELIVERIES,
            (replica.canonical, produced.digest(), replicas),
            replica.canonical ^ produced.digest(),
            || delivery(&replica.state, produced.payload(), replicas).map(Arc::new),
        )
    }

    /// [`spent_on`], remembered (see [`Caches`]): the key says everything
    /// the verdict depends on. A verdict takes the delivery it judges from
    /// the delivery table, so a later delivery of the payload to that state
    /// costs nothing more.
    fn spent_on_cached(&self, replica: &ModelReplica, produced: &Produced) -> bool {
        self.caches.spent.get_or_compute_near(
            &NEAR_SPENT,
            (replica.canonical, produced.digest()),
            replica.canonical ^ produced.digest(),
            || {
                self.delivery_cached(replica, produced)
                    .is_some_and(|delivered| delivered.changes_nothing(replica.canonical))
            },
        )
    }

    /// Whether some payload in `state` can reach some replica other than its
    /// producer with a delivery that `makes` a discovery: the `sometimes`
    /// properties are judged this way, from the state alone, one delivery
    /// ahead.
    ///
    /// A discovery is an event, and recording it in the state instead (a
    /// flag set on the way) would split every state reachable both with and
    /// without it in two: half as many states again to depth 11 with one
    /// fault. Spent payloads are looked at too: a delivery that changes no
    /// replica is not taken, but the network can still make it, and a
    /// stale payload's delivery after permdown is often such a one.
    fn can_deliver(&self, state: &CrdtState, makes: impl Fn(&Delivery) -> bool) -> bool {
        state.payloads.iter().any(|produced| {
            let from = produced.payload().from();
            state.replicas.iter().enumerate().any(|(to, replica)| {
                to != from
                    && self
                        .delivery_cached(replica, produced)
                        .is_some_and(|delivered| makes(&delivered))
            })
        })
    }
}

impl Model for CrdtModel {
    type State = CrdtState;
    type Action = CrdtAction;

    /// Every replica starts at incarnation 0, so no state holds a
    /// retirement watermark until a permdown or restart makes one. A
    /// replica started at incarnation 1 would hold the watermark 0 for its
    /// base, which a full state carries to its peers and a delta does not:
    /// two receivers that learned the same thing would differ by a
    /// watermark that retires nothing the model ever runs, and every
    /// replica state would come in such pairs (the space was 7 to over 30
    /// times larger, with nothing more to check).
    fn init_states(&self) -> Vec<Self::State> {
        let replicas = (0..self.cfg.replicas)
            .map(|index| {
                let state = State::new(replica_id(index, 0));
                Arc::new(ModelReplica::new(state, self.cfg.ops, self.cfg.replicas))
            })
            .collect();
        vec![CrdtState {
            replicas,
            payloads: Vec::new(),
            faults_left: self.cfg.faults,
            resurrection: None,
            history: Arc::new(History::new()),
            pruned: Arc::default(),
            symmetric_digest: None,
        }]
    }

    /// In a fixed order, so paths replay.
    fn actions(&self, state: &Self::State, actions: &mut Vec<Self::Action>) {
        for (at, replica) in state.replicas.iter().enumerate() {
            if replica.ops_left > 0 {
                if tracked(&replica.state, at) {
                    actions.push(CrdtAction::Leave { at });
                    actions.push(CrdtAction::Update { at });
                } else {
                    actions.push(CrdtAction::Join { at });
                }
            }
        }
        // Deliveries, one per outcome: two payloads that leave a receiver
        // alike lead to the same model state, which the checker would only
        // digest and find again (a third of all deliveries in the target
        // configuration). A delta refused for a gap changes nothing.
        let mut offered: Vec<(usize, Arc<Delivery>)> = Vec::new();
        for (payload, produced) in state.payloads.iter().enumerate() {
            for (to, replica) in state.replicas.iter().enumerate() {
                if to == produced.payload().from() || produced.spent & (1 << to) != 0 {
                    continue;
                }
                let Some(delivery) = self.delivery_cached(replica, produced) else {
                    continue;
                };
                let known = offered
                    .iter()
                    .any(|(other, earlier)| *other == to && earlier.same_outcome(&delivery));
                if !known {
                    offered.push((to, delivery));
                    actions.push(CrdtAction::Deliver { payload, to });
                }
            }
        }
        if state.faults_left == 0 {
            return;
        }
        let count = state.replicas.len();
        for at in 0..count {
            for of in (0..count).filter(|&of| of != at) {
                actions.push(CrdtAction::Down { at, of });
                actions.push(CrdtAction::Up { at, of });
                actions.push(CrdtAction::Permdown { at, of });
            }
            if self.cfg.restarts {
                actions.push(CrdtAction::Restart { at });
            }
        }
    }

    fn next_state(&self, last: &Self::State, action: Self::Action) -> Option<Self::State> {
        let mut state = last.clone();
        let restarted = matches!(action, CrdtAction::Restart { .. });
        // Deliveries and local operations bring their states' digests and
        // I3 verdicts along.
        let digested = matches!(
            action,
            CrdtAction::Deliver { .. }
                | CrdtAction::Join { .. }
                | CrdtAction::Leave { .. }
                | CrdtAction::Update { .. }
        );
        let changed_at = match action {
            CrdtAction::Join { at } => self.local(&mut state, at, LocalOp::Join).then_some(at),
            CrdtAction::Leave { at } => self.local(&mut state, at, LocalOp::Leave).then_some(at),
            CrdtAction::Update { at } => self.local(&mut state, at, LocalOp::Update).then_some(at),
            CrdtAction::Deliver { payload, to } => self.deliver(&mut state, payload, to).then_some(to),
            CrdtAction::Down { at, of } | CrdtAction::Up { at, of } | CrdtAction::Permdown { at, of } => {
                state.faults_left -= 1;
                let peer = state.replicas[of].state.replica().clone();
                let replica = Arc::make_mut(&mut state.replicas[at]);
                let target = Arc::make_mut(&mut replica.state);
                let belief = target.status(&peer);
                let diff = match action {
                    CrdtAction::Down { .. } => target.replica_down(&peer),
                    CrdtAction::Up { .. } => target.replica_up(&peer),
                    _ => target.remove_down_replica(&peer).ok()?,
                };
                // A belief that was already held changes nothing (the belief
                // is all a down or up can change). One that hides or shows
                // nothing yet still counts: entries merged later must stay
                // hidden, or an unknown peer becomes known.
                let unchanged = diff.is_empty() && target.status(&peer) == belief;
                if unchanged && !matches!(action, CrdtAction::Permdown { .. }) {
                    return None;
                }
                replica.apply(&diff);
                Some(at)
            }
            CrdtAction::Restart { at } => {
                state.faults_left -= 1;
                let old = state.replicas[at].state.replica().clone();
                Arc::make_mut(&mut state.history).record_dead(&old);
                let ops_left = state.replicas[at].ops_left;
                let fresh = State::new(old.with_incarnation(old.incarnation() + 1));
                state.replicas[at] = Arc::new(ModelReplica::new(fresh, ops_left, self.cfg.replicas));
                Some(at)
            }
        }?;
        if !digested {
            // A restart starts a fresh replica.
            let before = (!restarted).then(|| &*last.replicas[changed_at].state);
            let replica = Arc::make_mut(&mut state.replicas[changed_at]);
            if let Err(violation) = no_resurrection_since(before, &replica.state) {
                state.resurrection.get_or_insert(violation);
            }
            replica.recanonicalize(self.cfg.replicas);
        }
        if restarted {
            for produced in &mut state.payloads {
                produced.spent &= !(1 << changed_at);
            }
        }
        // Only the changed replica and the new payloads need a look: whether
        // a payload is spent on a replica follows from the two alone.
        let first = last.payloads.len();
        for at in 0..self.cfg.replicas {
            self.mark_spent(&mut state, at, if at == changed_at { 0 } else { first });
        }
        self.prune(&mut state);
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always("I1 diff exactness", |_, state: &CrdtState| {
                every_replica_keeps(state, Invariant::DiffExactness)
            }),
            Property::always("I3 no resurrection", |_, state: &CrdtState| {
                state.resurrection.is_none()
            }),
            Property::always("I4 provenance", |_, state: &CrdtState| {
                every_replica_keeps(state, Invariant::Provenance)
            }),
            Property::always("I5 own authority", |_, state: &CrdtState| {
                every_replica_keeps(state, Invariant::OwnAuthority)
            }),
            Property::always("I6 causal sanity", |_, state: &CrdtState| {
                every_replica_keeps(state, Invariant::CausalSanity)
            }),
            Property::always(
                "I2 a complete anti-entropy exchange converges",
                |model: &CrdtModel, state: &CrdtState| anti_entropy_converges(model, state).is_ok(),
            ),
            Property::sometimes("add-wins conflict", |model: &CrdtModel, state: &CrdtState| {
                model.can_deliver(state, |delivered| delivered.add_wins)
            }),
            Property::sometimes(
                "removal observed through a third replica",
                |model: &CrdtModel, state: &CrdtState| {
                    model.can_deliver(state, |delivered| delivered.relayed_removal)
                },
            ),
            Property::sometimes(
                "stale payload after permdown",
                |model: &CrdtModel, state: &CrdtState| model.can_deliver(state, |delivered| delivered.stale),
            ),
        ];
        if self.audit {
            properties.push(Property::always(
                "pruned payloads stay spent",
                |model: &CrdtModel, state: &CrdtState| {
                    state.pruned.iter().all(|payload| {
                        state.replicas.iter().enumerate().all(|(at, replica)| {
                            at == payload.from() || spent_on(replica, payload, model.cfg.replicas)
                        })
                    })
                },
            ));
        }
        properties
    }

    fn format_action(&self, action: &Self::Action) -> String {
        match action {
            CrdtAction::Join { at } => format!("r{at} tracks {KEY}"),
            CrdtAction::Leave { at } => format!("r{at} untracks {KEY}"),
            CrdtAction::Update { at } => format!("r{at} updates {KEY}"),
            CrdtAction::Deliver { payload, to } => format!("payload #{payload} reaches r{to}"),
            CrdtAction::Down { at, of } => format!("r{at} marks r{of} down"),
            CrdtAction::Up { at, of } => format!("r{at} marks r{of} up"),
            CrdtAction::Permdown { at, of } => format!("r{at} permdowns r{of}"),
            CrdtAction::Restart { at } => format!("r{at} restarts"),
        }
    }
}

/// Whether every replica of `state` keeps `invariant`, one of the core's
/// per-replica safety chain (I3 is judged per step instead, and I7 is the
/// protocol model's).
fn every_replica_keeps(state: &CrdtState, invariant: Invariant) -> bool {
    state.replicas.iter().all(|replica| {
        let mut inputs = SafetyInputs {
            diffs_fingerprint: replica.diffs_fingerprint,
            watch: None,
            history: &state.history,
            own_history: &state.history,
            memory: None,
        };
        check_safety_of(invariant, &replica.state, &mut inputs).is_ok()
    })
}

/// I2 judged from any state: every replica believes every other up, then
/// full states are exchanged all to all until quiet (replicas that learn
/// they were retired re-assert themselves, as their nodes would). Then every
/// view must equal the ground truth.
///
/// The exchange is a function of the replicas' states, so it is remembered
/// by their digests (see [`Caches`]); the ground truth is the state's
/// own, with the exchange's reincarnations recorded in it in order. The
/// verdict is a function of the two, so it is remembered too: many states
/// differ only in the payloads in flight, which this does not read.
pub fn anti_entropy_converges(model: &CrdtModel, state: &CrdtState) -> Result<(), String> {
    let replicas: Vec<u64> = state.replicas.iter().map(|replica| replica.canonical).collect();
    let mut truth = digester();
    state.history.hash_canonical(&mut truth);
    let truth = truth.finish();
    let spread = replicas.iter().fold(truth, |spread, digest| spread ^ digest);
    model
        .caches
        .convergence
        .get_or_compute((replicas, truth), spread, || judge_convergence(model, state))
}

/// [`anti_entropy_converges`], judged afresh (the exchange itself may be
/// remembered).
fn judge_convergence(model: &CrdtModel, state: &CrdtState) -> Result<(), String> {
    let outcome = exchanged(model, state);
    let exchange = outcome.as_ref().as_ref()?;
    let mut history = std::borrow::Cow::Borrowed(&*state.history);
    for (old, reincarnated) in &exchange.reincarnations {
        history
            .to_mut()
            .record_reincarnation(old, reincarnated)
            .map_err(|violation| violation.to_string())?;
    }
    check_convergence(exchange.replicas.iter(), &history.live_view())
        .map_err(|violation| violation.to_string())
}

/// What a complete exchange leaves: the replicas, and each reincarnation
/// on the way (the incarnation left, and the state just after).
struct Exchange {
    replicas: Vec<State>,
    reincarnations: Vec<(ReplicaId, State)>,
}

/// The complete exchange from `state`'s replicas, remembered by their
/// digests (see [`Caches`]).
fn exchanged(model: &CrdtModel, state: &CrdtState) -> Arc<Result<Exchange, String>> {
    let key: Vec<u64> = state.replicas.iter().map(|replica| replica.canonical).collect();
    let spread = key.iter().fold(0, |spread, digest| spread ^ digest);
    model.caches.exchanges.get_or_compute(key, spread, || {
        let mut replicas: Vec<State> = state.replicas.iter().map(|r| State::clone(&r.state)).collect();
        let mut reincarnations = Vec::new();
        let exchange = exchange_full_states(&mut replicas, 3, |old, state| {
            reincarnations.push((old.clone(), state.clone()));
            Ok(())
        });
        Arc::new(match exchange {
            Ok(()) => Ok(Exchange {
                replicas,
                reincarnations,
            }),
            Err(violation) => Err(violation.to_string()),
        })
    })
}

// ----- symmetry ------------------------------------------------------------------

/// The index `i` of a replica base `r{i}` or a pid `p{i}`.
fn index_in(name: &str, prefix: char) -> usize {
    name.strip_prefix(prefix)
        .and_then(|digits| digits.parse().ok())
        .expect("the model names replicas r{i} and pids p{i}")
}

/// What identifies a replica's state for the checker: a digest of its
/// fields (see `State::hash_canonical`).
fn canonical_digest(state: &State) -> u64 {
    let mut hasher = digester();
    state.hash_canonical(&mut hasher);
    hasher.finish()
}

/// Hashes what an entry says apart from its pid (which names its replica).
fn hash_entry(clock: u64, entry: &presence_core::Entry, hasher: &mut impl Hasher) {
    (clock, &*entry.topic, &*entry.key, entry.replaces).hash(hasher);
    entry.meta.to_string().hash(hasher);
}

/// A log's content, which no renaming of replicas changes: a log only ever
/// holds entries of its own replica, whose pid `p{i}` follows its name `r{i}`.
fn log_content(log: &presence_core::ReplicaLog) -> u64 {
    let mut hasher = digester();
    (log.context(), log.cloud()).hash(&mut hasher);
    for (&clock, entry) in log.values() {
        hash_entry(clock, entry, &mut hasher);
    }
    hasher.finish()
}

/// One known replica: (index, incarnation, status if any, content).
type LogPart = (usize, u64, Option<bool>, u64);

/// What of a replica or payload names replicas, apart from what does not.
struct Parts {
    /// (own index, incarnation) or the producer.
    owner: (usize, u64),
    /// Whatever else identifies it and no renaming changes.
    fixed: u64,
    logs: Vec<LogPart>,
    retired: Vec<(usize, u64)>,
}

impl Parts {
    fn of_logs<'s>(
        logs: impl Iterator<
            Item = (
                &'s ReplicaId,
                &'s presence_core::ReplicaLog,
                Option<presence_core::Status>,
            ),
        >,
    ) -> Vec<LogPart> {
        logs.map(|(id, log, status)| {
            let up = status.map(|status| status == presence_core::Status::Up);
            (index_in(id.base(), 'r'), id.incarnation(), up, log_content(log))
        })
        .collect()
    }

    fn of_retired(retired: &std::collections::BTreeMap<Arc<str>, u64>) -> Vec<(usize, u64)> {
        retired
            .iter()
            .map(|(base, &mark)| (index_in(base, 'r'), mark))
            .collect()
    }

    fn replica(state: &State) -> Self {
        Parts {
            owner: (
                index_in(state.replica().base(), 'r'),
                state.replica().incarnation(),
            ),
            fixed: 0,
            logs: Self::of_logs(state.replicas().map(|(id, log, status)| (id, log, Some(status)))),
            retired: Self::of_retired(state.retired()),
        }
    }

    fn payload(payload: &Payload) -> Self {
        let mut hasher = digester();
        match payload {
            Payload::Full { from, snapshot } => {
                // The producer is `from`: renamed with the owner, not here.
                debug_assert_eq!(index_in(snapshot.replica().base(), 'r'), *from);
                0u8.hash(&mut hasher);
                Parts {
                    owner: (*from, snapshot.replica().incarnation()),
                    fixed: hasher.finish(),
                    logs: Self::of_logs(snapshot.logs().iter().map(|(id, log)| (id, log, None))),
                    retired: Self::of_retired(snapshot.retired()),
                }
            }
            Payload::Delta { from, delta } => {
                debug_assert_eq!(index_in(delta.replica().base(), 'r'), *from);
                (1u8, delta.replica().incarnation(), delta.range(), delta.leaves()).hash(&mut hasher);
                for (&clock, entry) in delta.joins() {
                    hash_entry(clock, entry, &mut hasher);
                }
                Parts {
                    owner: (*from, 0),
                    fixed: hasher.finish(),
                    logs: Vec::new(),
                    retired: Vec::new(),
                }
            }
        }
    }

    /// Their digest under each renaming of `replicas` replicas, in the
    /// order of [`permutations`].
    fn renamed(&self, replicas: usize) -> Arc<[u64]> {
        permutations(replicas)
            .iter()
            .map(|perm| {
                let mut hasher = digester();
                self.hash_renamed(perm, &mut hasher);
                hasher.finish()
            })
            .collect()
    }

    /// Hashes these parts with replica `i` renamed `perm[i]`.
    fn hash_renamed(&self, perm: &[usize], hasher: &mut impl Hasher) {
        ((perm[self.owner.0], self.owner.1), self.fixed).hash(hasher);
        let mut logs: Vec<LogPart> = self
            .logs
            .iter()
            .map(|&(index, incarnation, up, content)| (perm[index], incarnation, up, content))
            .collect();
        logs.sort_unstable();
        logs.hash(hasher);
        let mut retired: Vec<(usize, u64)> = self
            .retired
            .iter()
            .map(|&(index, mark)| (perm[index], mark))
            .collect();
        retired.sort_unstable();
        retired.hash(hasher);
    }
}

/// Symmetry reduction for stateright (`checker().symmetry_fn(representative)`,
/// DFS only): replicas are interchangeable, since each starts alike with the
/// same budget and every action is offered for every replica. The
/// representative is a hollow state that carries only the least digest over
/// every renaming of replicas, which is all the checker reads of it (it
/// fingerprints the representative and carries on with the original).
///
/// Each replica and payload keeps its own digest under every renaming, made
/// when it changed or was produced, so this only combines a few numbers per
/// renaming.
///
/// It also forgets the order in which payloads were produced: two states
/// whose replicas agree and whose payloads are the same set behave alike
/// (deliveries name a payload by its index in the list, but every index is
/// offered), so interleavings of independent local operations meet.
pub fn representative(state: &CrdtState) -> CrdtState {
    let mut rest = digester();
    (state.faults_left, state.resurrection.is_some()).hash(&mut rest);
    let rest = rest.finish();
    // The model has at most 4 replicas (see `CrdtModelCfg::into_model`), so
    // at most 24 renamings: this runs for every successor, on the stack.
    let count = state.replicas.len();
    let renamings = permutations(count);
    // Each replica's fixed part, as a well-mixed word to fold into its
    // digests by XOR: one word per replica and renaming to hash.
    let mut fixed = [0u64; 4];
    for (slot, replica) in fixed.iter_mut().zip(&state.replicas) {
        let mut hasher = digester();
        replica.fixed().hash(&mut hasher);
        *slot = hasher.finish();
    }
    // Payloads as a set: which were produced matters, not in what order (a
    // delivery may pick any of them, and equal payloads deliver alike). Each
    // digest counts once, at its first payload, and the payloads' digests
    // under each renaming are combined by a sum, which no order changes.
    let mut sums = [0u64; 24];
    let mut distinct = 0usize;
    for (index, produced) in state.payloads.iter().enumerate() {
        let digest = produced.digest();
        if state.payloads[..index]
            .iter()
            .any(|earlier| earlier.digest() == digest)
        {
            continue;
        }
        distinct += 1;
        for (sum, renamed) in sums.iter_mut().zip(produced.body.renamed.iter()) {
            *sum = sum.wrapping_add(*renamed);
        }
    }
    let digest = renamings
        .iter()
        .enumerate()
        .map(|(renaming, perm)| {
            let mut hasher = digester();
            // Replicas in their new order, each digested under the renaming.
            let mut order = [0usize; 4];
            for (old, &new) in perm.iter().enumerate() {
                order[new] = old;
            }
            for &old in &order[..count] {
                hasher.write_u64(state.replicas[old].renamed[renaming] ^ fixed[old]);
            }
            hasher.write_u64(distinct as u64);
            hasher.write_u64(sums[renaming]);
            hasher.write_u64(rest);
            hasher.finish()
        })
        .min()
        .expect("at least one permutation");
    let (history, pruned) = HOLLOW.with(|(history, pruned)| (Arc::clone(history), Arc::clone(pruned)));
    CrdtState {
        replicas: Vec::new(),
        payloads: Vec::new(),
        faults_left: 0,
        resurrection: None,
        history,
        pruned,
        symmetric_digest: Some(digest),
    }
}

thread_local! {
    /// The ground truth and pruned payloads of a hollow [`representative`],
    /// shared rather than allocated for each one; one pair per thread, so
    /// the checker's threads do not contend for the counts.
    static HOLLOW: (Arc<History>, Arc<Vec<Payload>>) = (Arc::new(History::new()), Arc::default());
}

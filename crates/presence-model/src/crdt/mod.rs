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

use presence_core::invariants::{check_safety_of, History, Invariant, SafetyInputs};
use presence_core::{Diff, ReplicaId, State};
use stateright::{Model, Property};

mod convergence;
mod gossip;
mod outcomes;
mod symmetry;

pub use convergence::anti_entropy_converges;
pub use gossip::{Gossip, Produced};
pub use symmetry::representative;

use crate::no_resurrection_since;
use outcomes::{digests, local_step, spent_on, Caches, Delivery, Digested, LocalOp};

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

/// One replica of the model.
#[derive(Clone, Debug)]
pub struct ModelReplica {
    /// The replica (shared with other model states, and with the delivery
    /// cache, until changed).
    pub state: Arc<State>,
    /// Sum of the fingerprints of every diff it emitted (I1).
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
        self.diffs_fingerprint = self.diffs_fingerprint.wrapping_add(diff.fingerprint());
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
    pub pruned: Arc<Vec<Gossip>>,
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
    /// Gossip `payload` (an index into all produced so far) reaches `to`.
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
        replica.diffs_fingerprint = replica.diffs_fingerprint.wrapping_add(delivery.diffs);
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
                "a clock issued after a leave reaches a peer",
                |model: &CrdtModel, state: &CrdtState| {
                    model.can_deliver(state, |delivered| delivered.rejoin_after_leave)
                },
            ),
            Property::sometimes(
                "a delta that does not connect is refused",
                |model: &CrdtModel, state: &CrdtState| model.can_refuse_a_delta(state),
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

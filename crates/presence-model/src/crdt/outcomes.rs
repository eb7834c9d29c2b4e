//! What the CRDT model remembers: the outcome of a local operation or a
//! delivery is a function of the replica and payload digests alone, and the
//! same replica state meets the same payload in a great many model states,
//! so each outcome is computed once and kept in a bounded [`Memo`], looked
//! up through each thread's [`Recent`] table first.

use std::sync::Arc;

use presence_core::{Diff, ReplicaId, State};
use serde_json::json;

use super::convergence::Exchange;
use super::symmetry::{canonical_digest, RenamableParts};
use super::*;
use crate::memo::{Memo, Recent};
use crate::no_resurrection_since;

/// Results that are functions of replica and payload digests alone, which
/// recur across a great many model states: each is computed once per
/// distinct input and kept in a bounded [`Memo`] shared by the checker's
/// threads. They belong to one model (and its clones), so every check
/// starts cold and measures what it computes. Deliveries and spent
/// verdicts, looked up for nearly every successor, go through each
/// thread's [`Recent`] table first.
#[derive(Debug)]
pub(super) struct Caches {
    /// [`delivery`] by (replica digest, payload digest, replica count); each
    /// of the 16 shards holds at most 2^13 outcomes, each with a state.
    pub(super) deliveries: Memo<(u64, u64, usize), Option<Arc<Delivery>>>,
    /// [`spent_on`] by (replica digest, payload digest); at most 2^18 per
    /// shard.
    pub(super) spent: Memo<(u64, u64), bool>,
    /// [`local_step`] by (replica digest, operation, budget left); at most
    /// 2^12 per shard.
    pub(super) locals: Memo<(u64, LocalOp, u8), Option<Arc<LocalStep>>>,
    /// The complete exchange of I2 by the replicas' digests; at most 2^12
    /// per shard.
    pub(super) exchanges: Memo<Vec<u64>, Arc<Result<Exchange, String>>>,
    /// The verdict of I2 by the replicas' digests and the ground truth's
    /// (see [`History::hash_canonical`]); at most 2^14 per shard.
    pub(super) convergence: Memo<(Vec<u64>, u64), Result<(), String>>,
}

/// A thread's recent deliveries, as [`Caches::deliveries`] holds them.
pub(super) type RecentDeliveries = Recent<(u64, u64, usize), Option<Arc<Delivery>>>;

thread_local! {
    /// The thread's recent [`Caches::deliveries`].
    static RECENT_DELIVERIES: std::cell::RefCell<RecentDeliveries> = std::cell::RefCell::default();
    /// The thread's recent [`Caches::spent`].
    static RECENT_SPENT: std::cell::RefCell<Recent<(u64, u64), bool>> = std::cell::RefCell::default();
}

impl Caches {
    pub(super) fn new() -> Self {
        Self {
            deliveries: Memo::new(1 << 13),
            spent: Memo::new(1 << 18),
            locals: Memo::new(1 << 12),
            exchanges: Memo::new(1 << 12),
            convergence: Memo::new(1 << 14),
        }
    }
}

/// What the checker reads of a replica state: its digest (see
/// [`canonical_digest`]), its view fingerprint, and its digests under every
/// renaming of `replicas` replicas (see [`representative`]).
pub(super) fn digests(state: &State, replicas: usize) -> (u64, u64, Arc<[u64]>) {
    (
        canonical_digest(state),
        state.view_fingerprint(),
        RenamableParts::replica(state).renamed(replicas),
    )
}

/// A replica state a remembered step leads to, with its [`digests`], made
/// once for every model state that takes the step.
pub(super) struct Digested {
    pub(super) state: Arc<State>,
    pub(super) canonical: u64,
    pub(super) view: u64,
    pub(super) renamed: Arc<[u64]>,
}

impl Digested {
    pub(super) fn new(state: State, replicas: usize) -> Self {
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
pub(super) enum LocalOp {
    Join,
    Leave,
    Update,
}

/// What a local operation does to one replica state: a function of the
/// state and the budget left (an update's meta is that number), so
/// remembered (see [`Caches`]).
pub(super) struct LocalStep {
    /// The state after the operation, its delta taken.
    pub(super) next: Digested,
    /// The operation's diff.
    pub(super) diff: Diff,
    /// The I3 violation of the step, if any.
    pub(super) resurrection: Option<String>,
    /// The delta, then the full state, as offered to the others.
    pub(super) produced: [Produced; 2],
}

/// Replica `at` (`replica`) performing `operation` in a model of `replicas`
/// replicas. `None` when the operation is refused.
pub(super) fn local_step(
    replica: &ModelReplica,
    at: usize,
    operation: LocalOp,
    replicas: usize,
) -> Option<LocalStep> {
    let mut next = State::clone(&replica.state);
    let diff = match operation {
        LocalOp::Join => next.join(&pid(at), TOPIC, KEY, json!({"v": 0})).ok()?,
        LocalOp::Leave => next.leave(&pid(at), TOPIC, KEY),
        LocalOp::Update => next
            .update(&pid(at), TOPIC, KEY, json!({"v": replica.ops_left}))
            .ok()?,
    };
    let delta = Gossip::Delta {
        from: at,
        delta: Arc::new(next.take_delta()),
    };
    let full = Gossip::Full {
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
pub(super) fn merge_payload(state: &mut State, payload: &Gossip) -> Option<(Diff, bool)> {
    match payload {
        Gossip::Full { snapshot, .. } => {
            let stale = snapshot
                .logs()
                .iter()
                .any(|(id, log)| !log.values().is_empty() && state.is_retired_id(id));
            Some((state.merge_snapshot(snapshot), stale))
        }
        Gossip::Delta { delta, .. } => {
            let stale = state.is_retired_id(delta.replica()) && !delta.joins().is_empty();
            state.merge_delta(delta).ok().map(|diff| (diff, stale))
        }
    }
}

/// Whether delivering `payload` to `replica` (in a model of `replicas`
/// replicas) changes nothing now and will change nothing later while the
/// replica does not restart. Computed afresh: the pruning audit's
/// independent check.
pub(super) fn spent_on(replica: &ModelReplica, payload: &Gossip, replicas: usize) -> bool {
    delivery(&replica.state, payload, replicas)
        .is_some_and(|delivered| delivered.changes_nothing(replica.canonical))
}

/// What delivering one payload to one replica state does: a function of
/// the two, so remembered (see [`Caches`]).
pub(super) struct Delivery {
    /// The state after the merge, and after the reincarnation if the
    /// payload told the replica it was retired.
    pub(super) next: Digested,
    /// Sum of the fingerprints of the diffs emitted.
    pub(super) diffs: u64,
    /// Whether the merge's diff was empty.
    pub(super) quiet: bool,
    /// Whether the payload carried entries of a replica the receiver had
    /// retired.
    pub(super) stale: bool,
    /// Whether the merge removed a presence of a replica other than the
    /// payload's producer.
    pub(super) relayed_removal: bool,
    /// Whether it removed a presence while the key stayed present.
    pub(super) add_wins: bool,
    /// Whether it showed a presence of a replica whose every earlier
    /// presence the receiver had seen leave: a clock issued after a leave.
    pub(super) rejoin_after_leave: bool,
    /// The incarnation the replica left, if it reincarnated.
    pub(super) reincarnated_from: Option<ReplicaId>,
    /// The I3 violation of the step, if any.
    pub(super) resurrection: Option<String>,
}

impl Delivery {
    /// Whether it changes nothing for a replica whose digest was `before`.
    pub(super) fn changes_nothing(&self, before: u64) -> bool {
        self.quiet && self.next.canonical == before
    }

    /// Whether delivering either of two payloads to one replica state
    /// leads to the same model state: everything [`CrdtModel::deliver`]
    /// takes from a delivery agrees (the new state by its digest).
    pub(super) fn same_outcome(&self, other: &Self) -> bool {
        self.next.canonical == other.next.canonical
            && self.diffs == other.diffs
            && self.reincarnated_from == other.reincarnated_from
            && self.resurrection == other.resurrection
    }
}

/// Delivers `payload` to a replica in `state`, in a model of `replicas`
/// replicas. `None` when a delta is refused for a gap.
pub(super) fn delivery(state: &State, payload: &Gossip, replicas: usize) -> Option<Delivery> {
    let mut next = State::clone(state);
    let (diff, stale) = merge_payload(&mut next, payload)?;
    let producer = replica_id(payload.from(), 0);
    let relayed_removal = diff
        .leaves
        .iter()
        .any(|p| p.tag.replica.base() != producer.base());
    let add_wins = !diff.leaves.is_empty() && next.count_keys(TOPIC) > 0;
    let rejoin_after_leave = diff.joins.iter().any(|presence| {
        state
            .log(&presence.tag.replica)
            .is_some_and(|log| log.context() >= 2 && log.values().is_empty())
    });
    let quiet = diff.is_empty();
    let mut diffs = diff.fingerprint();
    let mut reincarnated_from = None;
    if next.is_retired() {
        let old = next.replica().clone();
        let incarnation = next.next_incarnation();
        let diff = next
            .reincarnate(incarnation)
            .expect("next incarnation is accepted");
        diffs = diffs.wrapping_add(diff.fingerprint());
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
        rejoin_after_leave,
        reincarnated_from,
    })
}

impl CrdtModel {
    /// [`delivery`], remembered (see [`Caches`]): the same replica state
    /// receives the same payload in a great many states, and each time would
    /// cost a copy, a merge and two digests.
    pub(super) fn delivery_cached(
        &self,
        replica: &ModelReplica,
        produced: &Produced,
    ) -> Option<Arc<Delivery>> {
        let replicas = self.cfg.replicas;
        self.caches.deliveries.get_or_compute_recent(
            &RECENT_DELIVERIES,
            (replica.canonical, produced.digest(), replicas),
            replica.canonical ^ produced.digest(),
            || delivery(&replica.state, produced.payload(), replicas).map(Arc::new),
        )
    }

    /// [`spent_on`], remembered (see [`Caches`]): the key says everything
    /// the verdict depends on. A verdict takes the delivery it judges from
    /// the delivery table, so a later delivery of the payload to that state
    /// costs nothing more.
    pub(super) fn spent_on_cached(&self, replica: &ModelReplica, produced: &Produced) -> bool {
        self.caches.spent.get_or_compute_recent(
            &RECENT_SPENT,
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
    pub(super) fn can_deliver(&self, state: &CrdtState, makes: impl Fn(&Delivery) -> bool) -> bool {
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

    /// Whether some delta in `state` would be refused by some replica
    /// other than its producer for a gap (B5): judged one delivery ahead,
    /// as [`CrdtModel::can_deliver`] judges.
    pub(super) fn can_refuse_a_delta(&self, state: &CrdtState) -> bool {
        state.payloads.iter().any(|produced| {
            let from = produced.payload().from();
            matches!(produced.payload(), Gossip::Delta { .. })
                && state
                    .replicas
                    .iter()
                    .enumerate()
                    .any(|(to, replica)| to != from && self.delivery_cached(replica, produced).is_none())
        })
    }
}

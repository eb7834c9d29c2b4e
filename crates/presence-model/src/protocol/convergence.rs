//! I2 in the protocol model, judged from every state two ways: an abstract
//! complete exchange of full states ([`exchange_converges`]), and the
//! protocol itself run onward once faults heal ([`heals_to_convergence`]).

use std::collections::VecDeque;
use std::sync::Arc;

use presence_core::invariants::{check_convergence, exchange_full_states};
use presence_core::State;
use presence_tracker::Node;

use super::*;

impl ProtocolModel {
    pub(super) fn healed_views_converge(&self, nodes: &[Option<Healing>]) -> Result<(), String> {
        let mut hasher = digester();
        for node in nodes {
            node.as_ref().map(|node| node.digests.replica).hash(&mut hasher);
        }
        let key = hasher.finish();
        self.views
            .get_or_compute(key, key, || healed_views_converge(nodes))
    }
}

/// Heartbeat rounds a healed cluster gets to converge: enough for a silent
/// peer to be marked down (two periods) and permdowned (three), with room
/// for the transfers that follow.
pub const HEAL_ROUNDS: usize = 8;

/// Messages a healed cluster may exchange before it is judged to loop.
pub(super) const HEAL_MESSAGES: usize = 10_000;

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
    let mut in_flight: Vec<(Id, Id, &Packet)> = state
        .inner
        .network
        .iter_deliverable()
        .filter(|envelope| model.deliverable(state, envelope))
        .map(|envelope| (envelope.src, envelope.dst, envelope.msg))
        .collect();
    in_flight.sort_unstable();
    let mut queue: VecDeque<(usize, Packet)> = in_flight
        .into_iter()
        .map(|(_, dst, wire)| (usize::from(dst), wire.clone()))
        .collect();
    let mut delivered = 0;
    let mut drain = |nodes: &mut Vec<Option<Healing>>, queue: &mut VecDeque<(usize, Packet)>| {
        while let Some((to, wire)) = queue.pop_front() {
            delivered += 1;
            if delivered > HEAL_MESSAGES {
                return Err(format!("more than {HEAL_MESSAGES} messages after healing"));
            }
            if let Some(node) = nodes[to].as_mut() {
                node.take(actor, to, Stimulus::Message(&wire), queue);
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
            node.take(actor, at, Stimulus::Tick, &mut queue);
            drain(&mut nodes, &mut queue)?;
        }
    }
    model.healed_views_converge(&nodes)
}

/// A live node in the healed run of [`heals_to_convergence`].
pub(super) struct Healing {
    pub(super) node: Arc<Node>,
    pub(super) digests: Digests,
    pub(super) now_ms: u64,
}

impl Healing {
    /// Node `at` takes `input` (a message or a tick) through the
    /// actor's own step, and its messages join the healed network's queue.
    pub(super) fn take(
        &mut self,
        actor: &TrackerActor,
        at: usize,
        input: Stimulus<'_>,
        queue: &mut VecDeque<(usize, Packet)>,
    ) {
        let enqueue = |sends: &[(Vec<Id>, Packet)], queue: &mut VecDeque<(usize, Packet)>| {
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
            StepOutcome::Rejected => {}
            StepOutcome::Reincarnated(node, outputs) => {
                self.digests = Digests::of(&node);
                self.node = Arc::from(node);
                let (_, sends) = TrackerActor::sort_out(outputs, Id::from(at), actor.peers());
                enqueue(&sends, queue);
            }
            StepOutcome::Remembered(step) => {
                self.node = Arc::clone(&step.node);
                self.digests = step.digests;
                enqueue(&step.sends, queue);
            }
        }
    }
}

/// Whether every live node's view is the live nodes' own presences.
pub(super) fn healed_views_converge(nodes: &[Option<Healing>]) -> Result<(), String> {
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
pub(super) fn own_presences<'s>(
    replicas: impl Iterator<Item = &'s State>,
) -> presence_core::invariants::View {
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
pub(super) fn hide_silent(replicas: &mut [State]) {
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

//! Invariants of a whole node, beside the replica-state ones of
//! `presence_core::invariants` (which cannot name a tracker type): I10
//! timeliness, I11 on what a step sends, and the node's part of I7
//! (nothing kept names a departed replica). Compiled with the `inspect` feature; the simulator and the
//! protocol model call them.

use presence_core::invariants::{check_delta_sanity, check_extract_sanity, Invariant, Violation};
use presence_core::{ReplicaId, State};

use crate::message::{Clocks, Message, Transfer};
use crate::node::{Input, Node, Output, PeerStatus};

/// I10, judged right after a tick at `now_ms` (the node's own clock): no
/// peer shown while silent for the down period, and none kept (down)
/// while silent for the permdown period. Between ticks a peer may be
/// overdue by up to one tick; a runtime must tick at least that often.
/// A clock that steps backward makes a peer look heard more recently, so
/// it can only delay detection, by the size of the step.
pub fn check_timeliness(node: &Node, now_ms: u64) -> Result<(), Violation> {
    let config = node.config();
    for (id, peer) in node.peers() {
        let silent_ms = now_ms.saturating_sub(peer.last_heard_ms);
        let overdue = match peer.status {
            PeerStatus::Up if silent_ms >= config.down_period_ms => Some(("shows", config.down_period_ms)),
            PeerStatus::Down if silent_ms >= config.permdown_period_ms => {
                Some(("still keeps", config.permdown_period_ms))
            }
            _ => None,
        };
        if let Some((doing, period_ms)) = overdue {
            return Err(Violation {
                invariant: Invariant::Timeliness,
                detail: format!(
                    "{} {doing} {id}, silent for {silent_ms} ms, past its {period_ms} ms period",
                    node.replica()
                ),
            });
        }
    }
    Ok(())
}

/// The node's part of I7: no peer entry and no outstanding transfer names
/// a replica its state has retired (a permdowned or superseded
/// incarnation). The state's own part is `check_bounded_memory`.
pub fn check_node_forgets(node: &Node) -> Result<(), Violation> {
    check_forgotten(node.state(), node.peers().keys().chain(node.pending_transfers()))
}

/// No replica of `named` is one `state` has retired.
pub fn check_forgotten<'a>(
    state: &State,
    mut named: impl Iterator<Item = &'a ReplicaId>,
) -> Result<(), Violation> {
    match named.find(|id| state.is_retired_id(id)) {
        Some(id) => Err(Violation {
            invariant: Invariant::BoundedMemory,
            detail: format!("{} still keeps peer {id}, which it retired", state.replica()),
        }),
        None => Ok(()),
    }
}

/// Who asked, with what clocks, when `input` may be answered with a
/// transfer: a transfer request, or a heartbeat from a replica the node
/// retired or does not know (answered with its state if it is retired, or
/// turns out to be older than a forgotten watermark). Cloned only then, so
/// a harness can judge the answer with [`check_output_sanity`].
pub fn asker_of(node: &Node, input: &Input) -> Option<(ReplicaId, Clocks)> {
    match input {
        Input::Receive(Message::TransferRequest { from, clocks, .. }) => Some((from.clone(), clocks.clone())),
        Input::Receive(Message::Heartbeat { from, clocks, .. })
            if node.state().is_retired_id(from) || !node.knows(from) =>
        {
            Some((from.clone(), clocks.clone()))
        }
        _ => None,
    }
}

/// I11 on one output of `sender`'s step: a heartbeat's delta is the
/// sender's own, and a transfer goes only to whoever asked in that step
/// (`asker`, from [`asker_of`]) and names only what the asker may accept
/// and lacks.
pub fn check_output_sanity(
    sender: &ReplicaId,
    output: &Output,
    asker: Option<&(ReplicaId, Clocks)>,
) -> Result<(), Violation> {
    match output {
        Output::Broadcast(Message::Heartbeat {
            from,
            delta: Some(delta),
            ..
        }) => check_delta_sanity(delta, from, None),
        Output::Send {
            to,
            message: Message::TransferAck { from, transfer },
        } => match asker.filter(|(asker, _)| asker == to) {
            Some((asker, clocks)) => match transfer {
                Transfer::State(snapshot) => check_extract_sanity(snapshot, asker, clocks),
                Transfer::Delta(delta) => {
                    check_delta_sanity(delta, from, Some(clocks.get(from).copied().unwrap_or(0)))
                }
            },
            None => Err(Violation {
                invariant: Invariant::PayloadSanity,
                detail: format!("{sender} sent {to} a transfer it did not ask for"),
            }),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn heartbeat(from: &ReplicaId) -> Input {
        Input::Receive(Message::Heartbeat {
            from: from.clone(),
            clocks: Default::default(),
            delta: None,
            uptime_ms: 0,
        })
    }

    #[test]
    fn a_peer_past_its_period_at_a_tick_breaks_timeliness() {
        let config = Config::default();
        let peer = ReplicaId::new("b", 1);
        let mut node = Node::new(ReplicaId::new("a", 1), config.clone(), 0).unwrap();
        node.handle(heartbeat(&peer), 0).unwrap();
        assert_eq!(check_timeliness(&node, config.down_period_ms - 1), Ok(()));
        // Judged without the tick that would have hidden it: overdue.
        let caught = check_timeliness(&node, config.down_period_ms).unwrap_err();
        assert_eq!(caught.invariant, Invariant::Timeliness);
        // With the tick, the peer is down, then permdowned in time.
        node.handle(Input::Tick, config.down_period_ms).unwrap();
        assert_eq!(node.peers()[&peer].status, PeerStatus::Down);
        assert_eq!(check_timeliness(&node, config.down_period_ms), Ok(()));
        assert!(check_timeliness(&node, config.permdown_period_ms).is_err());
        node.handle(Input::Tick, config.permdown_period_ms).unwrap();
        assert!(node.peers().is_empty());
        assert_eq!(check_timeliness(&node, config.permdown_period_ms), Ok(()));
        assert_eq!(check_node_forgets(&node), Ok(()));
    }

    #[test]
    fn a_retired_peer_still_kept_breaks_i7() {
        let config = Config::default();
        let old = ReplicaId::new("b", 1);
        let mut node = Node::new(ReplicaId::new("a", 1), config, 0).unwrap();
        node.handle(heartbeat(&old), 0).unwrap();
        node.handle(heartbeat(&old.with_incarnation(2)), 10).unwrap();
        assert!(node.state().is_retired_id(&old));
        assert_eq!(check_node_forgets(&node), Ok(()));
        // A node that had not pruned its table would still name `old`.
        let kept = [old.clone()];
        let caught = check_forgotten(node.state(), kept.iter()).unwrap_err();
        assert_eq!(caught.invariant, Invariant::BoundedMemory);
        assert!(caught.detail.contains("b@1"), "{}", caught.detail);
    }
}

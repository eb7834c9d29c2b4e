//! Claims are bounded: what one message can make a node learn is what the
//! node asked about, plus its sender. A transfer naming thousands of
//! replicas nobody announced (the attack that once grew a node's own
//! heartbeats past a datagram) leaves the node as it was; a heartbeat or a
//! delta transfer carrying another replica's delta is not merged.

use presence_core::{ReplicaId, State};
use presence_tracker::{Input, Message, Node, Output, Transfer};
use serde_json::json;

mod bus;
use bus::heartbeat_of;

fn a_node_that_knows_b() -> (Node, Node) {
    let config = bus::test_config();
    let mut a = Node::new(ReplicaId::new("a", 1), config.clone(), 0).unwrap();
    let mut b = Node::new(ReplicaId::new("b", 1), config, 0).unwrap();
    let hello = heartbeat_of(&mut b, 0);
    a.handle(Input::Receive(hello), 10).unwrap();
    (a, b)
}

fn heartbeat_bytes(node: &mut Node, now_ms: u64) -> usize {
    node.handle(Input::Tick, now_ms)
        .unwrap()
        .into_iter()
        .find_map(|output| match output {
            Output::Broadcast(message) => Some(message.to_json().len()),
            _ => None,
        })
        .unwrap_or(0)
}

#[test]
fn a_transfer_naming_thousands_of_unannounced_replicas_teaches_nothing() {
    let (mut a, _) = a_node_that_knows_b();
    let before = a.footprint();
    // b's state, as a forger would swell it: 3,800 context-only replicas.
    let mut swollen = State::new(ReplicaId::new("b", 1));
    for index in 0..3_800 {
        let _ = swollen.merge_delta(&{
            let mut other = State::new(ReplicaId::new(&format!("ghost{index}"), 1));
            other.join("p", "room", "k", json!({})).unwrap();
            other.take_delta()
        });
    }
    assert_eq!(swollen.replicas().count(), 3_801);
    let ack = Message::TransferAck {
        from: ReplicaId::new("b", 1),
        transfer: Transfer::State(swollen.snapshot()),
    };
    a.handle(Input::Receive(ack), 20).unwrap();
    assert_eq!(a.footprint().known_replicas, before.known_replicas);
    assert!(a.state().get_by_topic("room").is_empty());
    assert!(heartbeat_bytes(&mut a, 5_000) < 1_000);
}

#[test]
fn a_delta_of_another_replica_is_not_merged() {
    let (mut a, _) = a_node_that_knows_b();
    let mut ghost = State::new(ReplicaId::new("ghost", 1));
    ghost.join("p", "room", "k", json!({})).unwrap();
    let delta = ghost.take_delta();
    let heartbeat = Message::Heartbeat {
        from: ReplicaId::new("b", 1),
        clocks: Default::default(),
        delta: Some(delta.clone()),
        uptime_ms: 10,
    };
    a.handle(Input::Receive(heartbeat), 20).unwrap();
    let ack = Message::TransferAck {
        from: ReplicaId::new("b", 1),
        transfer: Transfer::Delta(delta),
    };
    a.handle(Input::Receive(ack), 30).unwrap();
    assert!(a.state().get_by_topic("room").is_empty());
    assert!(a.state().log(&ReplicaId::new("ghost", 1)).is_none());
}

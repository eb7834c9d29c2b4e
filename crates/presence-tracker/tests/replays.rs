//! Replayed messages change nothing harmful: an old heartbeat of a live
//! peer, delivered again after newer ones, shows no presence that left;
//! a heartbeat of an earlier incarnation, replayed after the next one was
//! heard, brings none of its presences back.

use presence_core::{Diff, ReplicaId};
use presence_tracker::{Input, Node, Output};
use serde_json::json;

mod bus;
use bus::heartbeat_of as heartbeat;

fn diffs(outputs: &[Output]) -> Diff {
    let mut all = Diff::default();
    for output in outputs {
        if let Output::Diff(diff) = output {
            all.joins.extend(diff.joins.iter().cloned());
            all.leaves.extend(diff.leaves.iter().cloned());
        }
    }
    all
}

fn track(node: &mut Node, key: &str, now_ms: u64) {
    node.handle(
        Input::Track {
            pid: format!("pid-{key}"),
            topic: "room".into(),
            key: key.into(),
            meta: json!({}),
        },
        now_ms,
    )
    .unwrap();
}

#[test]
fn an_old_heartbeat_replayed_shows_nothing_that_left() {
    let config = bus::test_config();
    let mut a = Node::new(ReplicaId::new("a", 1), config.clone(), 0).unwrap();
    let mut b = Node::new(ReplicaId::new("b", 1), config, 0).unwrap();
    track(&mut b, "bob", 0);
    let joined = heartbeat(&mut b, 0);
    b.handle(
        Input::Untrack {
            pid: "pid-bob".into(),
            topic: "room".into(),
            key: "bob".into(),
        },
        1_000,
    )
    .unwrap();
    let left = heartbeat(&mut b, 1_000);
    a.handle(Input::Receive(joined.clone()), 1_000).unwrap();
    a.handle(Input::Receive(left), 1_500).unwrap();
    assert!(a.state().get_by_topic("room").is_empty());
    let replayed = a.handle(Input::Receive(joined), 2_000).unwrap();
    assert!(diffs(&replayed).joins.is_empty(), "{replayed:?}");
    assert!(a.state().get_by_topic("room").is_empty());
}

#[test]
fn a_replayed_heartbeat_of_an_earlier_incarnation_brings_nothing_back() {
    let config = bus::test_config();
    let mut a = Node::new(ReplicaId::new("a", 1), config.clone(), 0).unwrap();
    let mut old = Node::new(ReplicaId::new("b", 1), config.clone(), 0).unwrap();
    track(&mut old, "ghost", 0);
    let from_old = heartbeat(&mut old, 0);
    a.handle(Input::Receive(from_old.clone()), 500).unwrap();
    // b restarts as b@2 and says so: b@1 is retired at once.
    let mut new = Node::new(ReplicaId::new("b", 2), config, 1_000).unwrap();
    let from_new = heartbeat(&mut new, 1_000);
    let retired = a.handle(Input::Receive(from_new), 1_000).unwrap();
    assert_eq!(diffs(&retired).leaves.len(), 1, "{retired:?}");
    let replayed = a.handle(Input::Receive(from_old), 2_000).unwrap();
    assert!(diffs(&replayed).joins.is_empty(), "{replayed:?}");
    assert!(a.state().get_by_topic("room").is_empty());
    assert!(a.state().log(&ReplicaId::new("b", 1)).is_none());
}

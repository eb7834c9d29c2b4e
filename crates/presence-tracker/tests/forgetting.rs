//! Forgetting departed bases: a watermark goes once it has been held for the
//! retirement memory and no peer names its base; a replica that comes back
//! older than what was forgotten is retired again rather than taken in; a
//! transfer from a sender that is not a peer plants nothing.

use presence_core::{ReplicaId, State};
use presence_tracker::{Config, Input, Message, Node, Output, Transfer};
use serde_json::json;

mod bus;

/// The bus's timings: down after 10 s, permdown after 60 s.
const MEMORY_MS: u64 = 120_000;

fn config() -> Config {
    let config = bus::test_config();
    assert_eq!(config.retirement_memory_ms, MEMORY_MS);
    config
}

fn heartbeat(from: &ReplicaId, clocks: &[(&ReplicaId, u64)], uptime_ms: u64) -> Input {
    Input::Receive(Message::Heartbeat {
        from: from.clone(),
        clocks: clocks.iter().map(|&(id, clock)| (id.clone(), clock)).collect(),
        delta: None,
        uptime_ms,
    })
}

/// Node `a@1` hears `b@1` and `c@1` at 0; afterwards only `b@1`, every
/// second until `until_ms`, with `b_names_c` saying whether b's clocks still
/// name `c@1`. The node ticks every second.
fn run_with_c_silent(until_ms: u64, b_names_c: bool) -> Node {
    run_as_with_c_silent(ReplicaId::new("a", 1), until_ms, b_names_c)
}

/// As [`run_with_c_silent`], the node being `own`.
fn run_as_with_c_silent(own: ReplicaId, until_ms: u64, b_names_c: bool) -> Node {
    let (b, c) = (ReplicaId::new("b", 1), ReplicaId::new("c", 1));
    let mut node = Node::new(own, config(), 0).unwrap();
    node.handle(heartbeat(&c, &[(&c, 0)], 0), 0).unwrap();
    let mut now = 0;
    while now <= until_ms {
        let clocks: Vec<(&ReplicaId, u64)> = if b_names_c || now < 60_000 {
            vec![(&b, 0), (&c, 0)]
        } else {
            vec![(&b, 0)]
        };
        node.handle(heartbeat(&b, &clocks, now), now).unwrap();
        node.handle(Input::Tick, now).unwrap();
        now += 1_000;
    }
    node
}

#[test]
fn a_departed_base_is_forgotten_after_the_memory_once_no_peer_names_it() {
    let held = run_with_c_silent(60_000 + MEMORY_MS - 2_000, false);
    assert_eq!(
        held.state().retired().get("c"),
        Some(&1),
        "permdowned, still held"
    );
    // Its own base's watermark (incarnation 0 is dead) is never forgotten.
    assert_eq!(held.footprint().retired_bases, 2);
    let forgotten = run_with_c_silent(60_000 + MEMORY_MS + 2_000, false);
    assert_eq!(forgotten.state().retired().get("c"), None);
    assert_eq!(forgotten.footprint().retired_bases, 1);
}

/// A node of incarnation 0 holds no watermark of its own base; the
/// departed base's memory must still start when its watermark appears.
#[test]
fn a_first_incarnation_forgets_a_departed_base_too() {
    let own = ReplicaId::new("a", 0);
    let held = run_as_with_c_silent(own.clone(), 60_000 + MEMORY_MS - 2_000, false);
    assert_eq!(held.state().retired().get("c"), Some(&1));
    assert_eq!(held.footprint().retired_bases, 1);
    let forgotten = run_as_with_c_silent(own, 60_000 + MEMORY_MS + 2_000, false);
    assert_eq!(forgotten.state().retired().get("c"), None);
    assert_eq!(forgotten.footprint().retired_bases, 0);
}

/// Each departed base is remembered from when its own watermark appeared:
/// a later departure does not start an earlier one's memory again.
#[test]
fn each_departed_base_is_remembered_from_its_own_departure() {
    let (b, c, d) = (
        ReplicaId::new("b", 1),
        ReplicaId::new("c", 1),
        ReplicaId::new("d", 1),
    );
    let mut node = Node::new(ReplicaId::new("a", 1), config(), 0).unwrap();
    node.handle(heartbeat(&c, &[(&c, 0)], 0), 0).unwrap();
    // c falls silent at once and d 30 s later: each is permdowned 60 s
    // after its last heartbeat.
    let until = 60_000 + MEMORY_MS + 2_000;
    let mut now = 0;
    while now <= until {
        node.handle(heartbeat(&b, &[(&b, 0)], now), now).unwrap();
        if now <= 30_000 {
            node.handle(heartbeat(&d, &[(&d, 0)], now), now).unwrap();
        }
        node.handle(Input::Tick, now).unwrap();
        now += 1_000;
    }
    assert_eq!(node.state().retired().get("c"), None, "c's memory has run out");
    assert_eq!(node.state().retired().get("d"), Some(&1), "d's has not");
}

#[test]
fn a_watermark_stays_while_a_peer_still_names_the_base() {
    let node = run_with_c_silent(60_000 + 3 * MEMORY_MS, true);
    assert_eq!(node.state().retired().get("c"), Some(&1));
}

fn told_retired(outputs: &[Output], to: &ReplicaId) -> bool {
    outputs.iter().any(|output| match output {
        Output::Send {
            to: target,
            message:
                Message::TransferAck {
                    transfer: Transfer::State(snapshot),
                    ..
                },
        } => target == to && snapshot.retired().get(to.base()) == Some(&to.incarnation()),
        _ => false,
    })
}

#[test]
fn a_forgotten_incarnation_that_comes_back_is_retired_again_and_a_new_one_is_taken_in() {
    let until = 60_000 + MEMORY_MS + 2_000;
    let c = ReplicaId::new("c", 1);
    // c was cut off, never crashed: it has run the whole time.
    let mut node = run_with_c_silent(until, false);
    let now = until + 1_000;
    let outputs = node.handle(heartbeat(&c, &[(&c, 3)], now), now).unwrap();
    // (c's uptime is `now`: it started with the node.)
    assert!(told_retired(&outputs, &c), "{outputs:?}");
    assert!(!node.peers().contains_key(&c));
    assert!(node.state().log(&c).is_none());
    assert_eq!(node.state().retired().get("c"), Some(&1));

    // A replica started after the forgetting is new, whatever its name.
    let mut node = run_with_c_silent(until, false);
    let d = ReplicaId::new("d", 1);
    let outputs = node.handle(heartbeat(&d, &[(&d, 0)], 1_000), now).unwrap();
    assert!(!told_retired(&outputs, &d));
    assert!(node.peers().contains_key(&d));
}

#[test]
fn without_forgetting_no_stranger_is_refused_for_its_age() {
    let mut node = Node::new(ReplicaId::new("a", 1), config(), 0).unwrap();
    let old = ReplicaId::new("z", 1);
    let now = 10 * MEMORY_MS;
    node.handle(heartbeat(&old, &[(&old, 0)], now), now).unwrap();
    assert!(node.peers().contains_key(&old));
}

#[test]
fn a_transfer_from_a_sender_that_is_not_a_peer_plants_nothing_but_watermarks() {
    let stranger = ReplicaId::new("e", 1);
    let mut theirs = State::new(stranger.clone());
    theirs.join("p", "room", "eve", json!({})).unwrap();
    theirs.remove_down_replica(&ReplicaId::new("gone", 4)).unwrap();
    let mut node = Node::new(ReplicaId::new("a", 1), config(), 0).unwrap();
    let ack = Message::TransferAck {
        from: stranger.clone(),
        transfer: Transfer::State(theirs.snapshot()),
    };
    let outputs = node.handle(Input::Receive(ack), 1_000).unwrap();
    assert!(
        !outputs.iter().any(|output| matches!(output, Output::Diff(_))),
        "{outputs:?}"
    );
    assert!(node.state().log(&stranger).is_none());
    assert!(!node.peers().contains_key(&stranger));
    assert_eq!(node.state().retired().get("gone"), Some(&4));
}

#[test]
fn a_stranger_started_within_half_a_memory_before_the_forgetting_is_taken_in() {
    // Forgotten at 180,000 (permdown at 60,000 plus the memory).
    let until = 60_000 + MEMORY_MS + 2_000;
    let now = until + 1_000;
    let forgotten_at = 60_000 + MEMORY_MS;
    // Exactly half a memory before is still taken in; a little more is not.
    for (started_before, refused) in [
        (MEMORY_MS / 4, false),
        (MEMORY_MS / 2, false),
        (MEMORY_MS / 2 + 1, true),
    ] {
        let mut node = run_with_c_silent(until, false);
        let d = ReplicaId::new("d", 1);
        let uptime = now - (forgotten_at - started_before);
        let outputs = node.handle(heartbeat(&d, &[(&d, 0)], uptime), now).unwrap();
        assert_eq!(
            told_retired(&outputs, &d),
            refused,
            "started {started_before} ms before the forgetting"
        );
        assert_eq!(node.peers().contains_key(&d), !refused);
    }
}

//! Two cases the widened harness found: a late message of a dead
//! incarnation, and a node that ticks after a long pause.

use presence_core::ReplicaId;
use presence_tracker::{Config, Input, Message, Node, Output, ReplicaEvent};
use serde_json::json;

mod bus;
use bus::heartbeat_of;

fn track(node: &mut Node, pid: &str, key: &str, now_ms: u64) {
    let input = Input::Track {
        pid: pid.into(),
        topic: "room".into(),
        key: key.into(),
        meta: json!({}),
    };
    node.handle(input, now_ms).unwrap();
}

/// A heartbeat of b@1 that arrives after b@2 was heard is from the dead:
/// it retires b@1 instead of showing its presence until the down period.
#[test]
fn a_late_message_of_an_older_incarnation_is_not_taken_in() {
    let config = Config::default();
    let mut a = Node::new(ReplicaId::new("a", 1), config.clone(), 0).unwrap();
    let mut b1 = Node::new(ReplicaId::new("b", 1), config.clone(), 0).unwrap();
    let mut b2 = Node::new(ReplicaId::new("b", 2), config, 0).unwrap();
    track(&mut b1, "old", "bob", 0);
    track(&mut b2, "new", "bob", 0);
    let late = heartbeat_of(&mut b1, 0);
    a.handle(Input::Receive(heartbeat_of(&mut b2, 0)), 10).unwrap();
    a.handle(Input::Receive(late), 20).unwrap();
    let shown: Vec<_> = a
        .state()
        .get_by_key("room", "bob")
        .into_iter()
        .map(|p| p.entry.pid.to_string())
        .collect();
    assert_eq!(shown, ["new"]);
    assert_eq!(a.peers().len(), 1);
    assert!(a.state().is_retired_id(&ReplicaId::new("b", 1)));
}

/// A node that ticks again after a pause longer than the permdown period
/// permdowns a silent peer at that tick, not one tick later.
#[test]
fn a_peer_silent_past_the_permdown_period_goes_in_one_tick() {
    let config = Config::default();
    let mut a = Node::new(ReplicaId::new("a", 1), config.clone(), 0).unwrap();
    let mut b = Node::new(ReplicaId::new("b", 1), config.clone(), 0).unwrap();
    a.handle(Input::Receive(heartbeat_of(&mut b, 0)), 0).unwrap();
    let outputs = a.handle(Input::Tick, config.permdown_period_ms).unwrap();
    let events: Vec<_> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Event(event) => Some(event.clone()),
            _ => None,
        })
        .collect();
    let b_id = ReplicaId::new("b", 1);
    assert_eq!(
        events,
        [ReplicaEvent::Down(b_id.clone()), ReplicaEvent::Permdown(b_id)]
    );
    assert!(a.peers().is_empty());
}

/// A clock that steps back by far more than the down period neither mutes
/// the node (it broadcasts at its next tick) nor hides its peers early.
#[test]
fn a_clock_that_steps_back_is_ridden_out() {
    let config = Config::default();
    let mut a = Node::new(ReplicaId::new("a", 1), config.clone(), 1_000_000).unwrap();
    let mut b = Node::new(ReplicaId::new("b", 1), config.clone(), 0).unwrap();
    heartbeat_of(&mut a, 1_000_000);
    a.handle(Input::Receive(heartbeat_of(&mut b, 0)), 1_000_000)
        .unwrap();
    track(&mut a, "p", "alice", 1_000_000);
    // The clock steps back by ten minutes; the node still broadcasts a
    // period later, not ten minutes later.
    let back = 1_000_000 - 600_000;
    assert!(a.handle(Input::Tick, back).unwrap().is_empty());
    let outputs = a.handle(Input::Tick, back + config.broadcast_period_ms).unwrap();
    assert!(
        outputs
            .iter()
            .any(|output| matches!(output, Output::Broadcast(Message::Heartbeat { .. }))),
        "{outputs:?}"
    );
    // b is heard no later than the step: hidden a down period after it.
    a.handle(Input::Tick, back + config.down_period_ms - 1).unwrap();
    assert_eq!(a.peers().len(), 1);
    assert_eq!(a.state().online_keys("room").len(), 1);
    let outputs = a.handle(Input::Tick, back + config.down_period_ms).unwrap();
    assert!(outputs
        .iter()
        .any(|output| matches!(output, Output::Event(ReplicaEvent::Down(_)))));
}

fn broadcasts(node: &mut Node, now_ms: u64) -> bool {
    node.handle(Input::Tick, now_ms)
        .unwrap()
        .iter()
        .any(|output| matches!(output, Output::Broadcast(Message::Heartbeat { .. })))
}

/// A clock that steps back mid-period moves the next broadcast back with
/// it: the period keeps the time it has run. Found by a 1,000,000-seed
/// swarm, where two steps back in one silent stretch kept a node quiet
/// past `max_silent_periods + 1` periods of true time (I10).
#[test]
fn a_step_back_of_the_clock_keeps_the_period_under_way() {
    let config = Config {
        broadcast_period_ms: 1_000,
        ..Config::default()
    };
    let mut node = Node::new(ReplicaId::new("a", 1), config, 0).unwrap();
    assert!(broadcasts(&mut node, 0), "the first tick says hello");
    track(&mut node, "p", "ann", 100);
    assert!(!broadcasts(&mut node, 900), "900 ms into a 1,000 ms period");
    // The clock steps back by 500 ms: 100 ms of the period are left, which
    // end at 500 on the new clock, not a whole period from now.
    assert!(!broadcasts(&mut node, 400));
    assert!(!broadcasts(&mut node, 499));
    assert!(broadcasts(&mut node, 500), "the period ended on time");
}

/// A transfer asked for stays asked for until `transfer_timeout_ms` has
/// passed, so a node that keeps hearing a peer it lags on does not ask
/// again at every tick; once the timeout passes it may ask again.
#[test]
fn a_transfer_asked_for_is_pending_until_its_timeout() {
    let config = bus::test_config();
    let timeout = config.transfer_timeout_ms;
    let mut a = Node::new(ReplicaId::new("a", 1), config.clone(), 0).unwrap();
    let mut b = Node::new(ReplicaId::new("b", 1), config.clone(), 0).unwrap();
    // a misses b's first heartbeat and hears only the second, whose delta
    // does not connect: a asks b for a transfer.
    track(&mut b, "p1", "bob", 0);
    let _missed = heartbeat_of(&mut b, 0);
    track(&mut b, "p2", "bob", 10);
    let second = heartbeat_of(&mut b, config.broadcast_period_ms);
    let outputs = a.handle(Input::Receive(second), 1_000).unwrap();
    let asked = |outputs: &[Output]| {
        outputs.iter().any(|output| {
            matches!(
                output,
                Output::Send {
                    message: Message::TransferRequest { .. },
                    ..
                }
            )
        })
    };
    assert!(asked(&outputs), "a gap is repaired by a transfer: {outputs:?}");
    let b_id = ReplicaId::new("b", 1);
    let pending = |node: &Node| node.pending_transfers().any(|id| *id == b_id);
    assert!(pending(&a));
    let outputs = a.handle(Input::Tick, 1_000 + timeout / 2).unwrap();
    assert!(pending(&a), "the request was dropped before its timeout");
    assert!(!asked(&outputs), "asked again before the timeout: {outputs:?}");
    // Past the timeout the request is dropped; a node still lagging asks
    // again at once.
    let outputs = a.handle(Input::Tick, 1_000 + timeout + 1).unwrap();
    assert!(
        asked(&outputs) || !pending(&a),
        "the request outlived its timeout"
    );
}

/// What a node refuses says what went wrong, for the caller's logs.
#[test]
fn node_errors_read_as_what_went_wrong() {
    use presence_tracker::NodeError;
    let texts = [
        (NodeError::AlreadyTracked, "presence already tracked"),
        (NodeError::NotTracked, "presence not tracked"),
        (NodeError::ClocksExhausted, "clocks exhausted; restart the node"),
        (NodeError::Stopped, "node is shut down"),
    ];
    for (error, text) in texts {
        assert_eq!(error.to_string(), text);
    }
}

/// Anti-entropy (asking a peer that is ahead for a transfer) runs every
/// `clock_sample_periods` broadcast periods, not every period.
#[test]
fn anti_entropy_runs_every_clock_sample_periods() {
    let config = Config {
        clock_sample_periods: 3,
        transfer_timeout_ms: 1,
        ..bus::test_config()
    };
    let period = config.broadcast_period_ms;
    let mut a = Node::new(ReplicaId::new("a", 1), config.clone(), 0).unwrap();
    let b = ReplicaId::new("b", 1);
    let mut asked_at = Vec::new();
    for tick in 0..12 {
        let now = tick * period;
        // b stays up and claims clock 5 of its own, with no delta.
        let heartbeat = Message::Heartbeat {
            from: b.clone(),
            clocks: [(b.clone(), 5)].into_iter().collect(),
            delta: None,
            uptime_ms: now,
        };
        a.handle(Input::Receive(heartbeat), now).unwrap();
        let outputs = a.handle(Input::Tick, now).unwrap();
        let asked = outputs.iter().any(|output| {
            matches!(
                output,
                Output::Send {
                    message: Message::TransferRequest { .. },
                    ..
                }
            )
        });
        if asked {
            asked_at.push(tick);
        }
    }
    // Once b is a known peer that is ahead, every third period asks.
    assert!(asked_at.len() >= 3, "{asked_at:?}");
    assert!(
        asked_at.windows(2).all(|pair| pair[1] - pair[0] == 3),
        "{asked_at:?}"
    );
}

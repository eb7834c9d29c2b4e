//! The pure-state scenarios, each named after the upstream
//! test or bug it covers. Every operation checks I1 and I3-I7 (see `common`).

mod common;

use common::{keys_of, Cluster, Record};
use presence_core::invariants::{check_convergence, check_merge_commutative, view};
use presence_core::{DeltaError, LocalError, ReplicaId, Snapshot, State};
use serde_json::json;

const LOBBY: &str = "room:lobby";

#[test]
fn online_offline() {
    let mut cluster = Cluster::new(1);
    let joined = cluster.join(0, "p1", LOBBY, "alice");
    assert_eq!(keys_of(&joined.joins), ["alice"]);
    assert_eq!(cluster.keys(0, LOBBY), ["alice"]);
    let left = cluster.leave(0, "p1", LOBBY, "alice");
    assert_eq!(keys_of(&left.leaves), ["alice"]);
    assert!(cluster.keys(0, LOBBY).is_empty());
    assert!(
        cluster.leave(0, "p1", LOBBY, "alice").is_empty(),
        "a second leave is a no-op"
    );
}

#[test]
fn tracking_the_same_presence_twice_is_refused() {
    let mut cluster = Cluster::new(1);
    cluster.join(0, "p1", LOBBY, "alice");
    let again = cluster.nodes[0].state.join("p1", LOBBY, "alice", json!({}));
    assert_eq!(again, Err(LocalError::AlreadyTracked));
    let missing = cluster.nodes[0].state.update("p9", LOBBY, "alice", json!({}));
    assert_eq!(missing, Err(LocalError::NotTracked));
}

#[test]
fn merge_of_another_nodes_users_with_duplicate_merge_and_update() {
    let mut cluster = Cluster::new(2);
    cluster.join(0, "p1", LOBBY, "alice");
    let first = cluster.merge(1, 0);
    assert_eq!(keys_of(&first.joins), ["alice"]);
    assert!(
        cluster.merge(1, 0).is_empty(),
        "a duplicate merge reports nothing"
    );

    cluster.update(0, "p1", LOBBY, "alice", json!({"status": "away"}));
    let updated = cluster.merge(1, 0);
    assert_eq!(keys_of(&updated.joins), ["alice"]);
    assert_eq!(keys_of(&updated.leaves), ["alice"]);
    let rendered = &updated.by_topic()[LOBBY];
    let meta = &rendered.joins["alice"].metas[0];
    assert_eq!(meta["status"], "away");
    let previous = &rendered.leaves["alice"].metas[0]["phx_ref"];
    assert_eq!(
        &meta["phx_ref_prev"], previous,
        "the update names the version it replaced"
    );
    assert_ne!(meta["phx_ref"], *previous);
}

#[test]
fn basic_netsplit_hides_while_down_and_shows_on_up() {
    let mut cluster = Cluster::new(2);
    cluster.join(0, "p1", LOBBY, "alice");
    cluster.merge(1, 0);
    let down = cluster.down(1, 0);
    assert_eq!(keys_of(&down.leaves), ["alice"]);
    assert!(
        cluster.down(1, 0).is_empty(),
        "down twice leaves nothing twice (B13)"
    );

    cluster.join(0, "p2", LOBBY, "bob");
    let while_down = cluster.merge(1, 0);
    assert!(while_down.is_empty(), "no join for hidden entries (B13)");
    assert!(cluster.keys(1, LOBBY).is_empty());
    assert_eq!(cluster.nodes[1].state.len(), 2, "hidden entries are still held");

    let up = cluster.up(1, 0);
    assert_eq!(keys_of(&up.joins), ["alice", "bob"]);
    assert!(cluster.up(1, 0).is_empty());
}

#[test]
fn joins_and_removes_observed_through_an_intermediate_node() {
    // n2 never hears from n0 directly; n1 relays (Phoenix #108/#111, B4).
    let mut cluster = Cluster::new(3);
    cluster.join(0, "p1", LOBBY, "alice");
    cluster.merge(1, 0);
    let relayed = cluster.merge(2, 1);
    assert_eq!(keys_of(&relayed.joins), ["alice"]);

    cluster.leave(0, "p1", LOBBY, "alice");
    cluster.merge(1, 0);
    let removal = cluster.merge(2, 1);
    assert_eq!(keys_of(&removal.leaves), ["alice"]);
    assert!(cluster.keys(2, LOBBY).is_empty());
}

#[test]
fn get_by_pid_key_and_topic_with_zero_one_and_two_replicas_down() {
    let mut cluster = Cluster::new(3);
    for node in 0..3 {
        cluster.join(node, "shared-pid", LOBBY, "alice");
        cluster.join(node, &format!("pid-{node}"), LOBBY, &format!("user-{node}"));
    }
    cluster.merge(0, 1);
    cluster.merge(0, 2);
    let counts = |cluster: &Cluster| {
        let state = &cluster.nodes[0].state;
        (
            state.get_by_pid("shared-pid").len(),
            state.get_by_key(LOBBY, "alice").len(),
            state.get_by_topic(LOBBY).len(),
            state.count_keys(LOBBY),
        )
    };
    assert_eq!(counts(&cluster), (3, 3, 6, 4));
    cluster.down(0, 1);
    assert_eq!(counts(&cluster), (2, 2, 4, 3));
    cluster.down(0, 2);
    assert_eq!(counts(&cluster), (1, 1, 2, 2));
    let topic = cluster.nodes[0].state.get_by_topic(LOBBY);
    assert!(
        topic
            .windows(2)
            .all(|pair| pair[0].entry.key <= pair[1].entry.key),
        "ordered by key"
    );
}

#[test]
fn permdown_discards_and_a_stale_peer_cannot_bring_entries_back() {
    let mut cluster = Cluster::new(3);
    cluster.join(1, "p1", LOBBY, "bob");
    cluster.merge(0, 1);
    cluster.merge(2, 1); // n2 will lag behind with bob's entry.
    cluster.down(0, 1);
    let gone = cluster.id(1);
    let permdown = cluster.permdown(0, &gone);
    assert!(permdown.is_empty(), "bob was already hidden");
    assert_eq!(cluster.nodes[0].state.len(), 0);
    assert!(
        cluster.nodes[0].state.log(&gone).is_none(),
        "nothing names the replica (B2)"
    );

    // The lagging peer still holds bob; its state must not revive him (B10).
    let stale = cluster.merge(0, 2);
    assert!(stale.is_empty());
    assert_eq!(cluster.nodes[0].state.len(), 0);
    // The watermark travels: the lagging peer drops bob too.
    let learned = cluster.merge(2, 0);
    assert_eq!(keys_of(&learned.leaves), ["bob"]);
}

#[test]
fn permdown_of_an_up_replica_reports_its_leaves() {
    let mut cluster = Cluster::new(2);
    cluster.join(1, "p1", LOBBY, "bob");
    cluster.merge(0, 1);
    let gone = cluster.id(1);
    let permdown = cluster.permdown(0, &gone);
    assert_eq!(keys_of(&permdown.leaves), ["bob"]);
    let own = cluster.id(0);
    assert!(cluster.nodes[0].state.remove_down_replica(&own).is_err());
}

#[test]
fn heal_after_permdown_reasserts_under_a_new_incarnation() {
    let mut cluster = Cluster::new(2);
    cluster.join(1, "p1", LOBBY, "bob");
    cluster.merge(0, 1);
    let old = cluster.id(1);
    cluster.permdown(0, &old);
    // The partition heals: n1 learns from n0's state that it was retired.
    cluster.merge(1, 0);
    assert!(cluster.nodes[1].state.is_retired());
    assert_eq!(
        cluster.keys(1, LOBBY),
        ["bob"],
        "own entries stay until re-asserted (I5)"
    );
    let reasserted = cluster.reincarnate(1);
    assert_eq!(keys_of(&reasserted.joins), ["bob"]);
    assert_eq!(keys_of(&reasserted.leaves), ["bob"]);
    assert!(!cluster.nodes[1].state.is_retired());
    let healed = cluster.merge(0, 1);
    assert_eq!(keys_of(&healed.joins), ["bob"]);
    let truth = cluster.history.live_view();
    check_convergence([&cluster.nodes[0].state, &cluster.nodes[1].state], &truth).unwrap();
}

#[test]
fn basic_delta() {
    let mut cluster = Cluster::new(2);
    cluster.join(0, "p1", LOBBY, "alice");
    cluster.join(0, "p2", LOBBY, "bob");
    let delta = cluster.nodes[0].state.take_delta();
    assert_eq!(delta.range(), (0, 2));
    let diff = cluster.step(1, Record::Nothing, |state| state.merge_delta(&delta).unwrap());
    assert_eq!(keys_of(&diff.joins), ["alice", "bob"]);
    let again = cluster.step(1, Record::Nothing, |state| state.merge_delta(&delta).unwrap());
    assert!(again.is_empty(), "a duplicate delta changes nothing");
}

#[test]
fn non_contiguous_delta_is_refused_until_the_gap_is_filled() {
    // Phoenix #109 (B5): a delta that skips clocks must not merge as contiguous.
    let mut cluster = Cluster::new(2);
    cluster.join(0, "p1", LOBBY, "alice");
    let first = cluster.nodes[0].state.take_delta();
    cluster.leave(0, "p1", LOBBY, "alice");
    cluster.join(0, "p2", LOBBY, "bob");
    let second = cluster.nodes[0].state.take_delta();
    let before = view(&cluster.nodes[1].state);
    let refused = cluster.nodes[1].state.merge_delta(&second);
    assert!(matches!(refused, Err(DeltaError::Gap { have: 0, from: 1, .. })));
    assert_eq!(
        view(&cluster.nodes[1].state),
        before,
        "a refused delta changes nothing"
    );
    assert!(
        cluster.nodes[1].state.log(&cluster.id(0)).is_none(),
        "not even the replica table"
    );

    cluster.step(1, Record::Nothing, |state| state.merge_delta(&first).unwrap());
    let diff = cluster.step(1, Record::Nothing, |state| state.merge_delta(&second).unwrap());
    assert_eq!(keys_of(&diff.joins), ["bob"]);
    assert_eq!(keys_of(&diff.leaves), ["alice"]);
}

/// A delta extends only with a later one of its replica that starts
/// within its range; one that starts past its end, or before its start,
/// would leave a gap or a hole, and is refused as a gap.
#[test]
fn a_delta_extends_only_with_one_that_starts_within_it() {
    let mut state = State::new(ReplicaId::new("a", 1));
    let mut next = |pid: &str| {
        state.join(pid, LOBBY, pid, json!({})).unwrap();
        state.take_delta()
    };
    let (first, second, third) = (next("p1"), next("p2"), next("p3"));
    let past_the_end = first.clone().extend(&third);
    assert!(matches!(
        past_the_end,
        Err(DeltaError::Gap { have: 1, from: 2, .. })
    ));
    let before_the_start = third.clone().extend(&first);
    assert!(matches!(
        before_the_start,
        Err(DeltaError::Gap { have: 3, from: 0, .. })
    ));
    assert_eq!(
        past_the_end.unwrap_err().to_string(),
        "delta of a@1 starts after clock 2 but only 1 is observed"
    );
    let mut other = State::new(ReplicaId::new("b", 1));
    other.join("q", LOBBY, "q", json!({})).unwrap();
    let refused = first.clone().extend(&other.take_delta()).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "cannot extend a delta of a@1 with one of b@1"
    );
    let mut joined = first.clone();
    joined.extend(&second).unwrap();
    assert_eq!(joined.range(), (0, 2));
    // One that starts where this one starts is within it too.
    let mut again = first;
    again.extend(&joined).unwrap();
    assert_eq!(again, joined);
}

/// A later delta that overlaps this one and no longer holds a join of the
/// overlap (it came and went within the later delta's range, so no leave
/// names it) removes that join: composing overlapping deltas gives what
/// composing them one step at a time gives.
#[test]
fn an_overlapping_delta_drops_the_joins_it_no_longer_holds() {
    let mut state = State::new(ReplicaId::new("a", 1));
    state.join("p1", LOBBY, "alice", json!({})).unwrap();
    let first = state.take_delta();
    state.join("p2", LOBBY, "bob", json!({})).unwrap();
    let second = state.take_delta();
    state.leave("p2", LOBBY, "bob");
    let third = state.take_delta();
    let mut later = second.clone();
    later.extend(&third).unwrap();
    let mut stepwise = first.clone();
    stepwise.extend(&second).unwrap();
    let mut overlapped = stepwise.clone();
    stepwise.extend(&third).unwrap();
    overlapped.extend(&later).unwrap();
    assert_eq!(overlapped, stepwise);
    assert_eq!(overlapped.len(), 1, "only alice's join is left");
}

#[test]
fn composed_deltas_equal_their_parts() {
    let mut cluster = Cluster::new(3);
    cluster.join(0, "p1", LOBBY, "alice");
    let mut generation = cluster.nodes[0].state.take_delta();
    cluster.leave(0, "p1", LOBBY, "alice");
    cluster.join(0, "p2", LOBBY, "bob");
    cluster.update(0, "p2", LOBBY, "bob", json!({"v": 2}));
    let later = cluster.nodes[0].state.take_delta();
    generation.extend(&later).unwrap();
    cluster.step(1, Record::Nothing, |state| {
        state.merge_delta(&generation).unwrap()
    });
    cluster.merge(2, 0);
    assert_eq!(view(&cluster.nodes[1].state), view(&cluster.nodes[2].state));
    assert_eq!(generation.range(), (0, later.range().1));
}

#[test]
fn extract_is_limited_to_replicas_the_receiver_knows() {
    // Phoenix #74 (B6): a transfer must not plant entries of unknown replicas.
    let mut cluster = Cluster::new(3);
    cluster.join(1, "p1", LOBBY, "bob");
    cluster.join(2, "p2", LOBBY, "carol");
    cluster.merge(0, 1);
    cluster.merge(0, 2);
    let receiver = State::new(ReplicaId::new("fresh", 1));
    let mut clocks = receiver.clocks();
    clocks.insert(cluster.id(1), 0);
    let extract = cluster.nodes[0].state.extract(receiver.replica(), &clocks);
    let replicas: Vec<String> = extract.logs().keys().map(ToString::to_string).collect();
    assert_eq!(
        replicas,
        ["n0@1", "n1@1"],
        "n2 is unknown to the receiver; n0 is the sender"
    );
    assert_eq!(extract.logs().len(), 2);
    assert!(!extract.logs().is_empty());
    assert!(extract.logs().get(&cluster.id(1)).is_some());
    assert!(extract.logs().get(&cluster.id(2)).is_none());
    assert!(extract.logs().contains_key(&cluster.id(1)));
    assert!(!extract.logs().contains_key(&cluster.id(2)));
    assert!(extract.retain_replicas(|_| false).logs().is_empty());

    // A receiver already up to date on n1 gets nothing for it.
    clocks.insert(
        cluster.id(1),
        cluster.nodes[0].state.log(&cluster.id(1)).unwrap().context(),
    );
    let extract = cluster.nodes[0].state.extract(receiver.replica(), &clocks);
    assert!(!extract.logs().contains_key(&cluster.id(1)));
}

/// An extract carries a departed base's watermark to a receiver that still
/// names one of its retired incarnations, or that is itself a later
/// incarnation of that base; to any other receiver it is news of nothing it
/// knows, and is left out.
#[test]
fn extract_carries_the_retirements_that_concern_the_receiver() {
    let mut sender = State::new(ReplicaId::new("n0", 1));
    let gone = ReplicaId::new("x", 1);
    sender.remove_down_replica(&gone).unwrap();
    let carries = |receiver: ReplicaId, names: &[ReplicaId]| {
        let clocks = names.iter().map(|id| (id.clone(), 0)).collect();
        sender.extract(&receiver, &clocks).retired().contains_key("x")
    };
    assert!(carries(ReplicaId::new("r", 1), std::slice::from_ref(&gone)));
    assert!(carries(ReplicaId::new("x", 2), &[]));
    assert!(!carries(ReplicaId::new("r", 1), &[]));
    assert!(!carries(
        ReplicaId::new("r", 1),
        &[ReplicaId::new("x", 2), ReplicaId::new("y", 1)]
    ));
}

/// A diff lists its presences in tag order, even when one merge both
/// retires a replica and removes another's entries: the retirement's
/// leaves come first as the merge goes, and are sorted in with the rest.
#[test]
fn a_merge_that_retires_and_removes_lists_its_leaves_in_tag_order() {
    let (a, z) = (ReplicaId::new("a", 1), ReplicaId::new("z", 1));
    let mut peer_a = State::new(a.clone());
    let mut peer_z = State::new(z.clone());
    peer_a.join("pa", "t", "alice", json!({})).unwrap();
    peer_z.join("pz", "t", "zoe", json!({})).unwrap();
    let mut state = State::new(ReplicaId::new("n", 1));
    state.merge_delta(&peer_a.take_delta()).unwrap();
    state.merge_delta(&peer_z.take_delta()).unwrap();
    // Another node saw alice leave and z depart for good.
    peer_a.leave("pa", "t", "alice");
    let mut other = State::new(ReplicaId::new("o", 1));
    other.merge_snapshot(&peer_a.snapshot());
    other.remove_down_replica(&z).unwrap();
    let diff = state.merge_snapshot(&other.snapshot());
    let leaves: Vec<String> = diff.leaves.iter().map(|p| p.tag.to_string()).collect();
    assert_eq!(leaves, ["a@1:1", "z@1:1"]);
    assert!(diff.joins.is_empty());
}

#[test]
fn merging_deltas_with_removes_add_wins() {
    // n0 removes alice's first presence and re-adds her under a new tag; a
    // peer that saw the first sees exactly one leave and one join.
    let mut cluster = Cluster::new(2);
    cluster.join(0, "p1", LOBBY, "alice");
    cluster.merge(1, 0);
    cluster.nodes[0].state.take_delta();
    cluster.leave(0, "p1", LOBBY, "alice");
    cluster.join(0, "p1", LOBBY, "alice");
    let delta = cluster.nodes[0].state.take_delta();
    let diff = cluster.step(1, Record::Nothing, |state| state.merge_delta(&delta).unwrap());
    assert_eq!(diff.leaves.len(), 1);
    assert_eq!(diff.joins.len(), 1);
    assert_ne!(diff.leaves[0].tag, diff.joins[0].tag);
    // A stale full state that still holds the old tag cannot undo the removal.
    let mut stale = State::new(ReplicaId::new("stale", 1));
    stale.merge_snapshot(&Snapshot::from_json(&cluster.nodes[1].state.to_json()).unwrap());
    assert_eq!(cluster.keys(1, LOBBY), ["alice"]);
}

#[test]
fn foreign_entries_are_not_removed_locally() {
    // beryl (B14): a leave of a foreign entry must not apply locally.
    let mut cluster = Cluster::new(2);
    cluster.join(0, "p1", LOBBY, "alice");
    cluster.merge(1, 0);
    assert!(cluster.leave(1, "p1", LOBBY, "alice").is_empty());
    assert!(cluster
        .step(1, Record::Local, |state| state.leave_by_pid("p1"))
        .is_empty());
    cluster.merge(1, 0);
    assert_eq!(cluster.keys(1, LOBBY), ["alice"]);
}

#[test]
fn update_delta_carries_the_removal_half() {
    // Phoenix #172/#175 (B7): peers must not keep the old meta.
    let mut cluster = Cluster::new(2);
    cluster.join(0, "p1", LOBBY, "alice");
    cluster.merge(1, 0);
    cluster.nodes[0].state.take_delta();
    cluster.update(0, "p1", LOBBY, "alice", json!({"v": 2}));
    let delta = cluster.nodes[0].state.take_delta();
    assert_eq!(delta.leaves().len(), 1);
    cluster.step(1, Record::Nothing, |state| state.merge_delta(&delta).unwrap());
    let seen = cluster.nodes[1].state.get_by_key(LOBBY, "alice");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].entry.meta.to_value(), json!({"v": 2}));
}

#[test]
fn restart_with_a_new_incarnation() {
    // lattice 1.1 (B11) and Phoenix #55 (B8).
    let mut cluster = Cluster::new(2);
    cluster.join(0, "p1", LOBBY, "alice");
    cluster.merge(1, 0);
    cluster.restart(0);
    cluster.join(0, "p2", LOBBY, "alice");

    // The restarted node hears the old entry from its peer: not its own, and
    // retired, so it is not revived.
    let from_peer = cluster.merge(0, 1);
    assert!(from_peer.is_empty());
    let own = cluster.nodes[0].state.get_by_key(LOBBY, "alice");
    assert_eq!(own.len(), 1);
    assert_eq!(
        own[0].tag.clock, 1,
        "the fresh join is not swallowed by the old clocks"
    );
    assert_eq!(own[0].tag.replica.incarnation(), 2);

    // The peer learns of the new incarnation: old leaves, new joins.
    let peer = cluster.merge(1, 0);
    assert_eq!(keys_of(&peer.leaves), ["alice"]);
    assert_eq!(keys_of(&peer.joins), ["alice"]);
    assert_eq!(peer.joins[0].entry.pid.as_ref(), "p2");
    check_convergence(
        [&cluster.nodes[0].state, &cluster.nodes[1].state],
        &cluster.history.live_view(),
    )
    .unwrap();
}

#[test]
fn concurrent_adds_of_the_same_key_converge_in_any_order() {
    // Phoenix #214 (B3).
    let mut cluster = Cluster::new(3);
    cluster.join(0, "p", LOBBY, "alice");
    cluster.join(1, "p", LOBBY, "alice");
    check_merge_commutative(&cluster.nodes[0].state, &cluster.nodes[1].state).unwrap();
    cluster.merge(2, 0);
    cluster.merge(2, 1);
    cluster.merge(0, 1);
    cluster.merge(1, 0);
    let views: Vec<_> = cluster.nodes.iter().map(|node| view(&node.state)).collect();
    assert_eq!(views[0], views[1]);
    assert_eq!(views[1], views[2]);
    assert_eq!(
        cluster.nodes[2].state.get_by_key(LOBBY, "alice").len(),
        2,
        "both presences, one key"
    );
}

#[test]
fn compaction_folds_clouds_into_contexts() {
    // A payload with a gap parks the clocks above it in the cloud; once the
    // gap is filled the cloud folds back into the context (B12).
    let payload = br#"{"replica":"x@1","context":{"x@1":1},"clouds":{"x@1":[3]},
        "values":[{"tag":{"replica":"x@1","clock":3},"entry":{"topic":"t","key":"k","pid":"p","meta":{}}}]}"#;
    let gapped = Snapshot::from_json(payload).unwrap();
    let mut state = State::new(ReplicaId::new("r", 1));
    state.merge_snapshot(&gapped);
    let log = state.log(&ReplicaId::new("x", 1)).unwrap();
    assert_eq!((log.context(), log.cloud().len()), (1, 1));
    let filled = br#"{"replica":"x@1","context":{"x@1":3},"clouds":{},
        "values":[{"tag":{"replica":"x@1","clock":3},"entry":{"topic":"t","key":"k","pid":"p","meta":{}}}]}"#;
    state.merge_snapshot(&Snapshot::from_json(filled).unwrap());
    let log = state.log(&ReplicaId::new("x", 1)).unwrap();
    assert_eq!((log.context(), log.cloud().len()), (3, 0));
    presence_core::invariants::check_clouds_empty(&state).unwrap();
}

#[test]
fn leave_by_pid_removes_every_topic_of_the_pid() {
    let mut cluster = Cluster::new(2);
    cluster.join(0, "p1", "room:a", "alice");
    cluster.join(0, "p1", "room:b", "alice");
    cluster.join(0, "p2", "room:a", "bob");
    cluster.merge(1, 0);
    let left = cluster.step(0, Record::Local, |state| state.leave_by_pid("p1"));
    assert_eq!(left.leaves.len(), 2);
    // n1 merged n0 after the joins; the delta's range still connects, and
    // its removal of clocks inside the range reaches n1.
    let delta = cluster.nodes[0].state.take_delta();
    let seen = cluster.step(1, Record::Nothing, |state| state.merge_delta(&delta).unwrap());
    assert_eq!(keys_of(&seen.leaves), ["alice", "alice"]);
    assert!(cluster.merge(1, 0).is_empty(), "the full state agrees");
    assert_eq!(cluster.keys(1, "room:a"), ["bob"]);
}

#[test]
fn reincarnation_refuses_a_stale_incarnation() {
    let mut state = State::new(ReplicaId::new("a", 3));
    assert!(state.reincarnate(3).is_err());
    assert!(state.reincarnate(2).is_err());
    assert!(state.reincarnate(4).is_ok());
    assert_eq!(state.replica(), &ReplicaId::new("a", 4));
}

#[test]
fn a_removal_a_full_state_shows_only_in_its_cloud_is_applied() {
    // Found by mutation testing (`clock > remote.context` in `removed_by`
    // made always false survived): no test merged a full state whose
    // removal of an entry shows only in a cloud, a clock observed above a
    // gap and not held. Node c has seen r@1 up to 3, then clock 5 out of
    // order; first holding it, then after its leave.
    let entry = r#"{"topic":"t","key":"k","pid":"p","meta":{}}"#;
    let from_c = |values: &str| {
        let json = format!(
            r#"{{"replica":"c@1","context":{{"c@1":0,"r@1":3}},"clouds":{{"r@1":[5]}},"values":[{values}]}}"#
        );
        Snapshot::from_json(json.as_bytes()).expect("a valid state")
    };
    let holding = from_c(&format!(
        r#"{{"tag":{{"replica":"r@1","clock":5}},"entry":{entry}}}"#
    ));
    let removed = from_c("");
    let mut local = State::new(ReplicaId::new("a", 1));
    let joined = local.merge_snapshot(&holding);
    assert_eq!(joined.joins.len(), 1, "{joined:?}");
    assert_eq!(local.get_by_key("t", "k").len(), 1);
    let left = local.merge_snapshot(&removed);
    assert_eq!(left.leaves.len(), 1, "{left:?}");
    assert!(local.get_by_key("t", "k").is_empty());
}

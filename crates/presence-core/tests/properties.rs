//! Properties over random operation sequences at three replicas, with
//! liveness changes, permdowns and restarts. Every step checks I1 and I3-I7
//! (see `common`); the end checks the CRDT laws (I8) and convergence (I2).

mod common;

use common::{Cluster, Record};
use presence_core::invariants::{
    check_convergence, check_merge_associative, check_merge_commutative, check_merge_idempotent,
    replicated_data, view,
};
use presence_core::{Delta, ReplicaId, Snapshot, State};
use proptest::prelude::*;
use serde_json::json;

const REPLICAS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Join {
        at: usize,
        pid: u8,
        topic: u8,
        key: u8,
        meta: u8,
    },
    Leave {
        at: usize,
        pid: u8,
        topic: u8,
        key: u8,
    },
    LeaveByPid {
        at: usize,
        pid: u8,
    },
    Update {
        at: usize,
        pid: u8,
        topic: u8,
        key: u8,
        meta: u8,
    },
    Merge {
        into: usize,
        from: usize,
    },
    SendDelta {
        from: usize,
    },
    DeliverDelta {
        to: usize,
        pick: prop::sample::Index,
    },
    Down {
        at: usize,
        of: usize,
    },
    Up {
        at: usize,
        of: usize,
    },
    Permdown {
        at: usize,
        of: usize,
    },
    Restart {
        at: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..REPLICAS;
    let small = 0u8..3;
    prop_oneof![
        4 => (node.clone(), small.clone(), small.clone(), small.clone(), small.clone())
            .prop_map(|(at, pid, topic, key, meta)| Op::Join { at, pid, topic, key, meta }),
        2 => (node.clone(), small.clone(), small.clone(), small.clone())
            .prop_map(|(at, pid, topic, key)| Op::Leave { at, pid, topic, key }),
        1 => (node.clone(), small.clone()).prop_map(|(at, pid)| Op::LeaveByPid { at, pid }),
        2 => (node.clone(), small.clone(), small.clone(), small.clone(), small.clone())
            .prop_map(|(at, pid, topic, key, meta)| Op::Update { at, pid, topic, key, meta }),
        4 => (node.clone(), node.clone()).prop_map(|(into, from)| Op::Merge { into, from }),
        2 => node.clone().prop_map(|from| Op::SendDelta { from }),
        3 => (node.clone(), any::<prop::sample::Index>()).prop_map(|(to, pick)| Op::DeliverDelta { to, pick }),
        1 => (node.clone(), node.clone()).prop_map(|(at, of)| Op::Down { at, of }),
        1 => (node.clone(), node.clone()).prop_map(|(at, of)| Op::Up { at, of }),
        1 => (node.clone(), node.clone()).prop_map(|(at, of)| Op::Permdown { at, of }),
        1 => node.prop_map(|at| Op::Restart { at }),
    ]
}

fn names(pid: u8, topic: u8, key: u8) -> (String, String, String) {
    (
        format!("pid-{pid}"),
        format!("topic-{topic}"),
        format!("key-{key}"),
    )
}

/// A replica that learned it was retired re-asserts itself, as its node would.
fn reincarnate_if_retired(cluster: &mut Cluster, at: usize) {
    if cluster.nodes[at].state.is_retired() {
        cluster.reincarnate(at);
    }
}

fn apply(cluster: &mut Cluster, sent: &mut Vec<Delta>, op: &Op) {
    match *op {
        Op::Join {
            at,
            pid,
            topic,
            key,
            meta,
        } => {
            let (pid, topic, key) = names(pid, topic, key);
            if cluster.nodes[at]
                .state
                .get_by_pid(&pid)
                .iter()
                .all(|p| *p.entry.topic != *topic || *p.entry.key != *key)
            {
                cluster.join_with(at, &pid, &topic, &key, json!({"meta": meta}));
            }
        }
        Op::Leave { at, pid, topic, key } => {
            let (pid, topic, key) = names(pid, topic, key);
            cluster.leave(at, &pid, &topic, &key);
        }
        Op::LeaveByPid { at, pid } => {
            let pid = format!("pid-{pid}");
            cluster.step(at, Record::Local, |state| state.leave_by_pid(&pid));
        }
        Op::Update {
            at,
            pid,
            topic,
            key,
            meta,
        } => {
            let (pid, topic, key) = names(pid, topic, key);
            let meta = json!({"meta": meta, "updated": true});
            cluster.step(at, Record::Local, |state| {
                state.update(&pid, &topic, &key, meta).unwrap_or_default()
            });
        }
        Op::Merge { into, from } => {
            cluster.merge(into, from);
            reincarnate_if_retired(cluster, into);
        }
        Op::SendDelta { from } => {
            let delta = cluster.nodes[from].state.take_delta();
            sent.push(delta);
        }
        Op::DeliverDelta { to, pick } => {
            if !sent.is_empty() {
                let delta = sent[pick.index(sent.len())].clone();
                // A refused (gapped) delta must change nothing: step checks it.
                cluster.step(to, Record::Nothing, |state| {
                    state.merge_delta(&delta).unwrap_or_default()
                });
            }
        }
        Op::Down { at, of } => {
            cluster.down(at, of);
        }
        Op::Up { at, of } => {
            cluster.up(at, of);
        }
        Op::Permdown { at, of } => {
            if at != of {
                let id = cluster.id(of);
                cluster.permdown(at, &id);
            }
        }
        Op::Restart { at } => cluster.restart(at),
    }
}

/// A cluster after `ops`, and every delta sent on the way.
fn played(ops: &[Op]) -> (Cluster, Vec<Delta>) {
    let mut cluster = Cluster::new(REPLICAS);
    let mut sent = Vec::new();
    for op in ops {
        apply(&mut cluster, &mut sent, op);
    }
    (cluster, sent)
}

/// Heals everything: every node believes every current replica up, then
/// full merges run until quiet (retired replicas reincarnate on the way).
fn heal(cluster: &mut Cluster) {
    for _round in 0..4 {
        for at in 0..REPLICAS {
            for of in 0..REPLICAS {
                cluster.up(at, of);
            }
        }
        for into in 0..REPLICAS {
            for from in 0..REPLICAS {
                if into != from {
                    cluster.merge(into, from);
                    reincarnate_if_retired(cluster, into);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn prop_invariants_hold_after_every_step_and_replicas_converge(ops in prop::collection::vec(op(), 1..60)) {
        let (mut cluster, sent) = played(&ops);
        let states: Vec<State> = cluster.nodes.iter().map(|node| node.state.clone()).collect();
        // Every state and every delta sent survives the wire unchanged.
        for state in &states {
            let decoded = Snapshot::from_json(&state.to_json()).unwrap();
            prop_assert_eq!(decoded, state.snapshot());
        }
        for delta in &sent {
            prop_assert_eq!(&Delta::from_json(&delta.to_json()).unwrap(), delta);
        }
        for a in &states {
            check_merge_idempotent(a).unwrap();
            for b in &states {
                check_merge_commutative(a, b).unwrap();
            }
        }
        check_merge_associative(&states[0], &states[1], &states[2]).unwrap();
        check_merge_associative(&states[2], &states[0], &states[1]).unwrap();

        heal(&mut cluster);
        let truth = cluster.history.live_view();
        check_convergence(cluster.nodes.iter().map(|node| &node.state), &truth).unwrap();
        for node in &cluster.nodes {
            presence_core::invariants::check_clouds_empty(&node.state).unwrap();
        }
    }

    /// `merge(&state)` (which may copy the sender's indexes) does exactly
    /// what merging the sender's snapshot does: same diffs, same result.
    /// The I2 exchange relies on it.
    #[test]
    fn prop_merging_a_state_equals_merging_its_snapshot(ops in prop::collection::vec(op(), 1..60)) {
        let (cluster, _) = played(&ops);
        let states: Vec<State> = cluster.nodes.iter().map(|node| node.state.clone()).collect();
        for receiver in &states {
            for sender in &states {
                let mut direct = receiver.clone();
                let mut via_snapshot = receiver.clone();
                prop_assert_eq!(direct.merge(sender), via_snapshot.merge_snapshot(&sender.snapshot()));
                prop_assert_eq!(direct.to_json(), via_snapshot.to_json());
            }
        }
    }

    #[test]
    fn prop_deltas_in_any_order_with_duplicates_equal_full_state_merge(
        ops in prop::collection::vec(op(), 1..60),
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..200),
    ) {
        // Only local operations: deltas carry what a replica did itself.
        let mut cluster = Cluster::new(REPLICAS);
        let mut deltas = Vec::new();
        for op in ops.iter().filter(|op| matches!(op, Op::Join { .. } | Op::Leave { .. } | Op::LeaveByPid { .. } | Op::Update { .. })) {
            apply(&mut cluster, &mut deltas, op);
            let at = match *op {
                Op::Join { at, .. } | Op::Leave { at, .. } | Op::LeaveByPid { at, .. } | Op::Update { at, .. } => at,
                _ => unreachable!("filtered to local operations"),
            };
            deltas.push(cluster.nodes[at].state.take_delta());
        }

        let mut by_deltas = State::new(ReplicaId::new("receiver", 1));
        // Random deliveries first (duplicates and gaps included), then retry
        // rounds until every delta has been merged, as anti-entropy would.
        for pick in &order {
            if !deltas.is_empty() {
                let _ = by_deltas.merge_delta(&deltas[pick.index(deltas.len())]);
            }
        }
        let mut pending: Vec<&Delta> = deltas.iter().rev().collect();
        for _round in 0..=deltas.len() {
            pending.retain(|delta| by_deltas.merge_delta(delta).is_err());
        }
        prop_assert!(pending.is_empty(), "every delta connects eventually");

        let mut by_states = State::new(ReplicaId::new("receiver", 1));
        for node in &cluster.nodes {
            by_states.merge(&node.state);
        }
        prop_assert_eq!(view(&by_deltas), view(&by_states));
        // Deltas carry a replica's own operations only; retirement watermarks
        // travel with full states. So the logs must agree, not the watermarks.
        prop_assert_eq!(replicated_data(&by_deltas).logs, replicated_data(&by_states).logs);
    }
}

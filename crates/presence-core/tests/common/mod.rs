//! A small cluster of replicas for tests: every operation goes through
//! `step`, which checks the invariants after it.
#![allow(dead_code)]

use presence_core::invariants::{
    check_bounded_memory, check_causal_sanity, check_diff_exact, check_mirror_matches, check_no_resurrection,
    check_own_authority, check_provenance, check_view_fingerprint, view, History, MemoryBounds,
    ResurrectionWatch,
};
use presence_core::{ClientMirror, Diff, ReplicaId, State};
use serde_json::{json, Value};

/// One replica with the client mirror and fingerprint fed by its diffs, and
/// what it had observed at its last check (for I3).
pub struct Node {
    pub state: State,
    pub mirror: ClientMirror,
    pub watch: ResurrectionWatch,
    /// Sum of the fingerprints of every diff the node emitted.
    pub diffs_fingerprint: u64,
}

/// What `step` records in the history before checking.
pub enum Record {
    /// A merge or liveness change: nothing the replica did itself.
    Nothing,
    /// A local operation (join, leave, update).
    Local,
    /// A reincarnation of the given old replica.
    Reincarnation(ReplicaId),
}

impl Node {
    /// A fresh replica `replica`, with a fresh mirror.
    fn start(replica: ReplicaId) -> Self {
        Self {
            state: State::new(replica),
            mirror: ClientMirror::new(),
            watch: ResurrectionWatch::default(),
            diffs_fingerprint: 0,
        }
    }
}

/// Replicas plus the ground truth of what they did.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub history: History,
}

impl Cluster {
    /// Replicas `n0@1`, `n1@1`, ...
    pub fn new(count: usize) -> Self {
        let nodes = (0..count)
            .map(|i| Node::start(ReplicaId::new(&format!("n{i}"), 1)))
            .collect();
        Self {
            nodes,
            history: History::new(),
        }
    }

    pub fn id(&self, node: usize) -> ReplicaId {
        self.nodes[node].state.replica().clone()
    }

    /// Runs `operation` on node `at`, checks the diff against the views
    /// before and after (I1), feeds the mirror and checks it (I1), then the
    /// other invariants, after recording what `record` says in the history.
    pub fn step(&mut self, at: usize, record: Record, operation: impl FnOnce(&mut State) -> Diff) -> Diff {
        let before = view(&self.nodes[at].state);
        let diff = operation(&mut self.nodes[at].state);
        let node = &mut self.nodes[at];
        check_diff_exact(&before, &diff, &view(&node.state)).unwrap();
        node.mirror.apply(&diff);
        check_mirror_matches(&node.mirror, &node.state).unwrap();
        node.diffs_fingerprint = node.diffs_fingerprint.wrapping_add(diff.fingerprint());
        check_view_fingerprint(node.diffs_fingerprint, &node.state).unwrap();
        let state = &self.nodes[at].state;
        match record {
            Record::Nothing => {}
            Record::Local => self.history.record_local(state, &diff).unwrap(),
            Record::Reincarnation(old) => self.history.record_reincarnation(&old, state).unwrap(),
        }
        self.check(at);
        diff
    }

    /// I3 to I7 on node `at`.
    pub fn check(&mut self, at: usize) {
        let node = &mut self.nodes[at];
        check_no_resurrection(&mut node.watch, &node.state).unwrap();
        check_provenance(&self.history, &node.state).unwrap();
        check_own_authority(&self.history, &node.state).unwrap();
        check_causal_sanity(&self.history, &node.state).unwrap();
        check_bounded_memory(&node.state, MemoryBounds::default()).unwrap();
    }

    pub fn join(&mut self, at: usize, pid: &str, topic: &str, key: &str) -> Diff {
        self.join_with(at, pid, topic, key, json!({"at": at}))
    }

    pub fn join_with(&mut self, at: usize, pid: &str, topic: &str, key: &str, meta: Value) -> Diff {
        self.step(at, Record::Local, |state| {
            state.join(pid, topic, key, meta).unwrap()
        })
    }

    pub fn leave(&mut self, at: usize, pid: &str, topic: &str, key: &str) -> Diff {
        self.step(at, Record::Local, |state| state.leave(pid, topic, key))
    }

    pub fn update(&mut self, at: usize, pid: &str, topic: &str, key: &str, meta: Value) -> Diff {
        self.step(at, Record::Local, |state| {
            state.update(pid, topic, key, meta).unwrap()
        })
    }

    /// Node `into` merges node `from`'s full state.
    pub fn merge(&mut self, into: usize, from: usize) -> Diff {
        let remote = self.nodes[from].state.clone();
        self.step(into, Record::Nothing, |state| state.merge(&remote))
    }

    pub fn down(&mut self, at: usize, of: usize) -> Diff {
        let id = self.id(of);
        self.step(at, Record::Nothing, |state| state.replica_down(&id))
    }

    pub fn up(&mut self, at: usize, of: usize) -> Diff {
        let id = self.id(of);
        self.step(at, Record::Nothing, |state| state.replica_up(&id))
    }

    pub fn permdown(&mut self, at: usize, of: &ReplicaId) -> Diff {
        self.step(at, Record::Nothing, |state| {
            state.remove_down_replica(of).unwrap()
        })
    }

    /// Node `at` crashes and restarts as the next incarnation of its base,
    /// with empty memory and a fresh client mirror.
    pub fn restart(&mut self, at: usize) {
        let old = self.id(at);
        self.history.record_dead(&old);
        let new = old.with_incarnation(old.incarnation() + 1);
        self.nodes[at] = Node::start(new);
        self.check(at);
    }

    /// Node `at`, having learned it was retired, re-asserts its presences.
    pub fn reincarnate(&mut self, at: usize) -> Diff {
        let old = self.id(at);
        let next = self.nodes[at].state.next_incarnation();
        self.step(at, Record::Reincarnation(old), |state| {
            state.reincarnate(next).unwrap()
        })
    }

    /// Keys visible on `topic` at node `at`.
    pub fn keys(&self, at: usize, topic: &str) -> Vec<String> {
        self.nodes[at]
            .state
            .online_keys(topic)
            .iter()
            .map(|key| key.to_string())
            .collect()
    }
}

/// Keys of a diff's joins (or leaves), in order.
pub fn keys_of(presences: &[presence_core::Presence]) -> Vec<String> {
    presences
        .iter()
        .map(|presence| presence.entry.key.to_string())
        .collect()
}

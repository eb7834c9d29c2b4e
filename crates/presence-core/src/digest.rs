//! Canonical hashing, field by field: what model checkers fingerprint a
//! replica by, without encoding it first.
//!
//! Two states that would encode to the same JSON (with the same local
//! liveness and outgoing delta) feed a hasher the same sequence, whatever
//! order their entries arrived in: every map is walked in key order.

use std::hash::{Hash, Hasher};

use crate::delta::Delta;
use crate::entry::Entry;
use crate::merge::Snapshot;
use crate::state::{State, Status};

impl State {
    /// Feeds `hasher` this replica's id, retirement watermarks, every known
    /// replica's log with its local status, and the outgoing delta.
    pub fn hash_canonical<H: Hasher>(&self, hasher: &mut H) {
        (self.replica(), self.retired()).hash(hasher);
        for (id, log, status) in self.replicas() {
            (id, status == Status::Up).hash(hasher);
            hash_log(log, hasher);
        }
        self.delta().hash_canonical(hasher);
    }
}

impl Snapshot {
    /// Feeds `hasher` the snapshot's sender, retirement watermarks and logs.
    pub fn hash_canonical<H: Hasher>(&self, hasher: &mut H) {
        (self.replica(), self.retired()).hash(hasher);
        self.logs().len().hash(hasher);
        for (id, log) in self.logs() {
            id.hash(hasher);
            hash_log(log, hasher);
        }
    }
}

impl Delta {
    /// Feeds `hasher` the delta's replica, range, joins and leaves.
    pub fn hash_canonical<H: Hasher>(&self, hasher: &mut H) {
        (&self.replica, self.from, self.to, &self.leaves).hash(hasher);
        hash_entries(&self.joins, hasher);
    }
}

impl Entry {
    /// Feeds `hasher` the entry's topic, key, pid, meta and what it replaces.
    pub fn hash_canonical<H: Hasher>(&self, hasher: &mut H) {
        (&*self.topic, &*self.key, &*self.pid, self.replaces).hash(hasher);
        // The canonical text: equal exactly when the metas are.
        self.meta.hash(hasher);
    }
}

/// Hashes a log's content (no replica names in it).
fn hash_log<H: Hasher>(log: &crate::ReplicaLog, hasher: &mut H) {
    (log.context(), log.cloud()).hash(hasher);
    hash_entries(log.values(), hasher);
}

/// Hashes entries by clock, with their count.
fn hash_entries<H: Hasher>(entries: &std::collections::BTreeMap<u64, std::sync::Arc<Entry>>, hasher: &mut H) {
    entries.len().hash(hasher);
    for (&clock, entry) in entries {
        clock.hash(hasher);
        entry.hash_canonical(hasher);
    }
}

/// A renaming of replica bases (for symmetry reduction): the name each
/// base takes.
pub type Rename<'a> = &'a dyn Fn(&str) -> std::sync::Arc<str>;

/// A replica id under a renaming, as (base, incarnation): what it hashes
/// as, and the order maps keyed by replica are walked in.
pub fn renamed_id(id: &crate::ReplicaId, rename: Rename<'_>) -> (std::sync::Arc<str>, u64) {
    (rename(id.base()), id.incarnation())
}

/// Hashes retirement watermarks under a renaming, in renamed order.
fn hash_retired_renamed<H: Hasher>(
    retired: &std::collections::BTreeMap<std::sync::Arc<str>, u64>,
    rename: Rename<'_>,
    hasher: &mut H,
) {
    let mut marks: Vec<(std::sync::Arc<str>, u64)> =
        retired.iter().map(|(base, &mark)| (rename(base), mark)).collect();
    marks.sort_unstable();
    marks.hash(hasher);
}

/// Per-replica numbers (clocks, times) under a renaming, in renamed order.
pub fn hash_per_replica_renamed<H: Hasher>(
    clocks: &std::collections::BTreeMap<crate::ReplicaId, u64>,
    rename: Rename<'_>,
    hasher: &mut H,
) {
    let mut pairs: Vec<((std::sync::Arc<str>, u64), u64)> = clocks
        .iter()
        .map(|(id, &clock)| (renamed_id(id, rename), clock))
        .collect();
    pairs.sort_unstable();
    pairs.hash(hasher);
}

/// Hashes a replica id under a renaming.
pub fn hash_id_renamed<H: Hasher>(id: &crate::ReplicaId, rename: Rename<'_>, hasher: &mut H) {
    renamed_id(id, rename).hash(hasher);
}

impl State {
    /// [`State::hash_canonical`] as if every replica base were renamed by
    /// `rename`: states that differ only by a renaming of interchangeable
    /// replicas feed the hasher alike under matching renamings. Entries
    /// are hashed as they are, so their pids and metas must not name
    /// replicas.
    pub fn hash_renamed<H: Hasher>(&self, rename: Rename<'_>, hasher: &mut H) {
        hash_id_renamed(self.replica(), rename, hasher);
        hash_retired_renamed(self.retired(), rename, hasher);
        let mut logs: Vec<_> = self
            .replicas()
            .map(|(id, log, status)| (renamed_id(id, rename), status == Status::Up, log))
            .collect();
        logs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        logs.len().hash(hasher);
        for (id, up, log) in logs {
            (id, up).hash(hasher);
            hash_log(log, hasher);
        }
        self.delta().hash_renamed(rename, hasher);
    }
}

impl Snapshot {
    /// [`Snapshot::hash_canonical`] under a renaming (see
    /// [`State::hash_renamed`]).
    pub fn hash_renamed<H: Hasher>(&self, rename: Rename<'_>, hasher: &mut H) {
        hash_id_renamed(self.replica(), rename, hasher);
        hash_retired_renamed(self.retired(), rename, hasher);
        let mut logs: Vec<_> = self
            .logs()
            .iter()
            .map(|(id, log)| (renamed_id(id, rename), log))
            .collect();
        logs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        logs.len().hash(hasher);
        for (id, log) in logs {
            id.hash(hasher);
            hash_log(log, hasher);
        }
    }
}

impl Delta {
    /// [`Delta::hash_canonical`] under a renaming (see
    /// [`State::hash_renamed`]).
    pub fn hash_renamed<H: Hasher>(&self, rename: Rename<'_>, hasher: &mut H) {
        hash_id_renamed(&self.replica, rename, hasher);
        (self.from, self.to, &self.leaves).hash(hasher);
        hash_entries(&self.joins, hasher);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;
    use std::hash::Hasher;

    use serde_json::json;

    use crate::{ReplicaId, State};

    fn digest(state: &State) -> u64 {
        let mut hasher = DefaultHasher::new();
        state.hash_canonical(&mut hasher);
        hasher.finish()
    }

    fn peer(name: &str, pid: &str, meta: serde_json::Value) -> State {
        let mut state = State::new(ReplicaId::new(name, 1));
        state.join(pid, "room", "alice", meta).unwrap();
        state.join(&format!("{pid}-2"), "room", "bob", json!({})).unwrap();
        state.leave(&format!("{pid}-2"), "room", "bob");
        state.take_delta();
        state
    }

    #[test]
    fn states_that_agree_digest_alike_whatever_the_merge_order() {
        let a = peer("a", "pa", json!({"x": 1, "y": [true, null, "z"]}));
        let b = peer("b", "pb", json!(2.5));
        let mut one = State::new(ReplicaId::new("c", 1));
        let mut two = State::new(ReplicaId::new("c", 1));
        one.merge(&a);
        one.merge(&b);
        two.merge(&b);
        two.merge(&a);
        assert_eq!(digest(&one), digest(&two));
        assert_eq!(one.to_json(), two.to_json());
    }

    #[test]
    fn every_difference_that_matters_changes_the_digest() {
        let a = peer("a", "pa", json!({"x": 1}));
        let mut base = State::new(ReplicaId::new("c", 1));
        base.merge(&a);
        let reference = digest(&base);

        let other_meta = peer("a", "pa", json!({"x": 2}));
        let mut changed = State::new(ReplicaId::new("c", 1));
        changed.merge(&other_meta);
        assert_ne!(digest(&changed), reference, "meta");

        let mut down = base.clone();
        down.replica_down(a.replica());
        assert_ne!(digest(&down), reference, "local liveness");

        let mut joined = base.clone();
        joined.join("pc", "room", "carol", json!({})).unwrap();
        let with_delta = digest(&joined);
        assert_ne!(with_delta, reference, "own entry");
        joined.take_delta();
        assert_ne!(digest(&joined), with_delta, "outgoing delta");

        let mut retired = base.clone();
        retired.remove_down_replica(a.replica()).unwrap();
        assert_ne!(digest(&retired), reference, "retirement");

        let renamed = State::new(ReplicaId::new("c", 2));
        assert_ne!(
            digest(&renamed),
            digest(&State::new(ReplicaId::new("c", 1))),
            "incarnation"
        );
    }

    fn renamed_digest(state: &State, swap: bool) -> u64 {
        let rename = |base: &str| -> std::sync::Arc<str> {
            match (swap, base) {
                (true, "n0") => "n1".into(),
                (true, "n1") => "n0".into(),
                _ => base.into(),
            }
        };
        let mut hasher = DefaultHasher::new();
        state.hash_renamed(&rename, &mut hasher);
        hasher.finish()
    }

    /// `n0` having merged `n1`'s presence is `n1` having merged `n0`'s, with
    /// the names swapped.
    #[test]
    fn mirrored_states_digest_alike_under_the_swap() {
        let pair = |me: &str, peer: &str| {
            let mut other = State::new(ReplicaId::new(peer, 1));
            other.join("p", "room", "alice", json!({})).unwrap();
            let mut state = State::new(ReplicaId::new(me, 1));
            state.join("p", "room", "alice", json!({})).unwrap();
            state.leave("p", "room", "alice");
            state.merge(&other);
            state.replica_down(other.replica());
            state
        };
        let one = pair("n0", "n1");
        let two = pair("n1", "n0");
        assert_ne!(digest(&one), digest(&two));
        assert_eq!(renamed_digest(&one, true), renamed_digest(&two, false));
        assert_ne!(renamed_digest(&one, false), renamed_digest(&two, false));
    }
}

//! Exhaustive model checking of the presence CRDT with stateright.
//!
//! The simulator samples huge runs; the model checker explores every
//! interleaving of a small cluster. Both judge the product with the same
//! functions, those of `presence_core::invariants`.
//!
//! ```
//! use presence_model::{crdt::CrdtModelCfg, property_names};
//! use stateright::{Checker, Expectation, Model};
//!
//! let checker = CrdtModelCfg { replicas: 2, ops: 1, faults: 0, restarts: false }
//!     .into_model()
//!     .checker()
//!     .spawn_dfs()
//!     .join();
//! for property in property_names(checker.model(), Expectation::Always) {
//!     checker.assert_no_discovery(property);
//! }
//! assert_eq!(checker.unique_state_count(), 12);
//! ```

pub mod crdt;
pub mod protocol;

use stateright::{Expectation, Model};

/// I3 for one step of a replica from `before` (`None`: a fresh replica)
/// to `after`, with `check_no_resurrection`. What its watch holds after a
/// check is a function of the state checked alone, so the watch of
/// `before` is rebuilt from it rather than carried in every model state;
/// once a model state has broken I3 its later checks no longer matter,
/// since only the first violation is kept.
pub(crate) fn no_resurrection_since(
    before: Option<&presence_core::State>,
    after: &presence_core::State,
) -> Result<(), String> {
    use presence_core::invariants::{check_no_resurrection, ResurrectionWatch};
    let mut watch = ResurrectionWatch::default();
    if let Some(before) = before {
        // Nothing is observed yet, so nothing can be violated.
        let fresh = check_no_resurrection(&mut watch, before);
        debug_assert!(fresh.is_ok());
    }
    check_no_resurrection(&mut watch, after).map_err(|violation| violation.to_string())
}

/// A hasher that is fast, well mixed and the same in every build and run
/// (ahash with fixed keys, as stateright's own fingerprints): digests must
/// not depend on the process that computed them.
pub(crate) fn digester() -> ahash::AHasher {
    use std::hash::BuildHasher;
    ahash::RandomState::with_seeds(
        0x243F_6A88_85A3_08D3,
        0x1319_8A2E_0370_7344,
        0xA409_3822_299F_31D0,
        0x082E_FA98_EC4E_6C89,
    )
    .build_hasher()
}

/// The names of a model's properties of one kind, in the order the model
/// declares them: derived from [`Model::properties`], so no second list can
/// drift from it.
pub fn property_names<M: Model>(model: &M, expectation: Expectation) -> Vec<&'static str> {
    model
        .properties()
        .into_iter()
        .filter(|property| property.expectation == expectation)
        .map(|property| property.name)
        .collect()
}

/// Every permutation of `0..n`, in lexicographic order (computed once per
/// `n`; the models have at most 4 replicas or 3 nodes).
pub(crate) fn permutations(n: usize) -> &'static [Vec<usize>] {
    static ALL: [std::sync::OnceLock<Vec<Vec<usize>>>; 5] = [const { std::sync::OnceLock::new() }; 5];
    ALL[n].get_or_init(|| {
        let mut all = vec![Vec::new()];
        for next in 0..n {
            all = all
                .into_iter()
                .flat_map(|rest: Vec<usize>| {
                    (0..=rest.len()).map(move |at| {
                        let mut perm = rest.clone();
                        perm.insert(at, next);
                        perm
                    })
                })
                .collect();
        }
        all.sort();
        all
    })
}

/// A bounded table of remembered results, shared by the checker's threads:
/// 16 locked shards, each emptied when it reaches its capacity. Models use
/// it for pure functions of digests that recur across many states.
///
/// A lookup that goes through [`Memo::get_or_compute_near`] first tries a
/// small table of the thread's own recent results ([`Near`]), which takes
/// no lock and stays in the processor's cache: the checker's depth-first
/// search meets the same replica states over and over within a few steps,
/// while the shared table is far larger than any cache.
pub(crate) struct Memo<K, V> {
    shards: Vec<std::sync::Mutex<MemoShard<K, V>>>,
    capacity: usize,
    /// Tells this table's entries in a thread's [`Near`] table from
    /// another's (every check starts cold, even on a reused thread).
    id: u64,
}

/// A thread's recent results of one [`Memo`]: one slot per index, each
/// holding the last key that fell there. Declared per use, as
/// `thread_local! { static RECENT: RefCell<Near<K, V>> = RefCell::default() }`.
pub(crate) struct Near<K, V> {
    owner: u64,
    slots: Vec<Option<(K, V)>>,
}

impl<K, V> Default for Near<K, V> {
    fn default() -> Self {
        Self {
            owner: 0,
            slots: Vec::new(),
        }
    }
}

/// Slots in a [`Near`] table: a few hundred kilobytes for the models' keys.
const NEAR_SLOTS: usize = 1 << 14;

impl<K: Eq, V: Clone> Near<K, V> {
    /// What slot `slot` holds for `key`, if this table belongs to `owner`;
    /// if it does not, it is emptied and made `owner`'s.
    fn get(&mut self, owner: u64, slot: usize, key: &K) -> Option<V> {
        if self.owner != owner {
            self.owner = owner;
            self.slots.clear();
            self.slots.resize_with(NEAR_SLOTS, || None);
        }
        match &self.slots[slot] {
            Some((held, value)) if held == key => Some(value.clone()),
            _ => None,
        }
    }
}

// Looked up by key, never iterated: its order reaches nothing.
#[allow(clippy::disallowed_types)]
type MemoShard<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

impl<K, V> std::fmt::Debug for Memo<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held: usize = self
            .shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |shard| shard.len()))
            .sum();
        write!(f, "Memo({held} held, at most {} per shard)", self.capacity)
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Memo<K, V> {
    /// A table of at most `capacity` entries per shard.
    pub(crate) fn new(capacity: usize) -> Self {
        let shards = (0..16)
            .map(|_| {
                std::sync::Mutex::new(MemoShard::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4)))
            })
            .collect();
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self { shards, capacity, id }
    }

    /// [`Memo::get_or_compute`], looked up first in the thread's `near`
    /// table and remembered there (see [`Near`]).
    pub(crate) fn get_or_compute_near(
        &self,
        near: &'static std::thread::LocalKey<std::cell::RefCell<Near<K, V>>>,
        key: K,
        spread: u64,
        compute: impl FnOnce() -> V,
    ) -> V
    where
        K: Clone,
    {
        let slot = (spread ^ (spread >> 32)) as usize & (NEAR_SLOTS - 1);
        if let Some(value) = near.with_borrow_mut(|near| near.get(self.id, slot, &key)) {
            return value;
        }
        let value = self.get_or_compute(key.clone(), spread, compute);
        near.with_borrow_mut(|near| near.slots[slot] = Some((key, value.clone())));
        value
    }

    /// The value remembered for `key`, or `compute()`'s, remembered.
    /// `spread` picks the shard (any well-mixed part of the key).
    pub(crate) fn get_or_compute(&self, key: K, spread: u64, compute: impl FnOnce() -> V) -> V {
        if let Some(value) = self.get(&key, spread) {
            return value;
        }
        let value = compute();
        self.insert(key, spread, value.clone());
        value
    }

    /// The value remembered for `key`, if any (`spread` as above).
    pub(crate) fn get(&self, key: &K, spread: u64) -> Option<V> {
        self.shard(spread)
            .lock()
            .expect("no panic while held")
            .get(key)
            .cloned()
    }

    /// Remembers `value` for `key` (`spread` as above).
    pub(crate) fn insert(&self, key: K, spread: u64, value: V) {
        let mut shard = self.shard(spread).lock().expect("no panic while held");
        if shard.len() >= self.capacity {
            shard.clear();
        }
        shard.insert(key, value);
    }

    fn shard(&self, spread: u64) -> &std::sync::Mutex<MemoShard<K, V>> {
        &self.shards[(spread % self.shards.len() as u64) as usize]
    }
}

/// Whether `actions` replay in `model` from its first initial state to a
/// state that breaks the `always` property named `property`. Discoveries
/// are confirmed this way before they are shown: a path rebuilt from
/// fingerprints names the states the checker saw, and this checks that
/// those actions really lead to a violation.
pub fn breaks<M>(model: &M, actions: &[M::Action], property: &str) -> bool
where
    M: Model,
    M::State: PartialEq,
    M::Action: PartialEq,
{
    let Some(condition) = model
        .properties()
        .into_iter()
        .find(|p| p.name == property && p.expectation == Expectation::Always)
        .map(|p| p.condition)
    else {
        return false;
    };
    let Some(init) = model.init_states().into_iter().next() else {
        return false;
    };
    stateright::Path::from_actions(model, init, actions)
        .is_some_and(|path| !condition(model, path.last_state()))
}

/// Shortens a counterexample to the `always` property `property`: drops
/// one action, or two adjacent ones (a crash and its recovery, a partition
/// and its heal), at a time while the path still replays from the initial
/// state and its last state still breaks the property. Depth-first
/// discoveries are rarely minimal. At most `budget` replays.
pub fn shrink_counterexample<M>(
    model: &M,
    mut actions: Vec<M::Action>,
    property: &str,
    budget: usize,
) -> Vec<M::Action>
where
    M: Model,
    M::State: PartialEq,
    M::Action: PartialEq + Clone,
{
    let mut replays = 0;
    'shorter: loop {
        for width in 1..=2 {
            for start in 0..actions.len().saturating_sub(width - 1) {
                if replays >= budget {
                    break 'shorter;
                }
                replays += 1;
                let mut candidate = actions.clone();
                candidate.drain(start..start + width);
                if breaks(model, &candidate, property) {
                    actions = candidate;
                    continue 'shorter;
                }
            }
        }
        break;
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memo_computes_once_per_key_and_stays_bounded() {
        let memo: Memo<u64, u64> = Memo::new(2);
        let mut computed = 0;
        for _ in 0..3 {
            let value = memo.get_or_compute(7, 7, || {
                computed += 1;
                49
            });
            assert_eq!(value, 49);
        }
        assert_eq!(computed, 1, "remembered after the first call");
        // Keys 7, 23 and 39 share a shard of capacity 2: the third empties it.
        memo.insert(23, 23, 1);
        assert_eq!(memo.get(&7, 7), Some(49));
        memo.insert(39, 39, 2);
        assert_eq!(memo.get(&7, 7), None, "the full shard was emptied");
        assert_eq!(memo.get(&39, 39), Some(2));
        assert!(format!("{memo:?}").starts_with("Memo(1 held"));
    }

    thread_local! {
        static NEAR: std::cell::RefCell<Near<u64, u64>> = std::cell::RefCell::default();
    }

    #[test]
    fn a_near_table_answers_for_its_own_memo_only() {
        let first: Memo<u64, u64> = Memo::new(4);
        let mut computed = 0;
        for _ in 0..2 {
            let value = first.get_or_compute_near(&NEAR, 7, 7, || {
                computed += 1;
                49
            });
            assert_eq!(value, 49);
        }
        assert_eq!(computed, 1, "remembered after the first call");
        // Another key in the same slot replaces it there; the shared table
        // still has it.
        let same_slot = 7 + NEAR_SLOTS as u64;
        first.get_or_compute_near(&NEAR, same_slot, same_slot, || 1);
        assert_eq!(first.get_or_compute_near(&NEAR, 7, 7, || 0), 49);
        // A second memo on the same thread starts cold: the near table is
        // emptied for it rather than answering with the first one's value.
        let second: Memo<u64, u64> = Memo::new(4);
        assert_eq!(second.get_or_compute_near(&NEAR, 7, 7, || 50), 50);
        assert_eq!(first.get(&7, 7), Some(49));
    }

    /// The watch rebuilt from the state before a step judges the step as a
    /// watch carried along would: a removal once observed stays removed.
    #[test]
    fn a_step_that_undoes_an_observed_removal_breaks_i3() {
        use presence_core::{ReplicaId, State};
        let mut joined = State::new(ReplicaId::new("n0", 1));
        joined
            .join("p", "room", "alice", serde_json::json!({}))
            .expect("a valid entry");
        let mut left = joined.clone();
        left.leave("p", "room", "alice");
        assert_eq!(no_resurrection_since(None, &joined), Ok(()));
        assert_eq!(no_resurrection_since(Some(&joined), &left), Ok(()));
        assert_eq!(no_resurrection_since(Some(&left), &left), Ok(()));
        let undone = no_resurrection_since(Some(&left), &joined).expect_err("alice is back");
        assert!(undone.contains("again"), "{undone}");
    }

    #[test]
    fn permutations_are_every_ordering_once() {
        assert_eq!(permutations(3).len(), 6);
        assert_eq!(permutations(3)[0], [0, 1, 2]);
        let mut seen = permutations(4).to_vec();
        seen.dedup();
        assert_eq!(seen.len(), 24);
    }
}

//! Remembered results shared by the checker's threads ([`Memo`]), with a
//! small per-thread table of recent results in front ([`Recent`]). The
//! models keep outcomes of pure functions of digests here.

/// A bounded table of remembered results, shared by the checker's threads:
/// 16 locked shards, each emptied when it reaches its capacity. Models use
/// it for pure functions of digests that recur across many states.
///
/// A lookup that goes through [`Memo::get_or_compute_recent`] first tries a
/// small table of the thread's own recent results ([`Recent`]), which takes
/// no lock and stays in the processor's cache: the checker's depth-first
/// search meets the same replica states over and over within a few steps,
/// while the shared table is far larger than any cache.
pub(crate) struct Memo<K, V> {
    shards: Vec<std::sync::Mutex<MemoShard<K, V>>>,
    capacity: usize,
    /// Tells this table's entries in a thread's [`Recent`] table from
    /// another's (every check starts cold, even on a reused thread).
    id: u64,
}

/// A thread's recent results of one [`Memo`]: one slot per index, each
/// holding the last key that fell there. Declared per use, as
/// `thread_local! { static RECENT: RefCell<Recent<K, V>> = RefCell::default() }`.
pub(crate) struct Recent<K, V> {
    owner: u64,
    slots: Vec<Option<(K, V)>>,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Self {
            owner: 0,
            slots: Vec::new(),
        }
    }
}

/// Slots in a [`Recent`] table: a few hundred kilobytes for the models' keys.
const RECENT_SLOTS: usize = 1 << 14;

impl<K: Eq, V: Clone> Recent<K, V> {
    /// What slot `slot` holds for `key`, if this table belongs to `owner`;
    /// if it does not, it is emptied and made `owner`'s.
    fn get(&mut self, owner: u64, slot: usize, key: &K) -> Option<V> {
        if self.owner != owner {
            self.owner = owner;
            self.slots.clear();
            self.slots.resize_with(RECENT_SLOTS, || None);
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

    /// [`Memo::get_or_compute`], looked up first in the thread's `recent`
    /// table and remembered there (see [`Recent`]).
    pub(crate) fn get_or_compute_recent(
        &self,
        recent: &'static std::thread::LocalKey<std::cell::RefCell<Recent<K, V>>>,
        key: K,
        spread: u64,
        compute: impl FnOnce() -> V,
    ) -> V
    where
        K: Clone,
    {
        let slot = (spread ^ (spread >> 32)) as usize & (RECENT_SLOTS - 1);
        if let Some(value) = recent.with_borrow_mut(|recent| recent.get(self.id, slot, &key)) {
            return value;
        }
        let value = self.get_or_compute(key.clone(), spread, compute);
        recent.with_borrow_mut(|recent| recent.slots[slot] = Some((key, value.clone())));
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
        static RECENT: std::cell::RefCell<Recent<u64, u64>> = std::cell::RefCell::default();
    }

    #[test]
    fn a_near_table_answers_for_its_own_memo_only() {
        let first: Memo<u64, u64> = Memo::new(4);
        let mut computed = 0;
        for _ in 0..2 {
            let value = first.get_or_compute_recent(&RECENT, 7, 7, || {
                computed += 1;
                49
            });
            assert_eq!(value, 49);
        }
        assert_eq!(computed, 1, "remembered after the first call");
        // Another key in the same slot replaces it there; the shared table
        // still has it.
        let same_slot = 7 + RECENT_SLOTS as u64;
        first.get_or_compute_recent(&RECENT, same_slot, same_slot, || 1);
        assert_eq!(first.get_or_compute_recent(&RECENT, 7, 7, || 0), 49);
        // A second memo on the same thread starts cold: the recent table is
        // emptied for it rather than answering with the first one's value.
        let second: Memo<u64, u64> = Memo::new(4);
        assert_eq!(second.get_or_compute_recent(&RECENT, 7, 7, || 50), 50);
        assert_eq!(first.get(&7, 7), Some(49));
    }
}

//! Secondary indexes of one replica's entries within a state: by topic and
//! key, and by pid. Each known replica has its own, holding clocks.
//!
//! Per-replica indexes make permdown a matter of dropping a table, let a first
//! full merge copy a peer's tables whole, and keep own-entry lookups small.
//! Queries visit the indexes of each visible replica.
//!
//! Each index is a hash *multimap* of `(name hash, clock)` pairs, 16 bytes a
//! slot, linearly probed: inserting and removing never read a string or
//! another entry (a pair is removed by exact match), growing never rehashes a
//! string, and a probe reads one cache line. A lookup
//! by name yields candidate clocks whose entries the caller checks against the
//! name (equal hashes do not make equal names); queries read those entries
//! anyway.
//!
//! Architecture invariant: a replica's indexes hold exactly the clocks of its
//! held entries, no more and no fewer (checked by
//! `invariants::check_bounded_memory`). They are hash tables, so nothing may
//! iterate them into output without sorting first: queries sort what they
//! return.

use std::sync::Arc;

use hashbrown::HashTable;

use crate::entry::{name_hash, Entry, NameHashes};

/// A replica slot: the state's interned number for a `ReplicaId`.
pub(crate) type Slot = u32;

/// A compact tag: (replica slot, clock). Only meaningful inside one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Dot {
    pub(crate) slot: Slot,
    pub(crate) clock: u64,
}

/// `(name hash, clock)`: one entry filed under one name. Clock 0 is never
/// held, so `(_, 0)` marks an empty slot.
type Filed = (u64, u64);

const EMPTY: Filed = (0, 0);

/// Slots in a 64-byte cache line.
const SLOTS_PER_LINE: usize = 64 / std::mem::size_of::<Filed>();

/// Above this many bytes of pid table (a core's L2 cache on the machines we
/// measure on), a batch of index work reads its slots ahead: see
/// [`Indexes::warm`]. Below it the tables sit in cache and reading ahead only
/// costs (about 3 us a 100-operation delta into 10,000 entries).
const WARM_ABOVE_BYTES: usize = 1 << 20;

/// A multimap from name hash to clocks: open addressing with linear probing
/// over 16-byte slots, at most three quarters full.
///
/// Why not a SwissTable (hashbrown): its control bytes and its slots live in
/// two arrays, so in a table larger than the caches every probe waits for two
/// misses. Here a probe reads one cache line, which halved the index's share
/// of a delta merge into a 1,000,000-entry state. Removal shifts the rest of
/// the cluster back (no tombstones), so churn never degrades the table.
#[derive(Clone, Debug, Default)]
struct Multimap {
    /// A power of two in length, or empty.
    slots: Vec<Filed>,
    len: usize,
    /// `64 - log2(slots.len())`: a hash's home is its top bits after mixing.
    shift: u32,
}

impl Multimap {
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Where `hash` starts probing (Fibonacci hashing: a multiply, then the
    /// top bits, so names with close hashes still spread).
    fn home(&self, hash: u64) -> usize {
        (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn insert(&mut self, hash: u64, clock: u64) {
        debug_assert!(clock > 0, "clock 0 marks an empty slot");
        self.reserve(1);
        self.place(hash, clock);
    }

    /// Files a pair in the first free slot from its home; there must be one.
    fn place(&mut self, hash: u64, clock: u64) {
        let mask = self.mask();
        let mut at = self.home(hash);
        while self.slots[at].1 != 0 {
            at = (at + 1) & mask;
        }
        self.slots[at] = (hash, clock);
        self.len += 1;
    }

    fn remove(&mut self, hash: u64, clock: u64) {
        if self.len == 0 {
            return;
        }
        let mask = self.mask();
        let mut hole = self.home(hash);
        loop {
            match self.slots[hole] {
                filed if filed == (hash, clock) => break,
                (_, 0) => return,
                _ => hole = (hole + 1) & mask,
            }
        }
        // Backward shift: a later slot of the cluster moves into the hole
        // when the hole lies between its home and where it sits.
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let filed = self.slots[at];
            if filed.1 == 0 {
                break;
            }
            let from_home = at.wrapping_sub(self.home(filed.0)) & mask;
            let from_hole = at.wrapping_sub(hole) & mask;
            if from_home >= from_hole {
                self.slots[hole] = filed;
                hole = at;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
    }

    /// Reads the cache line of `hash`'s home slot and the next one, where a
    /// probe from home goes on (four slots a line): their clocks folded,
    /// 0 when the table is empty.
    fn peek(&self, hash: u64) -> u64 {
        let home = self.home(hash);
        let next = (home + SLOTS_PER_LINE) & self.mask();
        [home, next]
            .iter()
            .filter_map(|&at| self.slots.get(at))
            .fold(0, |folded, filed| folded ^ filed.1)
    }

    /// The bytes its slots take.
    fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Filed>()
    }

    /// Clocks filed under `hash`: candidates, to be checked by name.
    fn candidates(&self, hash: u64) -> impl Iterator<Item = u64> + '_ {
        let mask = self.mask();
        let start = if self.len == 0 {
            None
        } else {
            Some(self.home(hash))
        };
        std::iter::successors(start, move |&at| Some((at + 1) & mask))
            .map(move |at| self.slots[at])
            .take_while(|filed| filed.1 != 0)
            .filter(move |filed| filed.0 == hash)
            .map(|filed| filed.1)
    }

    fn clocks(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots
            .iter()
            .filter(|filed| filed.1 != 0)
            .map(|filed| filed.1)
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Makes room for `additional` more pairs without passing three
    /// quarters full.
    fn reserve(&mut self, additional: usize) {
        let wanted = self.len.saturating_add(additional);
        if wanted.saturating_mul(4) <= self.slots.len().saturating_mul(3) {
            return;
        }
        let capacity = wanted.saturating_mul(4).div_ceil(3).next_power_of_two().max(16);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; capacity]);
        self.shift = 64 - capacity.trailing_zeros();
        self.len = 0;
        for (hash, clock) in old.into_iter().filter(|filed| filed.1 != 0) {
            // Distinct pairs, room to spare: no reserve.
            self.place(hash, clock);
        }
    }
}

/// One topic: its hash, its name, and its entries filed by key hash.
#[derive(Clone, Debug)]
struct Topic {
    hash: u64,
    name: Arc<str>,
    by_key: Multimap,
}

/// The lookups queries need without scanning, for one replica's entries:
/// topic -> key -> clocks, and pid -> clocks.
#[derive(Clone, Debug, Default)]
pub(crate) struct Indexes {
    topics: HashTable<Topic>,
    by_pid: Multimap,
}

impl Indexes {
    pub(crate) fn insert(&mut self, clock: u64, entry: &Entry) {
        let hash = entry.hashes.topic;
        let topic = self
            .topics
            .entry(
                hash,
                |topic| topic.hash == hash && topic.name == entry.topic,
                |topic| topic.hash,
            )
            .or_insert_with(|| Topic {
                hash,
                name: Arc::clone(&entry.topic),
                by_key: Multimap::default(),
            })
            .into_mut();
        topic.by_key.insert(entry.hashes.key, clock);
        self.by_pid.insert(entry.hashes.pid, clock);
    }

    /// Removes `clock` of `entry`, and its topic when it has no entry left, so
    /// the indexes never outgrow the values.
    pub(crate) fn remove(&mut self, clock: u64, entry: &Entry) {
        let hash = entry.hashes.topic;
        let topic = self
            .topics
            .find_entry(hash, |topic| topic.hash == hash && topic.name == entry.topic);
        if let Ok(mut topic) = topic {
            topic.get_mut().by_key.remove(entry.hashes.key, clock);
            if topic.get().by_key.len() == 0 {
                topic.remove();
            }
        }
        self.by_pid.remove(entry.hashes.pid, clock);
    }

    /// Whether these tables are too large to stay in cache, so that reading
    /// ahead with [`Indexes::warm`] pays.
    pub(crate) fn beyond_caches(&self) -> bool {
        self.by_pid.bytes() > WARM_ABOVE_BYTES
    }

    /// Reads where `hashes`' pairs will be probed in both indexes, one index
    /// at a time across the batch, and returns the reads folded into one
    /// number for `std::hint::black_box`. Each pass is a short loop of
    /// independent reads, so in tables larger than the caches the misses
    /// overlap instead of queueing one after another inside each insertion
    /// or removal. It changes nothing: skipping it only costs time.
    pub(crate) fn warm(&self, hashes: &[NameHashes]) -> u64 {
        let pids = hashes
            .iter()
            .fold(0, |folded, hashes| folded ^ self.by_pid.peek(hashes.pid));
        hashes.iter().fold(pids, |folded, hashes| {
            let topic = hashes.topic;
            folded
                ^ self
                    .topics
                    .find(topic, |slot| slot.hash == topic)
                    .map_or(0, |slot| slot.by_key.peek(hashes.key))
        })
    }

    /// Makes room for `additional` more entries, so a large merge grows the
    /// pid table once instead of at every doubling.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.by_pid.reserve(additional);
    }

    fn topic(&self, topic: &str) -> Option<&Topic> {
        let hash = name_hash(topic);
        self.topics
            .find(hash, |slot| slot.hash == hash && &*slot.name == topic)
    }

    /// The shared `Arc` of `topic` if an entry indexed here carries it, so a
    /// new entry on a known topic need not allocate its name again.
    pub(crate) fn topic_name(&self, topic: &str) -> Option<&Arc<str>> {
        self.topic(topic).map(|slot| &slot.name)
    }

    /// Candidate clocks of `key` on `topic`: check each entry's key.
    pub(crate) fn by_key<'a>(&'a self, topic: &str, key: &str) -> impl Iterator<Item = u64> + 'a {
        let hash = name_hash(key);
        self.topic(topic)
            .into_iter()
            .flat_map(move |slot| slot.by_key.candidates(hash))
    }

    /// Candidate clocks of `pid`: check each entry's pid.
    pub(crate) fn by_pid(&self, pid: &str) -> impl Iterator<Item = u64> + '_ {
        self.by_pid.candidates(name_hash(pid))
    }

    /// Every clock of a topic, in no particular order: callers sort.
    pub(crate) fn by_topic(&self, topic: &str) -> impl Iterator<Item = u64> + '_ {
        self.topic(topic)
            .into_iter()
            .flat_map(|slot| slot.by_key.clocks())
    }

    /// (clocks indexed by topic and key, clocks indexed by pid).
    pub(crate) fn census(&self) -> (usize, usize) {
        let by_topic = self.topics.iter().map(|topic| topic.by_key.len()).sum();
        (by_topic, self.by_pid.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(topic: &str, key: &str, pid: &str) -> Entry {
        Entry::new(topic, key, pid, json!({})).unwrap()
    }

    #[test]
    fn insert_find_and_remove() {
        let mut indexes = Indexes::default();
        let alice = entry("t", "alice", "p1");
        let alice_again = entry("t", "alice", "p2");
        let bob = entry("u", "bob", "p1");
        indexes.insert(1, &alice);
        indexes.insert(2, &alice_again);
        indexes.insert(3, &bob);
        let mut alices: Vec<u64> = indexes.by_key("t", "alice").collect();
        alices.sort_unstable();
        assert_eq!(alices, [1, 2]);
        let mut p1: Vec<u64> = indexes.by_pid("p1").collect();
        p1.sort_unstable();
        assert_eq!(p1, [1, 3]);
        assert_eq!(indexes.census(), (3, 3));

        indexes.remove(1, &alice);
        assert_eq!(indexes.by_key("t", "alice").collect::<Vec<_>>(), [2]);
        indexes.remove(2, &alice_again);
        assert!(indexes.topic("t").is_none(), "an empty topic goes");
        assert_eq!(indexes.census(), (1, 1));
    }

    #[test]
    fn the_multimap_keeps_every_pair_through_churn_and_growth() {
        // Few distinct hashes make long clusters: removal must shift them
        // back without losing a pair. Checked against a plain model.
        let mut map = Multimap::default();
        let mut model: std::collections::BTreeSet<(u64, u64)> = std::collections::BTreeSet::new();
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        for step in 1..=20_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let hash = rng % 37;
            if rng % 3 == 0 && !model.is_empty() {
                let victim = *model
                    .iter()
                    .nth((rng as usize / 3) % model.len())
                    .expect("non-empty");
                map.remove(victim.0, victim.1);
                model.remove(&victim);
            } else {
                map.insert(hash, step);
                model.insert((hash, step));
            }
            assert_eq!(map.len(), model.len());
        }
        for hash in 0..37 {
            let mut found: Vec<u64> = map.candidates(hash).collect();
            found.sort_unstable();
            let expected: Vec<u64> = model
                .iter()
                .filter(|filed| filed.0 == hash)
                .map(|filed| filed.1)
                .collect();
            assert_eq!(found, expected, "hash {hash}");
        }
        let mut all: Vec<u64> = map.clocks().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            model
                .iter()
                .map(|filed| filed.1)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
        map.remove(3, 999_999);
        assert_eq!(map.len(), model.len(), "an absent pair changes nothing");
        assert_eq!(Multimap::default().candidates(1).count(), 0);
    }

    #[test]
    fn removing_an_absent_clock_changes_nothing() {
        let mut indexes = Indexes::default();
        let alice = entry("t", "alice", "p1");
        indexes.insert(1, &alice);
        indexes.remove(9, &alice);
        assert_eq!(indexes.census(), (1, 1));
    }
}

//! Secondary indexes of one replica's entries within a state: by topic and
//! key, and by pid. Each known replica has its own, holding clocks.
//!
//! Per-replica indexes make permdown a matter of dropping a table, let a first
//! full merge copy a peer's tables whole, and keep own-entry lookups small.
//! Queries visit the indexes of each visible replica.
//!
//! Each index is a hash *multimap* of `(name hash, clock)` pairs, 16 bytes a
//! slot: inserting and removing never read a string or another entry (a pair
//! is removed by exact match), and growing never rehashes a string. A lookup
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

use crate::entry::{name_hash, Entry};

/// A replica slot: the state's interned number for a `ReplicaId`.
pub(crate) type Slot = u32;

/// A compact tag: (replica slot, clock). Only meaningful inside one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Dot {
    pub(crate) slot: Slot,
    pub(crate) clock: u64,
}

/// `(name hash, clock)`: one entry filed under one name.
type Filed = (u64, u64);

/// A multimap from name hash to clocks.
#[derive(Clone, Debug, Default)]
struct Multimap(HashTable<Filed>);

impl Multimap {
    fn insert(&mut self, hash: u64, clock: u64) {
        self.0.insert_unique(hash, (hash, clock), |filed| filed.0);
    }

    fn remove(&mut self, hash: u64, clock: u64) {
        if let Ok(found) = self.0.find_entry(hash, |filed| *filed == (hash, clock)) {
            found.remove();
        }
    }

    /// Clocks filed under `hash`: candidates, to be checked by name.
    fn candidates(&self, hash: u64) -> impl Iterator<Item = u64> + '_ {
        self.0
            .iter_hash(hash)
            .filter(move |filed| filed.0 == hash)
            .map(|filed| filed.1)
    }

    fn clocks(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|filed| filed.1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional, |filed| filed.0);
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
    fn removing_an_absent_clock_changes_nothing() {
        let mut indexes = Indexes::default();
        let alice = entry("t", "alice", "p1");
        indexes.insert(1, &alice);
        indexes.remove(9, &alice);
        assert_eq!(indexes.census(), (1, 1));
    }
}

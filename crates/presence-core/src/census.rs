//! Counts of a state's visible presences: per topic, how many presences and
//! how many distinct keys, kept up to date by every change of the view, so a
//! count costs one lookup however large the room (Phoenix's users asked for
//! exactly this: phoenix_pubsub #65).
//!
//! A key present through several replicas counts once: each (topic, key)
//! keeps how many visible presences it has, and the key counts while that is
//! above zero. Hidden replicas' entries are not counted: marking a replica
//! down takes its entries out, marking it up puts them back, as the diffs of
//! those operations do.
//!
//! Keys are told apart by their 64-bit keyed hash alone
//! ([`crate::hashing`]): counting then never reads a key's string, which in a
//! large state sits on a cache line of its own. Two keys of one topic would
//! count as one only if their keyed hashes were equal, about once in 2^64
//! pairs, and nobody who lacks the process's secret can choose such keys.

use std::sync::Arc;

use hashbrown::hash_table::{self, HashTable};

use crate::entry::{Entry, NameHashes};
use crate::hashing::name_hash;
use crate::work::probe;

/// One key's visible presences on one topic: (key hash, presences).
pub(crate) type KeyCount = (u64, usize);

/// Whether presences become visible or stop being visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Add,
    Remove,
}

/// One topic's visible presences and keys.
#[derive(Clone, Debug)]
struct TopicCount {
    hash: u64,
    topic: Arc<str>,
    presences: usize,
    /// The only key, while `keys` is empty: a topic of one key allocates no
    /// table.
    single: Option<KeyCount>,
    keys: HashTable<KeyCount>,
}

impl TopicCount {
    /// Adds (or removes) `of_key` presences of the key hashed `key_hash`.
    fn count(&mut self, key_hash: u64, of_key: usize, change: Change) {
        if self.keys.is_empty() {
            match (&mut self.single, change) {
                (None, Change::Add) => {
                    self.single = Some((key_hash, of_key));
                    return;
                }
                (Some((hash, presences)), _)
                    if {
                        probe();
                        *hash == key_hash
                    } =>
                {
                    match change {
                        Change::Add => *presences += of_key,
                        Change::Remove => *presences -= of_key,
                    }
                    if *presences == 0 {
                        self.single = None;
                    }
                    return;
                }
                (Some(_), Change::Add) => {
                    // A second key: both go to the table.
                    let first = self.single.take().expect("a single key");
                    self.keys.insert_unique(first.0, first, |&(hash, _)| hash);
                }
                (_, Change::Remove) => {
                    debug_assert!(false, "an uncounted key left the view");
                    return;
                }
            }
        }
        let found = self.keys.entry(
            key_hash,
            |&(hash, _)| {
                probe();
                hash == key_hash
            },
            |&(hash, _)| hash,
        );
        match (found, change) {
            (hash_table::Entry::Occupied(mut key), Change::Add) => key.get_mut().1 += of_key,
            (hash_table::Entry::Vacant(vacant), Change::Add) => {
                vacant.insert((key_hash, of_key));
            }
            (hash_table::Entry::Occupied(mut key), Change::Remove) => {
                key.get_mut().1 -= of_key;
                if key.get().1 == 0 {
                    key.remove();
                }
            }
            (hash_table::Entry::Vacant(_), Change::Remove) => {
                debug_assert!(false, "an uncounted key left the view");
            }
        }
    }

    fn keys(&self) -> usize {
        usize::from(self.single.is_some()) + self.keys.len()
    }

    /// The count of `key_hash`, read without counting work: for `warm`.
    fn peek(&self, key_hash: u64) -> Option<&KeyCount> {
        match &self.single {
            Some(key) => (key.0 == key_hash).then_some(key),
            None => self.keys.find(key_hash, |&(hash, _)| hash == key_hash),
        }
    }
}

/// Visible presences and distinct keys per topic.
#[derive(Clone, Debug, Default)]
pub(crate) struct Census {
    topics: HashTable<TopicCount>,
}

impl Census {
    /// Counts (`Change::Add`) or uncounts `entry`, which just became
    /// visible or stopped being visible.
    pub(crate) fn count(&mut self, entry: &Entry, change: Change) {
        self.change(&entry.topic, entry.hashes.topic, [(entry.hashes.key, 1)], change);
    }

    /// Counts (`Change::Add`) or uncounts presences of `topic` (whose hash
    /// is `hash`), as many of each key as `keys` says: (key hash, presences
    /// of that key). A replica's whole index changes visibility this way, a
    /// key group at a time, without reading its entries.
    pub(crate) fn change(
        &mut self,
        topic: &Arc<str>,
        hash: u64,
        keys: impl IntoIterator<Item = KeyCount>,
        change: Change,
    ) {
        let found = self.topics.entry(
            hash,
            |counts| {
                probe();
                counts.hash == hash && counts.topic == *topic
            },
            |counts| counts.hash,
        );
        let mut counts = match (found, change) {
            (hash_table::Entry::Occupied(counts), _) => counts,
            (hash_table::Entry::Vacant(vacant), Change::Add) => vacant.insert(TopicCount {
                hash,
                topic: Arc::clone(topic),
                presences: 0,
                single: None,
                keys: HashTable::new(),
            }),
            (hash_table::Entry::Vacant(_), Change::Remove) => {
                debug_assert!(false, "uncounted presences left the view");
                return;
            }
        };
        let topic_counts = counts.get_mut();
        let mut presences = 0;
        for (key_hash, of_key) in keys {
            topic_counts.count(key_hash, of_key, change);
            presences += of_key;
        }
        match change {
            Change::Add => topic_counts.presences += presences,
            Change::Remove => {
                topic_counts.presences -= presences;
                if topic_counts.presences == 0 {
                    counts.remove();
                }
            }
        }
    }

    /// Looks up the counts `hashes` name, changing nothing: see
    /// `Indexes::warm`.
    pub(crate) fn warm(&self, hashes: &[NameHashes]) -> u64 {
        hashes.iter().fold(0, |folded, hashes| {
            let topic = self
                .topics
                .find(hashes.topic, |counts| counts.hash == hashes.topic);
            let key = topic.and_then(|counts| counts.peek(hashes.key));
            folded ^ key.map_or(0, |&(_, presences)| presences as u64)
        })
    }

    fn topic(&self, topic: &str) -> Option<&TopicCount> {
        let hash = name_hash(topic);
        self.topics.find(hash, |counts| {
            probe();
            counts.hash == hash && &*counts.topic == topic
        })
    }

    /// Visible presences on `topic`.
    pub(crate) fn presences(&self, topic: &str) -> usize {
        self.topic(topic).map_or(0, |counts| counts.presences)
    }

    /// Distinct keys with a visible presence on `topic`.
    pub(crate) fn keys(&self, topic: &str) -> usize {
        self.topic(topic).map_or(0, TopicCount::keys)
    }

    #[cfg(feature = "inspect")]
    /// Visible presences on every topic.
    pub(crate) fn total(&self) -> usize {
        self.topics.iter().map(|topic| topic.presences).sum()
    }

    #[cfg(feature = "inspect")]
    /// Topics with a visible presence, in no particular order.
    pub(crate) fn topics(&self) -> impl Iterator<Item = &str> + '_ {
        self.topics.iter().map(|topic| &*topic.topic)
    }
}

//! Secondary indexes of one replica's entries within a state: by topic and
//! key, and by pid. Each known replica has its own, holding clocks.
//!
//! Per-replica indexes make permdown a matter of dropping a table, let a first
//! full merge copy a peer's tables whole, and keep own-entry lookups small.
//! Queries visit the indexes of each visible replica.
//!
//! Architecture invariant: a replica's indexes hold exactly the clocks of its
//! held entries, no more and no fewer (checked by
//! `invariants::check_bounded_memory`). They are hash tables for speed, so
//! nothing may iterate them into output without sorting first: queries sort
//! what they return.

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

/// A small set of clocks; most keys and pids have exactly one, so that case
/// does not allocate.
#[derive(Clone, Debug)]
pub(crate) enum ClockSet {
    One(u64),
    Many(Vec<u64>),
}

type Clock = u64;

impl ClockSet {
    fn insert(&mut self, dot: Clock) {
        match self {
            Self::One(existing) => *self = Self::Many(vec![*existing, dot]),
            Self::Many(dots) => dots.push(dot),
        }
    }

    /// Removes `dot`; returns true when the set is now empty.
    fn remove(&mut self, dot: Clock) -> bool {
        match self {
            Self::One(existing) => *existing == dot,
            Self::Many(dots) => {
                if let Some(position) = dots.iter().position(|d| *d == dot) {
                    dots.swap_remove(position);
                }
                // A `Many` set holds at least two dots, so one removal
                // leaves at least one: collapse it back to `One`.
                if dots.len() == 1 {
                    *self = Self::One(dots[0]);
                }
                false
            }
        }
    }

    pub(crate) fn as_slice(&self) -> &[Clock] {
        match self {
            Self::One(dot) => std::slice::from_ref(dot),
            Self::Many(dots) => dots,
        }
    }
}

/// One name (a key or a pid) of an index: its hash, a representative entry
/// that carries the name, and the dots filed under it.
///
/// Storing the hash means growing a table never reads a string; holding an
/// entry rather than the string means indexing an entry touches only that
/// entry (equal names are usually the same `Arc`, compared by pointer). The
/// representative may outlive its own dot while other dots share the name;
/// it is dropped with the last one.
#[derive(Clone, Debug)]
struct NameSlot {
    hash: u64,
    representative: Arc<Entry>,
    dots: ClockSet,
}

/// A topic: its hash, a representative entry, and its keys.
#[derive(Clone, Debug)]
struct TopicSlot {
    hash: u64,
    representative: Arc<Entry>,
    keys: HashTable<NameSlot>,
}

/// Which name of an entry a table files it under.
type NameOf = fn(&Entry) -> &Arc<str>;

fn topic_of(entry: &Entry) -> &Arc<str> {
    &entry.topic
}

fn key_of(entry: &Entry) -> &Arc<str> {
    &entry.key
}

fn pid_of(entry: &Entry) -> &Arc<str> {
    &entry.pid
}

/// Whether `a` and `b` carry the same name, pointer first.
fn same_name(a: &Entry, b: &Entry, name_of: NameOf) -> bool {
    std::ptr::eq(a, b) || Arc::ptr_eq(name_of(a), name_of(b)) || name_of(a) == name_of(b)
}

/// The lookups queries need without scanning, for one replica's entries:
/// topic -> key -> clocks, and pid -> clocks.
#[derive(Clone, Debug, Default)]
pub(crate) struct Indexes {
    topics: HashTable<TopicSlot>,
    pids: HashTable<NameSlot>,
}

fn insert_name(table: &mut HashTable<NameSlot>, hash: u64, entry: &Arc<Entry>, name_of: NameOf, dot: Clock) {
    let found = table.entry(
        hash,
        |slot| slot.hash == hash && same_name(&slot.representative, entry, name_of),
        |slot| slot.hash,
    );
    match found {
        hashbrown::hash_table::Entry::Occupied(mut slot) => slot.get_mut().dots.insert(dot),
        hashbrown::hash_table::Entry::Vacant(vacant) => {
            vacant.insert(NameSlot {
                hash,
                representative: Arc::clone(entry),
                dots: ClockSet::One(dot),
            });
        }
    }
}

/// Removes `dot` filed under `entry`'s name; drops the name when it has no dot left.
fn remove_name(table: &mut HashTable<NameSlot>, hash: u64, entry: &Entry, name_of: NameOf, dot: Clock) {
    let found = table.find_entry(hash, |slot| {
        slot.hash == hash && same_name(&slot.representative, entry, name_of)
    });
    if let Ok(mut slot) = found {
        if slot.get_mut().dots.remove(dot) {
            slot.remove();
        }
    }
}

fn find_name<'a>(table: &'a HashTable<NameSlot>, name: &str, name_of: NameOf) -> Option<&'a NameSlot> {
    let hash = name_hash(name);
    table.find(hash, |slot| {
        slot.hash == hash && &**name_of(&slot.representative) == name
    })
}

impl Indexes {
    pub(crate) fn insert(&mut self, dot: Clock, entry: &Arc<Entry>) {
        let hash = entry.hashes.topic;
        let topic = self
            .topics
            .entry(
                hash,
                |slot| slot.hash == hash && same_name(&slot.representative, entry, topic_of),
                |slot| slot.hash,
            )
            .or_insert_with(|| TopicSlot {
                hash,
                representative: Arc::clone(entry),
                keys: HashTable::new(),
            })
            .into_mut();
        insert_name(&mut topic.keys, entry.hashes.key, entry, key_of, dot);
        insert_name(&mut self.pids, entry.hashes.pid, entry, pid_of, dot);
    }

    /// Removes `dot` of `entry`, and any key, topic or pid left with no dot, so
    /// the indexes never outgrow the values.
    pub(crate) fn remove(&mut self, dot: Clock, entry: &Entry) {
        let hash = entry.hashes.topic;
        let topic = self.topics.find_entry(hash, |slot| {
            slot.hash == hash && same_name(&slot.representative, entry, topic_of)
        });
        if let Ok(mut topic) = topic {
            remove_name(&mut topic.get_mut().keys, entry.hashes.key, entry, key_of, dot);
            if topic.get().keys.is_empty() {
                topic.remove();
            }
        }
        remove_name(&mut self.pids, entry.hashes.pid, entry, pid_of, dot);
    }

    /// Makes room for `additional` more entries, so a large merge grows the
    /// pid table once instead of at every doubling.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.pids.reserve(additional, |slot| slot.hash);
    }

    fn topic(&self, topic: &str) -> Option<&TopicSlot> {
        let hash = name_hash(topic);
        self.topics.find(hash, |slot| {
            slot.hash == hash && &*slot.representative.topic == topic
        })
    }

    /// The shared `Arc` of `topic` if an entry indexed here carries it, so a
    /// new entry on a known topic need not allocate its name again.
    pub(crate) fn topic_name(&self, topic: &str) -> Option<&Arc<str>> {
        self.topic(topic).map(|slot| &slot.representative.topic)
    }

    pub(crate) fn by_key(&self, topic: &str, key: &str) -> &[Clock] {
        self.topic(topic)
            .and_then(|slot| find_name(&slot.keys, key, key_of))
            .map_or(&[], |slot| slot.dots.as_slice())
    }

    pub(crate) fn by_pid(&self, pid: &str) -> &[Clock] {
        find_name(&self.pids, pid, pid_of).map_or(&[], |slot| slot.dots.as_slice())
    }

    /// Every clock of a topic, in no particular order: callers sort.
    pub(crate) fn by_topic(&self, topic: &str) -> impl Iterator<Item = Clock> + '_ {
        self.topic(topic).into_iter().flat_map(|slot| {
            slot.keys
                .iter()
                .flat_map(|key| key.dots.as_slice().iter().copied())
        })
    }

    /// (clocks indexed by topic and key, clocks indexed by pid).
    pub(crate) fn census(&self) -> (usize, usize) {
        let by_topic = self
            .topics
            .iter()
            .flat_map(|topic| topic.keys.iter())
            .map(|key| key.dots.as_slice().len())
            .sum();
        let by_pid = self.pids.iter().map(|pid| pid.dots.as_slice().len()).sum();
        (by_topic, by_pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(clock: u64) -> u64 {
        clock
    }

    #[test]
    fn dot_set_grows_and_shrinks_back_to_one() {
        let mut set = ClockSet::One(dot(1));
        set.insert(dot(2));
        set.insert(dot(3));
        assert!(!set.remove(dot(2)));
        assert!(!set.remove(dot(1)));
        assert!(matches!(set, ClockSet::One(d) if d == dot(3)));
        assert!(set.remove(dot(3)));
    }

    #[test]
    fn removing_an_absent_dot_keeps_the_set() {
        let mut set = ClockSet::One(dot(1));
        assert!(!set.remove(dot(9)));
        assert_eq!(set.as_slice(), &[dot(1)]);
    }
}

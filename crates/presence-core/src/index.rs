//! Secondary indexes of one replica's entries within a state: by topic and
//! key, and by pid; and the own replica's index by (topic, key, pid).
//!
//! Per-replica indexes make permdown a matter of dropping a table, let a first
//! full merge copy a peer's tables whole, and keep own-entry lookups small.
//! Queries visit the indexes of each visible replica.
//!
//! Each index is two levels: a table of *groups*, one per name (a key on a
//! topic, or a pid), found by the name's keyed hash
//! ([`crate::hashing`]); and in each group the clocks filed under that name,
//! one clock inline or a hash set of clocks. So inserting, finding and
//! removing one entry costs the same whether its name has one entry or a
//! million: a hot key, a user with many tabs or a pid on every topic is one
//! group among others, and its clocks are a set, not a scan. Equal hashes do
//! not make equal names: a lookup by name yields candidate clocks whose
//! entries the caller checks against the name.
//!
//! Architecture invariant: a replica's indexes hold exactly the clocks of its
//! held entries, no more and no fewer (checked by
//! `invariants::check_bounded_memory`). They are hash tables, so nothing may
//! iterate them into output without sorting first: queries sort what they
//! return.

use std::sync::Arc;

use hashbrown::hash_table::{self, HashTable};

use crate::census::{Census, Change};
use crate::entry::{Entry, NameHashes};
use crate::hashing::{mix, name_hash, triple_hash};
use crate::work::probe;

/// A replica slot: the state's interned number for a `ReplicaId`.
pub(crate) type Slot = u32;

/// A compact tag: (replica slot, clock). Only meaningful inside one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Dot {
    pub(crate) slot: Slot,
    pub(crate) clock: u64,
}

/// Above this many entries of one replica (a pid table of about 1 MiB, a
/// core's L2 cache on the machines we measure on), a batch of index work
/// reads its groups ahead: see [`Indexes::warm`]. Below it the tables sit in
/// cache and reading ahead only costs.
const WARM_ABOVE_ENTRIES: usize = 1 << 15;

/// What an index files under a name: a clock, or a clock with its entry
/// (so a query by topic or key reads entries without a lookup by clock).
trait Filed: Clone {
    fn clock(&self) -> u64;
}

impl Filed for u64 {
    fn clock(&self) -> u64 {
        *self
    }
}

/// A clock and its entry.
#[derive(Clone, Debug)]
pub(crate) struct Held {
    clock: u64,
    entry: Arc<Entry>,
}

impl Filed for Held {
    fn clock(&self) -> u64 {
        self.clock
    }
}

fn rehash<V: Filed>(filed: &V) -> u64 {
    mix(filed.clock())
}

/// The clocks filed under one name. Most names have one entry, so one clock
/// sits inline; a name with more keeps a hash set, so adding or removing one
/// of a hot name's clocks never walks the others.
#[derive(Clone, Debug)]
enum Clocks<V> {
    One(V),
    Many(Box<HashTable<V>>),
}

/// Above this capacity, a set that has fallen to an eighth full gives memory
/// back, so a room that emptied does not keep its peak's table.
const SHRINK_ABOVE: usize = 64;

impl<V: Filed> Clocks<V> {
    fn insert(&mut self, filed: V) {
        match self {
            Self::One(first) => {
                let mut set = HashTable::with_capacity(4);
                set.insert_unique(rehash(first), first.clone(), rehash);
                set.insert_unique(rehash(&filed), filed, rehash);
                *self = Self::Many(Box::new(set));
            }
            // A replica issues each clock once, so a name never files one twice.
            Self::Many(set) => {
                set.insert_unique(rehash(&filed), filed, rehash);
            }
        }
    }

    /// Removes `clock`; whether it was there.
    fn remove(&mut self, clock: u64) -> bool {
        match self {
            Self::One(only) => {
                probe();
                only.clock() == clock
            }
            Self::Many(set) => {
                let found = set.find_entry(mix(clock), |filed| {
                    probe();
                    filed.clock() == clock
                });
                let Ok(found) = found else {
                    return false;
                };
                found.remove();
                if set.len() == 1 {
                    let last = set.iter().next().expect("one clock left").clone();
                    *self = Self::One(last);
                } else if set.capacity() > SHRINK_ABOVE && set.len() * 8 < set.capacity() {
                    set.shrink_to(set.len() * 2, rehash);
                }
                true
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(set) => set.len(),
        }
    }

    fn iter(&self) -> ClocksIter<'_, V> {
        match self {
            Self::One(filed) => ClocksIter::One(Some(filed)),
            Self::Many(set) => ClocksIter::Many(set.iter()),
        }
    }
}

/// What one group files, in no particular order.
enum ClocksIter<'a, V> {
    One(Option<&'a V>),
    Many(hash_table::Iter<'a, V>),
}

impl<'a, V> Iterator for ClocksIter<'a, V> {
    type Item = &'a V;

    /// Each item yielded counts as a probe: a lookup that walks a group
    /// does work in proportion to the group.
    fn next(&mut self) -> Option<&'a V> {
        let next = match self {
            Self::One(filed) => filed.take(),
            Self::Many(set) => set.next(),
        };
        if next.is_some() {
            probe();
        }
        next
    }
}

/// What is filed under one name hash.
#[derive(Clone, Debug)]
struct Group<V> {
    hash: u64,
    clocks: Clocks<V>,
}

/// A multimap from name hash to what is filed: one group per name. The
/// first group sits inline until a second name arrives, so a topic with
/// one key (a room of one user, or a pid's own topic) allocates no table.
#[derive(Clone, Debug)]
struct Groups<V> {
    /// The only group, while `table` is empty.
    single: Option<Group<V>>,
    table: HashTable<Group<V>>,
    /// Clocks in all groups.
    len: usize,
}

impl<V> Default for Groups<V> {
    fn default() -> Self {
        Self {
            single: None,
            table: HashTable::new(),
            len: 0,
        }
    }
}

impl<V: Filed> Groups<V> {
    fn insert(&mut self, hash: u64, filed: V) {
        debug_assert!(filed.clock() > 0, "clock 0 is never issued");
        self.len += 1;
        if self.table.is_empty() {
            match &mut self.single {
                None => {
                    self.single = Some(Group {
                        hash,
                        clocks: Clocks::One(filed),
                    });
                    return;
                }
                Some(group)
                    if {
                        probe();
                        group.hash == hash
                    } =>
                {
                    group.clocks.insert(filed);
                    return;
                }
                Some(_) => {
                    // A second name: both go to the table.
                    let first = self.single.take().expect("a single group");
                    self.table.insert_unique(first.hash, first, |group| group.hash);
                }
            }
        }
        let found = self.table.entry(
            hash,
            |group| {
                probe();
                group.hash == hash
            },
            |group| group.hash,
        );
        match found {
            hash_table::Entry::Occupied(mut group) => group.get_mut().clocks.insert(filed),
            hash_table::Entry::Vacant(vacant) => {
                vacant.insert(Group {
                    hash,
                    clocks: Clocks::One(filed),
                });
            }
        }
    }

    /// Removes `clock` from `hash`'s group, and the group when it empties.
    fn remove(&mut self, hash: u64, clock: u64) {
        if let Some(group) = &mut self.single {
            probe();
            if group.hash != hash || !group.clocks.remove(clock) {
                return;
            }
            self.len -= 1;
            if matches!(&group.clocks, Clocks::One(only) if only.clock() == clock) {
                self.single = None;
            }
            return;
        }
        let found = self.table.find_entry(hash, |group| {
            probe();
            group.hash == hash
        });
        let Ok(mut group) = found else {
            return;
        };
        if !group.get_mut().clocks.remove(clock) {
            return;
        }
        self.len -= 1;
        if let Clocks::One(only) = &group.get().clocks {
            if only.clock() == clock {
                group.remove();
            }
        }
    }

    /// The group of `hash`, if any.
    fn group(&self, hash: u64) -> Option<&Group<V>> {
        match &self.single {
            Some(group) => {
                probe();
                (group.hash == hash).then_some(group)
            }
            None => self.table.find(hash, |group| {
                probe();
                group.hash == hash
            }),
        }
    }

    /// The group of `hash`, read without counting: for `Indexes::warm`.
    fn peek(&self, hash: u64) -> Option<&Group<V>> {
        match &self.single {
            Some(group) => (group.hash == hash).then_some(group),
            None => self.table.find(hash, |group| group.hash == hash),
        }
    }

    /// What is filed under `hash`: candidates, to be checked by name.
    fn candidates(&self, hash: u64) -> impl Iterator<Item = &V> + '_ {
        self.group(hash).into_iter().flat_map(|group| group.clocks.iter())
    }

    /// Every group, in no particular order.
    fn groups(&self) -> impl Iterator<Item = &Group<V>> + '_ {
        self.single.iter().chain(self.table.iter())
    }

    fn all(&self) -> impl Iterator<Item = &V> + '_ {
        self.groups().flat_map(|group| group.clocks.iter())
    }

    fn len(&self) -> usize {
        self.len
    }

    fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional, |group| group.hash);
    }
}

/// One topic: its hash, its name, and its entries filed by key hash.
#[derive(Clone, Debug)]
struct Topic {
    hash: u64,
    name: Arc<str>,
    by_key: Groups<Held>,
}

/// The lookups queries need without scanning, for one replica's entries:
/// topic -> key -> clocks, and pid -> clocks.
#[derive(Clone, Debug, Default)]
pub(crate) struct Indexes {
    topics: HashTable<Topic>,
    by_pid: Groups<u64>,
}

impl Indexes {
    pub(crate) fn insert(&mut self, clock: u64, entry: &Arc<Entry>) {
        let hash = entry.hashes.topic;
        let topic = self
            .topics
            .entry(
                hash,
                |topic| {
                    probe();
                    topic.hash == hash && topic.name == entry.topic
                },
                |topic| topic.hash,
            )
            .or_insert_with(|| Topic {
                hash,
                name: Arc::clone(&entry.topic),
                by_key: Groups::default(),
            })
            .into_mut();
        let held = Held {
            clock,
            entry: Arc::clone(entry),
        };
        topic.by_key.insert(entry.hashes.key, held);
        self.by_pid.insert(entry.hashes.pid, clock);
    }

    /// Removes `clock` of `entry`, and its topic when it has no entry left, so
    /// the indexes never outgrow the values.
    pub(crate) fn remove(&mut self, clock: u64, entry: &Entry) {
        let hash = entry.hashes.topic;
        let topic = self.topics.find_entry(hash, |topic| {
            probe();
            topic.hash == hash && topic.name == entry.topic
        });
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
        self.topics.find(hash, |slot| {
            probe();
            slot.hash == hash && &*slot.name == topic
        })
    }

    /// The shared `Arc` of `topic` if an entry indexed here carries it, so a
    /// new entry on a known topic need not allocate its name again.
    pub(crate) fn topic_name(&self, topic: &str) -> Option<&Arc<str>> {
        self.topic(topic).map(|slot| &slot.name)
    }

    /// Candidate (clock, entry)s of `key` on `topic`: check each entry's key.
    pub(crate) fn by_key<'a>(
        &'a self,
        topic: &str,
        key: &str,
    ) -> impl Iterator<Item = (u64, &'a Arc<Entry>)> + 'a {
        let hash = name_hash(key);
        self.topic(topic)
            .into_iter()
            .flat_map(move |slot| slot.by_key.candidates(hash))
            .map(|held| (held.clock, &held.entry))
    }

    /// Candidate clocks of `pid`: check each entry's pid.
    pub(crate) fn by_pid(&self, pid: &str) -> impl Iterator<Item = u64> + '_ {
        self.by_pid.candidates(name_hash(pid)).copied()
    }

    /// Every (clock, entry) of a topic, in no particular order: callers sort.
    pub(crate) fn by_topic(&self, topic: &str) -> impl Iterator<Item = (u64, &Arc<Entry>)> + '_ {
        self.topic(topic)
            .into_iter()
            .flat_map(|slot| slot.by_key.all())
            .map(|held| (held.clock, &held.entry))
    }

    /// Whether these tables are too large to stay in cache, so that reading
    /// ahead with [`Indexes::warm`] pays.
    pub(crate) fn beyond_caches(&self) -> bool {
        self.by_pid.len() > WARM_ABOVE_ENTRIES
    }

    /// Looks up the groups `hashes` name in both indexes, one index at a
    /// time across the batch, and returns what it read folded into one
    /// number for `std::hint::black_box`. Each pass is a short loop of
    /// independent reads, so in tables larger than the caches the misses
    /// overlap instead of queueing one after another inside each insertion
    /// or removal. It changes nothing: skipping it only costs time.
    pub(crate) fn warm(&self, hashes: &[NameHashes]) -> u64 {
        let pids = hashes.iter().fold(0, |folded, hashes| {
            folded ^ self.by_pid.peek(hashes.pid).map_or(0, |group| group.hash)
        });
        hashes.iter().fold(pids, |folded, hashes| {
            let topic = self.topics.find(hashes.topic, |slot| slot.hash == hashes.topic);
            let group = topic.and_then(|slot| slot.by_key.peek(hashes.key));
            folded ^ group.map_or(0, |group| group.hash)
        })
    }

    /// Counts (or uncounts) every entry indexed here in `census`, a key
    /// group at a time: what a replica's change of visibility does to the
    /// counts, without reading one entry.
    pub(crate) fn count_into(&self, census: &mut Census, change: Change) {
        for topic in &self.topics {
            let keys = topic
                .by_key
                .groups()
                .map(|group| (group.hash, group.clocks.len()));
            census.change(&topic.name, topic.hash, keys, change);
        }
    }

    #[cfg(feature = "inspect")]
    /// (clocks indexed by topic and key, clocks indexed by pid).
    pub(crate) fn census(&self) -> (usize, usize) {
        let by_topic = self.topics.iter().map(|topic| topic.by_key.len()).sum();
        (by_topic, self.by_pid.len())
    }
}

/// The own replica's entries by (topic, key, pid), which a replica holds at
/// most once each: what `leave` and `update` look up, in one probe however
/// many entries share the key or the pid.
#[derive(Clone, Debug, Default)]
pub(crate) struct OwnIndex {
    /// (hash of the triple, clock).
    table: HashTable<(u64, u64)>,
}

impl OwnIndex {
    pub(crate) fn insert(&mut self, clock: u64, entry: &Entry) {
        let hash = triple_of(entry);
        self.table.insert_unique(hash, (hash, clock), |&(hash, _)| hash);
    }

    pub(crate) fn remove(&mut self, clock: u64, entry: &Entry) {
        let hash = triple_of(entry);
        let found = self.table.find_entry(hash, |&filed| {
            probe();
            filed == (hash, clock)
        });
        if let Ok(found) = found {
            found.remove();
        }
    }

    /// The clock of the own entry of (topic, key, pid) among those `is_it`
    /// accepts (it checks the names: equal hashes do not make equal names).
    pub(crate) fn find(&self, topic: &str, key: &str, pid: &str, is_it: impl Fn(u64) -> bool) -> Option<u64> {
        let hash = triple_hash(name_hash(topic), name_hash(key), name_hash(pid));
        self.table
            .find(hash, |&(filed, clock)| {
                probe();
                filed == hash && is_it(clock)
            })
            .map(|&(_, clock)| clock)
    }

    #[cfg(feature = "inspect")]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

fn triple_of(entry: &Entry) -> u64 {
    triple_hash(entry.hashes.topic, entry.hashes.key, entry.hashes.pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(topic: &str, key: &str, pid: &str) -> Arc<Entry> {
        Arc::new(Entry::new(topic, key, pid, json!({})).unwrap())
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
        let mut alices: Vec<u64> = indexes.by_key("t", "alice").map(|(clock, _)| clock).collect();
        alices.sort_unstable();
        assert_eq!(alices, [1, 2]);
        let mut p1: Vec<u64> = indexes.by_pid("p1").collect();
        p1.sort_unstable();
        assert_eq!(p1, [1, 3]);
        assert_eq!(indexes.census(), (3, 3));

        indexes.remove(1, &alice);
        assert_eq!(
            indexes
                .by_key("t", "alice")
                .map(|(clock, _)| clock)
                .collect::<Vec<_>>(),
            [2]
        );
        indexes.remove(2, &alice_again);
        assert!(indexes.topic("t").is_none(), "an empty topic goes");
        assert_eq!(indexes.census(), (1, 1));
    }

    /// Most names file under one group (a key with a few pids, a pid on a
    /// few topics): one name's clocks stay inline, with no table allocated,
    /// however many there are.
    #[test]
    fn one_name_stays_inline() {
        let mut groups = Groups::<u64>::default();
        for clock in 1..=3 {
            groups.insert(7, clock);
        }
        assert!(groups.single.is_some());
        assert_eq!(groups.table.capacity(), 0);
        groups.insert(8, 4);
        assert!(groups.single.is_none());
        assert_eq!(groups.table.len(), 2);
    }

    #[test]
    fn groups_keep_every_pair_through_churn_and_growth() {
        // Few distinct hashes make large groups that grow, shrink back to
        // one clock and empty: no pair may be lost. Checked against a plain
        // model.
        let mut groups = Groups::<u64>::default();
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
                groups.remove(victim.0, victim.1);
                model.remove(&victim);
            } else {
                groups.insert(hash, step);
                model.insert((hash, step));
            }
            assert_eq!(groups.len(), model.len());
        }
        for hash in 0..37 {
            let mut found: Vec<u64> = groups.candidates(hash).copied().collect();
            found.sort_unstable();
            let expected: Vec<u64> = model
                .iter()
                .filter(|filed| filed.0 == hash)
                .map(|filed| filed.1)
                .collect();
            assert_eq!(found, expected, "hash {hash}");
        }
        let mut all: Vec<u64> = groups.all().copied().collect();
        all.sort_unstable();
        let expected: Vec<u64> = model
            .iter()
            .map(|filed| filed.1)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(all, expected);
        groups.remove(3, 999_999);
        assert_eq!(groups.len(), model.len(), "an absent pair changes nothing");
        for (hash, clock) in model.clone() {
            groups.remove(hash, clock);
        }
        assert_eq!(groups.len(), 0);
        assert!(
            groups.table.is_empty() && groups.single.is_none(),
            "empty groups go"
        );
        assert_eq!(Groups::<u64>::default().candidates(1).count(), 0);
    }

    #[test]
    fn a_hot_group_gives_memory_back_when_it_empties() {
        let mut groups = Groups::<u64>::default();
        for clock in 1..=10_000 {
            groups.insert(7, clock);
        }
        for clock in 2..=10_000 {
            groups.remove(7, clock);
        }
        let group = groups.groups().next().expect("one group");
        assert!(
            matches!(group.clocks, Clocks::One(1)),
            "one clock left sits inline"
        );
    }

    #[test]
    fn removing_an_absent_clock_changes_nothing() {
        let mut indexes = Indexes::default();
        let alice = entry("t", "alice", "p1");
        indexes.insert(1, &alice);
        indexes.remove(9, &alice);
        assert_eq!(indexes.census(), (1, 1));
    }

    #[test]
    fn the_own_index_finds_a_triple_among_many_of_its_key_and_pid() {
        let mut own = OwnIndex::default();
        let entries: Vec<Arc<Entry>> = (0..100)
            .map(|i| entry(&format!("t{}", i % 10), "guest", &format!("p{}", i / 10)))
            .collect();
        for (clock, entry) in (1..).zip(&entries) {
            own.insert(clock, entry);
        }
        let clock_of = |own: &OwnIndex, topic: &str, pid: &str| {
            own.find(topic, "guest", pid, |clock| {
                let entry = &entries[clock as usize - 1];
                &*entry.topic == topic && &*entry.pid == pid
            })
        };
        assert_eq!(clock_of(&own, "t3", "p4"), Some(44));
        assert_eq!(clock_of(&own, "t3", "p40"), None);
        own.remove(44, &entries[43]);
        assert_eq!(clock_of(&own, "t3", "p4"), None);
        assert_eq!(own.len(), 99);
    }
}

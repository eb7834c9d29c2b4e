//! One replica's state: the delta-state add-wins observed-remove set of
//! presences, its indexes, local replica liveness and the outgoing delta.
//!
//! Local operations, queries, liveness and retirement live here; merging,
//! deltas from peers and extracts live in `merge.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::census::{Census, Change};
use crate::delta::Delta;
use crate::diff::Diff;
use crate::entry::{Entry, EntryError, Presence};
use crate::index::{Dot, Indexes, OwnIndex, Slot};
use crate::log::ReplicaLog;
use crate::replica::{tag_fingerprint, ReplicaId, Tag};

/// Local, never replicated belief about a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Its entries are visible.
    Up,
    /// Believed unreachable: its entries are kept but hidden.
    Down,
}

/// A replica known to a state: its id, what is known of its joins, and
/// whether it is believed up.
#[derive(Clone, Debug)]
pub(crate) struct KnownReplica {
    pub(crate) id: ReplicaId,
    pub(crate) log: ReplicaLog,
    pub(crate) status: Status,
    /// Lookups over `log.values` by topic/key and by pid.
    pub(crate) indexes: Indexes,
    /// `id.stable_hash()`, kept for fingerprints.
    pub(crate) id_hash: u64,
    /// Wrapping sum of the fingerprints of the held clocks' tags.
    pub(crate) fingerprint: u64,
}

/// Why a local join or update was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalError {
    /// The entry breaks a limit (empty or long name, deep meta).
    Invalid(EntryError),
    /// This replica already tracks that (pid, topic, key).
    AlreadyTracked,
    /// This replica does not track that (pid, topic, key).
    NotTracked,
    /// The replica has issued `u64::MAX` clocks; restart with a new incarnation.
    ClocksExhausted,
}

impl std::fmt::Display for LocalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(problem) => write!(f, "invalid presence: {problem}"),
            Self::AlreadyTracked => write!(f, "presence already tracked"),
            Self::NotTracked => write!(f, "presence not tracked"),
            Self::ClocksExhausted => write!(f, "replica clocks exhausted"),
        }
    }
}

impl std::error::Error for LocalError {}

impl From<EntryError> for LocalError {
    fn from(problem: EntryError) -> Self {
        Self::Invalid(problem)
    }
}

/// Why a retirement request (permdown or reincarnation) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetireError {
    /// A replica cannot permdown itself; restart it with a new incarnation.
    OwnReplica,
    /// A new incarnation must exceed the current one and every retired one.
    StaleIncarnation {
        /// The incarnation offered.
        offered: u64,
        /// The lowest incarnation that would be accepted.
        minimum: u64,
    },
}

impl std::fmt::Display for RetireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OwnReplica => write!(f, "a replica cannot permdown itself"),
            Self::StaleIncarnation { offered, minimum } => {
                write!(f, "incarnation {offered} is stale; use {minimum} or more")
            }
        }
    }
}

impl std::error::Error for RetireError {}

/// One replica of the presence CRDT.
///
/// Entries are owned by the replica that joined them: only the owner removes
/// them (invariant I5), and peers hide them by marking the owner down.
/// Every operation that can change the view returns the exact [`Diff`].
///
/// Retirement: per base name, the state keeps the highest incarnation known
/// to be dead (`retired`). Permdown and a restart both retire; retired
/// replicas' entries are dropped and never accepted again (I3, bug classes B8,
/// B10, B11), and the watermark is replicated with full states so that a
/// lagging peer cannot bring them back. A replica that learns it has been
/// retired itself keeps its entries (own authority) but reports
/// [`State::is_retired`]; its node must then call [`State::reincarnate`].
#[derive(Clone, Debug)]
pub struct State {
    pub(crate) replica: ReplicaId,
    pub(crate) own: Slot,
    pub(crate) slots: Vec<Option<KnownReplica>>,
    pub(crate) slot_of: BTreeMap<ReplicaId, Slot>,
    pub(crate) free_slots: Vec<Slot>,
    pub(crate) retired: BTreeMap<Arc<str>, u64>,
    pub(crate) delta: Delta,
    pub(crate) held: usize,
    /// The own replica's entries by (topic, key, pid).
    pub(crate) own_index: OwnIndex,
    /// Visible presences and keys per topic.
    pub(crate) census: Census,
    /// Counts the calls that may have changed this state; see
    /// [`State::revision`].
    pub(crate) revision: u64,
}

impl State {
    /// A fresh replica. Every lower incarnation of its base is retired at once:
    /// a restarted node never revives what its former self issued.
    pub fn new(replica: ReplicaId) -> Self {
        let mut retired = BTreeMap::new();
        if replica.incarnation() > 0 {
            retired.insert(Arc::clone(replica.base_arc()), replica.incarnation() - 1);
        }
        let mut state = Self {
            replica: replica.clone(),
            own: 0,
            slots: Vec::new(),
            slot_of: BTreeMap::new(),
            free_slots: Vec::new(),
            retired,
            delta: Delta::empty(replica.clone(), 0),
            held: 0,
            own_index: OwnIndex::default(),
            census: Census::default(),
            revision: 0,
        };
        state.own = state.intern(&replica);
        state
    }

    /// A number that every call able to change this state moves on, before
    /// it does anything else, whether or not it then changes anything: two
    /// readings that are equal mean no such call came between them, so what
    /// the state holds and shows (its logs, watermarks, view, indexes and
    /// counts) is exactly as it was. Only [`State::take_delta`], which
    /// changes nothing of that, leaves it alone. A checker that judged the
    /// state at one revision may skip judging it again at the same
    /// revision. Clones keep the revision of their source; a decoded or new
    /// state starts at 0.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Moves [`State::revision`] on: the first thing every `pub` method that
    /// takes `&mut self` does.
    pub(crate) fn revise(&mut self) {
        self.revision = self.revision.wrapping_add(1);
    }

    /// This replica's id.
    pub fn replica(&self) -> &ReplicaId {
        &self.replica
    }

    // ----- local operations -------------------------------------------------

    /// Joins `pid` of `key` on `topic` with `meta`, under the next own clock.
    pub fn join(&mut self, pid: &str, topic: &str, key: &str, meta: Value) -> Result<Diff, LocalError> {
        self.revise();
        let shared_topic = self.known(self.own).indexes.topic_name(topic);
        let entry = Entry::with_topic(topic, shared_topic, key, pid, meta)?;
        if self.own_dot(pid, topic, key).is_some() {
            return Err(LocalError::AlreadyTracked);
        }
        let presence = self.insert_own(entry)?;
        Ok(Diff {
            joins: vec![presence],
            leaves: Vec::new(),
        })
    }

    /// Removes this replica's presence of `pid` under `key` on `topic`. An
    /// absent presence gives an empty diff. Foreign entries are never touched.
    ///
    /// A leave takes an own clock too, though it adds no entry: so a removal
    /// advances the context, and a peer that missed it can tell by clocks
    /// alone that it lacks something (anti-entropy then repairs it).
    pub fn leave(&mut self, pid: &str, topic: &str, key: &str) -> Diff {
        self.revise();
        let mut diff = match self.own_dot(pid, topic, key) {
            Some(dot) => self.remove_own(&[dot.clock]),
            None => Diff::default(),
        };
        if crate::sabotage::active(crate::sabotage::Sabotage::LeaveForeign) {
            diff.append(self.remove_same_names(pid, topic, key, self.own));
        }
        diff
    }

    /// The slips behind `Sabotage::LeaveForeign` (B14) and
    /// `Sabotage::LastMergedWins` (B3): the entries of `pid` under `key` on
    /// `topic` of every slot but `except`, removed here.
    fn remove_same_names(&mut self, pid: &str, topic: &str, key: &str, except: Slot) -> Diff {
        let mut doomed = Vec::new();
        for &slot in self.slot_of.values() {
            if slot == except {
                continue;
            }
            let known = self.known(slot);
            for clock in known.indexes.by_pid(pid) {
                let matches =
                    known.log.values().get(&clock).is_some_and(|entry| {
                        &*entry.pid == pid && &*entry.topic == topic && &*entry.key == key
                    });
                if matches {
                    doomed.push(Dot { slot, clock });
                }
            }
        }
        let leaves = doomed
            .into_iter()
            .filter_map(|dot| {
                let visible = self.is_visible(dot.slot);
                self.remove_value(dot).filter(|_| visible)
            })
            .collect();
        Diff {
            joins: Vec::new(),
            leaves,
        }
    }

    /// Removes every presence of `pid` this replica owns.
    pub fn leave_by_pid(&mut self, pid: &str) -> Diff {
        self.revise();
        let own = self.known(self.own);
        let mut clocks: Vec<u64> = own
            .indexes
            .by_pid(pid)
            .filter(|clock| {
                own.log
                    .values()
                    .get(clock)
                    .is_some_and(|entry| &*entry.pid == pid)
            })
            .collect();
        clocks.sort_unstable();
        self.remove_own(&clocks)
    }

    /// Replaces the meta of this replica's presence of `pid` under `key`: one
    /// atomic leave and join whose diff, and delta, carry both halves (bug
    /// class B7). The new presence's `phx_ref_prev` names the old one.
    pub fn update(&mut self, pid: &str, topic: &str, key: &str, meta: Value) -> Result<Diff, LocalError> {
        self.revise();
        let old = self.own_dot(pid, topic, key).ok_or(LocalError::NotTracked)?;
        let shared_topic = self.known(self.own).indexes.topic_name(topic);
        let mut entry = Entry::with_topic(topic, shared_topic, key, pid, meta)?;
        entry.replaces = Some(old.clock);
        // The new join's clock is also the event clock of the removal.
        let joined = self.insert_own(entry)?;
        if !crate::sabotage::active(crate::sabotage::Sabotage::UpdateDropsRemoval) {
            self.delta.record_leave(old.clock, joined.tag.clock);
        }
        let left = self.take_own_value(old.clock);
        Ok(Diff {
            joins: vec![joined],
            leaves: vec![left],
        })
    }

    /// The next own clock: above everything observed of this replica, the
    /// cloud included, so no clock is ever issued twice (bug class B9).
    fn next_clock(&self) -> Result<u64, LocalError> {
        let observed = self.known(self.own).log.max_observed();
        if crate::sabotage::active(crate::sabotage::Sabotage::ClockNotAdvanced) {
            return Ok(observed.max(1));
        }
        observed.checked_add(1).ok_or(LocalError::ClocksExhausted)
    }

    /// Issues the next own clock and marks it observed.
    fn tick(&mut self) -> Result<u64, LocalError> {
        let clock = self.next_clock()?;
        let own = self.own;
        let log = &mut self.known_mut(own).log;
        log.cloud_mut().insert(clock);
        log.compact();
        Ok(clock)
    }

    fn insert_own(&mut self, entry: Entry) -> Result<Presence, LocalError> {
        let clock = self.tick()?;
        let entry = Arc::new(entry);
        self.insert_value(
            Dot {
                slot: self.own,
                clock,
            },
            &entry,
        );
        self.delta.record_join(clock, Arc::clone(&entry));
        Ok(Presence {
            tag: Tag::new(self.replica.clone(), clock),
            entry,
        })
    }

    /// Removes own entries (sorted clocks) as one leave event with one clock.
    fn remove_own(&mut self, clocks: &[u64]) -> Diff {
        if clocks.is_empty() {
            return Diff::default();
        }
        // 2^64 local operations cannot happen; no untrusted input reaches here.
        let event = if crate::sabotage::active(crate::sabotage::Sabotage::LeaveTakesNoClock) {
            self.known(self.own).log.context
        } else {
            self.tick().expect("own clocks are never exhausted by leaves")
        };
        let mut leaves = Vec::with_capacity(clocks.len());
        for &clock in clocks {
            self.delta.record_leave(clock, event);
            leaves.push(self.take_own_value(clock));
        }
        Diff {
            joins: Vec::new(),
            leaves,
        }
    }

    fn take_own_value(&mut self, clock: u64) -> Presence {
        self.remove_value(Dot {
            slot: self.own,
            clock,
        })
        .expect("own dot taken from the index is held")
    }

    /// Removes a held value and its index entries; returns it as a presence.
    pub(crate) fn remove_value(&mut self, dot: Dot) -> Option<Presence> {
        let known = self.slots[dot.slot as usize].as_mut()?;
        let entry = known.log.values_mut().remove(&dot.clock)?;
        known.indexes.remove(dot.clock, &entry);
        known.fingerprint = known
            .fingerprint
            .wrapping_sub(tag_fingerprint(known.id_hash, dot.clock));
        let tag = Tag::new(known.id.clone(), dot.clock);
        if known.status == Status::Up {
            self.census.count(&entry, Change::Remove);
        }
        if dot.slot == self.own {
            self.own_index.remove(dot.clock, &entry);
        }
        self.held -= 1;
        Some(Presence { tag, entry })
    }

    /// Inserts a value (own or foreign) and its index entries.
    pub(crate) fn insert_value(&mut self, dot: Dot, entry: &Arc<Entry>) {
        let own = self.own;
        if dot.slot != own && crate::sabotage::active(crate::sabotage::Sabotage::LastMergedWins) {
            let (pid, topic, key) = (entry.pid.clone(), entry.topic.clone(), entry.key.clone());
            let diff = self.remove_same_names(&pid, &topic, &key, dot.slot);
            drop(diff);
        }
        let known = self.known_mut(dot.slot);
        known.log.values_mut().insert(dot.clock, Arc::clone(entry));
        known.indexes.insert(dot.clock, entry);
        known.fingerprint = known
            .fingerprint
            .wrapping_add(tag_fingerprint(known.id_hash, dot.clock));
        if known.status == Status::Up {
            self.census.count(entry, Change::Add);
        }
        if dot.slot == own {
            self.own_index.insert(dot.clock, entry);
        }
        self.held += 1;
    }

    fn own_dot(&self, pid: &str, topic: &str, key: &str) -> Option<Dot> {
        let values = &self.known(self.own).log.values();
        self.own_index
            .find(topic, key, pid, |clock| {
                values
                    .get(&clock)
                    .is_some_and(|entry| &*entry.topic == topic && &*entry.key == key && &*entry.pid == pid)
            })
            .map(|clock| Dot {
                slot: self.own,
                clock,
            })
    }

    // ----- queries (hide replicas marked down) ------------------------------

    /// Visible presences on `topic`, ordered by key, then tag.
    ///
    /// The cost is about that of copying the result: one pass over the
    /// topic's clocks per visible replica, and a sort whose comparisons
    /// mostly read a 16-byte prefix of the key held in the sort item, not
    /// the key's string.
    pub fn get_by_topic(&self, topic: &str) -> Vec<Presence> {
        // (key prefix, replica rank in id order, clock, entry, replica).
        let mut found: Vec<(u128, u32, u64, &Arc<Entry>, &ReplicaId)> = Vec::new();
        for (rank, known) in (0..).zip(self.visible_replicas()) {
            found.extend(
                known
                    .indexes
                    .by_topic(topic)
                    .map(|(clock, entry)| (key_prefix(&entry.key), rank, clock, entry, &known.id)),
            );
        }
        found.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.3.key.cmp(&b.3.key))
                .then_with(|| (a.1, a.2).cmp(&(b.1, b.2)))
        });
        found
            .into_iter()
            .map(|(_, _, clock, entry, replica)| Presence::new(replica, clock, entry))
            .collect()
    }

    /// Visible presences of `key` on `topic`, ordered by tag.
    pub fn get_by_key(&self, topic: &str, key: &str) -> Vec<Presence> {
        self.by_tag(|known| {
            known
                .indexes
                .by_key(topic, key)
                .filter(|(_, entry)| &*entry.key == key)
                .map(|(clock, entry)| (clock, Arc::clone(entry)))
                .collect()
        })
    }

    /// Visible presences of `pid` (on every topic), ordered by tag.
    pub fn get_by_pid(&self, pid: &str) -> Vec<Presence> {
        self.by_tag(|known| {
            known
                .indexes
                .by_pid(pid)
                .filter_map(|clock| {
                    let entry = known.log.values().get(&clock).expect("indexed clock is held");
                    (&*entry.pid == pid).then(|| (clock, Arc::clone(entry)))
                })
                .collect()
        })
    }

    /// The presences `find` picks from each visible replica, ordered by tag:
    /// by replica (visible replicas come in id order) and then clock, so
    /// the sort compares integers, never replica names.
    fn by_tag(&self, find: impl Fn(&KnownReplica) -> Vec<(u64, Arc<Entry>)>) -> Vec<Presence> {
        let mut presences = Vec::new();
        for known in self.visible_replicas() {
            let mut found = find(known);
            found.sort_unstable_by_key(|(clock, _)| *clock);
            presences.extend(found.into_iter().map(|(clock, entry)| Presence {
                tag: Tag::new(known.id.clone(), clock),
                entry,
            }));
        }
        presences
    }

    /// Keys with at least one visible presence on `topic`, sorted.
    pub fn online_keys(&self, topic: &str) -> Vec<Arc<str>> {
        let mut keys: Vec<Arc<str>> = self
            .get_by_topic(topic)
            .into_iter()
            .map(|presence| Arc::clone(&presence.entry.key))
            .collect();
        keys.dedup();
        keys
    }

    /// Distinct keys with a visible presence on `topic`, in O(1): the
    /// state keeps the count as the view changes.
    pub fn count_keys(&self, topic: &str) -> usize {
        self.census.keys(topic)
    }

    /// Visible presences on `topic`, in O(1).
    pub fn count_presences(&self, topic: &str) -> usize {
        self.census.presences(topic)
    }

    /// Every visible presence, ordered by tag: the replica's *view*.
    pub fn online_list(&self) -> Vec<Presence> {
        let mut presences = Vec::with_capacity(self.held);
        for &slot in self.slot_of.values() {
            if !self.is_visible(slot) {
                continue;
            }
            let known = self.known(slot);
            presences.extend(
                known
                    .log
                    .values()
                    .iter()
                    .map(|(&clock, entry)| Presence::new(&known.id, clock, entry)),
            );
        }
        presences
    }

    /// How many entries the state holds, hidden ones included.
    pub fn len(&self) -> usize {
        self.held
    }

    /// Whether the state holds no entry at all.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Known replicas believed up, in id order.
    fn visible_replicas(&self) -> impl Iterator<Item = &KnownReplica> + '_ {
        self.slot_of
            .values()
            .map(|&slot| self.known(slot))
            .filter(|known| known.status == Status::Up)
    }

    // ----- replicas, liveness and retirement ---------------------------------

    /// Marks `replica` down: its entries are hidden and returned as leaves.
    /// Marking self, a retired replica, or an already-down replica down changes
    /// nothing. An unknown replica becomes known, down.
    pub fn replica_down(&mut self, replica: &ReplicaId) -> Diff {
        self.revise();
        self.set_status(replica, Status::Down)
    }

    /// Marks `replica` up: its entries are shown again and returned as joins.
    /// An unknown replica becomes known (so extracts for peers include it).
    pub fn replica_up(&mut self, replica: &ReplicaId) -> Diff {
        self.revise();
        self.set_status(replica, Status::Up)
    }

    fn set_status(&mut self, replica: &ReplicaId, status: Status) -> Diff {
        if *replica == self.replica || self.is_retired_id(replica) {
            return Diff::default();
        }
        let slot = self.intern(replica);
        let known = self.known_mut(slot);
        if known.status == status {
            return Diff::default();
        }
        known.status = status;
        let known = self.slots[slot as usize].as_ref().expect("slot is live");
        let change = match status {
            Status::Up => Change::Add,
            Status::Down => Change::Remove,
        };
        known.indexes.count_into(&mut self.census, change);
        let presences = known
            .log
            .values()
            .iter()
            .map(|(&clock, entry)| Presence::new(&known.id, clock, entry))
            .collect();
        match status {
            Status::Up => Diff {
                joins: presences,
                leaves: Vec::new(),
            },
            Status::Down => Diff {
                joins: Vec::new(),
                leaves: presences,
            },
        }
    }

    /// The local belief about `replica`, if it is known.
    pub fn status(&self, replica: &ReplicaId) -> Option<Status> {
        self.slot_of.get(replica).map(|&slot| self.known(slot).status)
    }

    /// Permdown: `replica` is gone for good. Its entries (and those of every
    /// older incarnation of its base) are discarded and returned as leaves if
    /// they were visible; every structure that names it is cleared; the
    /// retirement watermark keeps a lagging peer from bringing them back.
    pub fn remove_down_replica(&mut self, replica: &ReplicaId) -> Result<Diff, RetireError> {
        self.revise();
        if replica.base() == self.replica.base() && replica.incarnation() >= self.replica.incarnation() {
            return Err(RetireError::OwnReplica);
        }
        Ok(self.retire(replica.base_arc(), replica.incarnation()))
    }

    /// Retires every incarnation of `base` up to `incarnation`.
    pub(crate) fn retire(&mut self, base: &Arc<str>, incarnation: u64) -> Diff {
        if !crate::sabotage::active(crate::sabotage::Sabotage::ForgetWatermark) {
            let watermark = self.retired.entry(Arc::clone(base)).or_insert(incarnation);
            *watermark = (*watermark).max(incarnation);
        }
        let doomed: Vec<Slot> = self
            .slot_of
            .range(ReplicaId::new(base, 0)..=ReplicaId::new(base, incarnation))
            .map(|(_, &slot)| slot)
            .filter(|&slot| slot != self.own)
            .collect();
        let mut diff = Diff::default();
        for slot in doomed {
            diff.append(self.drop_replica(slot));
        }
        diff.sorted()
    }

    /// Discards a foreign replica and everything that names it.
    fn drop_replica(&mut self, slot: Slot) -> Diff {
        let known = self.slots[slot as usize].take().expect("slot to drop is live");
        self.slot_of.remove(&known.id);
        self.free_slots.push(slot);
        // The replica's indexes go with it: no per-entry index work.
        self.held -= known.log.values().len();
        let mut leaves = Vec::new();
        if known.status == Status::Up {
            known.indexes.count_into(&mut self.census, Change::Remove);
            leaves.reserve(known.log.values().len());
            for (&clock, entry) in known.log.values() {
                leaves.push(Presence::new(&known.id, clock, entry));
            }
        }
        Diff {
            joins: Vec::new(),
            leaves,
        }
    }

    /// Whether this replica has learned that it was retired (permdowned by a
    /// peer, or superseded). Peers ignore its entries until it reincarnates.
    pub fn is_retired(&self) -> bool {
        self.retired
            .get(self.replica.base())
            .is_some_and(|&watermark| watermark >= self.replica.incarnation())
    }

    /// Whether `replica` is at or below its base's retirement watermark.
    pub fn is_retired_id(&self, replica: &ReplicaId) -> bool {
        self.retired
            .get(replica.base())
            .is_some_and(|&watermark| replica.incarnation() <= watermark)
    }

    /// The retirement watermarks: base -> highest dead incarnation.
    pub fn retired(&self) -> &BTreeMap<Arc<str>, u64> {
        &self.retired
    }

    /// Forgets the retirement watermark of `base`, returning it; the own
    /// base's watermark is never forgotten (it bounds the next incarnation).
    ///
    /// Forgetting is safe only when nothing of a retired incarnation can
    /// reach this state again: no peer still holds its data and no message
    /// of it is still in flight. The state cannot know that; its node
    /// decides (see `presence_tracker::Node`), and a replica of `base`
    /// heard afterwards is judged by the node's age check instead.
    pub fn forget_retirement(&mut self, base: &str) -> Option<u64> {
        self.revise();
        if base == self.replica.base() {
            return None;
        }
        self.retired.remove(base)
    }

    /// The lowest incarnation this replica could take next.
    pub fn next_incarnation(&self) -> u64 {
        let watermark = self.retired.get(self.replica.base()).copied().unwrap_or(0);
        self.replica.incarnation().max(watermark).saturating_add(1)
    }

    /// Re-asserts this replica's presences under a new incarnation, after it
    /// learned it was retired (for example permdowned during a partition).
    /// Own presences are re-joined with fresh tags in clock order; the old
    /// incarnation is retired. The diff has the old tags as leaves and the new
    /// ones as joins; the outgoing delta starts afresh for the new replica.
    pub fn reincarnate(&mut self, incarnation: u64) -> Result<Diff, RetireError> {
        self.revise();
        let minimum = self.next_incarnation();
        if incarnation < minimum {
            return Err(RetireError::StaleIncarnation {
                offered: incarnation,
                minimum,
            });
        }
        let old_slot = self.own;
        let old = self.known(old_slot).log.values().clone();
        let new_id = self.replica.with_incarnation(incarnation);
        let mut diff = Diff::default();
        for &clock in old.keys() {
            diff.leaves.push(
                self.remove_value(Dot {
                    slot: old_slot,
                    clock,
                })
                .expect("own value is held"),
            );
        }
        let old_known = self.slots[old_slot as usize].take().expect("own slot is live");
        self.slot_of.remove(&old_known.id);
        self.free_slots.push(old_slot);
        self.replica = new_id.clone();
        self.own = self.intern(&new_id);
        self.delta = Delta::empty(new_id, 0);
        for entry in old.values() {
            let mut fresh = Entry::clone(entry);
            fresh.replaces = None;
            let presence = self
                .insert_own(fresh)
                .expect("a fresh incarnation has clocks to spare");
            diff.joins.push(presence);
        }
        // Retire the old incarnation (and drop stale copies of even older ones).
        diff.append(self.retire(&Arc::clone(self.replica.base_arc()), incarnation - 1));
        Ok(diff)
    }

    // ----- context and delta --------------------------------------------------

    /// Per known replica, its contiguous observed clock (what heartbeats carry).
    pub fn clocks(&self) -> BTreeMap<ReplicaId, u64> {
        self.slot_of
            .iter()
            .map(|(id, &slot)| (id.clone(), self.known(slot).log.context))
            .collect()
    }

    /// What this state knows of `replica`'s joins, if it knows it.
    pub fn log(&self, replica: &ReplicaId) -> Option<&ReplicaLog> {
        self.slot_of.get(replica).map(|&slot| &self.known(slot).log)
    }

    /// Known replicas in id order, with their logs and local status.
    pub fn replicas(&self) -> impl Iterator<Item = (&ReplicaId, &ReplicaLog, Status)> + '_ {
        self.slot_of.values().map(|&slot| {
            let known = self.known(slot);
            (&known.id, &known.log, known.status)
        })
    }

    /// The local changes since the delta was last taken.
    pub fn delta(&self) -> &Delta {
        &self.delta
    }

    /// Takes the local changes since the delta was last taken (for a
    /// heartbeat); the next delta starts where this one ends.
    ///
    /// It leaves [`State::revision`] as it is: the outgoing delta is the
    /// one part of a state that no check of what it holds or shows reads.
    pub fn take_delta(&mut self) -> Delta {
        let at = self.delta.to;
        std::mem::replace(&mut self.delta, Delta::empty(self.replica.clone(), at))
    }

    // ----- slots ------------------------------------------------------------

    pub(crate) fn intern(&mut self, replica: &ReplicaId) -> Slot {
        if let Some(&slot) = self.slot_of.get(replica) {
            return slot;
        }
        let known = KnownReplica {
            id: replica.clone(),
            log: ReplicaLog::default(),
            status: Status::Up,
            indexes: Indexes::default(),
            id_hash: replica.stable_hash(),
            fingerprint: 0,
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(known);
                slot
            }
            None => {
                self.slots.push(Some(known));
                Slot::try_from(self.slots.len() - 1).expect("fewer than 2^32 known replicas")
            }
        };
        self.slot_of.insert(replica.clone(), slot);
        slot
    }

    pub(crate) fn known(&self, slot: Slot) -> &KnownReplica {
        self.slots[slot as usize].as_ref().expect("slot is live")
    }

    pub(crate) fn known_mut(&mut self, slot: Slot) -> &mut KnownReplica {
        self.slots[slot as usize].as_mut().expect("slot is live")
    }

    pub(crate) fn is_visible(&self, slot: Slot) -> bool {
        self.known(slot).status == Status::Up
    }
}

/// The first 16 bytes of `key`, big-endian and zero-padded: comparing two
/// prefixes orders two keys as their strings do, unless the prefixes are
/// equal (then the strings decide).
fn key_prefix(key: &str) -> u128 {
    let mut bytes = [0u8; 16];
    let head = &key.as_bytes()[..key.len().min(16)];
    bytes[..head.len()].copy_from_slice(head);
    u128::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_prefixes_order_as_the_keys_do() {
        let keys = [
            "",
            "a",
            "a\0",
            "ab",
            "b",
            "user:10",
            "user:9",
            "0123456789abcdefX",
            "0123456789abcdef",
        ];
        for a in keys {
            for b in keys {
                let by_prefix = key_prefix(a).cmp(&key_prefix(b));
                if by_prefix != std::cmp::Ordering::Equal {
                    assert_eq!(by_prefix, a.cmp(b), "{a:?} vs {b:?}");
                }
            }
        }
        // The prefix is what spares the sort reading the strings: keys that
        // differ in their first 16 bytes (other than by trailing NULs) must
        // differ in it.
        assert_eq!(key_prefix(""), 0);
        assert_eq!(key_prefix("a"), u128::from(b'a') << 120);
        assert!(key_prefix("a") < key_prefix("ab"));
        assert!(key_prefix("user:10") < key_prefix("user:9"));
        assert_eq!(key_prefix("0123456789abcdefX"), key_prefix("0123456789abcdef"));
    }

    /// A hot topic holds one copy of its name, however many presences it
    /// has: each own join or update on a topic already held shares it.
    #[test]
    fn presences_on_one_topic_share_its_name() {
        let mut state = State::new(ReplicaId::new("a", 1));
        let first = state.join("p1", "room", "k1", json!({})).unwrap();
        let second = state.join("p2", "room", "k2", json!({})).unwrap();
        let updated = state.update("p1", "room", "k1", json!({"n": 1})).unwrap();
        let name = &first.joins[0].entry.topic;
        assert!(Arc::ptr_eq(name, &second.joins[0].entry.topic));
        assert!(Arc::ptr_eq(name, &updated.joins[0].entry.topic));
        let elsewhere = state.join("p1", "hall", "k1", json!({})).unwrap();
        assert_eq!(&*elsewhere.joins[0].entry.topic, "hall");
    }

    /// A state is empty exactly when it holds no entry, own or a peer's.
    #[test]
    fn a_state_is_empty_exactly_when_it_holds_nothing() {
        let mut state = State::new(ReplicaId::new("a", 1));
        assert!(state.is_empty());
        state.join("p", "t", "k", json!({})).unwrap();
        assert!(!state.is_empty());
        state.leave("p", "t", "k");
        assert!(state.is_empty());
        let mut peer = State::new(ReplicaId::new("b", 1));
        peer.join("q", "t", "k", json!({})).unwrap();
        state.merge_delta(&peer.take_delta()).unwrap();
        assert!(!state.is_empty());
    }

    /// A refused permdown or reincarnation says what was wrong.
    #[test]
    fn retire_refusals_read_as_what_was_wrong() {
        let a = ReplicaId::new("a", 1);
        let mut state = State::new(a.clone());
        let own = state.remove_down_replica(&a).unwrap_err();
        assert_eq!(own.to_string(), "a replica cannot permdown itself");
        let stale = RetireError::StaleIncarnation {
            offered: 1,
            minimum: 2,
        };
        assert_eq!(stale.to_string(), "incarnation 1 is stale; use 2 or more");
    }

    /// A refused local call says what was wrong: the server hands this text
    /// to the client that asked.
    #[test]
    fn local_refusals_read_as_what_was_wrong() {
        let mut state = State::new(ReplicaId::new("a", 1));
        state.join("p", "t", "k", json!({})).unwrap();
        let again = state.join("p", "t", "k", json!({})).unwrap_err();
        assert_eq!(again.to_string(), "presence already tracked");
        let stranger = state.update("q", "t", "k", json!({})).unwrap_err();
        assert_eq!(stranger.to_string(), "presence not tracked");
        let empty = state.join("p", "", "k", json!({})).unwrap_err();
        assert_eq!(empty.to_string(), "invalid presence: topic is empty");
        assert_eq!(
            LocalError::ClocksExhausted.to_string(),
            "replica clocks exhausted"
        );
    }

    /// A checker skips judging a state again while its revision stands
    /// still, so every call that can change what it holds or shows must move
    /// it, even a call that then changes nothing; reads and taking the
    /// outgoing delta must not.
    #[test]
    fn every_call_that_may_change_the_state_moves_its_revision() {
        let b = ReplicaId::new("b", 1);
        let mut peer = State::new(b.clone());
        peer.join("p", "t", "k", json!({})).unwrap();
        let delta = peer.take_delta();
        let mut state = State::new(ReplicaId::new("a", 1));
        let moved = |what: &str, state: &mut State, call: &dyn Fn(&mut State)| {
            let before = state.revision();
            call(state);
            assert_ne!(state.revision(), before, "{what} left the revision as it was");
        };
        moved("join", &mut state, &|s| {
            drop(s.join("p", "t", "k", json!({"n": 1})))
        });
        moved("update", &mut state, &|s| {
            drop(s.update("p", "t", "k", json!({"n": 2})))
        });
        moved("leave", &mut state, &|s| drop(s.leave("p", "t", "k")));
        moved("leave_by_pid", &mut state, &|s| drop(s.leave_by_pid("nobody")));
        moved("merge_delta", &mut state, &|s| drop(s.merge_delta(&delta)));
        moved("merge", &mut state, &|s| drop(s.merge(&peer)));
        moved("merge_snapshot", &mut state, &|s| {
            drop(s.merge_snapshot(&peer.snapshot()))
        });
        moved("replica_down", &mut state, &|s| drop(s.replica_down(&b)));
        moved("replica_up", &mut state, &|s| drop(s.replica_up(&b)));
        moved("remove_down_replica", &mut state, &|s| {
            s.replica_down(&b);
            drop(s.remove_down_replica(&b));
        });
        moved("forget_retirement", &mut state, &|s| {
            let _ = s.forget_retirement("b");
        });
        moved("reincarnate", &mut state, &|s| drop(s.reincarnate(7)));
        let before = state.revision();
        let _ = state.take_delta();
        let _ = (state.online_list(), state.snapshot(), state.get_by_topic("t"));
        assert_eq!(
            state.revision(),
            before,
            "reads and take_delta moved the revision"
        );
    }

    #[test]
    fn next_clock_skips_the_own_cloud() {
        // beryl #23 (B9): a clock parked in the own cloud must not be reissued.
        let mut state = State::new(ReplicaId::new("a", 1));
        let own = state.own;
        state.known_mut(own).log.cloud_mut().insert(5);
        let diff = state.join("p", "t", "k", json!({})).unwrap();
        assert_eq!(diff.joins[0].tag.clock, 6);
    }

    #[test]
    fn lookups_check_names_when_hashes_collide() {
        // Index lookups yield candidates by hash; an entry whose key and pid
        // hash like alice's must not be returned for alice.
        let mut state = State::new(ReplicaId::new("a", 1));
        state.join("p-alice", "t", "alice", json!({})).unwrap();
        let peer = state.intern(&ReplicaId::new("b", 1));
        let mut impostor = Entry::new("t", "bob", "p-bob", json!({})).unwrap();
        impostor.hashes.key = crate::entry::name_hash("alice");
        impostor.hashes.pid = crate::entry::name_hash("p-alice");
        state.known_mut(peer).log.context = 1;
        state.insert_value(Dot { slot: peer, clock: 1 }, &Arc::new(impostor));

        let alice = state.get_by_key("t", "alice");
        assert_eq!(alice.len(), 1);
        assert_eq!(&*alice[0].entry.key, "alice");
        assert_eq!(state.get_by_pid("p-alice").len(), 1);
        assert_eq!(state.get_by_topic("t").len(), 2);
        assert_eq!(
            state.leave_by_pid("p-bob").leaves.len(),
            0,
            "foreign entries stay"
        );
        assert_eq!(state.leave_by_pid("p-alice").leaves.len(), 1);
    }

    #[test]
    fn a_retired_replica_cannot_be_marked_up_or_down() {
        let mut state = State::new(ReplicaId::new("a", 1));
        let old = ReplicaId::new("b", 1);
        state.replica_up(&old);
        state.remove_down_replica(&old).unwrap();
        assert!(state.replica_up(&old).is_empty());
        assert!(state.status(&old).is_none(), "nothing names the retired replica");
    }
}

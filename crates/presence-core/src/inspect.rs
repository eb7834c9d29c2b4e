//! The inspection API: what checkers, models and benches read of a
//! [`State`] beyond the product's queries, compiled only with the `inspect`
//! feature. Everything outside this file that judges a state (the
//! invariants, the simulator, the models) goes through these methods, never
//! through the state's fields.

use crate::replica::Tag;
use crate::state::{State, Status};

impl State {
    /// A fingerprint of the view: the wrapping sum of the fingerprints
    /// ([`Tag::fingerprint`]) of every visible presence, kept up to date as
    /// entries come and go, so it costs O(replicas). A client that adds
    /// every diff's [`crate::Diff::fingerprint`] into a running value holds
    /// this value exactly when its diffs tracked the view (I1). A sum, not
    /// an XOR: a join reported as a leave changes it, where an XOR would not.
    pub fn view_fingerprint(&self) -> u64 {
        self.slot_of
            .values()
            .map(|&slot| self.known(slot))
            .filter(|known| known.status == Status::Up)
            .fold(0, |fingerprint: u64, known| {
                fingerprint.wrapping_add(known.fingerprint)
            })
    }

    /// Whether `tag` has been observed here.
    pub fn is_observed(&self, tag: &Tag) -> bool {
        self.is_retired_id(&tag.replica) || self.log(&tag.replica).is_some_and(|log| log.observed(tag.clock))
    }

    /// Whether the entry of `tag` is held here (visible or hidden).
    pub fn holds(&self, tag: &Tag) -> bool {
        self.log(&tag.replica)
            .is_some_and(|log| log.values().contains_key(&tag.clock))
    }

    /// The per-topic counts the state keeps: how many topics it counts, and
    /// how many visible presences over all of them. I7 compares them with
    /// the view counted afresh.
    pub fn census_totals(&self) -> (usize, usize) {
        (self.census.topics().count(), self.census.total())
    }

    /// Whether the state's own bookkeeping agrees with what it holds: each
    /// replica's indexes file exactly its held entries (by topic and by
    /// pid), the own index files exactly the own entries, and the replica
    /// table has no orphan slot. The error says what disagrees (part of I7).
    pub fn check_structure(&self) -> Result<(), String> {
        let who = self.replica();
        for &slot in self.slot_of.values() {
            let known = self.known(slot);
            let (by_topic, by_pid) = known.indexes.census();
            let values = known.log.values().len();
            if by_topic != values || by_pid != values {
                return Err(format!(
                    "{who} holds {values} entries of {} but indexes {by_topic} by topic, {by_pid} by pid",
                    known.id
                ));
            }
        }
        let own_held = self.known(self.own).log.values().len();
        if self.own_index.len() != own_held {
            return Err(format!(
                "{who} holds {own_held} own entries but its own index files {}",
                self.own_index.len()
            ));
        }
        let live_slots = self.slots.iter().filter(|slot| slot.is_some()).count();
        if live_slots != self.slot_of.len() || self.slots.len() != live_slots + self.free_slots.len() {
            return Err(format!("{who} has orphan replica slots"));
        }
        Ok(())
    }
}

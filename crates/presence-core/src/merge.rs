//! Merging: full states, snapshots and deltas into a state, and extracts for
//! peers.
//!
//! The rules, per replica `r` of the remote payload (never our own, never a
//! retired one):
//! - a remote entry joins when its tag is not yet observed here;
//! - a local entry leaves when the remote has observed its tag but no longer
//!   holds it (add wins: an unobserved removal cannot remove);
//! - contexts and clouds take their union, then compact.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::census::Change;
use crate::delta::{Delta, DeltaError};
use crate::diff::Diff;
use crate::entry::{Entry, NameHashes, Presence};
use crate::index::{Dot, Indexes, Slot};
use crate::log::{above, span, ReplicaLog};
use crate::replica::{tag_fingerprint, ReplicaId};
use crate::sabotage::{self, Sabotage};
use crate::state::State;

/// The replicated data of a state, without indexes or local liveness: what an
/// extract or a decoded payload holds, and what [`State::merge_snapshot`]
/// takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub(crate) replica: ReplicaId,
    pub(crate) retired: BTreeMap<Arc<str>, u64>,
    pub(crate) logs: ReplicaLogs,
}

/// Logs by replica, in replica order, held as one sorted list.
///
/// A list, not a `BTreeMap`: a decoded payload's logs arrive in order, and a
/// B-tree filled in order leaves its nodes half empty, which made a payload
/// naming many replicas (a context and nothing else) take ten times its
/// size. The list is exactly as long as the replicas named; lookups are
/// binary searches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaLogs(Vec<(ReplicaId, ReplicaLog)>);

impl ReplicaLogs {
    /// Logs from a list sorted by replica, each replica once.
    pub(crate) fn from_sorted(list: Vec<(ReplicaId, ReplicaLog)>) -> Self {
        debug_assert!(list.windows(2).all(|pair| pair[0].0 < pair[1].0));
        Self(list)
    }

    /// How many replicas have a log.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no replica has a log.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The logs, in replica order.
    pub fn iter(
        &self,
    ) -> impl DoubleEndedIterator<Item = (&ReplicaId, &ReplicaLog)> + ExactSizeIterator + Clone {
        self.0.iter().map(|(id, log)| (id, log))
    }

    /// The replicas, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &ReplicaId> + ExactSizeIterator + Clone {
        self.0.iter().map(|(id, _)| id)
    }

    /// The logs alone, in replica order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &ReplicaLog> + ExactSizeIterator + Clone {
        self.0.iter().map(|(_, log)| log)
    }

    /// The log of `replica`.
    pub fn get(&self, replica: &ReplicaId) -> Option<&ReplicaLog> {
        let at = self.0.binary_search_by(|(id, _)| id.cmp(replica)).ok()?;
        Some(&self.0[at].1)
    }

    /// Whether `replica` has a log.
    pub fn contains_key(&self, replica: &ReplicaId) -> bool {
        self.get(replica).is_some()
    }
}

impl<'a> IntoIterator for &'a ReplicaLogs {
    type Item = (&'a ReplicaId, &'a ReplicaLog);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (ReplicaId, ReplicaLog)>,
        fn(&'a (ReplicaId, ReplicaLog)) -> (&'a ReplicaId, &'a ReplicaLog),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(id, log)| (id, log))
    }
}

impl FromIterator<(ReplicaId, ReplicaLog)> for ReplicaLogs {
    /// As a map would: in replica order, a replica given twice keeping its
    /// last log.
    fn from_iter<I: IntoIterator<Item = (ReplicaId, ReplicaLog)>>(items: I) -> Self {
        let list: Vec<_> = items.into_iter().collect();
        if list.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Self(list);
        }
        let map: BTreeMap<ReplicaId, ReplicaLog> = list.into_iter().collect();
        Self(map.into_iter().collect())
    }
}

impl Snapshot {
    /// The replica that produced it.
    pub fn replica(&self) -> &ReplicaId {
        &self.replica
    }

    /// Retirement watermarks: base -> highest dead incarnation.
    pub fn retired(&self) -> &BTreeMap<Arc<str>, u64> {
        &self.retired
    }

    /// Per replica, what the producer knows of its joins.
    pub fn logs(&self) -> &ReplicaLogs {
        &self.logs
    }

    /// How many entries it carries.
    pub fn len(&self) -> usize {
        self.logs.values().map(|log| log.values().len()).sum()
    }

    /// Whether it carries no entry.
    pub fn is_empty(&self) -> bool {
        self.logs.values().all(|log| log.values().is_empty())
    }

    /// The same snapshot with only the logs of replicas `keep` accepts.
    pub fn retain_replicas(&self, keep: impl Fn(&ReplicaId) -> bool) -> Snapshot {
        Snapshot {
            replica: self.replica.clone(),
            retired: self.retired.clone(),
            logs: self
                .logs
                .iter()
                .filter(|(id, _)| keep(id))
                .map(|(id, log)| (id.clone(), log.clone()))
                .collect(),
        }
    }
}

impl State {
    /// Merges another replica's full state; returns the exact diff of this
    /// replica's view.
    pub fn merge(&mut self, remote: &State) -> Diff {
        self.revise();
        let logs = remote.slot_of.values().map(|&slot| {
            let known = remote.known(slot);
            (&known.id, &known.log, Some(&known.indexes))
        });
        self.merge_parts(&remote.retired, logs)
    }

    /// Merges a snapshot (an extract or a decoded payload).
    pub fn merge_snapshot(&mut self, remote: &Snapshot) -> Diff {
        self.revise();
        self.merge_parts(
            &remote.retired,
            remote.logs.iter().map(|(id, log)| (id, log, None)),
        )
    }

    fn merge_parts<'a>(
        &mut self,
        retired: &BTreeMap<Arc<str>, u64>,
        logs: impl Iterator<Item = (&'a ReplicaId, &'a ReplicaLog, Option<&'a Indexes>)>,
    ) -> Diff {
        let mut diff = Diff::default();
        for (base, &incarnation) in retired {
            let newer = self.retired.get(base).is_none_or(|&known| known < incarnation);
            if newer {
                diff.append(self.retire(base, incarnation));
            }
        }
        for (id, remote, remote_indexes) in logs {
            // Own entries are authoritative (I5); retired ones stay dead (I3).
            if *id == self.replica || self.is_retired_id(id) {
                continue;
            }
            let slot = self.intern(id);
            self.merge_log(slot, remote, remote_indexes, &mut diff);
        }
        diff.sorted()
    }

    /// Merges what a peer knows of one replica into slot `slot`. When the
    /// peer is an in-memory state, `remote_indexes` are its indexes of
    /// `remote.values`, which a first full merge copies whole.
    fn merge_log(
        &mut self,
        slot: Slot,
        remote: &ReplicaLog,
        remote_indexes: Option<&Indexes>,
        diff: &mut Diff,
    ) {
        let visible = self.is_visible(slot);
        let id = self.known(slot).id.clone();

        // Removals first: local entries the remote has observed but lost.
        let removed = removed_by(&self.known(slot).log, remote);
        for clock in removed {
            let presence = self.remove_value(Dot { slot, clock }).expect("clock was held");
            if visible {
                diff.leaves.push(presence);
            }
        }

        // Additions: remote entries not observed here. Everything at or below
        // the local context is observed, so start above it.
        let local = &self.known(slot).log;
        let local_context = local.context;
        if local.values().is_empty() && local.cloud().is_empty() {
            // First sight of this replica's entries (a new peer, or a full
            // transfer): every remote clock above the context is unobserved
            // here, so take them as a whole, with the peer's indexes if they
            // cover exactly what is taken.
            let (values, indexes) = match remote_indexes {
                Some(indexes) if local_context == 0 => (remote.values().clone(), indexes.clone()),
                _ => {
                    let values: BTreeMap<u64, Arc<Entry>> = remote
                        .values()
                        .range(above(local_context))
                        .map(|(&clock, entry)| (clock, Arc::clone(entry)))
                        .collect();
                    let mut indexes = Indexes::default();
                    indexes.reserve(values.len());
                    for (&clock, entry) in &values {
                        indexes.insert(clock, entry);
                    }
                    (values, indexes)
                }
            };
            if visible {
                indexes.count_into(&mut self.census, Change::Add);
                diff.joins.reserve(values.len());
                diff.joins.extend(
                    values
                        .iter()
                        .map(|(&clock, entry)| Presence::new(&id, clock, entry)),
                );
            }
            self.held += values.len();
            let known = self.known_mut(slot);
            known.fingerprint = values.keys().fold(0, |fingerprint, &clock| {
                fingerprint.wrapping_add(tag_fingerprint(known.id_hash, clock))
            });
            *known.log.values_mut() = values;
            known.indexes = indexes;
        } else {
            let incoming = remote.values().range(above(local_context)).count();
            self.known_mut(slot).indexes.reserve(incoming);
            if visible {
                diff.joins.reserve(incoming);
            }
            for (&clock, entry) in remote.values().range(above(local_context)) {
                if self.known(slot).log.cloud().contains(&clock) {
                    continue;
                }
                self.insert_value(Dot { slot, clock }, entry);
                if visible {
                    diff.joins.push(Presence::new(&id, clock, entry));
                }
            }
        }

        let log = &mut self.known_mut(slot).log;
        log.context = log.context.max(remote.context);
        if !remote.cloud().is_empty() {
            log.cloud_mut().extend(remote.cloud().iter().copied());
        }
        log.compact();
    }

    /// Merges a delta of a peer in O(size of the delta).
    ///
    /// A delta whose range starts above what is observed here of its replica
    /// is refused whole with [`DeltaError::Gap`] and changes nothing. Deltas of
    /// this replica and of retired replicas are ignored (empty diff).
    pub fn merge_delta(&mut self, delta: &Delta) -> Result<Diff, DeltaError> {
        self.revise();
        let retired = self.is_retired_id(&delta.replica) && !sabotage::active(Sabotage::ZombiesAccepted);
        if delta.replica == self.replica || retired {
            return Ok(Diff::default());
        }
        let have = self.log(&delta.replica).map_or(0, |log| log.context);
        if delta.from > have && !sabotage::active(Sabotage::MergeGapDelta) {
            return Err(DeltaError::Gap {
                replica: delta.replica.clone(),
                have,
                from: delta.from,
            });
        }
        let slot = self.intern(&delta.replica);
        let visible = self.is_visible(slot);
        let mut diff = Diff::default();

        // Removals: explicit leaves below the range, and clocks of the range
        // held here that the delta no longer holds.
        // Leaves of clocks not held here are skipped by `remove_value` itself:
        // one walk of the log per leave, not a lookup and then a removal.
        let known = self.known(slot);
        let log = &known.log;
        let mut removed: Vec<u64> = delta.leaves.iter().copied().collect();
        removed.extend(
            log.values()
                .range(span(delta.from, delta.to))
                .map(|(&clock, _)| clock)
                .filter(|clock| !delta.joins.contains_key(clock)),
        );
        if known.indexes.beyond_caches() {
            // Read every group the delta will touch first, in short loops of
            // independent reads, so their cache misses overlap.
            let hashes: Vec<NameHashes> = removed
                .iter()
                .filter_map(|clock| log.values().get(clock).map(|entry| entry.hashes))
                .chain(delta.joins.values().map(|entry| entry.hashes))
                .collect();
            std::hint::black_box(known.indexes.warm(&hashes));
            if visible {
                std::hint::black_box(self.census.warm(&hashes));
            }
        }
        for clock in removed {
            if let Some(presence) = self.remove_value(Dot { slot, clock }) {
                if visible {
                    diff.leaves.push(presence);
                }
            }
        }

        for (&clock, entry) in &delta.joins {
            if self.known(slot).log.observed(clock) {
                continue;
            }
            self.insert_value(Dot { slot, clock }, entry);
            if visible {
                diff.joins.push(Presence::new(&delta.replica, clock, entry));
            }
        }

        let log = &mut self.known_mut(slot).log;
        log.context = log.context.max(delta.to);
        log.compact();
        Ok(diff)
    }

    /// What `for_replica`, whose contexts are `remote_clocks`, needs to catch
    /// up: the retirement watermarks that concern it (of its own base, or of
    /// a base it names in `remote_clocks` at or below the watermark), and the
    /// full log of every replica the receiver knows (names in
    /// `remote_clocks`) whose context here is ahead of the receiver's.
    /// Replicas the receiver does not know are left out, so a transfer never
    /// plants entries of a replica the receiver cannot watch (bug class B6).
    /// Our own log is always offered when the receiver lags. Watermarks that
    /// concern it not are left out too: a node that has forgotten a departed
    /// base is not taught it again by a peer that has not yet.
    pub fn extract(&self, for_replica: &ReplicaId, remote_clocks: &BTreeMap<ReplicaId, u64>) -> Snapshot {
        let mut logs = Vec::new();
        for (id, &slot) in &self.slot_of {
            if id == for_replica {
                continue;
            }
            let remote_context = remote_clocks.get(id);
            if remote_context.is_none() && *id != self.replica {
                continue;
            }
            let log = &self.known(slot).log;
            let receiver_has_all =
                remote_context.is_some_and(|&context| context >= log.context) && log.cloud().is_empty();
            if !receiver_has_all {
                logs.push((id.clone(), log.clone()));
            }
        }
        let retired = self
            .retired
            .iter()
            .filter(|&(base, &watermark)| {
                base.as_ref() == for_replica.base()
                    || remote_clocks
                        .keys()
                        .any(|named| named.base() == base.as_ref() && named.incarnation() <= watermark)
            })
            .map(|(base, &watermark)| (Arc::clone(base), watermark))
            .collect();
        Snapshot {
            replica: self.replica.clone(),
            retired,
            // `slot_of` is in replica order.
            logs: ReplicaLogs::from_sorted(logs),
        }
    }

    /// The whole replicated data of this state.
    pub fn snapshot(&self) -> Snapshot {
        let logs = self
            .slot_of
            .values()
            .map(|&slot| {
                let known = self.known(slot);
                (known.id.clone(), known.log.clone())
            })
            .collect();
        Snapshot {
            replica: self.replica.clone(),
            retired: self.retired.clone(),
            logs,
        }
    }
}

/// Clocks `local` holds that `remote` has observed but does not hold, found by
/// walking both value maps in step (no per-entry lookups).
fn removed_by(local: &ReplicaLog, remote: &ReplicaLog) -> Vec<u64> {
    if sabotage::active(Sabotage::RemovedWithoutObserving) {
        return local
            .values()
            .keys()
            .filter(|clock| !remote.values().contains_key(clock))
            .copied()
            .collect();
    }
    let mut removed = Vec::new();
    let mut remote_clocks = remote
        .values()
        .range(..=remote.context)
        .map(|(&clock, _)| clock)
        .peekable();
    for (&clock, _) in local.values().range(..=remote.context) {
        while remote_clocks
            .next_if(|&remote_clock| remote_clock < clock)
            .is_some()
        {}
        if remote_clocks.peek() != Some(&clock) {
            removed.push(clock);
        }
    }
    for &clock in remote.cloud() {
        if clock > remote.context
            && local.values().contains_key(&clock)
            && !remote.values().contains_key(&clock)
        {
            removed.push(clock);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_collect_as_a_map_would() {
        let (a, b) = (ReplicaId::new("a", 1), ReplicaId::new("b", 1));
        let log = ReplicaLog::with_context;
        let contexts = |logs: &ReplicaLogs| -> Vec<(String, u64)> {
            logs.iter()
                .map(|(id, log)| (id.to_string(), log.context()))
                .collect()
        };
        let mixed: ReplicaLogs = [(b.clone(), log(1)), (a.clone(), log(2)), (a.clone(), log(3))]
            .into_iter()
            .collect();
        assert_eq!(contexts(&mixed), [("a@1".to_string(), 3), ("b@1".to_string(), 1)]);
        let descending: ReplicaLogs = [(b.clone(), log(1)), (a.clone(), log(2))].into_iter().collect();
        assert_eq!(
            contexts(&descending),
            [("a@1".to_string(), 2), ("b@1".to_string(), 1)]
        );
        // One replica given twice, and nothing else: still its last log only.
        let twice: ReplicaLogs = [(a.clone(), log(1)), (a, log(4))].into_iter().collect();
        assert_eq!(contexts(&twice), [("a@1".to_string(), 4)]);
    }
}

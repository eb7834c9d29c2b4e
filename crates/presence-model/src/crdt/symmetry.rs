//! Symmetry reduction for the CRDT model: replicas are interchangeable, so
//! a state and any renaming of its replicas behave alike. Each replica and
//! payload keeps its digest under every renaming; [`representative`]
//! combines them.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use presence_core::invariants::History;
use presence_core::{ReplicaId, State};

use super::{CrdtState, Gossip};
use crate::symmetry::{digester, permutations};

/// The index `i` of a replica base `r{i}` or a pid `p{i}`.
pub(super) fn index_in(name: &str, prefix: char) -> usize {
    name.strip_prefix(prefix)
        .and_then(|digits| digits.parse().ok())
        .expect("the model names replicas r{i} and pids p{i}")
}

/// What identifies a replica's state for the checker: a digest of its
/// fields (see `State::hash_canonical`).
pub(super) fn canonical_digest(state: &State) -> u64 {
    let mut hasher = digester();
    state.hash_canonical(&mut hasher);
    hasher.finish()
}

/// Hashes what an entry says apart from its pid (which names its replica).
pub(super) fn hash_entry(clock: u64, entry: &presence_core::Entry, hasher: &mut impl Hasher) {
    (clock, &*entry.topic, &*entry.key, entry.replaces).hash(hasher);
    entry.meta.to_string().hash(hasher);
}

/// A log's content, which no renaming of replicas changes: a log only ever
/// holds entries of its own replica, whose pid `p{i}` follows its name `r{i}`.
pub(super) fn log_content(log: &presence_core::ReplicaLog) -> u64 {
    let mut hasher = digester();
    (log.context(), log.cloud()).hash(&mut hasher);
    for (&clock, entry) in log.values() {
        hash_entry(clock, entry, &mut hasher);
    }
    hasher.finish()
}

/// One known replica: (index, incarnation, status if any, content).
pub(super) type LogPart = (usize, u64, Option<bool>, u64);

/// What of a replica or payload names replicas, apart from what does not.
pub(super) struct RenamableParts {
    /// (own index, incarnation) or the producer.
    pub(super) owner: (usize, u64),
    /// Whatever else identifies it and no renaming changes.
    pub(super) fixed: u64,
    pub(super) logs: Vec<LogPart>,
    pub(super) retired: Vec<(usize, u64)>,
}

impl RenamableParts {
    pub(super) fn of_logs<'s>(
        logs: impl Iterator<
            Item = (
                &'s ReplicaId,
                &'s presence_core::ReplicaLog,
                Option<presence_core::Status>,
            ),
        >,
    ) -> Vec<LogPart> {
        logs.map(|(id, log, status)| {
            let up = status.map(|status| status == presence_core::Status::Up);
            (index_in(id.base(), 'r'), id.incarnation(), up, log_content(log))
        })
        .collect()
    }

    pub(super) fn of_retired(retired: &std::collections::BTreeMap<Arc<str>, u64>) -> Vec<(usize, u64)> {
        retired
            .iter()
            .map(|(base, &mark)| (index_in(base, 'r'), mark))
            .collect()
    }

    pub(super) fn replica(state: &State) -> Self {
        RenamableParts {
            owner: (
                index_in(state.replica().base(), 'r'),
                state.replica().incarnation(),
            ),
            fixed: 0,
            logs: Self::of_logs(state.replicas().map(|(id, log, status)| (id, log, Some(status)))),
            retired: Self::of_retired(state.retired()),
        }
    }

    pub(super) fn payload(payload: &Gossip) -> Self {
        let mut hasher = digester();
        match payload {
            Gossip::Full { from, snapshot } => {
                // The producer is `from`: renamed with the owner, not here.
                debug_assert_eq!(index_in(snapshot.replica().base(), 'r'), *from);
                0u8.hash(&mut hasher);
                RenamableParts {
                    owner: (*from, snapshot.replica().incarnation()),
                    fixed: hasher.finish(),
                    logs: Self::of_logs(snapshot.logs().iter().map(|(id, log)| (id, log, None))),
                    retired: Self::of_retired(snapshot.retired()),
                }
            }
            Gossip::Delta { from, delta } => {
                debug_assert_eq!(index_in(delta.replica().base(), 'r'), *from);
                (1u8, delta.replica().incarnation(), delta.range(), delta.leaves()).hash(&mut hasher);
                for (&clock, entry) in delta.joins() {
                    hash_entry(clock, entry, &mut hasher);
                }
                RenamableParts {
                    owner: (*from, 0),
                    fixed: hasher.finish(),
                    logs: Vec::new(),
                    retired: Vec::new(),
                }
            }
        }
    }

    /// Their digest under each renaming of `replicas` replicas, in the
    /// order of [`permutations`].
    pub(super) fn renamed(&self, replicas: usize) -> Arc<[u64]> {
        permutations(replicas)
            .iter()
            .map(|perm| {
                let mut hasher = digester();
                self.hash_renamed(perm, &mut hasher);
                hasher.finish()
            })
            .collect()
    }

    /// Hashes these parts with replica `i` renamed `perm[i]`.
    pub(super) fn hash_renamed(&self, perm: &[usize], hasher: &mut impl Hasher) {
        ((perm[self.owner.0], self.owner.1), self.fixed).hash(hasher);
        let mut logs: Vec<LogPart> = self
            .logs
            .iter()
            .map(|&(index, incarnation, up, content)| (perm[index], incarnation, up, content))
            .collect();
        logs.sort_unstable();
        logs.hash(hasher);
        let mut retired: Vec<(usize, u64)> = self
            .retired
            .iter()
            .map(|&(index, mark)| (perm[index], mark))
            .collect();
        retired.sort_unstable();
        retired.hash(hasher);
    }
}

/// Symmetry reduction for stateright (`checker().symmetry_fn(representative)`,
/// DFS only): replicas are interchangeable, since each starts alike with the
/// same budget and every action is offered for every replica. The
/// representative is a hollow state that carries only the least digest over
/// every renaming of replicas, which is all the checker reads of it (it
/// fingerprints the representative and carries on with the original).
///
/// Each replica and payload keeps its own digest under every renaming, made
/// when it changed or was produced, so this only combines a few numbers per
/// renaming.
///
/// It also forgets the order in which payloads were produced: two states
/// whose replicas agree and whose payloads are the same set behave alike
/// (deliveries name a payload by its index in the list, but every index is
/// offered), so interleavings of independent local operations meet.
pub fn representative(state: &CrdtState) -> CrdtState {
    let mut rest = digester();
    (state.faults_left, state.resurrection.is_some()).hash(&mut rest);
    let rest = rest.finish();
    // The model has at most 4 replicas (see `CrdtModelCfg::into_model`), so
    // at most 24 renamings: this runs for every successor, on the stack.
    let count = state.replicas.len();
    let renamings = permutations(count);
    // Each replica's fixed part, as a well-mixed word to fold into its
    // digests by XOR: one word per replica and renaming to hash.
    let mut fixed = [0u64; 4];
    for (slot, replica) in fixed.iter_mut().zip(&state.replicas) {
        let mut hasher = digester();
        replica.fixed().hash(&mut hasher);
        *slot = hasher.finish();
    }
    // Payloads as a set: which were produced matters, not in what order (a
    // delivery may pick any of them, and equal payloads deliver alike). Each
    // digest counts once, at its first payload, and the payloads' digests
    // under each renaming are combined by a sum, which no order changes.
    let mut sums = [0u64; 24];
    let mut distinct = 0usize;
    for (index, produced) in state.payloads.iter().enumerate() {
        let digest = produced.digest();
        if state.payloads[..index]
            .iter()
            .any(|earlier| earlier.digest() == digest)
        {
            continue;
        }
        distinct += 1;
        for (sum, renamed) in sums.iter_mut().zip(produced.body.renamed.iter()) {
            *sum = sum.wrapping_add(*renamed);
        }
    }
    let digest = renamings
        .iter()
        .enumerate()
        .map(|(renaming, perm)| {
            let mut hasher = digester();
            // Replicas in their new order, each digested under the renaming.
            let mut order = [0usize; 4];
            for (old, &new) in perm.iter().enumerate() {
                order[new] = old;
            }
            for &old in &order[..count] {
                hasher.write_u64(state.replicas[old].renamed[renaming] ^ fixed[old]);
            }
            hasher.write_u64(distinct as u64);
            hasher.write_u64(sums[renaming]);
            hasher.write_u64(rest);
            hasher.finish()
        })
        .min()
        .expect("at least one permutation");
    let (history, pruned) = HOLLOW.with(|(history, pruned)| (Arc::clone(history), Arc::clone(pruned)));
    CrdtState {
        replicas: Vec::new(),
        payloads: Vec::new(),
        faults_left: 0,
        resurrection: None,
        history,
        pruned,
        symmetric_digest: Some(digest),
    }
}

thread_local! {
    /// The ground truth and pruned payloads of a hollow [`representative`],
    /// shared rather than allocated for each one; one pair per thread, so
    /// the checker's threads do not contend for the counts.
    static HOLLOW: (Arc<History>, Arc<Vec<Gossip>>) = (Arc::new(History::new()), Arc::default());
}

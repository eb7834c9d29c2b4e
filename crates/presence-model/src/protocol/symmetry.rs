//! Symmetry reduction for the protocol model: nodes are interchangeable, so
//! a state and any renaming of its nodes behave alike. Each node and
//! message keeps its digest under every renaming; [`representative`]
//! combines them.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use presence_core::digest::Rename;

use super::ProtocolState;
use crate::symmetry::{digester, permutations};

/// Digests of a node under each renaming of the model's nodes, in the
/// order of `permutations`, worked out on first use and shared by every
/// copy. Not part of any state's hash or equality: a function of the node
/// it is kept beside.
pub(super) type Renamed = Arc<std::sync::OnceLock<Box<[u64]>>>;

/// The digests of whatever `hash_renamed` hashes, under each renaming of
/// `count` nodes named `n0`, `n1`, ..., in the order of `permutations`.
pub(super) fn renamed_digests(
    count: usize,
    hash_renamed: impl Fn(Rename<'_>, &mut ahash::AHasher),
) -> Box<[u64]> {
    let names: Vec<Arc<str>> = (0..count).map(|index| Arc::from(format!("n{index}"))).collect();
    permutations(count)
        .iter()
        .map(|perm| {
            let rename = |base: &str| -> Arc<str> {
                match base
                    .strip_prefix('n')
                    .and_then(|digits| digits.parse::<usize>().ok())
                {
                    Some(index) if index < count => Arc::clone(&names[perm[index]]),
                    _ => Arc::from(base),
                }
            };
            let mut hasher = digester();
            hash_renamed(&rename, &mut hasher);
            hasher.finish()
        })
        .collect()
}

/// Symmetry reduction for stateright (`checker().symmetry_fn(representative)`,
/// DFS only): nodes are interchangeable, since each starts alike (same
/// config, timers and budgets, one presence under the same pid and meta)
/// and every action is offered for every node. The representative carries
/// the least digest over every renaming of nodes of: each node's state with
/// replica names renamed (`Node::hash_renamed`), its clock, ticks, crash,
/// timers and last incarnation, every message in flight with its ends and
/// its names renamed, and the nemesis's cut. It is hollow otherwise: the
/// checker fingerprints it and carries on with the original.
///
/// I1 stands in as "holds here" for a node's diff fingerprint, which names
/// replicas, as in the CRDT model. Whether the protocol's behaviour is
/// really the same under renaming (it breaks ties between equally advanced
/// peers by replica order) is checked, not assumed: a test compares the
/// representatives reached with and without the reduction.
pub fn representative(state: &ProtocolState) -> ProtocolState {
    // The rounds of a synchronous run name nodes too and are not renamed
    // here: such a state is its own representative (no reduction).
    if state.rounds.is_some() {
        return state.clone();
    }
    let inner = &*state.inner;
    let count = inner.actor_states.len();
    let fixed: Vec<u64> = inner
        .actor_states
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let mut hasher = digester();
            let i1 =
                presence_core::invariants::check_view_fingerprint(node.diffs_fingerprint, node.node.state())
                    .is_ok();
            (node.now_ms, node.ticks, i1, node.resurrection.is_some()).hash(&mut hasher);
            node.unsound_payload.is_some().hash(&mut hasher);
            inner.crashed[index].hash(&mut hasher);
            inner.timers_set[index].hash(&mut hasher);
            inner.actor_storages[index]
                .as_ref()
                .map(|stored| stored.incarnation)
                .hash(&mut hasher);
            hasher.finish()
        })
        .collect();
    let nodes: Vec<&[u64]> = inner
        .actor_states
        .iter()
        .map(|node| -> &[u64] {
            node.renamed.get_or_init(|| {
                renamed_digests(count, |rename, hasher| node.node.hash_renamed(rename, hasher))
            })
        })
        .collect();
    let in_flight: Vec<(usize, usize, &[u64])> = inner
        .network
        .iter_deliverable()
        .map(|envelope| {
            let message = &envelope.msg;
            let renamed: &[u64] = message.body.renamed.get_or_init(|| {
                renamed_digests(count, |rename, hasher| {
                    message.message().hash_renamed(rename, hasher)
                })
            });
            (usize::from(envelope.src), usize::from(envelope.dst), renamed)
        })
        .collect();
    let mut order: Vec<usize> = (0..count).collect();
    let mut renamed_in_flight: Vec<(usize, usize, u64)> = Vec::with_capacity(in_flight.len());
    let digest = permutations(count)
        .iter()
        .enumerate()
        .map(|(renaming, perm)| {
            let mut hasher = digester();
            order.sort_unstable_by_key(|&old| perm[old]);
            for &old in &order {
                (fixed[old], nodes[old][renaming]).hash(&mut hasher);
            }
            renamed_in_flight.clear();
            renamed_in_flight.extend(
                in_flight
                    .iter()
                    .map(|&(src, dst, renamed)| (perm[src], perm[dst], renamed[renaming])),
            );
            renamed_in_flight.sort_unstable();
            renamed_in_flight.hash(&mut hasher);
            (state.isolated.map(|cut| perm[cut]), state.partition_left).hash(&mut hasher);
            hasher.finish()
        })
        .min()
        .expect("at least one permutation");
    ProtocolState {
        inner: Arc::clone(&state.inner),
        isolated: state.isolated,
        partition_left: state.partition_left,
        symmetric_digest: Some(digest),
        rounds: None,
    }
}

//! Helpers shared by the model tests.

use std::collections::{BTreeSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash};

use stateright::Model;

/// The representatives (as digests, through `representative`) of every
/// state reachable in `model`, found by a plain breadth-first search, or
/// by one that keeps only a state per representative when `symmetric`.
///
/// Symmetry reduction is sound only if renaming commutes with every step:
/// then both searches reach exactly the same representatives.
pub fn reachable_representatives<M>(
    model: &M,
    symmetric: bool,
    representative: impl Fn(&M::State) -> u64,
) -> BTreeSet<u64>
where
    M: Model,
    M::State: Hash,
{
    let key = |state: &M::State| {
        if symmetric {
            representative(state)
        } else {
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(state)
        }
    };
    let mut seen = BTreeSet::new();
    let mut reached = BTreeSet::new();
    let mut queue: VecDeque<M::State> = model.init_states().into();
    for state in &queue {
        seen.insert(key(state));
    }
    let mut actions = Vec::new();
    while let Some(state) = queue.pop_front() {
        reached.insert(representative(&state));
        actions.clear();
        model.actions(&state, &mut actions);
        for action in actions.drain(..) {
            let Some(next) = model.next_state(&state, action) else {
                continue;
            };
            if model.within_boundary(&next) && seen.insert(key(&next)) {
                queue.push_back(next);
            }
        }
    }
    reached
}

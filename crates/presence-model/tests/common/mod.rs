//! Helpers shared by the model tests.

use std::collections::{BTreeSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash};

use stateright::Model;

/// Symmetry reduction is sound only if renaming commutes with every step:
/// then a plain search and one that keeps only a state per representative
/// reach exactly the same representatives. Asserts that they do in `model`
/// (`what` names it in a failure).
pub fn assert_reduction_reaches_every_representative<M>(
    model: &M,
    representative: impl Fn(&M::State) -> u64,
    what: &str,
) where
    M: Model,
    M::State: Hash,
{
    let plain = reachable_representatives(model, false, &representative);
    let reduced = reachable_representatives(model, true, &representative);
    assert_eq!(plain.len(), reduced.len(), "{what}");
    assert!(plain == reduced, "{what}");
}

/// The representatives (as digests, through `representative`) of every
/// state reachable in `model`, found by a plain breadth-first search, or
/// by one that keeps only a state per representative when `symmetric`.
fn reachable_representatives<M>(
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

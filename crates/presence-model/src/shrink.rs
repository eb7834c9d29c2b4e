//! Confirming and shortening counterexamples: a path rebuilt from
//! fingerprints is replayed before it is shown, and shrunk by dropping
//! actions while it still breaks the property.

use stateright::{Expectation, Model};

/// Whether `actions` replay in `model` from its first initial state to a
/// state that breaks the `always` property named `property`. Discoveries
/// are confirmed this way before they are shown: a path rebuilt from
/// fingerprints names the states the checker saw, and this checks that
/// those actions really lead to a violation.
pub fn breaks<M>(model: &M, actions: &[M::Action], property: &str) -> bool
where
    M: Model,
    M::State: PartialEq,
    M::Action: PartialEq,
{
    let Some(condition) = model
        .properties()
        .into_iter()
        .find(|p| p.name == property && p.expectation == Expectation::Always)
        .map(|p| p.condition)
    else {
        return false;
    };
    let Some(init) = model.init_states().into_iter().next() else {
        return false;
    };
    stateright::Path::from_actions(model, init, actions)
        .is_some_and(|path| !condition(model, path.last_state()))
}

/// Shortens a counterexample to the `always` property `property`: drops
/// one action, or two adjacent ones (a crash and its recovery, a partition
/// and its heal), at a time while the path still replays from the initial
/// state and its last state still breaks the property. Depth-first
/// discoveries are rarely minimal. At most `budget` replays.
pub fn shrink_counterexample<M>(
    model: &M,
    mut actions: Vec<M::Action>,
    property: &str,
    budget: usize,
) -> Vec<M::Action>
where
    M: Model,
    M::State: PartialEq,
    M::Action: PartialEq + Clone,
{
    let mut replays = 0;
    'shorter: loop {
        for width in 1..=2 {
            for start in 0..actions.len().saturating_sub(width - 1) {
                if replays >= budget {
                    break 'shorter;
                }
                replays += 1;
                let mut candidate = actions.clone();
                candidate.drain(start..start + width);
                if breaks(model, &candidate, property) {
                    actions = candidate;
                    continue 'shorter;
                }
            }
        }
        break;
    }
    actions
}

//! Random walks through a model's state space, for the configurations an
//! exhaustive search cannot finish (`presence check --walk`).
//!
//! stateright's simulation checker would do, but in 0.31 it records the
//! index of every action it tried, taken or not, and then cannot rebuild
//! the path of a discovery when a model ignores an action (`next_state`
//! returns `None`, as the protocol model does for a message to a crashed
//! node): it panics. This walker records only the actions taken, so every
//! discovery replays with [`crate::breaks`] and shrinks with
//! [`crate::shrink_counterexample`] like a depth-first one.
//!
//! Walk `i` of seed `s` is a function of `(s, i)` alone: its choices come
//! from SplitMix64 seeded with both, so a walk that broke a property is
//! replayed exactly by its index, whatever the threads did. Each walk
//! starts from the model's first initial state, checks every property at
//! every state, never returns to a state it has been in, and ends where no
//! action leads to a new state, or at the depth bound.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use stateright::{Expectation, Model};

/// The bounds of a walking run.
#[derive(Clone, Debug)]
pub struct WalkBounds {
    /// The walks' seed.
    pub seed: u64,
    /// Worker threads.
    pub threads: usize,
    /// Steps per walk, at most.
    pub max_depth: usize,
    /// Stop after this many walks.
    pub max_walks: u64,
}

/// What the walks found.
#[derive(Debug)]
pub struct WalkReport<A> {
    /// Walks finished.
    pub walks: u64,
    /// States visited, counted once per visit.
    pub states: u64,
    /// The longest walk, in steps.
    pub max_depth: usize,
    /// Per `always` property broken: the lowest walk index that broke it,
    /// and that walk's actions up to the breaking state.
    pub violations: BTreeMap<&'static str, (u64, Vec<A>)>,
    /// Per `sometimes` property reached: the fewest steps it took.
    pub reached: BTreeMap<&'static str, usize>,
}

/// The walk's choices: SplitMix64.
struct Choices(u64);

impl Choices {
    fn new(seed: u64, walk: u64) -> Self {
        Self(seed ^ walk.wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % n.max(1) as u64) as usize
    }
}

/// One walk: its actions, what it broke and reached.
struct Walked<A> {
    states: u64,
    depth: usize,
    broken: Vec<(&'static str, Vec<A>)>,
    reached: Vec<(&'static str, usize)>,
}

fn walk_one<M>(model: &M, seed: u64, index: u64, max_depth: usize) -> Walked<M::Action>
where
    M: Model,
    M::State: Hash,
    M::Action: Clone,
{
    let properties = model.properties();
    let mut choices = Choices::new(seed, index);
    let mut walked = Walked {
        states: 0,
        depth: 0,
        broken: Vec::new(),
        reached: Vec::new(),
    };
    let Some(mut state) = model.init_states().into_iter().next() else {
        return walked;
    };
    let mut path: Vec<M::Action> = Vec::new();
    let mut seen = BTreeSet::new();
    let hasher = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let mut actions = Vec::new();
    loop {
        walked.states += 1;
        for property in &properties {
            let holds = (property.condition)(model, &state);
            let name = property.name;
            match property.expectation {
                Expectation::Always if !holds && !walked.broken.iter().any(|(seen, _)| *seen == name) => {
                    walked.broken.push((name, path.clone()));
                }
                Expectation::Sometimes if holds && !walked.reached.iter().any(|(seen, _)| *seen == name) => {
                    walked.reached.push((name, path.len()));
                }
                _ => {}
            }
        }
        seen.insert(hasher.hash_one(&state));
        if !walked.broken.is_empty() || path.len() >= max_depth {
            break;
        }
        actions.clear();
        model.actions(&state, &mut actions);
        // An action the model ignores, or one back to a state this walk has
        // been in, is set aside for another: the walk ends only where every
        // action does one or the other.
        let next = loop {
            if actions.is_empty() {
                break None;
            }
            let action = actions.swap_remove(choices.below(actions.len()));
            if let Some(next) = model.next_state(&state, action.clone()) {
                if !seen.contains(&hasher.hash_one(&next)) {
                    break Some((action, next));
                }
            }
        };
        let Some((action, next)) = next else { break };
        path.push(action);
        state = next;
    }
    walked.depth = path.len();
    walked
}

/// Walks until `max_walks` walks or `stop` (a deadline the caller sets);
/// `progress` counts finished walks as they finish.
pub fn random_walks<M>(
    model: &M,
    bounds: &WalkBounds,
    stop: &AtomicBool,
    progress: &AtomicU64,
) -> WalkReport<M::Action>
where
    M: Model + Sync,
    M::State: Hash,
    M::Action: Clone + Send,
{
    let next = AtomicU64::new(0);
    let states = AtomicU64::new(0);
    let depth = AtomicUsize::new(0);
    let found: Mutex<WalkReport<M::Action>> = Mutex::new(WalkReport {
        walks: 0,
        states: 0,
        max_depth: 0,
        violations: BTreeMap::new(),
        reached: BTreeMap::new(),
    });
    std::thread::scope(|scope| {
        for _ in 0..bounds.threads.max(1) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= bounds.max_walks {
                        break;
                    }
                    let walked = walk_one(model, bounds.seed, index, bounds.max_depth);
                    states.fetch_add(walked.states, Ordering::Relaxed);
                    depth.fetch_max(walked.depth, Ordering::Relaxed);
                    progress.fetch_add(1, Ordering::Relaxed);
                    if walked.broken.is_empty() && walked.reached.is_empty() {
                        continue;
                    }
                    let mut report = found.lock().expect("not poisoned");
                    for (name, path) in walked.broken {
                        let lower = report.violations.get(name).is_none_or(|(at, _)| index < *at);
                        if lower {
                            report.violations.insert(name, (index, path));
                        }
                    }
                    for (name, steps) in walked.reached {
                        let fewest = report.reached.entry(name).or_insert(steps);
                        *fewest = (*fewest).min(steps);
                    }
                }
            });
        }
    });
    let mut report = found.into_inner().expect("not poisoned");
    report.walks = progress.load(Ordering::Relaxed);
    report.states = states.load(Ordering::Relaxed);
    report.max_depth = depth.load(Ordering::Relaxed);
    report
}

/// Walk `index` of `seed` again: its actions up to where it broke
/// `property` (or its whole path if it did not).
pub fn replay_walk<M>(
    model: &M,
    seed: u64,
    index: u64,
    max_depth: usize,
    property: &str,
) -> Option<Vec<M::Action>>
where
    M: Model,
    M::State: Hash,
    M::Action: Clone,
{
    walk_one(model, seed, index, max_depth)
        .broken
        .into_iter()
        .find(|(name, _)| *name == property)
        .map(|(_, path)| path)
}

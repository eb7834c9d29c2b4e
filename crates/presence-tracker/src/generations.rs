//! Delta generations: the node's own recent changes, composed at a few sizes,
//! so a peer that lags only on this node gets the smallest delta that covers
//! its gap instead of the whole state.
//!
//! Generation `i` covers this replica's clocks from some point up to the last
//! heartbeat, holding at most `max_sizes[i]` operations; when it would grow
//! past that, it starts again from the newest delta. Memory is bounded by the
//! sum of the sizes.

use presence_core::Delta;

#[derive(Clone, Debug)]
pub(crate) struct Generations {
    max_sizes: Vec<usize>,
    deltas: Vec<Option<Delta>>,
}

impl Generations {
    pub(crate) fn new(max_sizes: &[usize]) -> Self {
        Self {
            max_sizes: max_sizes.to_vec(),
            deltas: vec![None; max_sizes.len()],
        }
    }

    #[cfg(feature = "inspect")]
    /// Feeds `hasher` each generation, or its absence (see
    /// [`Node::hash_canonical`](crate::Node::hash_canonical)).
    pub(crate) fn hash_canonical<H: std::hash::Hasher>(&self, hasher: &mut H) {
        use std::hash::Hash as _;
        for generation in &self.deltas {
            generation.is_some().hash(hasher);
            if let Some(delta) = generation {
                delta.hash_canonical(hasher);
            }
        }
    }

    #[cfg(feature = "inspect")]
    /// [`Generations::hash_canonical`] under a renaming of replicas (see
    /// [`Node::hash_renamed`](crate::Node::hash_renamed)).
    pub(crate) fn hash_renamed<H: std::hash::Hasher>(
        &self,
        rename: presence_core::digest::Rename<'_>,
        hasher: &mut H,
    ) {
        use std::hash::Hash as _;
        for generation in &self.deltas {
            generation.is_some().hash(hasher);
            if let Some(delta) = generation {
                delta.hash_renamed(rename, hasher);
            }
        }
    }

    /// Forgets everything (a new incarnation starts a new history).
    pub(crate) fn reset(&mut self) {
        self.deltas.iter_mut().for_each(|delta| *delta = None);
    }

    /// Adds the delta just broadcast to every generation.
    pub(crate) fn record(&mut self, latest: &Delta) {
        for (slot, &max) in self.deltas.iter_mut().zip(&self.max_sizes) {
            let extended = match slot.take() {
                Some(mut generation) => match generation.extend(latest) {
                    Ok(()) => generation,
                    Err(_) => latest.clone(),
                },
                None => latest.clone(),
            };
            *slot = if extended.len() <= max {
                Some(extended)
            } else if latest.len() <= max {
                Some(latest.clone())
            } else {
                None
            };
        }
    }

    /// The smallest stored delta that covers this replica's clocks above
    /// `since` up to now, `pending` being the changes since the last
    /// heartbeat; `None` when no generation reaches back that far.
    pub(crate) fn covering(&self, since: u64, pending: &Delta) -> Option<Delta> {
        let (pending_from, _) = pending.range();
        if pending_from <= since {
            return Some(pending.clone());
        }
        self.deltas.iter().flatten().find_map(|generation| {
            let (from, to) = generation.range();
            if from > since || to != pending_from {
                return None;
            }
            let mut covering = generation.clone();
            covering.extend(pending).ok()?;
            Some(covering)
        })
    }

    /// Operations held across all generations (bounded by the sizes' sum).
    pub(crate) fn len(&self) -> usize {
        self.deltas.iter().flatten().map(Delta::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presence_core::{ReplicaId, State};
    use serde_json::json;

    fn joins(state: &mut State, from: usize, count: usize) -> Delta {
        for i in from..from + count {
            state
                .join(&format!("p{i}"), "t", &format!("k{i}"), json!({}))
                .unwrap();
        }
        state.take_delta()
    }

    #[test]
    fn the_smallest_covering_generation_answers() {
        let mut state = State::new(ReplicaId::new("a", 1));
        let mut generations = Generations::new(&[2, 10]);
        let first = joins(&mut state, 0, 2);
        generations.record(&first);
        let second = joins(&mut state, 2, 2);
        generations.record(&second);
        let pending = state.delta().clone();

        let recent = generations.covering(2, &pending).unwrap();
        assert_eq!(
            recent.range(),
            (2, 4),
            "the small generation covers clocks above 2"
        );
        let all = generations.covering(0, &pending).unwrap();
        assert_eq!(all.range(), (0, 4), "only the large generation reaches back to 0");
        assert_eq!(generations.covering(4, &pending).unwrap().range(), (4, 4));
        generations.reset();
        assert_eq!(generations.len(), 0);
        assert!(
            generations.covering(2, &pending).is_none(),
            "nothing older is kept"
        );
    }

    #[test]
    fn generations_that_hold_other_deltas_hash_otherwise() {
        // Model checkers tell nodes apart by these digests: two nodes that
        // would answer a lagging peer differently must not share one.
        use std::hash::{DefaultHasher, Hasher};
        use std::sync::Arc;
        let same: &dyn Fn(&str) -> Arc<str> = &|base| Arc::from(base);
        let digests = |generations: &Generations| {
            let mut canonical = DefaultHasher::new();
            generations.hash_canonical(&mut canonical);
            let mut renamed = DefaultHasher::new();
            generations.hash_renamed(same, &mut renamed);
            (canonical.finish(), renamed.finish())
        };
        let mut state = State::new(ReplicaId::new("a", 1));
        let mut generations = Generations::new(&[2, 10]);
        let mut seen = vec![digests(&generations)];
        for round in 0..3 {
            generations.record(&joins(&mut state, round * 2, 2));
            seen.push(digests(&generations));
        }
        for (at, digest) in seen.iter().enumerate() {
            for earlier in &seen[..at] {
                assert_ne!(digest.0, earlier.0, "canonical, after round {at}");
                assert_ne!(digest.1, earlier.1, "renamed, after round {at}");
            }
        }
    }

    #[test]
    fn generations_stay_within_their_sizes() {
        let mut state = State::new(ReplicaId::new("a", 1));
        let mut generations = Generations::new(&[3, 6]);
        for round in 0..10 {
            let delta = joins(&mut state, round * 2, 2);
            generations.record(&delta);
            // The 3-slot generation holds the newest delta alone; the
            // 6-slot one grows by two until it would pass six, then starts
            // again from the newest.
            let expected = 2 + 2 * (round % 3 + 1);
            assert_eq!(generations.len(), expected, "round {round}");
            assert!(generations.len() <= 9);
        }
        let pending = state.delta().clone();
        assert!(
            generations.covering(0, &pending).is_none(),
            "history that old is gone"
        );
    }
}

//! How a workload's clients pick among topics or keys: uniformly, by a Zipf
//! law (a few names take most of the picks, a long tail the rest), or with
//! one hot name. Production rooms and users are skewed; a simulator that
//! only draws uniformly never builds a hot key or a big room.

use serde::{Deserialize, Serialize};

use crate::rng::SimRng;

/// The most names a skewed distribution may range over: its picker keeps a
/// table of that many cumulative weights.
pub const MAX_SKEWED_NAMES: usize = 1_000_000;

/// A distribution over names `0..n`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Distribution {
    /// Every name equally likely.
    #[default]
    Uniform,
    /// Name `r` (from 0) with weight `(r + 1)^-exponent`.
    Zipf {
        /// The law's exponent, in `(0, 10]`; about 1 in real populations.
        exponent: f64,
    },
    /// Name 0 with probability `share`, else any name uniformly.
    Hot {
        /// The hot name's share of the picks, in `[0, 1]`.
        share: f64,
    },
}

impl Distribution {
    /// Why this distribution cannot range over `names` names, if it cannot.
    pub fn check(&self, names: usize) -> Result<(), String> {
        match *self {
            Distribution::Uniform => Ok(()),
            _ if names > MAX_SKEWED_NAMES => Err(format!(
                "a skewed distribution ranges over at most {MAX_SKEWED_NAMES} names, not {names}"
            )),
            Distribution::Zipf { exponent } if !(exponent > 0.0 && exponent <= 10.0) => {
                Err(format!("zipf exponent {exponent} is not in (0, 10]"))
            }
            Distribution::Hot { share } if !(0.0..=1.0).contains(&share) => {
                Err(format!("hot share {share} is not a probability in [0, 1]"))
            }
            _ => Ok(()),
        }
    }
}

/// Picks names `0..n` by a [`Distribution`].
#[derive(Clone, Debug)]
pub struct Picker {
    names: usize,
    kind: Distribution,
    /// For Zipf: cumulative weights, normalised, one per name.
    cumulative: Vec<f64>,
}

impl Picker {
    /// A picker over `names` names (at least one; validated scenarios
    /// guarantee it and the bound).
    pub fn new(kind: Distribution, names: usize) -> Self {
        let cumulative = match kind {
            Distribution::Zipf { exponent } => presence_core::fixtures::zipf_cumulative(names, exponent),
            _ => Vec::new(),
        };
        Self {
            names,
            kind,
            cumulative,
        }
    }

    /// One name. The uniform picker draws exactly as `rng.below(names)`
    /// does, so scenarios written before distributions existed replay
    /// their old runs.
    pub fn pick(&self, rng: &mut SimRng) -> usize {
        match self.kind {
            Distribution::Uniform => rng.below(self.names),
            Distribution::Hot { share } => {
                if rng.chance(share) {
                    0
                } else {
                    rng.below(self.names)
                }
            }
            Distribution::Zipf { .. } => {
                let draw = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                self.cumulative
                    .partition_point(|&below| below < draw)
                    .min(self.names - 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(kind: Distribution, names: usize, draws: usize) -> Vec<usize> {
        let picker = Picker::new(kind, names);
        let mut rng = SimRng::new(7);
        let mut counts = vec![0; names];
        for _ in 0..draws {
            counts[picker.pick(&mut rng)] += 1;
        }
        counts
    }

    #[test]
    fn uniform_draws_as_below_does() {
        let picker = Picker::new(Distribution::Uniform, 10);
        let (mut a, mut b) = (SimRng::new(3), SimRng::new(3));
        for _ in 0..100 {
            assert_eq!(picker.pick(&mut a), b.below(10));
        }
    }

    #[test]
    fn skewed_draws_are_skewed() {
        let zipf = counts(Distribution::Zipf { exponent: 1.2 }, 1_000, 100_000);
        assert!(
            zipf[0] > 10 * zipf[50],
            "rank 0: {}, rank 50: {}",
            zipf[0],
            zipf[50]
        );
        assert!(
            zipf.iter().filter(|&&count| count > 0).count() > 300,
            "a long tail"
        );
        let hot = counts(Distribution::Hot { share: 0.5 }, 100, 100_000);
        assert!((49_000..52_000).contains(&hot[0]), "{}", hot[0]);
        let uniform = counts(Distribution::Uniform, 100, 100_000);
        assert!(uniform.iter().all(|&count| (800..1_200).contains(&count)));
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Distribution::Zipf { exponent: 0.0 }.check(10).is_err());
        assert!(Distribution::Zipf { exponent: f64::NAN }.check(10).is_err());
        assert!(Distribution::Hot { share: 1.5 }.check(10).is_err());
        assert!(Distribution::Hot { share: 0.5 }
            .check(MAX_SKEWED_NAMES + 1)
            .is_err());
        assert!(Distribution::Uniform.check(usize::MAX).is_ok());
        assert!(Distribution::Zipf { exponent: 1.1 }.check(1_000).is_ok());
    }
}

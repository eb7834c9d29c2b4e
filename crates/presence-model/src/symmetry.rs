//! What both models' symmetry reductions share: every renaming of a few
//! replicas, and a hasher that is the same in every process.

/// A hasher that is fast, well mixed and the same in every build and run
/// (ahash with fixed keys, as stateright's own fingerprints): digests must
/// not depend on the process that computed them.
pub(crate) fn digester() -> ahash::AHasher {
    use std::hash::BuildHasher;
    ahash::RandomState::with_seeds(
        0x243F_6A88_85A3_08D3,
        0x1319_8A2E_0370_7344,
        0xA409_3822_299F_31D0,
        0x082E_FA98_EC4E_6C89,
    )
    .build_hasher()
}

/// Every permutation of `0..n`, in lexicographic order (computed once per
/// `n`; the models have at most 4 replicas or 3 nodes).
pub(crate) fn permutations(n: usize) -> &'static [Vec<usize>] {
    static ALL: [std::sync::OnceLock<Vec<Vec<usize>>>; 5] = [const { std::sync::OnceLock::new() }; 5];
    ALL[n].get_or_init(|| {
        let mut all = vec![Vec::new()];
        for next in 0..n {
            all = all
                .into_iter()
                .flat_map(|rest: Vec<usize>| {
                    (0..=rest.len()).map(move |at| {
                        let mut perm = rest.clone();
                        perm.insert(at, next);
                        perm
                    })
                })
                .collect();
        }
        all.sort();
        all
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_every_ordering_once() {
        assert_eq!(permutations(3).len(), 6);
        assert_eq!(permutations(3)[0], [0, 1, 2]);
        let mut seen = permutations(4).to_vec();
        seen.dedup();
        assert_eq!(seen.len(), 24);
    }
}

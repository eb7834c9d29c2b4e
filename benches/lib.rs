//! Shared set-up of the presence-lab benches. Each `[[bench]]` of this
//! package measures one performance concern (see `README.md`) (`cargo bench` runs them
//! all); `presence report` turns criterion's estimates into `reports/bench/`.
//!
//! The workloads themselves live in [`presence_core::fixtures`], so the
//! `merge_scale` example and these benches measure the same states.

use std::time::Duration;

use crdts::{CmRDT, Orswot};

/// State sizes of the full-merge curve.
pub const FULL_MERGE_SIZES: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];

/// State sizes of the delta-merge curve, the one that must stay flat.
pub const DELTA_MERGE_SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

/// State sizes of the skew bench: every shape at each.
pub const SKEW_SIZES: [usize; 2] = [100_000, 1_000_000];

/// Criterion's warm-up for these benches (the command line's
/// `--warm-up-time` overrides it).
pub const WARM_UP: Duration = Duration::from_secs(1);

/// Criterion's measurement time for these benches (`--measurement-time` and
/// `--quick` override it).
pub const MEASUREMENT: Duration = Duration::from_secs(4);

/// An OR-set member equivalent to a presence entry without its metadata:
/// (topic, key, pid).
pub type OrswotMember = (String, String, String);

/// The `crdts` crate's `Orswot` holding the entries that
/// [`presence_core::fixtures::replica`] gives replica `prefix`, each added by
/// its own operation, as a replica would accumulate them.
pub fn orswot_replica(prefix: &str, count: usize) -> Orswot<OrswotMember, String> {
    let mut set = Orswot::new();
    let actor = format!("node-{prefix}");
    for i in 0..count {
        let member = (
            format!("room:{}", i % presence_core::fixtures::TOPICS),
            format!("{prefix}-user:{i}"),
            format!("{prefix}-pid:{i}"),
        );
        let ctx = set.read_ctx().derive_add_ctx(actor.clone());
        let op = set.add(member, ctx);
        set.apply(op);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crdts::CvRDT;

    #[test]
    fn the_orswot_peer_holds_the_same_members_and_merges() {
        let mut a = orswot_replica("a", 100);
        let b = orswot_replica("b", 100);
        assert_eq!(a.read().val.len(), 100);
        a.merge(b);
        assert_eq!(a.read().val.len(), 200);
    }
}

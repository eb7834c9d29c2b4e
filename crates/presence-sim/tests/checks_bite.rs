//! Each check of the simulator fails when the protection it guards is
//! switched off (`presence_tracker::sabotage`): a check that cannot fail
//! proves nothing. Every seed named here also passes as built.

use std::path::Path;

use presence_core::invariants::Invariant;
use presence_sim::scenario::Scenario;
use presence_sim::world::{run, Verdict};
use presence_tracker::sabotage::{self, Sabotage};

fn scenario(name: &str) -> Scenario {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../sims/{name}.toml"));
    Scenario::load(&file).expect("a committed scenario")
}

/// The invariant a failing verdict names: a violation's, or I2 for a run
/// that did not converge. `None` for a crash or a harness error, which
/// no switch should cause.
fn invariant_of(verdict: &Verdict) -> Option<Invariant> {
    match verdict {
        Verdict::Violation { invariant, .. } => Some(*invariant),
        Verdict::NoConvergence { .. } => Some(Invariant::Convergence),
        _ => None,
    }
}

/// Runs every seed of `name` as built (each must pass) and with
/// `sabotage` on; returns the seeds in all, and the invariant each
/// failing seed broke.
fn failures(name: &str, sabotage: Sabotage) -> (usize, Vec<Option<Invariant>>) {
    let scenario = scenario(name);
    let mut broke = Vec::new();
    for &seed in &scenario.seeds {
        let control = sabotage::without(|| run(&scenario, seed, false)).verdict;
        assert!(control.passed(), "{name} seed {seed} passes as built: {control}");
        let verdict = sabotage::with(sabotage, || run(&scenario, seed, false)).verdict;
        if !verdict.passed() {
            broke.push(invariant_of(&verdict));
        }
    }
    (scenario.seeds.len(), broke)
}

/// With `sabotage` on, every seed of `name` breaks `invariant`.
fn every_seed_breaks(name: &str, sabotage: Sabotage, invariant: Invariant) {
    let (seeds, broke) = failures(name, sabotage);
    assert_eq!(broke.len(), seeds, "{name} with {sabotage:?}: {broke:?}");
    assert!(
        broke.iter().all(|&found| found == Some(invariant)),
        "{name} with {sabotage:?}: {broke:?}"
    );
}

/// With `sabotage` on, some seed of `name` fails, and every seed that
/// fails breaks `invariant`.
fn some_seed_breaks(name: &str, sabotage: Sabotage, invariant: Invariant) {
    let (_, broke) = failures(name, sabotage);
    assert!(!broke.is_empty(), "no seed of {name} failed with {sabotage:?}");
    assert!(
        broke.iter().all(|&found| found == Some(invariant)),
        "{name} with {sabotage:?}: {broke:?}"
    );
}

#[test]
fn hiding_a_silent_peer_late_breaks_timeliness() {
    every_seed_breaks("netsplit-heal", Sabotage::LateDown, Invariant::Timeliness);
}

#[test]
fn keeping_a_retired_peer_breaks_bounded_memory() {
    every_seed_breaks(
        "rolling-restart",
        Sabotage::KeepRetiredPeers,
        Invariant::BoundedMemory,
    );
}

#[test]
fn a_survivor_that_keeps_a_departed_node_breaks_bounded_memory() {
    every_seed_breaks(
        "permanent-departure",
        Sabotage::KeepRetiredPeers,
        Invariant::BoundedMemory,
    );
    every_seed_breaks("permanent-departure", Sabotage::LateDown, Invariant::Timeliness);
}

#[test]
fn a_node_that_waits_out_a_clock_step_back_breaks_timeliness() {
    every_seed_breaks("clock-skew", Sabotage::NoClockStepBack, Invariant::Timeliness);
}

#[test]
fn sending_the_whole_state_breaks_payload_sanity() {
    every_seed_breaks(
        "restart-after-down",
        Sabotage::WholeState,
        Invariant::PayloadSanity,
    );
}

#[test]
fn merging_a_delta_that_does_not_connect_is_caught() {
    // Bug class B5: the clocks the gap skipped are never asked for again.
    some_seed_breaks(
        "lossy-dup-reorder",
        Sabotage::MergeGapDelta,
        Invariant::Convergence,
    );
}

#[test]
fn a_leave_that_takes_no_clock_is_caught() {
    // Bug class B4: a lost leave delta is never repaired, since no clock
    // tells the peer it lags.
    some_seed_breaks(
        "lossy-dup-reorder",
        Sabotage::LeaveTakesNoClock,
        Invariant::Convergence,
    );
}

#[test]
fn clouds_never_compacted_are_caught() {
    // Bug class B12: a cloud clock next to the context breaks I6 at once.
    every_seed_breaks(
        "lossy-dup-reorder",
        Sabotage::SkipCompaction,
        Invariant::CausalSanity,
    );
}

#[test]
fn a_permdown_that_forgets_its_watermark_is_caught() {
    // Bug class B10: with no watermark, what a node observed of a retired
    // replica is forgotten, and a lagging peer can bring it back.
    every_seed_breaks(
        "heal-after-permdown",
        Sabotage::ForgetWatermark,
        Invariant::NoResurrection,
    );
}

#[test]
fn an_update_that_drops_its_removal_is_caught() {
    // Bug class B7: peers keep the replaced presence beside the new one.
    some_seed_breaks(
        "churn-with-restarts",
        Sabotage::UpdateDropsRemoval,
        Invariant::Provenance,
    );
}

#[test]
fn a_node_that_never_forgets_a_departed_base_breaks_bounded_memory() {
    every_seed_breaks(
        "permanent-departure",
        Sabotage::KeepWatermarks,
        Invariant::BoundedMemory,
    );
}

#[test]
fn taking_in_an_old_stranger_after_forgetting_breaks_no_resurrection() {
    every_seed_breaks(
        "forgotten-partition",
        Sabotage::AcceptOldStrangers,
        Invariant::NoResurrection,
    );
}

#[test]
fn a_clock_issued_twice_breaks_causal_sanity() {
    every_seed_breaks(
        "restart-before-down",
        Sabotage::ClockNotAdvanced,
        Invariant::CausalSanity,
    );
}

#[test]
fn a_leave_that_removes_foreign_entries_breaks_own_authority() {
    every_seed_breaks(
        "permanent-departure",
        Sabotage::LeaveForeign,
        Invariant::OwnAuthority,
    );
}

#[test]
fn a_stale_transfer_that_overwrites_newer_entries_breaks_convergence() {
    some_seed_breaks(
        "lossy-dup-reorder",
        Sabotage::RemovedWithoutObserving,
        Invariant::Convergence,
    );
}

#[test]
fn zombies_of_retired_incarnations_break_convergence() {
    every_seed_breaks(
        "heal-after-permdown",
        Sabotage::ZombiesAccepted,
        Invariant::Convergence,
    );
}

#[test]
fn a_merge_where_the_last_join_wins_breaks_diff_exactness() {
    every_seed_breaks(
        "permanent-departure",
        Sabotage::LastMergedWins,
        Invariant::DiffExactness,
    );
}

#[test]
fn an_old_incarnation_left_beside_the_new_breaks_bounded_memory() {
    some_seed_breaks(
        "forgotten-partition",
        Sabotage::OldIncarnationLingers,
        Invariant::BoundedMemory,
    );
}

#[test]
fn frames_opened_without_checks_let_the_forging_nemesis_break_provenance() {
    every_seed_breaks("forged-bytes", Sabotage::Unauthenticated, Invariant::Provenance);
}

//! Each node-level check of the simulator fails when the protection it
//! guards is switched off (`presence_tracker::sabotage`): a check that
//! cannot fail proves nothing.

use std::path::Path;

use presence_core::invariants::Invariant;
use presence_sim::scenario::Scenario;
use presence_sim::world::{run, Verdict};
use presence_tracker::sabotage::{self, Sabotage};

fn scenario(name: &str) -> Scenario {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../sims/{name}.toml"));
    Scenario::load(&file).expect("a committed scenario")
}

/// The invariant every seed of `name` breaks with `sabotage` on (and
/// that none breaks without it).
fn broken(name: &str, sabotage: Sabotage) -> Vec<Invariant> {
    let scenario = scenario(name);
    scenario
        .seeds
        .iter()
        .map(|&seed| {
            let control = sabotage::without(|| run(&scenario, seed, false)).verdict;
            assert!(control.passed(), "{name} seed {seed} passes as built: {control}");
            match sabotage::with(sabotage, || run(&scenario, seed, false)).verdict {
                Verdict::Violation { invariant, .. } => invariant,
                other => panic!("{name} seed {seed} with {sabotage:?}: {other}"),
            }
        })
        .collect()
}

#[test]
fn hiding_a_silent_peer_late_breaks_timeliness() {
    let found = broken("netsplit-heal", Sabotage::LateDown);
    assert!(
        found.iter().all(|&invariant| invariant == Invariant::Timeliness),
        "{found:?}"
    );
}

#[test]
fn keeping_a_retired_peer_breaks_bounded_memory() {
    let found = broken("rolling-restart", Sabotage::KeepRetiredPeers);
    assert!(
        found
            .iter()
            .all(|&invariant| invariant == Invariant::BoundedMemory),
        "{found:?}"
    );
}

#[test]
fn a_survivor_that_keeps_a_departed_node_breaks_bounded_memory() {
    let found = broken("permanent-departure", Sabotage::KeepRetiredPeers);
    assert!(
        found
            .iter()
            .all(|&invariant| invariant == Invariant::BoundedMemory),
        "{found:?}"
    );
    let found = broken("permanent-departure", Sabotage::LateDown);
    assert!(
        found.iter().all(|&invariant| invariant == Invariant::Timeliness),
        "{found:?}"
    );
}

#[test]
fn a_node_that_waits_out_a_clock_step_back_breaks_timeliness() {
    let found = broken("clock-skew", Sabotage::NoClockStepBack);
    assert!(
        found.iter().all(|&invariant| invariant == Invariant::Timeliness),
        "{found:?}"
    );
}

#[test]
fn sending_the_whole_state_breaks_payload_sanity() {
    let found = broken("restart-after-down", Sabotage::WholeState);
    assert!(
        found
            .iter()
            .all(|&invariant| invariant == Invariant::PayloadSanity),
        "{found:?}"
    );
}

/// How the seeds of `name` fail with `sabotage` on (each passes as built):
/// one verdict per failing seed.
fn failures(name: &str, sabotage: Sabotage) -> Vec<String> {
    let scenario = scenario(name);
    let mut failed = Vec::new();
    for &seed in &scenario.seeds {
        let control = sabotage::without(|| run(&scenario, seed, false)).verdict;
        assert!(control.passed(), "{name} seed {seed} passes as built: {control}");
        let verdict = sabotage::with(sabotage, || run(&scenario, seed, false)).verdict;
        if !verdict.passed() {
            failed.push(verdict.to_string());
        }
    }
    failed
}

#[test]
fn merging_a_delta_that_does_not_connect_is_caught() {
    // Bug class B5: the clocks the gap skipped are never asked for again.
    let failed = failures("lossy-dup-reorder", Sabotage::MergeGapDelta);
    assert!(!failed.is_empty(), "no seed failed");
    assert!(
        failed.iter().all(|verdict| verdict.starts_with("I2 convergence")),
        "{failed:#?}"
    );
}

#[test]
fn a_leave_that_takes_no_clock_is_caught() {
    // Bug class B4: a lost leave delta is never repaired, since no clock
    // tells the peer it lags.
    let failed = failures("lossy-dup-reorder", Sabotage::LeaveTakesNoClock);
    assert!(!failed.is_empty(), "no seed failed");
    assert!(
        failed.iter().all(|verdict| verdict.starts_with("I2 convergence")),
        "{failed:#?}"
    );
}

#[test]
fn clouds_never_compacted_are_caught() {
    // Bug class B12: a cloud clock next to the context breaks I6 at once.
    let failed = failures("lossy-dup-reorder", Sabotage::SkipCompaction);
    assert_eq!(failed.len(), scenario("lossy-dup-reorder").seeds.len());
    assert!(
        failed
            .iter()
            .all(|verdict| verdict.starts_with("I6 causal sanity")),
        "{failed:#?}"
    );
}

#[test]
fn a_permdown_that_forgets_its_watermark_is_caught() {
    // Bug class B10: with no watermark, what a node observed of a retired
    // replica is forgotten, and a lagging peer can bring it back.
    let failed = failures("heal-after-permdown", Sabotage::ForgetWatermark);
    assert_eq!(failed.len(), scenario("heal-after-permdown").seeds.len());
    assert!(
        failed
            .iter()
            .all(|verdict| verdict.starts_with("I3 no resurrection")),
        "{failed:#?}"
    );
}

#[test]
fn an_update_that_drops_its_removal_is_caught() {
    // Bug class B7: peers keep the replaced presence beside the new one.
    let failed = failures("churn-with-restarts", Sabotage::UpdateDropsRemoval);
    assert!(!failed.is_empty(), "no seed failed");
    assert!(
        failed.iter().all(|verdict| verdict.starts_with("I4 provenance")),
        "{failed:#?}"
    );
}

//! The protocol model's node-level properties (I7 on the node, I10, I11)
//! each find a violation once the protection they guard is switched off
//! (`presence_tracker::sabotage`), and none without it. This binary does
//! nothing but sabotage: the switch is process-wide.

use presence_model::protocol::ProtocolModelCfg;
use presence_tracker::sabotage::{self, Sabotage};
use stateright::{Checker, Model};

fn discovers(cfg: ProtocolModelCfg, property: &'static str) -> bool {
    let checker = cfg.into_model().checker().threads(2).spawn_dfs().join();
    checker.discovery(property).is_some()
}

fn bites(cfg: ProtocolModelCfg, sabotage: Sabotage, property: &'static str) {
    assert!(
        !sabotage::without(|| discovers(cfg, property)),
        "{property} holds as built in {cfg:?}"
    );
    assert!(
        sabotage::with(sabotage, || discovers(cfg, property)),
        "{property} is broken with {sabotage:?} in {cfg:?}"
    );
}

/// Two nodes, no partition, no loss: the smallest cluster where each
/// protection matters.
fn two_nodes(ticks: u8, crashes: usize) -> ProtocolModelCfg {
    ProtocolModelCfg {
        nodes: 2,
        ticks,
        crashes,
        partitions: false,
        lossy: false,
        synchrony: None,
    }
}

#[test]
fn hiding_a_silent_peer_late_breaks_timeliness() {
    bites(two_nodes(2, 0), Sabotage::LateDown, "I10 timeliness");
}

#[test]
fn a_down_reported_as_joins_breaks_diff_exactness() {
    bites(two_nodes(2, 0), Sabotage::SwappedDownDiff, "I1 diff exactness");
}

#[test]
fn keeping_a_retired_peer_breaks_bounded_memory() {
    bites(two_nodes(1, 1), Sabotage::KeepRetiredPeers, "I7 bounded memory");
}

#[test]
fn sending_the_whole_state_breaks_payload_sanity() {
    bites(two_nodes(2, 0), Sabotage::WholeState, "I11 payload sanity");
}

/// Random walks (`presence check --walk`) find what depth-first search
/// finds, and nothing as built; the walk that broke the property replays
/// exactly.
#[test]
fn random_walks_find_a_broken_protection_and_replay_it() {
    use presence_model::walk::{random_walks, replay_walk, WalkBounds};
    use std::sync::atomic::{AtomicBool, AtomicU64};
    let bounds = WalkBounds {
        seed: 7,
        threads: 2,
        max_depth: 2_000,
        max_walks: 3_000,
    };
    // A model per run: the model memoizes steps, and a step memoized as
    // built must not answer for the sabotaged node.
    let walk = |model: &presence_model::protocol::ProtocolModel| {
        random_walks(model, &bounds, &AtomicBool::new(false), &AtomicU64::new(0))
    };
    let built = sabotage::without(|| walk(&two_nodes(2, 0).into_model()));
    assert_eq!(built.walks, 3_000);
    assert!(built.violations.is_empty(), "{:?}", built.violations.keys());
    let model = two_nodes(2, 0).into_model();
    let broken = sabotage::with(Sabotage::SwappedDownDiff, || walk(&model));
    let (index, path) = broken
        .violations
        .get("I1 diff exactness")
        .expect("walks find the swapped diff");
    // The same walk, alone, breaks the same property by the same path,
    // and the path replays to the violation from the initial state.
    let again = sabotage::with(Sabotage::SwappedDownDiff, || {
        replay_walk(&model, bounds.seed, *index, bounds.max_depth, "I1 diff exactness")
    });
    assert_eq!(again.as_ref(), Some(path));
    assert!(sabotage::with(Sabotage::SwappedDownDiff, || {
        presence_model::breaks(&model, path, "I1 diff exactness")
    }));
}

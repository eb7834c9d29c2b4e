//! Forgetting a departed base's watermark, in the protocol model under
//! bounded synchrony (`ProtocolModelCfg::synchrony`): nodes that forget
//! resurrect nothing while messages arrive within the stated age, and the
//! same walks find a resurrection once a message may arrive at any age,
//! which is the bound forgetting rests on (so the check can fail).

use std::sync::atomic::{AtomicBool, AtomicU64};

use presence_model::protocol::{ProtocolAction, ProtocolModel, ProtocolModelCfg, Synchrony, FORGETS};
use presence_model::walk::{random_walks, replay_walk, WalkBounds, WalkReport};

const NO_RESURRECTION: &str = "I3 no resurrection";

/// Three nodes, one of which may crash (and, under synchrony, never
/// return), with ticks enough for the others to permdown it and outlast
/// the retirement memory.
fn three_nodes(max_age_rounds: Option<u16>) -> ProtocolModel {
    ProtocolModelCfg {
        nodes: 3,
        ticks: 14,
        crashes: 1,
        partitions: false,
        lossy: false,
        synchrony: Some(Synchrony { max_age_rounds }),
    }
    .into_model()
}

fn walks(model: &ProtocolModel, walks: u64) -> WalkReport<ProtocolAction> {
    let bounds = WalkBounds {
        seed: 11,
        threads: 2,
        max_depth: 400,
        max_walks: walks,
    };
    random_walks(model, &bounds, &AtomicBool::new(false), &AtomicU64::new(0))
}

#[test]
fn forgetting_within_the_age_bound_resurrects_nothing() {
    let report = walks(&three_nodes(Some(1)), 500);
    assert_eq!(report.walks, 500);
    assert!(
        report.violations.is_empty(),
        "{:?}",
        report.violations.keys().collect::<Vec<_>>()
    );
    assert!(
        report.reached.contains_key(FORGETS),
        "no walk forgot a watermark: the check would be empty"
    );
}

#[test]
fn a_message_older_than_the_bound_resurrects_a_forgotten_replica() {
    let model = three_nodes(None);
    let report = walks(&model, 500);
    let (index, path) = report
        .violations
        .get(NO_RESURRECTION)
        .expect("with messages of any age, a forgotten replica's old delta comes back");
    assert!(presence_model::breaks(&model, path, NO_RESURRECTION));
    let again = replay_walk(&model, 11, *index, 400, NO_RESURRECTION);
    assert_eq!(again.as_ref(), Some(path));
    // Nothing else breaks: the age bound is what forgetting rests on.
    assert_eq!(
        report.violations.keys().copied().collect::<Vec<_>>(),
        vec![NO_RESURRECTION]
    );
}

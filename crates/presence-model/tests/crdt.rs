//! Bounded exhaustive checks of the CRDT model. Each pins its unique state
//! count, so a change in the explored space is noticed, and asserts the
//! discoveries it can reach.

mod common;

use common::assert_reduction_reaches_every_representative;
use presence_model::crdt::{CrdtModel, CrdtModelCfg, CrdtState};
use presence_model::property_names;
use stateright::{Checker, Expectation, Model};

fn check(cfg: CrdtModelCfg) -> impl Checker<CrdtModel> {
    cfg.into_model().checker().threads(2).spawn_dfs().join()
}

fn cfg(replicas: usize, ops: u8, faults: u8, restarts: bool) -> CrdtModelCfg {
    CrdtModelCfg {
        replicas,
        ops,
        faults,
        restarts,
    }
}

fn assert_always_holds(checker: &impl Checker<CrdtModel>) {
    assert!(checker.is_done(), "the check ran to completion");
    for property in property_names(checker.model(), Expectation::Always) {
        checker.assert_no_discovery(property);
    }
}

#[test]
fn two_replicas_two_operations_each() {
    let checker = check(cfg(2, 2, 0, false));
    assert_always_holds(&checker);
    checker.assert_any_discovery("add-wins conflict");
    assert_eq!(checker.unique_state_count(), 292);
}

/// Three operations each reach what one or two cannot take: a presence
/// whose clock was issued after its replica left (join, leave, join)
/// reaching a peer that saw the leave. A delta that does not connect is
/// refused (a gap) from two operations on.
#[test]
fn two_replicas_three_operations_each_rejoin_after_a_leave() {
    let checker = check(cfg(2, 3, 0, false));
    assert_always_holds(&checker);
    checker.assert_any_discovery("a clock issued after a leave reaches a peer");
    checker.assert_any_discovery("a delta that does not connect is refused");
    assert_eq!(checker.unique_state_count(), 5_545);
    let two = check(cfg(2, 2, 0, false));
    assert!(two
        .discovery("a clock issued after a leave reaches a peer")
        .is_none());
    two.assert_any_discovery("a delta that does not connect is refused");
}

#[test]
fn two_replicas_with_a_liveness_change_permdown_or_restart() {
    let checker = check(cfg(2, 2, 1, true));
    assert_always_holds(&checker);
    checker.assert_any_discovery("add-wins conflict");
    checker.assert_any_discovery("stale payload after permdown");
    assert_eq!(checker.unique_state_count(), 6_598);
}

#[test]
fn three_replicas_one_operation_each() {
    let checker = check(cfg(3, 1, 0, false));
    assert_always_holds(&checker);
    assert_eq!(checker.unique_state_count(), 923);
}

/// The smallest configuration where a removal relayed through a replica
/// that does not own the entry is reachable without a fault: it takes
/// three replicas and a second operation.
#[test]
fn three_replicas_two_operations_each_under_symmetry() {
    let checker = check_symmetric(cfg(3, 2, 0, false));
    assert_always_holds(&checker);
    checker.assert_any_discovery("add-wins conflict");
    checker.assert_any_discovery("removal observed through a third replica");
    // Judged one delivery ahead, a discovery still needs what makes it:
    // no permdown, no stale payload.
    checker.assert_no_discovery("stale payload after permdown");
    assert_eq!(checker.unique_state_count(), 220_607);
}

/// Three replicas with a liveness change, a permdown or a restart: every
/// discovery, the stale payload's included, with a third replica to relay.
#[test]
fn three_replicas_with_a_liveness_change_permdown_or_restart_under_symmetry() {
    let checker = check_symmetric(cfg(3, 1, 1, true));
    assert_always_holds(&checker);
    // One operation each cannot leave and join again, nor make two deltas.
    let need_more_operations = [
        "a clock issued after a leave reaches a peer",
        "a delta that does not connect is refused",
    ];
    for discovery in property_names(checker.model(), Expectation::Sometimes) {
        if !need_more_operations.contains(&discovery) {
            checker.assert_any_discovery(discovery);
        }
    }
    assert_eq!(checker.unique_state_count(), 3_824);
}

#[test]
fn a_counterexample_path_replays_in_the_model() {
    // Discoveries are re-checked with Path::from_actions before they are
    // shown: the path must lead from the initial state to the same state.
    let model = cfg(2, 2, 0, false).into_model();
    let checker = model.clone().checker().spawn_dfs().join();
    let path = checker.assert_any_discovery("add-wins conflict");
    let actions = path.clone().into_actions();
    let init = model.init_states().remove(0);
    let replayed = stateright::Path::from_actions(&model, init, &actions).expect("the path replays");
    assert!(replayed.last_state() == path.last_state());
}

/// The counterexample the model found when bug class B7 was injected by
/// hand (an update whose delta dropped its removal half, Phoenix #172/#175):
/// replica 0 joins and updates, replica 1 receives both deltas in order and,
/// under B7, held the old entry beside the one that replaced it (I4). Every
/// `always` property must hold at every step of this path, and replica 1
/// must end with the updated presence alone.
#[test]
fn regression_b7_an_update_delta_carries_its_removal() {
    use presence_model::crdt::{CrdtAction, Gossip};
    let model = cfg(2, 2, 0, false).into_model();
    let mut state = model.init_states().remove(0);
    // Each local operation offers its delta, then its full state; spent
    // payloads are pruned, so each delivery takes the oldest delta left.
    let oldest_delta = |state: &presence_model::crdt::CrdtState| {
        let payload = state
            .payloads
            .iter()
            .position(|produced| matches!(produced.payload(), Gossip::Delta { .. }))
            .expect("a delta is left");
        CrdtAction::Deliver { payload, to: 1 }
    };
    let steps: [&dyn Fn(&_) -> CrdtAction; 4] = [
        &|_| CrdtAction::Join { at: 0 },
        &|_| CrdtAction::Update { at: 0 },
        &oldest_delta,
        &oldest_delta,
    ];
    for step in steps {
        let action = step(&state);
        state = model
            .next_state(&state, action.clone())
            .expect("the step is taken");
        for property in model.properties() {
            if property.expectation == Expectation::Always {
                assert!(
                    (property.condition)(&model, &state),
                    "{} broke after {action:?}",
                    property.name
                );
            }
        }
    }
    let held: Vec<_> = state.replicas[1].state.get_by_key("room", "alice");
    assert_eq!(held.len(), 1, "the old entry went with the update");
    assert_eq!(held, state.replicas[0].state.get_by_key("room", "alice"));
    assert!(held[0].entry.replaces.is_some(), "what remains is the update");
}

/// Marking a peer down before it has shown anything hides nothing, but it
/// is a step all the same: what arrives from the peer afterwards must stay
/// hidden and be reported by no diff. (The model once skipped every liveness
/// change whose diff was empty, and with it a mutant that reported joins of
/// a down peer's first entries.)
#[test]
fn a_peer_marked_down_before_its_first_entries_keeps_them_hidden() {
    use presence_model::crdt::CrdtAction::*;
    let model = cfg(2, 1, 1, false).into_model();
    // Payload 1 is r1's full state after its join.
    let state = reached(
        &model,
        &[
            Down { at: 0, of: 1 },
            Join { at: 1 },
            Deliver { payload: 1, to: 0 },
        ],
    );
    assert!(state.replicas[0].state.get_by_key("room", "alice").is_empty());
    assert_eq!(state.replicas[0].state.len(), 1, "the entry is held, hidden");
    for property in model.properties() {
        if property.expectation == Expectation::Always {
            assert!((property.condition)(&model, &state), "{} holds", property.name);
        }
    }
}

/// Pruning payloads spent on every replica keeps the explored behaviour
/// exact only if a spent payload stays spent. Audited runs keep the pruned
/// payloads aside and check that claim in every state, with and without
/// permdowns, reincarnations and restarts.
#[test]
fn pruned_payloads_stay_spent() {
    for cfg in [cfg(2, 2, 2, false), cfg(2, 2, 1, true), cfg(3, 1, 2, true)] {
        let checker = cfg
            .into_model()
            .auditing_pruning()
            .checker()
            .threads(2)
            .spawn_dfs()
            .join();
        assert_always_holds(&checker);
        checker.assert_no_discovery("pruned payloads stay spent");
    }
}

/// The state `actions` lead to, each taken with `next_state`. (Not every
/// step here is offered: of two deliveries that leave the receiver alike,
/// the model offers only the first, and these tests take either.)
fn reached(
    model: &CrdtModel,
    actions: &[presence_model::crdt::CrdtAction],
) -> presence_model::crdt::CrdtState {
    let init = model.init_states().remove(0);
    actions.iter().fold(init, |state, action| {
        model
            .next_state(&state, action.clone())
            .unwrap_or_else(|| panic!("{action:?} is taken"))
    })
}

fn offered(model: &CrdtModel, state: &CrdtState) -> Vec<presence_model::crdt::CrdtAction> {
    let mut actions = Vec::new();
    model.actions(state, &mut actions);
    actions
}

/// Of two deliveries to one replica that lead to the same state, only the
/// first is offered: the checker would only find the state again. Ones
/// that lead to different states are all offered.
#[test]
fn deliveries_are_offered_once_per_outcome() {
    use presence_model::crdt::CrdtAction::*;
    let model = cfg(3, 2, 0, false).into_model();
    // r0's delta (payload 0) and full state (1) carry the same news.
    let state = reached(&model, &[Join { at: 0 }]);
    let actions = offered(&model, &state);
    assert!(actions.contains(&Deliver { payload: 0, to: 1 }));
    assert!(!actions.contains(&Deliver { payload: 1, to: 1 }));
    assert!(
        model.next_state(&state, Deliver { payload: 0, to: 1 })
            == model.next_state(&state, Deliver { payload: 1, to: 1 })
    );
    // Once r0 has relayed r1's join, its full state (3) carries more than
    // its delta (2): both are offered to r2.
    let state = reached(
        &model,
        &[Join { at: 1 }, Deliver { payload: 0, to: 0 }, Join { at: 0 }],
    );
    let actions = offered(&model, &state);
    assert!(actions.contains(&Deliver { payload: 2, to: 2 }));
    assert!(actions.contains(&Deliver { payload: 3, to: 2 }));
    // Two deliveries that show nothing (r1 believes r0 down) and still
    // differ: r0's join delta (0) leaves its entry held and hidden, its
    // full state after the leave (3) only the news that it is gone.
    let model = cfg(2, 2, 1, false).into_model();
    let state = reached(&model, &[Down { at: 1, of: 0 }, Join { at: 0 }, Leave { at: 0 }]);
    let actions = offered(&model, &state);
    assert!(actions.contains(&Deliver { payload: 0, to: 1 }));
    assert!(actions.contains(&Deliver { payload: 3, to: 1 }));
}

#[test]
fn mirrored_states_share_a_representative_and_others_do_not() {
    use presence_model::crdt::{representative, CrdtAction::*};
    let model = cfg(3, 2, 1, true).into_model();
    let same = |a: &[_], b: &[_]| representative(&reached(&model, a)) == representative(&reached(&model, b));
    assert!(same(&[Join { at: 0 }], &[Join { at: 2 }]));
    // Replicas 0 and 1 swap roles, payload numbers follow production order.
    assert!(same(
        &[
            Join { at: 0 },
            Join { at: 1 },
            Deliver { payload: 0, to: 1 },
            Down { at: 1, of: 0 }
        ],
        &[
            Join { at: 1 },
            Join { at: 0 },
            Deliver { payload: 0, to: 0 },
            Down { at: 0, of: 1 }
        ],
    ));
    assert!(same(&[Restart { at: 1 }], &[Restart { at: 0 }]));
    // The order in which independent operations produced payloads is
    // forgotten: here payload 2 (r1's delta) in one is payload 0 in the other.
    assert!(same(
        &[Join { at: 0 }, Join { at: 1 }, Deliver { payload: 2, to: 2 }],
        &[Join { at: 1 }, Join { at: 0 }, Deliver { payload: 0, to: 2 }],
    ));
    assert!(!same(
        &[Join { at: 0 }, Join { at: 1 }, Deliver { payload: 2, to: 2 }],
        &[Join { at: 0 }, Join { at: 1 }, Deliver { payload: 2, to: 0 }],
    ));
    assert!(!same(
        &[Join { at: 0 }],
        &[Join { at: 0 }, Deliver { payload: 0, to: 1 }]
    ));
    // A delta and a full state that carry the same news leave the receiver
    // alike, and the payloads left are the same set.
    assert!(same(
        &[Join { at: 0 }, Deliver { payload: 0, to: 1 }],
        &[Join { at: 0 }, Deliver { payload: 1, to: 1 }]
    ));
    // Not so once the full state carries more than the delta: here r0's
    // full state (payload 3) also holds r1's join, which r0 relays to r2.
    assert!(!same(
        &[
            Join { at: 1 },
            Deliver { payload: 0, to: 0 },
            Join { at: 0 },
            Deliver { payload: 2, to: 2 }
        ],
        &[
            Join { at: 1 },
            Deliver { payload: 0, to: 0 },
            Join { at: 0 },
            Deliver { payload: 3, to: 2 }
        ]
    ));
    assert!(!same(
        &[Join { at: 0 }, Deliver { payload: 0, to: 1 }],
        &[
            Join { at: 0 },
            Deliver { payload: 0, to: 1 },
            Down { at: 1, of: 0 }
        ]
    ));
}

fn check_symmetric(cfg: CrdtModelCfg) -> impl Checker<CrdtModel> {
    cfg.into_model()
        .checker()
        .threads(2)
        .symmetry_fn(presence_model::crdt::representative)
        .spawn_dfs()
        .join()
}

/// Symmetry reduction is sound only if renaming replicas commutes with
/// every step, and forgetting the order payloads were produced in changes
/// no successor. Checked: exploring one state per representative reaches
/// exactly the representatives of every reachable state, with and without
/// liveness changes, permdowns and restarts.
#[test]
fn symmetry_reduction_reaches_every_representative() {
    let digest = |state: &CrdtState| {
        presence_model::crdt::representative(state)
            .symmetric_digest
            .expect("a representative")
    };
    for cfg in [cfg(3, 1, 0, false), cfg(2, 2, 1, true), cfg(3, 1, 1, false)] {
        assert_reduction_reaches_every_representative(&cfg.into_model(), digest, &format!("{cfg:?}"));
    }
}

#[test]
fn symmetry_reduction_keeps_every_property_and_discovery() {
    let checker = check_symmetric(cfg(3, 1, 0, false));
    assert_always_holds(&checker);
    // 923 without symmetry.
    assert_eq!(checker.unique_state_count(), 95);

    let checker = check_symmetric(cfg(2, 2, 1, true));
    assert_always_holds(&checker);
    checker.assert_any_discovery("add-wins conflict");
    checker.assert_any_discovery("stale payload after permdown");
    // 6,598 without symmetry.
    assert_eq!(checker.unique_state_count(), 1_900);
}

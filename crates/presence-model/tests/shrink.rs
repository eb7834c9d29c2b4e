//! Confirming and shrinking counterexamples, on a model small enough that
//! the shortest counterexample is known.

use presence_model::{breaks, shrink_counterexample};
use stateright::{Model, Property};

/// Two counters; "a stays below 2" breaks after two increments of `a`,
/// whatever happened to `b` on the way.
struct Counters;

#[derive(Clone, Debug, PartialEq)]
enum Step {
    A,
    B,
}

impl Model for Counters {
    type State = (u8, u8);
    type Action = Step;

    fn init_states(&self) -> Vec<Self::State> {
        vec![(0, 0)]
    }

    fn actions(&self, _: &Self::State, actions: &mut Vec<Self::Action>) {
        actions.extend([Step::A, Step::B]);
    }

    fn next_state(&self, &(a, b): &Self::State, action: Self::Action) -> Option<Self::State> {
        match action {
            Step::A => (a < 3).then_some((a + 1, b)),
            Step::B => (b < 3).then_some((a, b + 1)),
        }
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("a stays below 2", |_, state: &(u8, u8)| state.0 < 2),
            Property::sometimes("b reaches 1", |_, state: &(u8, u8)| state.1 >= 1),
        ]
    }
}

#[test]
fn a_counterexample_is_confirmed_only_if_it_replays_to_a_violation() {
    use Step::*;
    assert!(breaks(&Counters, &[B, A, B, A], "a stays below 2"));
    assert!(
        !breaks(&Counters, &[B, A, B], "a stays below 2"),
        "the property holds there"
    );
    assert!(
        !breaks(&Counters, &[A, A, A, A], "a stays below 2"),
        "the path does not replay"
    );
    assert!(
        !breaks(&Counters, &[B, A, B, A], "b reaches 1"),
        "not an always property"
    );
    assert!(!breaks(&Counters, &[B, A, B, A], "no such property"));
}

#[test]
fn counterexamples_shrink_to_what_still_breaks_the_property() {
    use Step::*;
    let path = vec![B, A, B, B, A, B];
    assert_eq!(
        shrink_counterexample(&Counters, path.clone(), "a stays below 2", 100),
        vec![A, A]
    );
    // Out of budget, it stops where it got to, still a counterexample.
    let partly = shrink_counterexample(&Counters, path.clone(), "a stays below 2", 1);
    assert_eq!(partly, vec![A, B, B, A, B]);
    assert!(breaks(&Counters, &partly, "a stays below 2"));
    // A property that does not break is left alone.
    assert_eq!(
        shrink_counterexample(&Counters, path.clone(), "b reaches 1", 100),
        path
    );
}

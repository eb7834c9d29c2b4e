//! What the protocol model remembers: a node's step (a delivery, a tick
//! or its one local operation) is a function of the node's digest, its
//! clock and what it takes, so each step is computed once and kept in a
//! bounded [`Memo`] shared by the checker's threads.

use std::sync::Arc;

use presence_core::Diff;
use presence_tracker::checks::{asker_of, check_output_sanity};
use presence_tracker::{Input, Node, Output};
use stateright::actor::{Id, Out};

use super::symmetry::Renamed;
use super::*;
use crate::memo::Memo;
use crate::no_resurrection_since;

/// Steps by (node digest, node clock, [`Stimulus::key`]). `None` for an
/// input the node rejects.
pub(super) type Steps = Memo<(u64, u64, u64), Option<Arc<Step>>>;

/// What a node takes in one step.
#[derive(Clone, Copy, Debug)]
pub(super) enum Stimulus<'m> {
    /// A message delivered.
    Message(&'m Packet),
    /// Its heartbeat timer.
    Tick,
    /// Its one local operation: untracking its presence.
    Leave,
}

impl Stimulus<'_> {
    /// Its part of a step's key: a message's digest, or a value standing
    /// for the timer.
    pub(super) fn key(self) -> u64 {
        match self {
            Stimulus::Message(wire) => wire.digest,
            Stimulus::Tick => u64::MAX,
            Stimulus::Leave => u64::MAX - 1,
        }
    }

    pub(super) fn input(self) -> Input {
        match self {
            Stimulus::Message(wire) => Input::Receive(wire.message().clone()),
            Stimulus::Tick => Input::Tick,
            Stimulus::Leave => Input::Untrack {
                pid: PID.into(),
                topic: "room".into(),
                key: "alice".into(),
            },
        }
    }
}

/// What one step of a tracker node (a delivery or a tick) does, when it
/// does not reincarnate the node (a reincarnation writes ground truth,
/// which is ghost state, so it is never remembered).
#[derive(Debug)]
pub(super) struct Step {
    /// The node afterwards.
    pub(super) node: Arc<Node>,
    /// Its digests.
    pub(super) digests: Digests,
    /// Its digests under renamings.
    pub(super) renamed: Renamed,
    /// Sum of the fingerprints of the diffs it emitted (I1).
    pub(super) diffs: u64,
    /// The diffs of a local operation, which its ghost history records
    /// (empty for other steps).
    pub(super) local: Vec<Diff>,
    /// The I3 violation of the step, if any.
    pub(super) resurrection: Option<String>,
    /// The I11 violation in what it sends, if any.
    pub(super) unsound_payload: Option<String>,
    /// What it sends, in order: the message and the nodes it reaches.
    pub(super) sends: Vec<(Vec<Id>, Packet)>,
}

/// What a step came to.
pub(super) enum StepOutcome {
    /// The node rejected the input; it is unchanged.
    Rejected,
    /// The node became a new incarnation, with these outputs.
    Reincarnated(Box<Node>, Vec<Output>),
    /// Anything else.
    Remembered(Arc<Step>),
}

impl Step {
    /// Whether applying it to `state` changes nothing and sends nothing.
    pub(super) fn changes_nothing(&self, state: &NodeState) -> bool {
        self.sends.is_empty()
            && self.diffs == 0
            && self.digests.canonical == state.digests.canonical
            && (self.resurrection.is_none() || state.resurrection.is_some())
            && (self.unsound_payload.is_none() || state.unsound_payload.is_some())
    }

    pub(super) fn apply(&self, state: &mut NodeState, o: &mut Out<TrackerActor>) {
        state.node = Arc::clone(&self.node);
        state.digests = self.digests;
        state.renamed = Arc::clone(&self.renamed);
        state.diffs_fingerprint = state.diffs_fingerprint.wrapping_add(self.diffs);
        if let Some(violation) = &self.resurrection {
            state.resurrection.get_or_insert_with(|| violation.clone());
        }
        if let Some(violation) = &self.unsound_payload {
            state.unsound_payload.get_or_insert_with(|| violation.clone());
        }
        for (to, wire) in &self.sends {
            o.broadcast(to, wire);
        }
        state.keep_forgotten_dead();
    }
}

impl TrackerActor {
    /// What taking `stimulus` does to `node` (of digest `canonical`) at
    /// `now_ms`, remembered: it is a function of those alone.
    pub(super) fn step(
        &self,
        me: Id,
        node: &Arc<Node>,
        canonical: u64,
        now_ms: u64,
        stimulus: Stimulus<'_>,
    ) -> StepOutcome {
        let key = (canonical, now_ms, stimulus.key());
        let spread = canonical ^ key.2;
        if let Some(known) = self.steps.get(&key, spread) {
            return known.map_or(StepOutcome::Rejected, StepOutcome::Remembered);
        }
        let mut next = Node::clone(node);
        let input = stimulus.input();
        let asker = asker_of(node, &input);
        let Ok(outputs) = next.handle(input, now_ms) else {
            self.steps.insert(key, spread, None);
            return StepOutcome::Rejected;
        };
        if next.replica() != node.replica() {
            return StepOutcome::Reincarnated(Box::new(next), outputs);
        }
        let local = match stimulus {
            Stimulus::Leave => outputs
                .iter()
                .filter_map(|output| match output {
                    Output::Diff(diff) => Some(diff.clone()),
                    _ => None,
                })
                .collect(),
            Stimulus::Message(_) | Stimulus::Tick => Vec::new(),
        };
        let unsound_payload = outputs
            .iter()
            .find_map(|output| check_output_sanity(node.replica(), output, asker.as_ref()).err())
            .map(|violation| violation.to_string());
        let (diffs, sends) = Self::sort_out(outputs, me, self.peers());
        let step = Arc::new(Step {
            local,
            resurrection: no_resurrection_since(Some(node.state()), next.state()).err(),
            unsound_payload,
            digests: Digests::of(&next),
            renamed: Renamed::default(),
            node: Arc::new(next),
            diffs,
            sends,
        });
        self.steps.insert(key, spread, Some(Arc::clone(&step)));
        StepOutcome::Remembered(step)
    }
}

//! What happened in a run: a hash of every event (for determinism checks)
//! and, when asked for, the events themselves as JSON lines and a timeline.

use std::hash::{Hash, Hasher};

use rustc_hash::FxHasher;
use serde::Serialize;

/// One thing that happened, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceEvent {
    /// A message arrived.
    Deliver {
        /// Virtual time of arrival.
        t: u64,
        /// When it was sent.
        sent: u64,
        /// Sender node.
        from: usize,
        /// Receiver node.
        to: usize,
        /// Message type.
        msg: &'static str,
    },
    /// A message was lost.
    Drop {
        /// Virtual time.
        t: u64,
        /// Sender node.
        from: usize,
        /// Receiver node.
        to: usize,
        /// Message type.
        msg: &'static str,
        /// Why: loss, cut, overflow, down (receiver not running).
        reason: &'static str,
    },
    /// A client did something.
    Op {
        /// Virtual time.
        t: u64,
        /// Node.
        node: usize,
        /// track, untrack, update or untrack_all.
        action: &'static str,
        /// The connection.
        pid: String,
        /// Topic and key, when the action has them.
        topic: String,
        /// The key.
        key: String,
    },
    /// A node's view changed.
    Diff {
        /// Virtual time.
        t: u64,
        /// Node.
        node: usize,
        /// Tags that joined.
        joins: Vec<String>,
        /// Tags that left.
        leaves: Vec<String>,
    },
    /// A node's belief about a replica changed.
    Replica {
        /// Virtual time.
        t: u64,
        /// Node.
        node: usize,
        /// What changed, e.g. `down n1@1`.
        event: String,
    },
    /// A fault began or ended.
    Fault {
        /// Virtual time.
        t: u64,
        /// What, e.g. `isolate [0]`.
        what: String,
        /// The nodes it concerns.
        nodes: Vec<usize>,
    },
    /// The liveness phase began: everything healed.
    Heal {
        /// Virtual time.
        t: u64,
    },
    /// The run ended.
    End {
        /// Virtual time.
        t: u64,
        /// The verdict, as text.
        verdict: String,
    },
}

impl TraceEvent {
    /// Virtual time of the event.
    pub fn time(&self) -> u64 {
        match self {
            Self::Deliver { t, .. }
            | Self::Drop { t, .. }
            | Self::Op { t, .. }
            | Self::Diff { t, .. }
            | Self::Replica { t, .. }
            | Self::Fault { t, .. }
            | Self::Heal { t }
            | Self::End { t, .. } => *t,
        }
    }
}

/// The running record of a run.
pub struct Trace {
    hasher: FxHasher,
    events: Option<Vec<TraceEvent>>,
    count: u64,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("hash", &self.hash())
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Trace {
    /// A trace that keeps events only when `keep` is set; it always hashes.
    pub fn new(keep: bool) -> Self {
        Self {
            hasher: FxHasher::default(),
            events: keep.then(Vec::new),
            count: 0,
        }
    }

    /// Records an event.
    pub fn record(&mut self, event: TraceEvent) {
        event.hash(&mut self.hasher);
        self.count += 1;
        if let Some(events) = &mut self.events {
            events.push(event);
        }
    }

    /// Records a node's diff. Its tags are hashed as they are and turned
    /// into text only when events are kept, so the hash does not depend on
    /// keeping.
    pub fn record_diff(&mut self, t: u64, node: usize, diff: &presence_core::Diff) {
        (t, node, "diff").hash(&mut self.hasher);
        for (side, presences) in [("joins", &diff.joins), ("leaves", &diff.leaves)] {
            side.hash(&mut self.hasher);
            for presence in presences {
                presence.tag.hash(&mut self.hasher);
            }
        }
        self.count += 1;
        if let Some(events) = &mut self.events {
            events.push(TraceEvent::Diff {
                t,
                node,
                joins: diff.joins.iter().map(|p| p.tag.to_string()).collect(),
                leaves: diff.leaves.iter().map(|p| p.tag.to_string()).collect(),
            });
        }
    }

    /// The hash of every event so far: equal hashes, equal runs.
    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    /// Events recorded so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The kept events (empty unless kept).
    pub fn events(&self) -> &[TraceEvent] {
        self.events.as_deref().unwrap_or(&[])
    }

    /// The kept events as JSON lines.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        for event in self.events() {
            out.push_str(&serde_json::to_string(event).expect("trace events serialize"));
            out.push('\n');
        }
        out
    }
}

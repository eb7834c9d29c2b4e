//! Diffs: the presences that entered and left a view in one operation, and
//! their rendering as Phoenix `presence_state` / `presence_diff` payloads.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::entry::Presence;
use crate::replica::Tag;

/// What one operation changed in a replica's view.
///
/// Exact by construction (invariant I1): `joins` is the view after minus the
/// view before and `leaves` the view before minus the view after; no presence
/// appears twice and none appears in both lists. Each list is ordered by tag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Presences that became visible.
    pub joins: Vec<Presence>,
    /// Presences that stopped being visible.
    pub leaves: Vec<Presence>,
}

impl Diff {
    /// Whether the view did not change.
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }

    /// The XOR of the fingerprints of every tag in the diff: folding it into
    /// a running value tracks [`crate::State::view_fingerprint`] (a join and
    /// a leave of one tag cancel, as they should).
    pub fn fingerprint(&self) -> u64 {
        self.joins
            .iter()
            .chain(&self.leaves)
            .fold(0, |fingerprint, presence| {
                fingerprint ^ presence.tag.fingerprint()
            })
    }

    /// Appends a later diff of a *different* operation's presences. Used to
    /// report compound operations; the caller guarantees exactness.
    pub(crate) fn append(&mut self, mut later: Diff) {
        self.joins.append(&mut later.joins);
        self.leaves.append(&mut later.leaves);
    }

    /// Puts both lists in tag order (the documented order of every diff).
    pub(crate) fn sorted(mut self) -> Self {
        // Most operations already produce tag order; checking is O(n).
        if !self.joins.is_sorted() {
            self.joins.sort_unstable();
        }
        if !self.leaves.is_sorted() {
            self.leaves.sort_unstable();
        }
        self
    }

    /// The diff grouped by topic, then key, then metas, as Phoenix's
    /// `presence_diff` payloads: one per topic that changed.
    pub fn by_topic(&self) -> BTreeMap<Arc<str>, PresenceDiff> {
        let mut topics: BTreeMap<Arc<str>, PresenceDiff> = BTreeMap::new();
        for presence in &self.joins {
            let diff = topics.entry(Arc::clone(&presence.entry.topic)).or_default();
            push_meta(&mut diff.joins, presence);
        }
        for presence in &self.leaves {
            let diff = topics.entry(Arc::clone(&presence.entry.topic)).or_default();
            push_meta(&mut diff.leaves, presence);
        }
        topics
    }
}

/// Metas of one key, as Phoenix sends them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceMetas {
    /// One meta per presence, each carrying `phx_ref`.
    pub metas: Vec<Value>,
}

/// A Phoenix `presence_state` payload: key -> metas.
pub type PresenceState = BTreeMap<String, PresenceMetas>;

/// A Phoenix `presence_diff` payload for one topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceDiff {
    /// Keys with presences that joined.
    pub joins: PresenceState,
    /// Keys with presences that left.
    pub leaves: PresenceState,
}

impl PresenceDiff {
    /// The payload as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a presence diff always serializes")
    }
}

/// Renders presences (of one topic) as a Phoenix `presence_state` payload.
pub fn presence_state<'a>(presences: impl IntoIterator<Item = &'a Presence>) -> PresenceState {
    let mut state = PresenceState::new();
    for presence in presences {
        push_meta(&mut state, presence);
    }
    state
}

fn push_meta(state: &mut PresenceState, presence: &Presence) {
    let metas = match state.get_mut(&*presence.entry.key) {
        Some(metas) => metas,
        None => state.entry(presence.entry.key.to_string()).or_default(),
    };
    metas.metas.push(render_meta(presence));
}

/// One presence's meta as Phoenix clients see it: the meta object with
/// `phx_ref` (and `phx_ref_prev` for an update) added. A meta that is not an
/// object is wrapped as `{"meta": <value>, "phx_ref": ...}` so the client
/// always gets an object it can tag.
pub fn render_meta(presence: &Presence) -> Value {
    let mut object = match &presence.entry.meta {
        Value::Object(fields) => fields.clone(),
        other => {
            let mut wrapped = Map::new();
            wrapped.insert("meta".to_owned(), other.clone());
            wrapped
        }
    };
    object.insert("phx_ref".to_owned(), Value::String(presence.tag.phx_ref()));
    if let Some(previous) = presence.entry.replaces {
        let previous = Tag::new(presence.tag.replica.clone(), previous);
        object.insert("phx_ref_prev".to_owned(), Value::String(previous.phx_ref()));
    }
    Value::Object(object)
}

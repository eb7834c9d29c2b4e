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

    #[cfg(feature = "inspect")]
    /// The fingerprints of the joined tags minus those of the left ones
    /// (wrapping): adding it into a running value tracks
    /// [`crate::State::view_fingerprint`]. A join and a leave of one tag
    /// cancel, as they should, and a join reported as a leave (or a leave
    /// twice) does not.
    pub fn fingerprint(&self) -> u64 {
        let joined = self
            .joins
            .iter()
            .fold(0u64, |sum, presence| sum.wrapping_add(presence.tag.fingerprint()));
        let left = self
            .leaves
            .iter()
            .fold(0u64, |sum, presence| sum.wrapping_add(presence.tag.fingerprint()));
        joined.wrapping_sub(left)
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
    let mut object = match presence.entry.meta.to_value() {
        Value::Object(fields) => fields,
        other => {
            let mut wrapped = Map::new();
            wrapped.insert("meta".to_owned(), other);
            wrapped
        }
    };
    for (name, value) in Added::of(presence).fields() {
        object.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    Value::Object(object)
}

/// Whether `meta` is what [`render_meta`] makes of `presence`, judged
/// without making it: the simulator asks this of every meta of a busy topic
/// after every step, where a rendering would parse each meta's text.
pub fn is_rendering_of(meta: &Value, presence: &Presence) -> bool {
    let Value::Object(fields) = meta else {
        return false;
    };
    let base = &presence.entry.meta;
    // Rare: a meta that is not an object, or whose text may hold a field
    // the rendering replaces (this also matches a string that merely
    // contains the name, which only costs the slow path): compare with the
    // rendering itself.
    if !base.is_object() || base.as_str().contains("\"phx_ref") {
        return *meta == render_meta(presence);
    }
    // The rendering is the base's fields and the added ones, none of the
    // base's named like an added one.
    let mut added = 0;
    for (name, value) in fields {
        match Added::matches(presence, name, value) {
            Some(true) => added += 1,
            Some(false) => return false,
            None => {}
        }
    }
    added == Added::count(presence) && writes_as(&BaseFields { fields, presence }, base.as_str())
}

/// A rendering's fields other than the added ones: what should write as
/// the base meta's text.
struct BaseFields<'a> {
    fields: &'a Map<String, Value>,
    presence: &'a Presence,
}

impl Serialize for BaseFields<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in self.fields {
            if !Added::is_added(self.presence, name) {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

/// Whether `value` writes as exactly `text` in compact JSON, compared as it
/// is written (nothing is allocated; the first difference stops it).
fn writes_as(value: &impl Serialize, text: &str) -> bool {
    struct Compare<'a>(&'a [u8]);
    impl std::io::Write for Compare<'_> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            match self.0.strip_prefix(bytes) {
                Some(rest) => {
                    self.0 = rest;
                    Ok(bytes.len())
                }
                None => Err(std::io::ErrorKind::InvalidData.into()),
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut compare = Compare(text.as_bytes());
    serde_json::to_writer(&mut compare, value).is_ok() && compare.0.is_empty()
}

/// The fields a rendering adds to the meta: `phx_ref`, and `phx_ref_prev`
/// for an update. The one statement of what a client sees beyond the meta.
struct Added {
    phx_ref: String,
    phx_ref_prev: Option<String>,
}

impl Added {
    fn of(presence: &Presence) -> Self {
        Self {
            phx_ref: presence.tag.phx_ref(),
            phx_ref_prev: presence
                .entry
                .replaces
                .map(|previous| Tag::new(presence.tag.replica.clone(), previous).phx_ref()),
        }
    }

    /// Whether the rendering of `presence` adds the field `name`.
    fn is_added(presence: &Presence, name: &str) -> bool {
        match name {
            "phx_ref" => true,
            "phx_ref_prev" => presence.entry.replaces.is_some(),
            _ => false,
        }
    }

    /// How many fields the rendering of `presence` adds.
    fn count(presence: &Presence) -> usize {
        1 + usize::from(presence.entry.replaces.is_some())
    }

    /// For a field the rendering of `presence` adds, whether `value` is
    /// what it adds (without formatting it); `None` for any other field.
    fn matches(presence: &Presence, name: &str, value: &Value) -> Option<bool> {
        let clock = match name {
            "phx_ref" => presence.tag.clock,
            "phx_ref_prev" => presence.entry.replaces?,
            _ => return None,
        };
        Some(
            value
                .as_str()
                .is_some_and(|text| Tag::is_phx_ref_of(text, &presence.tag.replica, clock)),
        )
    }

    /// (name, value) of each added field.
    fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let prev = self.phx_ref_prev.as_deref().map(|value| ("phx_ref_prev", value));
        std::iter::once(("phx_ref", self.phx_ref.as_str())).chain(prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Entry;
    use crate::replica::ReplicaId;
    use serde_json::json;

    fn presence(meta: Value, replaces: Option<u64>) -> Presence {
        let mut entry = Entry::new("t", "alice", "p1", meta).expect("a valid entry");
        entry.replaces = replaces;
        Presence::new(&ReplicaId::new("a", 1), 7, &Arc::new(entry))
    }

    #[test]
    fn a_presence_diff_is_written_as_phoenix_reads_it() {
        let diff = PresenceDiff {
            joins: presence_state([&presence(json!({"s": 1}), None)]),
            leaves: PresenceState::new(),
        };
        let text = diff.to_json();
        assert!(text.starts_with(r#"{"joins":{"alice":{"metas":[{"#), "{text}");
        assert!(text.ends_with(r#"]}},"leaves":{}}"#), "{text}");
        assert_eq!(serde_json::from_str::<PresenceDiff>(&text).ok(), Some(diff));
    }

    #[test]
    fn every_kind_of_meta_is_recognised_in_its_rendering() {
        let presences = [
            presence(json!({}), None),
            presence(json!({"status": "away", "n": [1, {"x": null}]}), None),
            presence(json!({"status": "away"}), Some(3)),
            // Base fields named like the added ones are replaced by them.
            presence(json!({"phx_ref": "mine", "s": 1}), None),
            presence(json!({"phx_ref": "mine", "phx_ref_prev": "old"}), Some(3)),
            // Kept when the presence is not an update.
            presence(json!({"phx_ref_prev": "old"}), None),
            // Not objects: wrapped.
            presence(json!("online"), None),
            presence(json!([1, 2]), Some(2)),
            presence(Value::Null, None),
        ];
        for presence in &presences {
            assert!(
                is_rendering_of(&render_meta(presence), presence),
                "{}",
                render_meta(presence)
            );
        }
    }

    #[test]
    fn anything_else_is_not_a_rendering() {
        let update = presence(json!({"status": "away"}), Some(3));
        let rendered = render_meta(&update);
        let with = |change: &dyn Fn(&mut Map<String, Value>)| {
            let mut object = rendered.as_object().expect("an object").clone();
            change(&mut object);
            Value::Object(object)
        };
        let others = [
            with(&|o| drop(o.insert("extra".into(), json!(1)))),
            with(&|o| drop(o.remove("status"))),
            with(&|o| drop(o.insert("status".into(), json!("here")))),
            with(&|o| drop(o.insert("phx_ref".into(), json!("a@1:8")))),
            with(&|o| drop(o.insert("phx_ref".into(), json!(7)))),
            with(&|o| drop(o.remove("phx_ref"))),
            with(&|o| drop(o.remove("phx_ref_prev"))),
            with(&|o| drop(o.insert("phx_ref_prev".into(), json!("a@1:2")))),
            json!("online"),
            Value::Null,
        ];
        for other in &others {
            assert!(!is_rendering_of(other, &update), "{other}");
        }
        // The same meta without the update's field is another presence's.
        let plain = presence(json!({"status": "away"}), None);
        assert!(!is_rendering_of(&rendered, &plain));
        assert!(!is_rendering_of(&render_meta(&plain), &update));
        let wrapped = presence(json!("online"), None);
        let mut offline = render_meta(&wrapped);
        offline["meta"] = json!("offline");
        assert!(!is_rendering_of(&offline, &wrapped));
    }
}

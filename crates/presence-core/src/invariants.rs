//! The invariants (`docs/invariants.md`) as named functions: the one definition
//! that unit tests, the simulator and the stateright models all call.
//!
//! Each `check_*` returns `Ok(())` or a [`Violation`] naming the invariant and
//! what broke. Ground truth that a single state cannot know (what was really
//! joined, what each replica issued) is kept by a [`History`], which the
//! caller feeds with every local operation's diff.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::delta::Delta;
use crate::diff::{is_rendering_of, presence_state, Diff, PresenceState};
use crate::entry::{Entry, Presence};
use crate::merge::Snapshot;
use crate::mirror::{phx_ref, ClientMirror};
use crate::replica::parse_phx_ref;
use crate::replica::{ReplicaId, Tag};
use crate::state::State;
use crate::state::Status;

/// A replica's view: its visible presences by tag.
pub type View = BTreeMap<Tag, Arc<Entry>>;

/// The view of `state`: every visible presence.
pub fn view(state: &State) -> View {
    state
        .online_list()
        .into_iter()
        .map(|presence| (presence.tag, presence.entry))
        .collect()
}

/// The invariants, by the names `docs/invariants.md` gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// I1: diffs are exact; a mirror fed by them equals the view.
    DiffExactness,
    /// I2: once faults heal, live replicas converge on the ground truth.
    Convergence,
    /// I3: a removal once observed is never undone; retired replicas stay dead.
    NoResurrection,
    /// I4: every visible entry was really joined by its owner, with that meta.
    Provenance,
    /// I5: a replica's own entries are exactly those it joined and not left.
    OwnAuthority,
    /// I6: clocks are sane: never reused, contexts within what was issued,
    /// clouds above and apart from the context.
    CausalSanity,
    /// I7: memory is bounded: nothing names a retired replica, indexes match
    /// the values, clouds stay within their bound.
    BoundedMemory,
    /// I8: merge is commutative, associative and idempotent.
    CrdtLaws,
    /// I10: a silent peer is hidden within the down period and permdowned
    /// within the permdown period (judged at the node's ticks).
    Timeliness,
    /// I11: an extract or transfer names only replicas the receiver may
    /// accept, and only what it lacks.
    PayloadSanity,
}

impl Invariant {
    /// The short id of `docs/invariants.md`, e.g. `I1`.
    pub fn id(self) -> &'static str {
        match self {
            Self::DiffExactness => "I1",
            Self::Convergence => "I2",
            Self::NoResurrection => "I3",
            Self::Provenance => "I4",
            Self::OwnAuthority => "I5",
            Self::CausalSanity => "I6",
            Self::BoundedMemory => "I7",
            Self::CrdtLaws => "I8",
            Self::Timeliness => "I10",
            Self::PayloadSanity => "I11",
        }
    }

    /// The prose name, e.g. `diff exactness`.
    pub fn name(self) -> &'static str {
        match self {
            Self::DiffExactness => "diff exactness",
            Self::Convergence => "convergence",
            Self::NoResurrection => "no resurrection",
            Self::Provenance => "provenance",
            Self::OwnAuthority => "own authority",
            Self::CausalSanity => "causal sanity",
            Self::BoundedMemory => "bounded memory",
            Self::CrdtLaws => "CRDT laws",
            Self::Timeliness => "timeliness",
            Self::PayloadSanity => "payload sanity",
        }
    }
}

/// A broken invariant and what broke it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// What was found, for a person.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} violated: {}",
            self.invariant.id(),
            self.invariant.name(),
            self.detail
        )
    }
}

impl std::error::Error for Violation {}

fn violation(invariant: Invariant, detail: impl Into<String>) -> Result<(), Violation> {
    Err(Violation {
        invariant,
        detail: detail.into(),
    })
}

/// Ground truth about what replicas really did, fed with every local
/// operation: the joins each replica issued (tag -> entry), which of them are
/// still live, and the highest clock each replica issued.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Per replica, clock -> entry: a check looks a replica up once, then
    /// its clocks.
    joined: BTreeMap<ReplicaId, BTreeMap<u64, Arc<Entry>>>,
    live: BTreeSet<Tag>,
    issued: BTreeMap<ReplicaId, u64>,
    dead_replicas: BTreeSet<ReplicaId>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a local operation of `state`'s replica, given its diff and the
    /// state after it. A join under a tag issued before is a reused clock (I6).
    pub fn record_local(&mut self, state: &State, diff: &Diff) -> Result<(), Violation> {
        let replica = state.replica();
        for presence in &diff.joins {
            if presence.tag.replica != *replica {
                return violation(
                    Invariant::OwnAuthority,
                    format!("local operation of {replica} joined foreign tag {}", presence.tag),
                );
            }
            if self.join(&presence.tag, &presence.entry).is_some() {
                return violation(
                    Invariant::CausalSanity,
                    format!("clock reused: tag {} joined twice", presence.tag),
                );
            }
            self.live.insert(presence.tag.clone());
        }
        for presence in &diff.leaves {
            self.live.remove(&presence.tag);
        }
        let context = state.log(replica).map_or(0, |log| log.context());
        let issued = self.issued.entry(replica.clone()).or_insert(0);
        *issued = (*issued).max(context);
        Ok(())
    }

    /// Records that `replica` is gone (crashed, superseded or permdowned for
    /// good): its live entries are dead.
    pub fn record_dead(&mut self, replica: &ReplicaId) {
        self.dead_replicas.insert(replica.clone());
        self.live.retain(|tag| tag.replica != *replica);
    }

    /// Records that `old` re-asserted its presences under `state`'s new
    /// replica (see [`State::reincarnate`]): the old incarnation is dead, and
    /// every entry the new one holds was joined by it just now. Read from the
    /// state rather than a diff, so an empty reincarnation is recorded too.
    pub fn record_reincarnation(&mut self, old: &ReplicaId, state: &State) -> Result<(), Violation> {
        self.record_dead(old);
        let replica = state.replica();
        let Some(log) = state.log(replica) else {
            return Ok(());
        };
        for (&clock, entry) in log.values() {
            let tag = Tag::new(replica.clone(), clock);
            if self.join(&tag, entry).is_some() {
                return violation(
                    Invariant::CausalSanity,
                    format!("clock reused: tag {tag} joined twice"),
                );
            }
            self.live.insert(tag);
        }
        let issued = self.issued.entry(replica.clone()).or_insert(0);
        *issued = (*issued).max(log.context());
        Ok(())
    }

    /// Adds what `other` recorded: for a cluster whose nodes each keep the
    /// history of their own operations. A tag joined in both must name the
    /// same entry, or clocks were reused (I6).
    pub fn absorb(&mut self, other: &History) -> Result<(), Violation> {
        for (tag, entry) in other.joined() {
            if let Some(known) = self.join(&tag, entry) {
                if known != *entry {
                    return violation(
                        Invariant::CausalSanity,
                        format!("clock reused: tag {tag} joined with two entries"),
                    );
                }
            }
        }
        self.dead_replicas.extend(other.dead_replicas.iter().cloned());
        self.live.extend(other.live.iter().cloned());
        let dead = &self.dead_replicas;
        self.live.retain(|tag| !dead.contains(&tag.replica));
        for (replica, &issued) in &other.issued {
            let mine = self.issued.entry(replica.clone()).or_insert(0);
            *mine = (*mine).max(issued);
        }
        Ok(())
    }

    /// Feeds `hasher` everything recorded, every collection in key order,
    /// so two histories that record the same facts hash alike: for model
    /// checkers that remember verdicts judged against a history.
    pub fn hash_canonical<H: std::hash::Hasher>(&self, hasher: &mut H) {
        use std::hash::Hash;
        self.joined
            .values()
            .map(BTreeMap::len)
            .sum::<usize>()
            .hash(hasher);
        for (tag, entry) in self.joined() {
            tag.hash(hasher);
            entry.hash_canonical(hasher);
        }
        (&self.live, &self.issued, &self.dead_replicas).hash(hasher);
    }

    /// Records that `tag` joined `entry`; what it joined before, if it did.
    fn join(&mut self, tag: &Tag, entry: &Arc<Entry>) -> Option<Arc<Entry>> {
        let clocks = match self.joined.get_mut(&tag.replica) {
            Some(clocks) => clocks,
            None => self.joined.entry(tag.replica.clone()).or_default(),
        };
        clocks.insert(tag.clock, Arc::clone(entry))
    }

    /// The entry `tag` joined, if it joined one.
    fn joined_as(&self, tag: &Tag) -> Option<&Arc<Entry>> {
        self.joined.get(&tag.replica)?.get(&tag.clock)
    }

    /// Every tag ever joined, in tag order.
    pub fn joined(&self) -> impl Iterator<Item = (Tag, &Arc<Entry>)> {
        self.joined.iter().flat_map(|(replica, clocks)| {
            clocks
                .iter()
                .map(move |(&clock, entry)| (Tag::new(replica.clone(), clock), entry))
        })
    }

    /// The ground truth of I2: presences joined by live replicas and not left.
    pub fn live_view(&self) -> View {
        self.live
            .iter()
            .map(|tag| {
                (
                    tag.clone(),
                    Arc::clone(self.joined_as(tag).expect("a live tag was joined")),
                )
            })
            .collect()
    }

    /// The highest clock `replica` issued, if it issued any.
    pub fn issued(&self, replica: &ReplicaId) -> Option<u64> {
        self.issued.get(replica).copied()
    }
}

// ----- I1 -------------------------------------------------------------------------

/// I1, step form: `diff` is exactly `after - before` (joins) and
/// `before - after` (leaves), each presence once.
pub fn check_diff_exact(before: &View, diff: &Diff, after: &View) -> Result<(), Violation> {
    let expected_joins: BTreeSet<&Tag> = after.keys().filter(|tag| !before.contains_key(*tag)).collect();
    let expected_leaves: BTreeSet<&Tag> = before.keys().filter(|tag| !after.contains_key(*tag)).collect();
    let joins = distinct_tags(&diff.joins, "join")?;
    let leaves = distinct_tags(&diff.leaves, "leave")?;
    if let Some(tag) = joins.difference(&expected_joins).next() {
        let why = if before.contains_key(*tag) {
            "already visible"
        } else {
            "not visible after"
        };
        return violation(Invariant::DiffExactness, format!("diff joins {tag}, {why}"));
    }
    if let Some(tag) = expected_joins.difference(&joins).next() {
        return violation(
            Invariant::DiffExactness,
            format!("{tag} became visible without a join"),
        );
    }
    if let Some(tag) = leaves.difference(&expected_leaves).next() {
        let why = if before.contains_key(*tag) {
            "still visible"
        } else {
            "not visible before"
        };
        return violation(Invariant::DiffExactness, format!("diff leaves {tag}, {why}"));
    }
    if let Some(tag) = expected_leaves.difference(&leaves).next() {
        return violation(
            Invariant::DiffExactness,
            format!("{tag} stopped being visible without a leave"),
        );
    }
    for presence in &diff.joins {
        if after.get(&presence.tag) != Some(&presence.entry) {
            return violation(
                Invariant::DiffExactness,
                format!("join of {} carries another entry", presence.tag),
            );
        }
    }
    Ok(())
}

fn distinct_tags<'a>(presences: &'a [Presence], what: &str) -> Result<BTreeSet<&'a Tag>, Violation> {
    let mut tags = BTreeSet::new();
    for presence in presences {
        if !tags.insert(&presence.tag) {
            return Err(Violation {
                invariant: Invariant::DiffExactness,
                detail: format!("diff has the {what} of {} twice", presence.tag),
            });
        }
    }
    Ok(tags)
}

/// I1, judged by the client: a mirror that applied every diff of `state`
/// from its initial view holds exactly the presences of its view (metas
/// compared by `phx_ref`, in any order).
pub fn check_mirror_matches(mirror: &ClientMirror, state: &State) -> Result<(), Violation> {
    let mut topics: BTreeSet<String> = mirror.topics().map(str::to_owned).collect();
    topics.extend(
        state
            .online_list()
            .iter()
            .map(|presence| presence.entry.topic.to_string()),
    );
    for topic in &topics {
        check_mirror_matches_topic(mirror, state, topic)?;
    }
    Ok(())
}

/// I1 on one topic: the mirror's presences of `topic` are exactly the
/// visible ones. The simulator compares per presence a diff named
/// ([`check_mirror_matches_tag`]) and every topic at a node's first check
/// or when the fingerprint differs; this one gives the details.
pub fn check_mirror_matches_topic(
    mirror: &ClientMirror,
    state: &State,
    topic: &str,
) -> Result<(), Violation> {
    let presences = state.get_by_topic(topic);
    // Compared in place: the simulator asks after every step, and the
    // mirror of a busy topic is large. The view is rendered only to say
    // what differs.
    if mirrors(mirror.keyed_metas(topic), &presences) {
        return Ok(());
    }
    let expected = normalized(presence_state(&presences));
    let actual = normalized(mirror.topic(topic));
    let keys: BTreeSet<&String> = actual.keys().chain(expected.keys()).collect();
    let key = keys
        .into_iter()
        .find(|key| actual.get(*key) != expected.get(*key))
        .expect("the in-place comparison and the rendering agree that some key differs");
    violation(
        Invariant::DiffExactness,
        format!(
            "mirror of {} differs from its view on topic {topic:?}, key {key:?}: mirror has {} metas, view {}",
            state.replica(),
            actual.get(key).map_or(0, |metas| metas.metas.len()),
            expected.get(key).map_or(0, |metas| metas.metas.len()),
        ),
    )
}

/// I1 on one presence a diff named: wherever the diff put it (`named`'s
/// topic and key) and wherever the view holds its tag, the mirror carries
/// the tag's `phx_ref` exactly once, rendering the view's entry, if the
/// view shows the tag there, and not at all otherwise. A mirror changes
/// only by the refs its diffs name, and an entry never changes under its
/// tag: where the view as a whole is known to match the diffs (its
/// fingerprint, [`check_view_fingerprint`]), comparing the presences the
/// diffs since the last comparison named costs O(log) each, whatever the
/// size of the topic or of a hot key. On a mismatch the violation is the
/// topic's, with details.
pub fn check_mirror_matches_tag(
    mirror: &ClientMirror,
    state: &State,
    named: &Presence,
) -> Result<(), Violation> {
    let tag = &named.tag;
    let shown = state.slot_of.get(&tag.replica).and_then(|&slot| {
        let entry = state.known(slot).log.values().get(&tag.clock)?;
        state
            .is_visible(slot)
            .then(|| Presence::new(&tag.replica, tag.clock, entry))
    });
    let reference = tag.phx_ref();
    let alike_at = |topic: &str, key: &str| {
        // A key the client keeps has metas (phoenix.js drops an empty one).
        if mirror.key_metas(topic, key).is_some_and(|metas| metas.len() == 0) {
            return false;
        }
        let mut metas = mirror.metas_with_ref(topic, key, &reference);
        let expected = shown
            .as_ref()
            .filter(|shown| *shown.entry.topic == *topic && *shown.entry.key == *key);
        match (metas.next(), expected) {
            (None, None) => true,
            (Some(meta), Some(shown)) => metas.next().is_none() && is_rendering_of(meta, shown),
            _ => false,
        }
    };
    let mut alike = alike_at(&named.entry.topic, &named.entry.key);
    if let Some(shown) = &shown {
        alike = alike && alike_at(&shown.entry.topic, &shown.entry.key);
    }
    if alike {
        return Ok(());
    }
    check_mirror_matches_topic(mirror, state, &named.entry.topic)?;
    if let Some(shown) = &shown {
        check_mirror_matches_topic(mirror, state, &shown.entry.topic)?;
    }
    violation(
        Invariant::DiffExactness,
        format!(
            "mirror of {} differs from its view on {tag} (topic {:?}, key {:?})",
            state.replica(),
            named.entry.topic,
            named.entry.key
        ),
    )
}

/// Whether a mirror's presences of one topic (each key with its metas) are
/// the renderings of exactly `presences` (the view's of that topic, ordered
/// by key), metas in any order.
fn mirrors<'a, M>(mirrored: impl Iterator<Item = (&'a str, M)>, presences: &[Presence]) -> bool
where
    M: ExactSizeIterator<Item = &'a Value>,
{
    let mut rest = presences;
    for (key, metas) in mirrored {
        let count = rest
            .iter()
            .take_while(|presence| *presence.entry.key == *key)
            .count();
        if count == 0 || count != metas.len() {
            return false;
        }
        let (of_key, after) = rest.split_at(count);
        rest = after;
        // Both sides in tag order, read from the metas' phx_refs without
        // formatting a tag (most keys have one meta; hot keys have many).
        let mut expected: Vec<&Presence> = of_key.iter().collect();
        expected.sort_unstable_by(|a, b| a.tag.cmp(&b.tag));
        let mut actual = Vec::with_capacity(expected.len());
        for meta in metas {
            let Some(parts) = meta
                .get("phx_ref")
                .and_then(Value::as_str)
                .and_then(parse_phx_ref)
            else {
                return false;
            };
            actual.push((parts, meta));
        }
        actual.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let alike = actual
            .iter()
            .zip(&expected)
            .all(|((_, meta), presence)| is_rendering_of(meta, presence));
        if !alike {
            return false;
        }
    }
    rest.is_empty()
}

/// Metas in `phx_ref` order, so mirrors compare regardless of meta order.
fn normalized(mut state: PresenceState) -> PresenceState {
    for metas in state.values_mut() {
        metas.metas.sort_by(by_ref);
    }
    state
}

/// The order of metas by `phx_ref`, which comparisons of mirrors use.
fn by_ref(a: &Value, b: &Value) -> std::cmp::Ordering {
    phx_ref(a).cmp(&phx_ref(b))
}

/// I1 in O(replicas): `diffs_fingerprint`, the wrapping sum of the
/// fingerprints of every diff `state` emitted since it was created
/// ([`Diff::fingerprint`]), equals the fingerprint of its view. A join or
/// leave missing, extra, doubled or reported as its opposite breaks the
/// equality; this is what lets a large simulation check I1 after every
/// step.
pub fn check_view_fingerprint(diffs_fingerprint: u64, state: &State) -> Result<(), Violation> {
    let view = state.view_fingerprint();
    if view == diffs_fingerprint {
        return Ok(());
    }
    violation(
        Invariant::DiffExactness,
        format!(
            "the view of {} changed other than its diffs said (fingerprints {view:#018x} and {diffs_fingerprint:#018x})",
            state.replica()
        ),
    )
}

// ----- I2 -------------------------------------------------------------------------

/// I2: every given (live, healed, quiescent) replica's view equals `truth`.
pub fn check_convergence<'a>(
    states: impl IntoIterator<Item = &'a State>,
    truth: &View,
) -> Result<(), Violation> {
    for state in states {
        let seen = view(state);
        if seen == *truth {
            continue;
        }
        let missing = truth.keys().find(|tag| !seen.contains_key(*tag));
        let extra = seen.keys().find(|tag| !truth.contains_key(*tag));
        let detail = match (missing, extra) {
            (Some(tag), _) => format!("{} misses {tag}", state.replica()),
            (None, Some(tag)) => format!("{} still shows {tag}", state.replica()),
            (None, None) => format!("{} shows another entry under a true tag", state.replica()),
        };
        return violation(Invariant::Convergence, detail);
    }
    Ok(())
}

/// A complete anti-entropy exchange, the way I2 is judged from any state:
/// every replica believes every other up, then full states go all to all,
/// `rounds` times. A replica that learns it was retired reincarnates, as its
/// node would, and `reincarnated(old, state)` is told (to update a ground
/// truth). Afterwards, [`check_convergence`] says whether they converged.
pub fn exchange_full_states(
    replicas: &mut [State],
    rounds: usize,
    mut reincarnated: impl FnMut(&ReplicaId, &State) -> Result<(), Violation>,
) -> Result<(), Violation> {
    for _round in 0..rounds {
        let ids: Vec<ReplicaId> = replicas.iter().map(|replica| replica.replica().clone()).collect();
        for replica in replicas.iter_mut() {
            for id in &ids {
                replica.replica_up(id);
            }
        }
        for to in 0..replicas.len() {
            for from in (0..replicas.len()).filter(|&from| from != to) {
                // What merging `replicas[from].snapshot()` does, without
                // copying the sender's logs into a snapshot first.
                let (receiver, sender) = if to < from {
                    let (left, right) = replicas.split_at_mut(from);
                    (&mut left[to], &right[0])
                } else {
                    let (left, right) = replicas.split_at_mut(to);
                    (&mut right[0], &left[from])
                };
                receiver.merge(sender);
                if replicas[to].is_retired() {
                    let old = replicas[to].replica().clone();
                    let incarnation = replicas[to].next_incarnation();
                    if let Err(error) = replicas[to].reincarnate(incarnation) {
                        return violation(
                            Invariant::Convergence,
                            format!("{old} cannot reincarnate: {error}"),
                        );
                    }
                    reincarnated(&old, &replicas[to])?;
                }
            }
        }
    }
    Ok(())
}

// ----- I3 -------------------------------------------------------------------------

/// What one state had observed and held when it was last checked for I3.
/// Start with `ResurrectionWatch::default()` for a fresh state; keep one per
/// state and pass it to every [`check_no_resurrection`] of that state.
#[derive(Clone, Debug, Default)]
pub struct ResurrectionWatch {
    /// Per replica the state knew at the last check: what it had observed
    /// and the clocks it held. Kept in place between checks, so a check of
    /// a state that changed little allocates nothing.
    seen: BTreeMap<ReplicaId, Seen>,
    retired: BTreeMap<Arc<str>, u64>,
}

/// What a state had observed and held of one replica.
#[derive(Clone, Debug, Default)]
struct Seen {
    context: u64,
    cloud: BTreeSet<u64>,
    /// Held clocks, ascending.
    held: Vec<u64>,
}

impl ResurrectionWatch {
    /// A watch for a fresh state that also remembers `retired` watermarks
    /// (base -> highest retired incarnation) from before: a checker that
    /// rebuilds its watch at every step (the protocol model) keeps the
    /// watermarks a node has forgotten this way, so that a tag of a
    /// forgotten incarnation held again is still a resurrection.
    pub fn remembering<'a>(retired: impl IntoIterator<Item = (&'a Arc<str>, &'a u64)>) -> Self {
        Self {
            retired: retired
                .into_iter()
                .map(|(base, &watermark)| (Arc::clone(base), watermark))
                .collect(),
            ..Self::default()
        }
    }

    /// The watermarks this watch remembers: every one it was seeded with
    /// or saw, whether or not the state still holds it.
    pub fn remembered(&self) -> &BTreeMap<Arc<str>, u64> {
        &self.retired
    }

    fn retires(&self, replica: &ReplicaId) -> bool {
        self.retired
            .get(replica.base())
            .is_some_and(|&watermark| replica.incarnation() <= watermark)
    }
}

/// I3, checked inductively between two checks of one state: (a) no tag it
/// holds now was already observed (as joined, removed, or retired) at the
/// previous check (or retired at any check), so a removal once observed is
/// never undone and a retired replica never returns, even after its
/// watermark is forgotten; and (b) nothing observed of a replica that is
/// not retired is forgotten (contexts and clouds only grow), without which
/// a removal could be undone later. Costs O(state + bases ever retired),
/// not O(history), and allocates only for what changed.
pub fn check_no_resurrection(watch: &mut ResurrectionWatch, state: &State) -> Result<(), Violation> {
    let who = state.replica();
    // (a) Clocks held now and not at the last check were not observed then.
    for (replica, log, _) in state.replicas() {
        let seen = watch.seen.get(replica);
        let held_before: &[u64] = seen.map_or(&[], |seen| &seen.held);
        let mut before = held_before.iter().peekable();
        for &clock in log.values().keys() {
            while before.next_if(|&&earlier| earlier < clock).is_some() {}
            if before.next_if_eq(&&clock).is_some() {
                continue;
            }
            let observed = watch.retires(replica)
                || seen.is_some_and(|seen| clock <= seen.context || seen.cloud.contains(&clock));
            if observed {
                let tag = Tag::new(replica.clone(), clock);
                return violation(
                    Invariant::NoResurrection,
                    format!("{who} holds {tag} again, though it had already observed it"),
                );
            }
        }
    }
    // (b) Nothing observed of a replica that is not retired is forgotten.
    for (replica, seen) in &watch.seen {
        if state.is_retired_id(replica) {
            continue;
        }
        let Some(log) = state.log(replica) else {
            return violation(
                Invariant::NoResurrection,
                format!("{who} forgot what it observed of {replica}"),
            );
        };
        let forgotten = log.context() < seen.context || seen.cloud.iter().any(|&clock| !log.observed(clock));
        if forgotten {
            return violation(
                Invariant::NoResurrection,
                format!("{who} forgot clocks of {replica} it had observed"),
            );
        }
    }
    // What this check saw is what the next one compares with.
    let mut known = 0;
    for (replica, log, _) in state.replicas() {
        known += 1;
        let seen = match watch.seen.get_mut(replica) {
            Some(seen) => seen,
            None => watch.seen.entry(replica.clone()).or_default(),
        };
        seen.context = log.context();
        if seen.cloud != *log.cloud() {
            seen.cloud.clone_from(log.cloud());
        }
        if !seen.held.iter().eq(log.values().keys()) {
            seen.held.clear();
            seen.held.extend(log.values().keys());
        }
    }
    // Replicas the state no longer knows go (only when there are any).
    if watch.seen.len() > known {
        watch.seen.retain(|replica, _| state.log(replica).is_some());
    }
    // Watermarks are remembered here even after the state forgets one (its
    // node may, once nothing of the base can arrive): a tag of a forgotten
    // incarnation held again is still a resurrection.
    for (base, &watermark) in state.retired() {
        match watch.retired.get_mut(base) {
            Some(remembered) => *remembered = (*remembered).max(watermark),
            None => {
                watch.retired.insert(Arc::clone(base), watermark);
            }
        }
    }
    Ok(())
}

// ----- I4 -------------------------------------------------------------------------

/// I4: every entry `state` holds was joined by its owner with exactly that
/// entry, and none is held alongside the entry that replaced it.
pub fn check_provenance(history: &History, state: &State) -> Result<(), Violation> {
    for (replica, log, _) in state.replicas() {
        let joined = history.joined.get(replica);
        for (&clock, entry) in log.values() {
            match joined.and_then(|clocks| clocks.get(&clock)) {
                None => {
                    return violation(
                        Invariant::Provenance,
                        format!(
                            "{} holds {}, never joined",
                            state.replica(),
                            Tag::new(replica.clone(), clock)
                        ),
                    )
                }
                Some(joined) if !Arc::ptr_eq(joined, entry) && **joined != **entry => {
                    return violation(
                        Invariant::Provenance,
                        format!(
                            "{} holds {} with another entry",
                            state.replica(),
                            Tag::new(replica.clone(), clock)
                        ),
                    )
                }
                Some(_) => {}
            }
            if let Some(previous) = entry.replaces {
                if log.values().contains_key(&previous) {
                    return violation(
                        Invariant::Provenance,
                        format!(
                            "{} holds {} and {replica}:{previous}, which it replaced",
                            state.replica(),
                            Tag::new(replica.clone(), clock)
                        ),
                    );
                }
            }
        }
    }
    Ok(())
}

// ----- I5 -------------------------------------------------------------------------

/// I5: `state`'s own entries are exactly the live joins of its replica.
pub fn check_own_authority(history: &History, state: &State) -> Result<(), Violation> {
    let own = state.replica();
    let mut held = state
        .log(own)
        .into_iter()
        .flat_map(|log| log.values().keys().copied())
        .peekable();
    // Tags order by replica first: the own replica's live tags are one run.
    let mut live = history
        .live
        .range(Tag::new(own.clone(), 0)..)
        .take_while(|tag| tag.replica == *own)
        .map(|tag| tag.clock)
        .peekable();
    // Both ascending: walk them together, noting the first clock in one only.
    let (mut extra, mut lost) = (None, None);
    loop {
        match (held.peek().copied(), live.peek().copied()) {
            (None, None) => break,
            (Some(clock), other) if other.is_none_or(|live| clock < live) => {
                extra = extra.or(Some(clock));
                held.next();
            }
            (held_clock, Some(clock)) if held_clock.is_none_or(|held| clock < held) => {
                lost = lost.or(Some(clock));
                live.next();
            }
            _ => {
                held.next();
                live.next();
            }
        }
        if extra.is_some() {
            break;
        }
    }
    if let Some(clock) = extra {
        return violation(
            Invariant::OwnAuthority,
            format!("{own} holds own clock {clock}, not a live join of its own"),
        );
    }
    if let Some(clock) = lost {
        return violation(
            Invariant::OwnAuthority,
            format!("{own} lost its own live clock {clock}"),
        );
    }
    Ok(())
}

// ----- I6 -------------------------------------------------------------------------

/// I6: every context lies within what its replica issued, every cloud lies
/// strictly above its context and never at `context + 1`, and every held
/// clock is observed.
pub fn check_causal_sanity(history: &History, state: &State) -> Result<(), Violation> {
    let who = state.replica();
    for (replica, log, _) in state.replicas() {
        if let Some(issued) = history.issued(replica) {
            if log.context() > issued {
                return violation(
                    Invariant::CausalSanity,
                    format!(
                        "{who} has context {} for {replica}, which issued only {issued}",
                        log.context()
                    ),
                );
            }
        }
        if let Some(&first) = log.cloud().first() {
            if first <= log.context().saturating_add(1) {
                return violation(
                    Invariant::CausalSanity,
                    format!(
                        "{who} keeps cloud clock {first} of {replica} at or next to context {}",
                        log.context()
                    ),
                );
            }
        }
        if let Some(clock) = log.values().keys().find(|&&clock| !log.observed(clock)) {
            return violation(
                Invariant::CausalSanity,
                format!("{who} holds {replica}:{clock} without observing it"),
            );
        }
    }
    Ok(())
}

/// I6 at quiescence: every cloud is empty.
pub fn check_clouds_empty(state: &State) -> Result<(), Violation> {
    match state.replicas().find(|(_, log, _)| !log.cloud().is_empty()) {
        None => Ok(()),
        Some((replica, log, _)) => violation(
            Invariant::CausalSanity,
            format!(
                "{} keeps a cloud of {} clocks for {replica} at quiescence",
                state.replica(),
                log.cloud().len()
            ),
        ),
    }
}

// ----- I7 -------------------------------------------------------------------------

/// Bounds for I7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBounds {
    /// The most clocks one replica's cloud may hold.
    pub max_cloud: usize,
}

impl Default for MemoryBounds {
    fn default() -> Self {
        Self { max_cloud: 10_000 }
    }
}

/// I7: no structure names a retired replica (its own id excepted, until it
/// reincarnates), the indexes hold exactly the held entries, the counts per
/// topic are those of the view, the replica table has no orphan slot, and
/// every cloud is within its bound.
pub fn check_bounded_memory(state: &State, bounds: MemoryBounds) -> Result<(), Violation> {
    let who = state.replica();
    for (replica, log, _) in state.replicas() {
        if replica != who && state.is_retired_id(replica) {
            return violation(
                Invariant::BoundedMemory,
                format!("{who} still names retired replica {replica}"),
            );
        }
        if log.cloud().len() > bounds.max_cloud {
            return violation(
                Invariant::BoundedMemory,
                format!(
                    "{who} keeps {} cloud clocks for {replica}, over {}",
                    log.cloud().len(),
                    bounds.max_cloud
                ),
            );
        }
    }
    let held: usize = state.replicas().map(|(_, log, _)| log.values().len()).sum();
    if held != state.len() {
        return violation(
            Invariant::BoundedMemory,
            format!("{who} holds {held} entries but counts {}", state.len()),
        );
    }
    state
        .check_structure()
        .or_else(|detail| violation(Invariant::BoundedMemory, detail))?;
    check_census(state)?;
    Ok(())
}

/// The counts a state keeps per topic equal those of its view, counted
/// afresh: presences, and distinct keys. Counted from the visible logs'
/// entries sorted by the hashes of their topic and key: an entry whose
/// hashes equal its neighbour's must have the same names (compared, unless
/// they are one allocation), and if two names ever share a hash the count
/// starts over by the names themselves.
fn check_census(state: &State) -> Result<(), Violation> {
    let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b) || a == b;
    let mut names: Vec<(u64, u64, &Arc<str>, &Arc<str>)> = state
        .replicas()
        .filter(|(_, _, status)| *status == Status::Up)
        .flat_map(|(_, log, _)| log.values().values())
        .map(|entry| (entry.hashes.topic, entry.hashes.key, &entry.topic, &entry.key))
        .collect();
    names.sort_unstable_by_key(|name| (name.0, name.1));
    // Per topic: name, presences, distinct keys.
    let mut counted: Vec<(&str, usize, usize)> = Vec::new();
    let mut collided = false;
    for (index, name) in names.iter().enumerate() {
        let previous = index.checked_sub(1).map(|before| &names[before]);
        let same_topic = previous.is_some_and(|seen| seen.0 == name.0);
        let same_key = same_topic && previous.is_some_and(|seen| seen.1 == name.1);
        if same_topic && !same(previous.expect("same topic").2, name.2)
            || same_key && !same(previous.expect("same key").3, name.3)
        {
            collided = true;
            break;
        }
        if !same_topic {
            counted.push((name.2, 0, 0));
        }
        let last = counted.last_mut().expect("pushed above");
        last.1 += 1;
        if !same_key {
            last.2 += 1;
        }
    }
    if collided {
        // Two names share a hash (or hashes split one name): count by name.
        let mut by_name: BTreeMap<&str, (usize, BTreeSet<&str>)> = BTreeMap::new();
        for name in &names {
            let topic = by_name.entry(name.2).or_default();
            topic.0 += 1;
            topic.1.insert(name.3);
        }
        counted = by_name
            .into_iter()
            .map(|(topic, (presences, keys))| (topic, presences, keys.len()))
            .collect();
    }
    // Judged in topic order, as a reader would look.
    counted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let (kept_topics, kept_total) = state.census_totals();
    if kept_topics != counted.len() || kept_total != names.len() {
        return violation(
            Invariant::BoundedMemory,
            format!(
                "{} counts {} presences on {kept_topics} topics, but its view has {} on {}",
                state.replica(),
                kept_total,
                names.len(),
                counted.len()
            ),
        );
    }
    for &(topic, presences, keys) in &counted {
        let kept = (state.count_presences(topic), state.count_keys(topic));
        if kept != (presences, keys) {
            return violation(
                Invariant::BoundedMemory,
                format!(
                    "{} counts {} presences and {} keys on {topic:?}, but its view has {presences} and {keys}",
                    state.replica(),
                    kept.0,
                    kept.1,
                ),
            );
        }
    }
    Ok(())
}

// ----- I11 ------------------------------------------------------------------------

/// I11 for a full-state transfer: `snapshot`, sent by its replica to
/// `asker` in answer to `asker_clocks` (the clocks of its transfer request,
/// or of the heartbeat a retired sender is answered with), names only
/// replicas the asker may accept and only what it lacks:
///
/// - never the asker itself, and never a replica the snapshot's own
///   watermarks retire;
/// - besides the sender's own log, only replicas the asker's clocks name
///   (a replica it has never heard of would linger as a ghost, bug class
///   B6);
/// - no log the asker already holds whole (its clock covers the context
///   and the log has no cloud): the size of an extract is bounded by the
///   logs the asker lags on, plus the watermarks.
pub fn check_extract_sanity(
    snapshot: &Snapshot,
    asker: &ReplicaId,
    asker_clocks: &BTreeMap<ReplicaId, u64>,
) -> Result<(), Violation> {
    let sender = snapshot.replica();
    for (id, log) in snapshot.logs() {
        let known = asker_clocks.get(id);
        let problem = if id == asker {
            Some("the asker's own log".to_owned())
        } else if snapshot
            .retired()
            .get(id.base())
            .is_some_and(|&mark| id.incarnation() <= mark)
        {
            Some("a log its own watermarks retire".to_owned())
        } else if id != sender && known.is_none() {
            Some("a replica the asker never named".to_owned())
        } else if known.is_some_and(|&clock| clock >= log.context()) && log.cloud().is_empty() {
            Some(format!(
                "a log the asker holds whole (its clock {})",
                known.copied().unwrap_or(0)
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return violation(
                Invariant::PayloadSanity,
                format!("{sender} sent {asker} {problem}: {id}"),
            );
        }
    }
    Ok(())
}

/// I11 for a delta transfer or heartbeat: a delta from `sender` carries
/// only `sender`'s own changes, and one sent to answer `asker_clock` (the
/// asker's clock for `sender`) connects to it.
pub fn check_delta_sanity(
    delta: &Delta,
    sender: &ReplicaId,
    asker_clock: Option<u64>,
) -> Result<(), Violation> {
    if delta.replica() != sender {
        return violation(
            Invariant::PayloadSanity,
            format!("{sender} sent a delta of {}", delta.replica()),
        );
    }
    let (from, _) = delta.range();
    if let Some(clock) = asker_clock.filter(|&clock| from > clock) {
        return violation(
            Invariant::PayloadSanity,
            format!("{sender} answered clock {clock} with a delta from {from}, which does not connect"),
        );
    }
    Ok(())
}

// ----- the safety chain ------------------------------------------------------------

/// What the per-replica safety invariants judge a replica state against.
/// Every harness (the simulator and both models) fills one in and calls
/// [`check_safety`] or, to name each invariant as a property of its own,
/// [`check_safety_of`]: the chain is written once, here.
pub struct SafetyInputs<'a> {
    /// The sum of the fingerprints of every diff the replica emitted (I1).
    pub diffs_fingerprint: u64,
    /// The replica's resurrection watch (I3), when the harness checks I3
    /// here; a model that judges I3 per step (see
    /// [`check_no_resurrection`]) passes `None`.
    pub watch: Option<&'a mut ResurrectionWatch>,
    /// Ground truth for provenance (I4) and causal sanity (I6).
    pub history: &'a History,
    /// Ground truth for own authority (I5): the local operations of the
    /// replica's node. Usually the same as `history`.
    pub own_history: &'a History,
    /// Memory bounds (I7), or `None` where the harness does not judge I7.
    pub memory: Option<MemoryBounds>,
}

/// The per-replica safety invariants in the order [`check_safety`] judges
/// them.
pub const SAFETY_CHAIN: [Invariant; 6] = [
    Invariant::DiffExactness,
    Invariant::NoResurrection,
    Invariant::Provenance,
    Invariant::OwnAuthority,
    Invariant::CausalSanity,
    Invariant::BoundedMemory,
];

/// One invariant of [`SAFETY_CHAIN`] for one replica state. An invariant
/// the inputs leave out (I3 without a watch, I7 without bounds) holds
/// vacuously; any other invariant is not a per-replica safety check and is
/// a caller's mistake, reported as its violation.
pub fn check_safety_of(
    invariant: Invariant,
    state: &State,
    inputs: &mut SafetyInputs<'_>,
) -> Result<(), Violation> {
    match invariant {
        Invariant::DiffExactness => check_view_fingerprint(inputs.diffs_fingerprint, state),
        Invariant::NoResurrection => match inputs.watch.as_deref_mut() {
            Some(watch) => check_no_resurrection(watch, state),
            None => Ok(()),
        },
        Invariant::Provenance => check_provenance(inputs.history, state),
        Invariant::OwnAuthority => check_own_authority(inputs.own_history, state),
        Invariant::CausalSanity => check_causal_sanity(inputs.history, state),
        Invariant::BoundedMemory => match inputs.memory {
            Some(bounds) => check_bounded_memory(state, bounds),
            None => Ok(()),
        },
        Invariant::Convergence | Invariant::CrdtLaws | Invariant::Timeliness | Invariant::PayloadSanity => {
            violation(
                invariant,
                format!("{} is not a per-replica safety invariant", invariant.id()),
            )
        }
    }
}

/// Every invariant of [`SAFETY_CHAIN`] for one replica state, in order;
/// the first violation.
pub fn check_safety(state: &State, inputs: &mut SafetyInputs<'_>) -> Result<(), Violation> {
    SAFETY_CHAIN
        .iter()
        .try_for_each(|&invariant| check_safety_of(invariant, state, inputs))
}

// ----- I8 -------------------------------------------------------------------------

/// What a state knows of one replica, comparable across states: context,
/// cloud and values.
pub type LogData = (u64, BTreeSet<u64>, BTreeMap<u64, Arc<Entry>>);

/// The replicated data of a state, comparable across replicas: retirement
/// watermarks and, per replica not retired, its context, cloud and values.
/// Local liveness and the state's own name are not part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicatedData {
    /// base -> highest retired incarnation.
    pub retired: BTreeMap<Arc<str>, u64>,
    /// replica -> (context, cloud, values).
    pub logs: BTreeMap<ReplicaId, LogData>,
}

/// The replicated data of `state`. A state's own log under a retired id is
/// left out: every peer already discards it.
pub fn replicated_data(state: &State) -> ReplicatedData {
    ReplicatedData {
        retired: state.retired().clone(),
        logs: state
            .replicas()
            .filter(|(replica, _, _)| !state.is_retired_id(replica))
            .filter(|(_, log, _)| log.context() > 0 || !log.cloud().is_empty())
            .map(|(replica, log, _)| {
                (
                    replica.clone(),
                    (log.context(), log.cloud().clone(), log.values().clone()),
                )
            })
            .collect(),
    }
}

fn merged(into: &State, from: &State) -> State {
    let mut result = into.clone();
    result.merge(from);
    result
}

/// I8: `a ⊔ b` and `b ⊔ a` hold the same replicated data.
pub fn check_merge_commutative(a: &State, b: &State) -> Result<(), Violation> {
    if replicated_data(&merged(a, b)) != replicated_data(&merged(b, a)) {
        return violation(
            Invariant::CrdtLaws,
            format!("merge of {} and {} is not commutative", a.replica(), b.replica()),
        );
    }
    Ok(())
}

/// I8: `(a ⊔ b) ⊔ c` and `a ⊔ (b ⊔ c)` hold the same replicated data.
pub fn check_merge_associative(a: &State, b: &State, c: &State) -> Result<(), Violation> {
    let left = merged(&merged(a, b), c);
    let right = merged(a, &merged(b, c));
    if replicated_data(&left) != replicated_data(&right) {
        return violation(
            Invariant::CrdtLaws,
            format!(
                "merge of {}, {} and {} is not associative",
                a.replica(),
                b.replica(),
                c.replica()
            ),
        );
    }
    Ok(())
}

/// I8: `a ⊔ a` equals `a`, view and replicated data, with an empty diff.
pub fn check_merge_idempotent(a: &State) -> Result<(), Violation> {
    let mut twice = a.clone();
    let diff = twice.merge(a);
    if !diff.is_empty() || replicated_data(&twice) != replicated_data(a) || view(&twice) != view(a) {
        return violation(
            Invariant::CrdtLaws,
            format!("merge of {} with itself changed it", a.replica()),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absorbed_histories_join_their_truth_and_refuse_a_reused_clock() {
        let mut a = State::new(ReplicaId::new("a", 1));
        let mut b = State::new(ReplicaId::new("b", 1));
        let (mut history_a, mut history_b) = (History::new(), History::new());
        let diff = a.join("p1", "t", "alice", json!({})).unwrap();
        history_a.record_local(&a, &diff).unwrap();
        let diff = b.join("p2", "t", "bob", json!({})).unwrap();
        history_b.record_local(&b, &diff).unwrap();
        history_b.record_dead(a.replica());

        let mut cluster = History::new();
        cluster.absorb(&history_a).unwrap();
        cluster.absorb(&history_b).unwrap();
        assert_eq!(cluster.joined().count(), 2);
        assert_eq!(cluster.issued(a.replica()), Some(1));
        // b's record that a died hides a's join from the live truth.
        let live: Vec<Tag> = cluster.live_view().into_keys().collect();
        assert_eq!(live, [Tag::new(b.replica().clone(), 1)]);

        // Another history claiming a's clock 1 for another entry.
        let mut impostor = State::new(ReplicaId::new("a", 1));
        let diff = impostor.join("p9", "t", "mallory", json!({})).unwrap();
        let mut history_c = History::new();
        history_c.record_local(&impostor, &diff).unwrap();
        let refused = cluster.absorb(&history_c).unwrap_err();
        assert_eq!(refused.invariant, Invariant::CausalSanity);
    }

    #[test]
    fn a_mirror_matches_its_view_in_any_meta_order_and_nothing_else() {
        let mut state = State::new(ReplicaId::new("a", 1));
        let mut mirror = ClientMirror::new();
        for (pid, key) in [("p1", "alice"), ("p2", "alice"), ("p3", "bob")] {
            let diff = state.join(pid, "t", key, json!({"n": pid})).unwrap();
            mirror.apply(&diff);
        }
        check_mirror_matches(&mirror, &state).expect("fed every diff");

        // The same metas in another order still match.
        let mut reordered = mirror.topic("t");
        reordered.get_mut("alice").unwrap().metas.reverse();
        let mut other = ClientMirror::new();
        other.sync_state("t", &reordered);
        check_mirror_matches_topic(&other, &state, "t").expect("meta order does not matter");

        // A meta missing, a meta changed, a key extra, a key with no metas,
        // a topic missing.
        let mut missing = mirror.topic("t");
        missing.get_mut("alice").unwrap().metas.pop();
        let mut changed = mirror.topic("t");
        changed.get_mut("bob").unwrap().metas[0]["n"] = json!("p9");
        let mut extra = mirror.topic("t");
        let carol = extra["bob"].clone();
        extra.insert("carol".into(), carol);
        let mut empty_key = mirror.topic("t");
        empty_key.insert("carol".into(), Default::default());
        // Per presence a diff named, only where the mirror differs.
        let bob = state.get_by_key("t", "bob").remove(0);
        let carol = Presence {
            tag: bob.tag.clone(),
            entry: Arc::new(Entry::new("t", "carol", "p3", json!({"n": "p3"})).unwrap()),
        };
        let alice = state.get_by_key("t", "alice");
        let popped = {
            let metas = &missing["alice"].metas;
            alice
                .iter()
                .find(|presence| !metas.iter().any(|meta| is_rendering_of(meta, presence)))
                .expect("one alice meta popped")
                .clone()
        };
        let cases = [
            (missing, &popped),
            (changed, &bob),
            (extra, &carol),
            (empty_key, &carol),
            (PresenceState::new(), &alice[0]),
        ];
        for (wrong, differs) in cases {
            let mut other = ClientMirror::new();
            other.sync_state("t", &wrong);
            let refused = check_mirror_matches_topic(&other, &state, "t").unwrap_err();
            assert_eq!(refused.invariant, Invariant::DiffExactness);
            let judged = check_mirror_matches_tag(&other, &state, differs);
            assert_eq!(judged.unwrap_err().invariant, Invariant::DiffExactness);
        }
        for presence in state.online_list() {
            check_mirror_matches_tag(&mirror, &state, &presence).expect("fed every diff");
        }
    }

    fn digest(history: &History) -> u64 {
        use std::hash::Hasher;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        history.hash_canonical(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn a_history_hashes_by_what_it_records_not_in_what_order() {
        let mut a = State::new(ReplicaId::new("a", 1));
        let mut b = State::new(ReplicaId::new("b", 1));
        let join_a = a.join("p1", "t", "alice", json!({"x": 1})).unwrap();
        let join_b = b.join("p2", "t", "bob", json!({})).unwrap();
        let (mut first, mut second) = (History::new(), History::new());
        first.record_local(&a, &join_a).unwrap();
        first.record_local(&b, &join_b).unwrap();
        second.record_local(&b, &join_b).unwrap();
        second.record_local(&a, &join_a).unwrap();
        assert_eq!(digest(&first), digest(&second));

        // A death, a leave and another meta each change the truth, and the
        // digest with it.
        let mut dead = first.clone();
        dead.record_dead(a.replica());
        let mut left = first.clone();
        let leave = a.leave("p1", "t", "alice");
        left.record_local(&a, &leave).unwrap();
        let mut other_meta = History::new();
        let mut a2 = State::new(ReplicaId::new("a", 1));
        let join_a2 = a2.join("p1", "t", "alice", json!({"x": 2})).unwrap();
        other_meta.record_local(&a2, &join_a2).unwrap();
        other_meta.record_local(&b, &join_b).unwrap();
        let digests = [digest(&first), digest(&dead), digest(&left), digest(&other_meta)];
        for (i, x) in digests.iter().enumerate() {
            for y in &digests[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }

    #[test]
    fn wrong_counts_and_a_stale_own_index_are_caught() {
        use crate::entry::Entry;
        let mut state = State::new(ReplicaId::new("a", 1));
        state.join("p1", "t", "alice", serde_json::json!({})).unwrap();
        state.join("p2", "t", "alice", serde_json::json!({})).unwrap();
        assert_eq!(check_bounded_memory(&state, MemoryBounds::default()), Ok(()));

        let mut extra = state.clone();
        extra.census.count(
            &Entry::new("t", "bob", "p3", serde_json::json!({})).unwrap(),
            crate::census::Change::Add,
        );
        let caught = check_bounded_memory(&extra, MemoryBounds::default()).unwrap_err();
        assert!(caught.detail.contains("counts 3 presences"), "{}", caught.detail);

        let mut lost = state.clone();
        lost.census.count(
            &Entry::new("t", "alice", "p9", serde_json::json!({})).unwrap(),
            crate::census::Change::Remove,
        );
        assert!(check_bounded_memory(&lost, MemoryBounds::default()).is_err());

        let mut stale = state.clone();
        let entry = Entry::new("t", "alice", "p1", serde_json::json!({})).unwrap();
        stale.own_index.remove(1, &entry);
        let caught = check_bounded_memory(&stale, MemoryBounds::default()).unwrap_err();
        assert!(caught.detail.contains("own index"), "{}", caught.detail);
    }

    #[test]
    fn own_authority_names_a_clock_held_unjoined_before_one_lost() {
        let mut state = State::new(ReplicaId::new("a", 1));
        let mut truth = History::new();
        for pid in ["p1", "p2", "p3"] {
            let join = state.join(pid, "t", "alice", serde_json::json!({})).unwrap();
            truth.record_local(&state, &join).unwrap();
        }
        assert_eq!(check_own_authority(&truth, &state), Ok(()));
        // Another replica's live joins are not this one's.
        let mut other = State::new(ReplicaId::new("b", 1));
        let join = other.join("p1", "t", "bob", serde_json::json!({})).unwrap();
        truth.record_local(&other, &join).unwrap();
        assert_eq!(check_own_authority(&truth, &state), Ok(()));

        // Clock 2 left in the truth but still held; clock 1 held by truth
        // only (it left here): the held one is named, though it is later.
        let mut lagging = truth.clone();
        lagging.live.remove(&Tag::new(state.replica().clone(), 2));
        let caught = check_own_authority(&lagging, &state).unwrap_err();
        assert!(caught.detail.contains("holds own clock 2"), "{}", caught.detail);
        let mut left = state.clone();
        left.leave("p1", "t", "alice");
        let caught = check_own_authority(&truth, &left).unwrap_err();
        assert!(
            caught.detail.contains("lost its own live clock 1"),
            "{}",
            caught.detail
        );
        let caught = check_own_authority(&lagging, &left).unwrap_err();
        assert!(caught.detail.contains("holds own clock 2"), "{}", caught.detail);
    }

    #[test]
    fn the_safety_chain_names_the_first_invariant_that_breaks() {
        let mut state = State::new(ReplicaId::new("a", 1));
        let join = state.join("p1", "t", "alice", serde_json::json!({})).unwrap();
        let mut truth = History::new();
        truth.record_local(&state, &join).unwrap();
        let mut watch = ResurrectionWatch::default();
        let mut inputs = SafetyInputs {
            diffs_fingerprint: join.fingerprint(),
            watch: Some(&mut watch),
            history: &truth,
            own_history: &truth,
            memory: Some(MemoryBounds::default()),
        };
        assert_eq!(check_safety(&state, &mut inputs), Ok(()));

        // A diff the client never saw breaks I1 first.
        inputs.diffs_fingerprint = 0;
        let caught = check_safety(&state, &mut inputs).unwrap_err();
        assert_eq!(caught.invariant, Invariant::DiffExactness);

        // A join the ground truth never recorded breaks provenance.
        inputs.diffs_fingerprint = join.fingerprint();
        let empty = History::new();
        inputs.history = &empty;
        let caught = check_safety(&state, &mut inputs).unwrap_err();
        assert_eq!(caught.invariant, Invariant::Provenance);
        assert!(check_safety_of(Invariant::OwnAuthority, &state, &mut inputs).is_ok());
        inputs.own_history = &empty;
        let caught = check_safety_of(Invariant::OwnAuthority, &state, &mut inputs).unwrap_err();
        assert_eq!(caught.invariant, Invariant::OwnAuthority);

        // Only per-replica safety invariants belong to the chain.
        let caught = check_safety_of(Invariant::Convergence, &state, &mut inputs).unwrap_err();
        assert!(caught.detail.contains("not a per-replica"), "{}", caught.detail);
    }

    #[test]
    fn a_join_reported_as_a_leave_breaks_the_fingerprint() {
        let mut state = State::new(ReplicaId::new("a", 1));
        let join = state.join("p1", "t", "alice", serde_json::json!({})).unwrap();
        assert_eq!(check_view_fingerprint(join.fingerprint(), &state), Ok(()));
        let swapped = Diff {
            joins: join.leaves.clone(),
            leaves: join.joins.clone(),
        };
        // An XOR of tags could not tell these apart; the signed sum can.
        let caught = check_view_fingerprint(swapped.fingerprint(), &state).unwrap_err();
        assert_eq!(caught.invariant, Invariant::DiffExactness);
        let twice = join.fingerprint().wrapping_add(join.fingerprint());
        assert!(check_view_fingerprint(twice, &state).is_err());
    }

    #[test]
    fn payload_sanity_catches_ghosts_and_what_the_asker_holds() {
        let mut a = State::new(ReplicaId::new("a", 1));
        let mut c = State::new(ReplicaId::new("c", 1));
        a.join("p1", "t", "alice", serde_json::json!({})).unwrap();
        c.join("p3", "t", "carol", serde_json::json!({})).unwrap();
        a.merge_snapshot(&c.snapshot());
        let asker = ReplicaId::new("b", 1);
        let knows_c: BTreeMap<ReplicaId, u64> = [(c.replica().clone(), 0)].into();
        // What extract sends passes.
        assert_eq!(
            check_extract_sanity(&a.extract(&asker, &knows_c), &asker, &knows_c),
            Ok(())
        );
        let knows_nothing = BTreeMap::new();
        assert_eq!(
            check_extract_sanity(&a.extract(&asker, &knows_nothing), &asker, &knows_nothing),
            Ok(())
        );
        // The whole state names c, which this asker never named: a ghost.
        let caught = check_extract_sanity(&a.snapshot(), &asker, &knows_nothing).unwrap_err();
        assert_eq!(caught.invariant, Invariant::PayloadSanity);
        assert!(caught.detail.contains("never named"), "{}", caught.detail);
        // An asker that holds c whole is not sent c again.
        let holds_c: BTreeMap<ReplicaId, u64> = [(c.replica().clone(), 1)].into();
        let caught = check_extract_sanity(&a.snapshot(), &asker, &holds_c).unwrap_err();
        assert!(caught.detail.contains("holds whole"), "{}", caught.detail);

        // A delta names its sender, and one that answers a clock connects.
        let delta = a.take_delta();
        assert_eq!(check_delta_sanity(&delta, a.replica(), Some(0)), Ok(()));
        assert!(check_delta_sanity(&delta, c.replica(), None).is_err());
        a.join("p2", "t", "alice", serde_json::json!({})).unwrap();
        let later = a.take_delta();
        assert!(check_delta_sanity(&later, a.replica(), Some(0)).is_err());
    }
}

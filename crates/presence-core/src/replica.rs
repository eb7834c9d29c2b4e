//! Replica identities and tags: who issued a join, and which join it was.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

/// The identity of one replica: a node's base name plus its incarnation.
///
/// A node that restarts comes back as a *new replica* of the same base with a
/// greater incarnation. Everything the old incarnation issued is then dead: a
/// state never revives it, neither as a foreign entry nor as its own.
///
/// Incarnations of one base must increase with every start (a counter kept on
/// disk, or the start time in microseconds). The state relies on that order: it
/// remembers, per base, the highest incarnation it has retired, and rejects
/// anything at or below it.
///
/// The text form is `base@incarnation` (for example `node-a@3`); a bare `base`
/// with no `@` reads as incarnation 0, so payloads of the seed format decode.
#[derive(Clone)]
pub struct ReplicaId {
    base: Arc<str>,
    incarnation: u64,
}

/// The longest base name a replica may have, in bytes.
pub const MAX_BASE_LEN: usize = 255;

impl ReplicaId {
    /// A replica of `base` at `incarnation`.
    ///
    /// # Panics
    /// Panics if `base` is empty, longer than [`MAX_BASE_LEN`] bytes or contains
    /// `@`. Use [`ReplicaId::parse`] for untrusted text.
    pub fn new(base: &str, incarnation: u64) -> Self {
        match Self::checked(base, incarnation) {
            Ok(id) => id,
            Err(problem) => panic!("invalid replica base {base:?}: {problem}"),
        }
    }

    /// A replica of `base` at `incarnation`, or why the base is not allowed.
    pub fn checked(base: &str, incarnation: u64) -> Result<Self, &'static str> {
        if base.is_empty() {
            return Err("empty base name");
        }
        if base.len() > MAX_BASE_LEN {
            return Err("base name longer than 255 bytes");
        }
        if base.contains('@') {
            return Err("base name contains '@'");
        }
        Ok(Self {
            base: Arc::from(base),
            incarnation,
        })
    }

    /// Reads the text form `base@incarnation` (or a bare `base`, incarnation 0).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        match text.rsplit_once('@') {
            None => Self::checked(text, 0),
            Some((base, incarnation)) => {
                if incarnation.is_empty() || !incarnation.bytes().all(|b| b.is_ascii_digit()) {
                    return Err("incarnation after '@' is not a decimal number");
                }
                let incarnation: u64 = incarnation
                    .parse()
                    .map_err(|_| "incarnation does not fit in 64 bits")?;
                Self::checked(base, incarnation)
            }
        }
    }

    /// The node's base name, shared by all its incarnations.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The shared base name, cheap to clone.
    pub(crate) fn base_arc(&self) -> &Arc<str> {
        &self.base
    }

    /// Which start of the node this is.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The same base at another incarnation.
    pub fn with_incarnation(&self, incarnation: u64) -> Self {
        Self {
            base: Arc::clone(&self.base),
            incarnation,
        }
    }
}

// Ids of one replica usually share their base `Arc`, so equality and order
// check the pointer before comparing text: diffs compare thousands of tags.
impl PartialEq for ReplicaId {
    fn eq(&self, other: &Self) -> bool {
        self.incarnation == other.incarnation
            && (Arc::ptr_eq(&self.base, &other.base) || self.base == other.base)
    }
}

impl Eq for ReplicaId {}

impl std::hash::Hash for ReplicaId {
    /// Hashes the base text and incarnation, consistent with `Eq`.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.base.hash(state);
        self.incarnation.hash(state);
    }
}

impl PartialOrd for ReplicaId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ReplicaId {
    /// Base name first, then incarnation.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let base = if Arc::ptr_eq(&self.base, &other.base) {
            std::cmp::Ordering::Equal
        } else {
            self.base.cmp(&other.base)
        };
        base.then(self.incarnation.cmp(&other.incarnation))
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.base, self.incarnation)
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl ReplicaId {
    /// A hash of the id that is the same on every machine and in every run.
    pub(crate) fn stable_hash(&self) -> u64 {
        FxBuildHasher.hash_one((&*self.base, self.incarnation))
    }
}

/// The fingerprint of tag `(replica, clock)` given the replica's stable hash:
/// a well-mixed 64-bit value, so sums of fingerprints identify sets of tags.
pub(crate) fn tag_fingerprint(replica_hash: u64, clock: u64) -> u64 {
    // splitmix64's finaliser over the replica hash and the clock.
    let mut mixed = replica_hash ^ clock.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^ (mixed >> 31)
}

/// The unique id of one join (a *dot*): the replica that issued it and the
/// clock it took. Tags are never reused.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    /// The replica that issued the join and owns the entry.
    pub replica: ReplicaId,
    /// The replica's clock at the join, starting at 1.
    pub clock: u64,
}

impl Tag {
    /// The tag `(replica, clock)`.
    pub fn new(replica: ReplicaId, clock: u64) -> Self {
        Self { replica, clock }
    }

    #[cfg(feature = "inspect")]
    /// A 64-bit fingerprint of the tag. The sum of the fingerprints of a set
    /// of tags identifies the set (with overwhelming probability): see
    /// [`crate::State::view_fingerprint`] and [`crate::Diff::fingerprint`].
    pub fn fingerprint(&self) -> u64 {
        tag_fingerprint(self.replica.stable_hash(), self.clock)
    }

    /// The Phoenix `phx_ref` of this presence version: unique per tag.
    pub fn phx_ref(&self) -> String {
        format!("{}:{}", self.replica, self.clock)
    }

    /// Whether `text` is [`Tag::phx_ref`] of `(replica, clock)`, judged
    /// without making the string: the simulator's mirror check asks this
    /// of every meta after every step, where formatting was a fifth of a
    /// swarm's time.
    pub fn is_phx_ref_of(text: &str, replica: &ReplicaId, clock: u64) -> bool {
        parse_phx_ref(text).is_some_and(|(base, incarnation, parsed)| {
            parsed == clock && incarnation == replica.incarnation && base == replica.base()
        })
    }
}

/// The parts of a `phx_ref`, `base@incarnation:clock`, if `text` is one as
/// [`Tag::phx_ref`] writes it (decimal numbers without sign or leading
/// zeros): `(base, incarnation, clock)`.
pub fn parse_phx_ref(text: &str) -> Option<(&str, u64, u64)> {
    let (replica, clock) = text.rsplit_once(':')?;
    let (base, incarnation) = replica.rsplit_once('@')?;
    Some((base, canonical_decimal(incarnation)?, canonical_decimal(clock)?))
}

/// `text` as a number, if it is the number's only decimal spelling.
pub(crate) fn canonical_decimal(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let canonical =
        !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit) && (bytes.len() == 1 || bytes[0] != b'0');
    if canonical {
        text.parse().ok()
    } else {
        None
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.replica, self.clock)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_phx_ref_is_recognised_only_as_written() {
        let replica = ReplicaId::new("node:a", 30);
        let tag = Tag::new(replica.clone(), 7);
        assert!(Tag::is_phx_ref_of(&tag.phx_ref(), &replica, 7));
        assert_eq!(parse_phx_ref(&tag.phx_ref()), Some(("node:a", 30, 7)));
        for other in [
            "node:a@30:07",
            "node:a@+30:7",
            "node:a@30:",
            "node:a@30:8",
            "node:b@30:7",
            "node:a30:7",
            "",
        ] {
            assert!(!Tag::is_phx_ref_of(other, &replica, 7), "{other}");
        }
        assert!(Tag::is_phx_ref_of("n@0:0", &ReplicaId::new("n", 0), 0));
    }

    #[test]
    fn text_form_round_trips() {
        let id = ReplicaId::new("node-a", 3);
        assert_eq!(id.to_string(), "node-a@3");
        assert_eq!(format!("{id:?}"), "node-a@3", "failures print ids short");
        assert_eq!(ReplicaId::parse("node-a@3"), Ok(id.clone()));
        // A tag reads as its phx_ref: violations name tags this way.
        let tag = Tag::new(id, 7);
        assert_eq!(tag.to_string(), "node-a@3:7");
        assert_eq!(tag.to_string(), tag.phx_ref());
        assert_eq!(format!("{tag:?}"), "node-a@3:7");
    }

    #[test]
    fn tags_of_other_replicas_or_clocks_differ_in_fingerprint() {
        // A sum of fingerprints stands for a set of tags (the simulator's
        // step-by-step check of I1), so two tags must not share one only
        // because they share a clock, or a replica.
        let print = |base: &str, incarnation: u64, clock: u64| {
            tag_fingerprint(ReplicaId::new(base, incarnation).stable_hash(), clock)
        };
        let prints = BTreeSet::from([
            print("a", 1, 1),
            print("b", 1, 1),
            print("a", 2, 1),
            print("a", 1, 2),
        ]);
        assert_eq!(prints.len(), 4, "{prints:x?}");
        assert_eq!(print("a", 1, 1), print("a", 1, 1));
    }

    #[test]
    fn bare_base_is_incarnation_zero() {
        assert_eq!(ReplicaId::parse("node-a"), Ok(ReplicaId::new("node-a", 0)));
    }

    #[test]
    fn bad_text_forms_are_rejected() {
        assert!(ReplicaId::parse("").is_err());
        assert!(ReplicaId::parse("@3").is_err());
        assert!(ReplicaId::parse("a@").is_err());
        assert!(ReplicaId::parse("a@-1").is_err());
        assert!(ReplicaId::parse("a@b@1").is_err());
        assert!(ReplicaId::parse("a@99999999999999999999999").is_err());
        assert!(ReplicaId::parse(&"x".repeat(MAX_BASE_LEN + 1)).is_err());
        // The limit itself is allowed.
        let longest = "x".repeat(MAX_BASE_LEN);
        assert_eq!(ReplicaId::checked(&longest, 1).unwrap().base(), longest);
        assert!(ReplicaId::checked(&format!("{longest}x"), 1).is_err());
    }

    /// Only decimal digits: `u64::from_str` alone would also take `+5`, a
    /// second spelling of `a@5` that a duplicate-key check could miss.
    #[test]
    fn an_incarnation_is_only_decimal_digits() {
        for text in ["a@", "a@+5", "a@ 5", "a@5 ", "a@0x5", "a@-0"] {
            assert_eq!(
                ReplicaId::parse(text),
                Err("incarnation after '@' is not a decimal number"),
                "{text}"
            );
        }
    }

    #[test]
    fn order_is_base_then_incarnation() {
        let a1 = ReplicaId::new("a", 1);
        let a2 = ReplicaId::new("a", 2);
        let b0 = ReplicaId::new("b", 0);
        assert!(a1 < a2);
        assert!(a2 < b0);
    }
}

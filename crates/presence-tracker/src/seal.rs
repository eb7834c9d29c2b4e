//! Authenticated frames between the members of one cluster, in the role of
//! Erlang's distribution cookie: every message travels sealed under the
//! cluster's secret, and a frame is checked before a byte of it is parsed.
//!
//! A frame is `PLS1`, the sender's clock at sending (8 bytes, big-endian),
//! an HMAC-SHA256 tag (32 bytes) over both, and the message's JSON:
//!
//! ```text
//! | "PLS1" | sent_ms: u64 BE | tag: [u8; 32] | message JSON ... |
//! ```
//!
//! [`Sealer::open`] refuses, with a typed [`Refusal`], a frame too short to
//! hold the header, one with another magic, one whose tag does not verify
//! (forged, corrupted, or sealed under another secret), one sent longer ago
//! or further ahead than the replay window allows, one whose message does
//! not decode, and one from a sender whose base is not a member.
//!
//! Replays: a frame replayed within the window is a duplicate, which the
//! protocol takes in its stride (merges are idempotent; an older
//! incarnation's message retires it). The window is what keeps a replay
//! from being older than the protocol tolerates (see
//! `Config::retirement_memory_ms`): it must exceed the members' clock skew
//! plus the network's delay, and be less than half the retirement memory.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use presence_core::sabotage::{self, Sabotage};
use presence_core::DecodeLimits;
use sha2::Sha256;

use crate::marks::{self, Mark};
use crate::message::{Message, MessageError};

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 4] = b"PLS1";
const TAG_BYTES: usize = 32;
/// Bytes before the message: magic, send time, tag.
pub const HEADER_BYTES: usize = MAGIC.len() + 8 + TAG_BYTES;
/// The shortest secret accepted.
pub const MIN_SECRET_BYTES: usize = 16;
/// The longest secret accepted.
pub const MAX_SECRET_BYTES: usize = 1024;

/// The cluster's shared secret. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Why a secret was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretError {
    /// Its length in bytes.
    pub len: usize,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a cluster secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes; this one is {}",
            self.len
        )
    }
}

impl std::error::Error for SecretError {}

impl Secret {
    /// The secret, if it has an acceptable length.
    pub fn new(bytes: Vec<u8>) -> Result<Self, SecretError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(SecretError { len: bytes.len() });
        }
        Ok(Self(bytes))
    }

    /// The secret as a file or an environment variable holds it: the text,
    /// without the line ending an editor adds.
    pub fn from_text(text: &str) -> Result<Self, SecretError> {
        Self::new(text.trim_end_matches(['\r', '\n']).as_bytes().to_vec())
    }
}

/// Why a frame was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Shorter than the header.
    Short {
        /// Its length.
        len: usize,
    },
    /// Not a frame of this protocol (or of this version of it).
    Magic,
    /// The tag does not verify: forged, corrupted, or another secret.
    Mac,
    /// Sent longer ago than the replay window.
    Stale {
        /// The sender's clock at sending.
        sent_ms: u64,
        /// Ours at opening.
        now_ms: u64,
    },
    /// Sent further ahead of our clock than the replay window.
    Future {
        /// The sender's clock at sending.
        sent_ms: u64,
        /// Ours at opening.
        now_ms: u64,
    },
    /// Authentic, but the message does not decode.
    Decode(MessageError),
    /// Authentic and well formed, from a base that is not a member.
    NotMember {
        /// The sender's base.
        base: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short { len } => write!(f, "a frame of {len} bytes is shorter than the header"),
            Self::Magic => write!(f, "not a presence frame"),
            Self::Mac => write!(f, "the tag does not verify"),
            Self::Stale { sent_ms, now_ms } => {
                write!(f, "sent at {sent_ms} ms, too long before {now_ms} ms")
            }
            Self::Future { sent_ms, now_ms } => {
                write!(f, "sent at {sent_ms} ms, too far after {now_ms} ms")
            }
            Self::Decode(error) => write!(f, "{error}"),
            Self::NotMember { base } => write!(f, "{base:?} is not a member"),
        }
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// Its kind, for counting.
    pub fn kind(&self) -> RefusalKind {
        match self {
            Self::Short { .. } => RefusalKind::Short,
            Self::Magic => RefusalKind::Magic,
            Self::Mac => RefusalKind::Mac,
            Self::Stale { .. } => RefusalKind::Stale,
            Self::Future { .. } => RefusalKind::Future,
            Self::Decode(_) => RefusalKind::Decode,
            Self::NotMember { .. } => RefusalKind::NotMember,
        }
    }
}

/// The kinds of [`Refusal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefusalKind {
    /// See [`Refusal::Short`].
    Short,
    /// See [`Refusal::Magic`].
    Magic,
    /// See [`Refusal::Mac`].
    Mac,
    /// See [`Refusal::Stale`].
    Stale,
    /// See [`Refusal::Future`].
    Future,
    /// See [`Refusal::Decode`].
    Decode,
    /// See [`Refusal::NotMember`].
    NotMember,
}

impl RefusalKind {
    /// Every kind, in order.
    pub const ALL: [RefusalKind; 7] = [
        Self::Short,
        Self::Magic,
        Self::Mac,
        Self::Stale,
        Self::Future,
        Self::Decode,
        Self::NotMember,
    ];

    /// Its name, in kebab case, for logs and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Short => "short",
            Self::Magic => "magic",
            Self::Mac => "bad-mac",
            Self::Stale => "stale",
            Self::Future => "future",
            Self::Decode => "decode",
            Self::NotMember => "not-member",
        }
    }
}

/// Frames refused so far, per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals([u64; RefusalKind::ALL.len()]);

impl Refusals {
    /// Counts one refusal.
    pub fn record(&mut self, refusal: &Refusal) {
        self.0[refusal.kind() as usize] += 1;
    }

    /// How many of `kind`.
    pub fn get(&self, kind: RefusalKind) -> u64 {
        self.0[kind as usize]
    }

    /// How many in all.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Seals and opens the frames of one cluster.
#[derive(Clone)]
pub struct Sealer {
    keyed: HmacSha256,
    members: Option<BTreeSet<Arc<str>>>,
    window_ms: u64,
    limits: DecodeLimits,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("members", &self.members)
            .field("window_ms", &self.window_ms)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer under `secret`, accepting frames sent at most `window_ms`
    /// before or after the opener's clock, from any base in `members`
    /// (from any base at all if `None`).
    pub fn new(secret: &Secret, members: Option<BTreeSet<Arc<str>>>, window_ms: u64) -> Self {
        Self {
            keyed: HmacSha256::new_from_slice(&secret.0).expect("HMAC takes a key of any length"),
            members,
            window_ms,
            limits: DecodeLimits::default(),
        }
    }

    /// The same sealer with other decoding limits.
    pub fn with_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The frame of `message`, sent at `now_ms`.
    pub fn seal(&self, message: &Message, now_ms: u64) -> Vec<u8> {
        let body = message.to_json();
        let mut frame = Vec::with_capacity(HEADER_BYTES + body.len());
        frame.extend_from_slice(MAGIC);
        frame.extend_from_slice(&now_ms.to_be_bytes());
        let tag = self.mac(&now_ms.to_be_bytes(), &body).finalize().into_bytes();
        frame.extend_from_slice(&tag);
        frame.extend_from_slice(&body);
        frame
    }

    /// The MAC over what a tag covers: the magic, the send time, the body.
    fn mac(&self, sent: &[u8], body: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(MAGIC);
        mac.update(sent);
        mac.update(body);
        mac
    }

    /// The message a frame carries, opened at `now_ms`; or why it was
    /// dropped. Nothing of the message is parsed before its tag verifies.
    pub fn open(&self, frame: &[u8], now_ms: u64) -> Result<Message, Refusal> {
        let opened = self.open_unmarked(frame, now_ms);
        if opened.is_err() {
            marks::hit(Mark::FrameRefused);
        }
        opened
    }

    fn open_unmarked(&self, frame: &[u8], now_ms: u64) -> Result<Message, Refusal> {
        if frame.len() < HEADER_BYTES {
            return Err(Refusal::Short { len: frame.len() });
        }
        let (magic, rest) = frame.split_at(MAGIC.len());
        let (sent, rest) = rest.split_at(8);
        let (tag, body) = rest.split_at(TAG_BYTES);
        let checked = !sabotage::active(Sabotage::Unauthenticated);
        if magic != MAGIC {
            return Err(Refusal::Magic);
        }
        if checked {
            self.mac(sent, body).verify_slice(tag).map_err(|_| Refusal::Mac)?;
            let sent_ms = u64::from_be_bytes(sent.try_into().expect("eight bytes"));
            if sent_ms.saturating_add(self.window_ms) < now_ms {
                return Err(Refusal::Stale { sent_ms, now_ms });
            }
            if sent_ms > now_ms.saturating_add(self.window_ms) {
                return Err(Refusal::Future { sent_ms, now_ms });
            }
        }
        let message = Message::from_json_with(body, self.limits).map_err(Refusal::Decode)?;
        if let Some(members) = self.members.as_ref().filter(|_| checked) {
            let base = message.from().base();
            if !members.contains(base) {
                return Err(Refusal::NotMember {
                    base: base.to_owned(),
                });
            }
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presence_core::ReplicaId;

    fn secret(text: &str) -> Secret {
        Secret::from_text(text).unwrap()
    }

    fn members(names: &[&str]) -> Option<BTreeSet<Arc<str>>> {
        Some(names.iter().map(|&name| Arc::from(name)).collect())
    }

    fn heartbeat(from: &str) -> Message {
        Message::Heartbeat {
            from: ReplicaId::new(from, 1),
            clocks: Default::default(),
            delta: None,
            uptime_ms: 5,
        }
    }

    fn sealer() -> Sealer {
        Sealer::new(
            &secret("a cluster secret of some length"),
            members(&["a", "b"]),
            10_000,
        )
    }

    #[test]
    fn a_sealed_message_opens_to_itself() {
        let sealer = sealer();
        let frame = sealer.seal(&heartbeat("a"), 1_000);
        assert_eq!(sealer.open(&frame, 1_000), Ok(heartbeat("a")));
        assert_eq!(
            sealer.open(&frame, 11_000),
            Ok(heartbeat("a")),
            "at the window's edge"
        );
        let ahead = sealer.seal(&heartbeat("a"), 11_000);
        assert_eq!(
            sealer.open(&ahead, 1_000),
            Ok(heartbeat("a")),
            "a whole window ahead, at its other edge"
        );
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_refused() {
        let sealer = sealer();
        let frame = sealer.seal(&heartbeat("a"), 1_000);
        for bit in 0..frame.len() * 8 {
            let mut forged = frame.clone();
            forged[bit / 8] ^= 1 << (bit % 8);
            let refusal = sealer.open(&forged, 1_000).expect_err("a flipped bit is refused");
            let expected = if bit / 8 < MAGIC.len() {
                RefusalKind::Magic
            } else {
                RefusalKind::Mac
            };
            assert_eq!(refusal.kind(), expected, "bit {bit}");
        }
        for len in 0..frame.len() {
            assert!(sealer.open(&frame[..len], 1_000).is_err(), "cut at {len}");
        }
        assert_eq!(sealer.open(&frame[..10], 1_000), Err(Refusal::Short { len: 10 }));
        // A whole header is not short, whatever follows it: cut after the
        // header, the tag no longer matches the (now empty) body.
        let short = HEADER_BYTES - 1;
        assert_eq!(
            sealer.open(&frame[..short], 1_000),
            Err(Refusal::Short { len: short })
        );
        assert_eq!(sealer.open(&frame[..HEADER_BYTES], 1_000), Err(Refusal::Mac));
    }

    #[test]
    fn another_secret_a_stranger_and_an_old_or_early_frame_are_refused() {
        let sealer = sealer();
        let other = Sealer::new(&secret("another secret of some length"), None, 10_000);
        assert_eq!(sealer.open(&other.seal(&heartbeat("a"), 0), 0), Err(Refusal::Mac));
        assert_eq!(
            sealer.open(&sealer.seal(&heartbeat("mallory"), 0), 0),
            Err(Refusal::NotMember {
                base: "mallory".into()
            })
        );
        let frame = sealer.seal(&heartbeat("b"), 1_000);
        assert_eq!(
            sealer.open(&frame, 11_001),
            Err(Refusal::Stale {
                sent_ms: 1_000,
                now_ms: 11_001
            })
        );
        let early = sealer.seal(&heartbeat("b"), 20_000);
        assert!(matches!(sealer.open(&early, 9_999), Err(Refusal::Future { .. })));
        // No member list: any base with the secret is taken.
        let open = Sealer::new(&secret("a cluster secret of some length"), None, 10_000);
        assert!(open.open(&sealer.seal(&heartbeat("mallory"), 0), 0).is_ok());
    }

    #[test]
    fn an_authentic_frame_that_does_not_decode_is_a_typed_refusal() {
        let sealer = sealer();
        let mut frame = sealer.seal(&heartbeat("a"), 0);
        frame.truncate(HEADER_BYTES);
        frame.extend_from_slice(b"{\"type\":");
        let sent = 0u64.to_be_bytes();
        let tag = sealer.mac(&sent, &frame[HEADER_BYTES..]).finalize().into_bytes();
        frame[MAGIC.len() + 8..HEADER_BYTES].copy_from_slice(&tag);
        assert!(matches!(sealer.open(&frame, 0), Err(Refusal::Decode(_))));
    }

    #[test]
    fn secrets_have_bounded_lengths_and_never_print() {
        assert_eq!(Secret::new(vec![1; 15]).unwrap_err(), SecretError { len: 15 });
        assert_eq!(
            SecretError { len: 15 }.to_string(),
            "a cluster secret must be 16 to 1024 bytes; this one is 15"
        );
        assert!(Secret::new(vec![1; 1025]).is_err());
        let secret = secret("0123456789abcdef\n");
        assert_eq!(format!("{secret:?}"), "Secret(16 bytes)");
        let shown = format!("{:?}", Sealer::new(&secret, None, 1));
        assert!(!shown.contains("0123"));
        assert_eq!(shown, "Sealer { members: None, window_ms: 1, .. }");
    }

    #[test]
    fn refusals_read_as_what_was_wrong_with_the_frame() {
        let sealer = sealer();
        let texts = [
            sealer.open(b"short", 0),
            sealer.open(&[0; HEADER_BYTES], 0),
            sealer.open(&sealer.seal(&heartbeat("mallory"), 0), 0),
            sealer.open(&sealer.seal(&heartbeat("a"), 0), 20_000),
            sealer.open(&sealer.seal(&heartbeat("a"), 20_000), 0),
        ]
        .map(|opened| opened.expect_err("refused").to_string());
        assert_eq!(
            texts,
            [
                "a frame of 5 bytes is shorter than the header",
                "not a presence frame",
                r#""mallory" is not a member"#,
                "sent at 0 ms, too long before 20000 ms",
                "sent at 20000 ms, too far after 0 ms",
            ]
        );
        let mut forged = sealer.seal(&heartbeat("a"), 0);
        *forged.last_mut().expect("a body") ^= 1;
        assert_eq!(
            sealer.open(&forged, 0).expect_err("refused").to_string(),
            "the tag does not verify"
        );
        let garbage = Refusal::Decode(Message::from_json(b"{").expect_err("not JSON"));
        assert!(garbage.to_string().starts_with("bad message: "), "{garbage}");
    }

    #[test]
    fn refusals_are_counted_by_kind() {
        let mut refusals = Refusals::default();
        refusals.record(&Refusal::Mac);
        refusals.record(&Refusal::Mac);
        refusals.record(&Refusal::Magic);
        assert_eq!(refusals.get(RefusalKind::Mac), 2);
        assert_eq!(refusals.total(), 3);
        let names: BTreeSet<&str> = RefusalKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(names.len(), RefusalKind::ALL.len());
    }
}

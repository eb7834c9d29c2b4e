//! A message in flight in the protocol model: the protocol message and its
//! digests, by which it hashes, compares and orders, shared by every copy.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use presence_tracker::Message;

use crate::symmetry::digester;

/// A message on the wire: the protocol message and its digest (see
/// `Message::hash_canonical`), by which it hashes and orders.
#[derive(Clone)]
pub struct Packet {
    pub(super) body: Arc<Body>,
    pub(super) digest: u64,
}

/// What copies of a message on the wire share: the message, and its
/// digests under each renaming of nodes for [`representative`], worked
/// out on first use (one allocation, so that copying a network costs one
/// count per message).
pub(super) struct Body {
    pub(super) message: Message,
    pub(super) renamed: std::sync::OnceLock<Box<[u64]>>,
}

impl Packet {
    /// The protocol message.
    pub fn message(&self) -> &Message {
        &self.body.message
    }

    pub(super) fn new(message: Message) -> Self {
        let mut hasher = digester();
        message.hash_canonical(&mut hasher);
        Self {
            body: Arc::new(Body {
                message,
                renamed: std::sync::OnceLock::new(),
            }),
            digest: hasher.finish(),
        }
    }
}

/// What a counterexample shows of a message: its kind, sender and enough of
/// its content to tell apart the messages one node sends.
impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn clocks(f: &mut std::fmt::Formatter<'_>, clocks: &presence_tracker::Clocks) -> std::fmt::Result {
            let shown: Vec<String> = clocks.iter().map(|(id, clock)| format!("{id}={clock}")).collect();
            write!(f, " [{}]", shown.join(" "))
        }
        fn delta(f: &mut std::fmt::Formatter<'_>, delta: &presence_core::Delta) -> std::fmt::Result {
            let (from, to) = delta.range();
            write!(
                f,
                " delta {from}..{to} +{} -{}",
                delta.joins().len(),
                delta.leaves().len()
            )
        }
        let message = self.message();
        write!(f, "{} from {}", message.kind(), message.from())?;
        match message {
            Message::Heartbeat {
                clocks: sent,
                delta: carried,
                ..
            } => {
                clocks(f, sent)?;
                carried.as_ref().map_or(Ok(()), |carried| delta(f, carried))
            }
            Message::TransferRequest {
                clocks: sent, full, ..
            } => {
                clocks(f, sent)?;
                if *full {
                    write!(f, " full")?;
                }
                Ok(())
            }
            Message::TransferAck { transfer, .. } => match transfer {
                presence_tracker::Transfer::Delta(carried) => delta(f, carried),
                presence_tracker::Transfer::State(snapshot) => {
                    write!(f, " state of {} replicas", snapshot.logs().len())
                }
            },
            Message::GracefulPermdown { .. } => Ok(()),
        }
    }
}

impl PartialEq for Packet {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest && self.message() == other.message()
    }
}

impl Eq for Packet {}

impl PartialOrd for Packet {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Messages order by their digest, and by their encoding in the unlikely
/// case two different messages share one, so the order is stable.
impl Ord for Packet {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.digest.cmp(&other.digest).then_with(|| {
            if self.message() == other.message() {
                std::cmp::Ordering::Equal
            } else {
                self.message().to_json().cmp(&other.message().to_json())
            }
        })
    }
}

impl Hash for Packet {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        self.digest.hash(hasher);
    }
}

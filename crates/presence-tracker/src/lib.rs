//! The presence replication protocol, in the manner of Phoenix.Tracker's
//! shard, as a sans-IO state machine.
//!
//! A [`Node`] wraps one `presence_core::State`. It reads no clock, draws no
//! randomness and does no I/O: every input comes with the time
//! (`handle(input, now_ms)`), and every effect is an [`Output`] for the
//! caller to carry out. The simulator, the model checker and a real transport
//! all drive this same code.
//!
//! # The protocol
//!
//! - **Heartbeats.** Every `broadcast_period_ms` a node broadcasts its own
//!   changes since the last heartbeat (a delta with its clock range), with
//!   its clocks. With nothing to say it stays quiet, but sends an empty
//!   heartbeat after `max_silent_periods` periods so peers know it is alive.
//! - **Failure detection.** A peer unheard for `down_period_ms` is marked
//!   down (its presences are hidden, as leaves); after `permdown_period_ms`
//!   it is permdowned (its presences discarded, every trace of it dropped).
//!   A heartbeat from a new incarnation of a known base retires the old
//!   incarnation at once. A graceful shutdown permdowns at once.
//! - **Anti-entropy.** A delta that does not connect, a heartbeat whose
//!   sender is ahead of us on its own replica, or (every
//!   `clock_sample_periods` periods) a peer ahead on any replica we know,
//!   triggers a transfer request with our clocks, to peers not dominated by
//!   another peer that is ahead, at most one outstanding per peer. The answer
//!   is the smallest stored delta generation that covers the gap if the
//!   asker lags only on the answering replica, else the state limited to
//!   replicas the asker knows.
//! - **Heal without stale joins.** A down peer heard again is shown only
//!   once we hold everything it had when it spoke; until then its presences
//!   stay hidden, so none that left during the split is joined and left
//!   again.
//! - **Heal after permdown.** A peer that talks although we retired it gets
//!   our state in reply; its watermark tells it it was retired, and it
//!   re-asserts its presences under a new incarnation, announced at once.
//! - **Forgetting departed bases.** A retired base's watermark is kept
//!   `retirement_memory_ms` (one hour by default) and then forgotten, once
//!   no peer is of that base or names one of its retired incarnations, so
//!   a cluster whose node names are never reused (pods) keeps one watermark
//!   per live base plus those of the last hour. It is safe because a
//!   retired incarnation's data reaches a node only from itself or in an
//!   extract the node asked for, which carries only replicas the node names
//!   (and only the watermarks that concern it, so a peer does not teach a
//!   forgotten one again). What is left is the incarnation itself coming
//!   back from a long partition: heartbeats and transfer requests carry
//!   the sender's uptime, and a node that has forgotten refuses a replica
//!   it does not know that started more than half a memory before its
//!   last forgetting, retiring it again and telling it so; it comes back as
//!   a new incarnation. A transfer from a sender that is not a peer gives
//!   only its watermarks. The stated bounds: no message arrives half a
//!   memory after it was sent, and no clock jumps forward by half a memory.
//!
//! # A message sequence
//!
//! ```text
//!   a@1                                   b@1
//!    | track alice                          |
//!    |-- heartbeat {delta (0,1], clocks} -->|  b: a is new -> Up; merge delta -> join alice
//!    |<-- heartbeat {delta (0,1], clocks} --|  a: b is new -> Up; join bob
//!    |        ... a and b are split for down_period_ms ...
//!    |  a: b Down (leave bob)               |  b: a Down (leave alice)
//!    | untrack alice                        |
//!    |        ... the split heals ...
//!    |-- heartbeat {delta (1,2], clocks} -->|  b: delta connects -> alice removed while hidden;
//!    |                                      |     caught up with a -> Up: no join for alice
//! ```
//!
//! The same, as code:
//!
//! ```
//! use presence_tracker::{Config, Input, Message, Node, Output};
//! use presence_core::ReplicaId;
//! use serde_json::json;
//!
//! let config = Config::default();
//! let mut a = Node::new(ReplicaId::new("a", 1), config.clone(), 0).unwrap();
//! let mut b = Node::new(ReplicaId::new("b", 1), config, 0).unwrap();
//! a.handle(Input::Track { pid: "p1".into(), topic: "room:lobby".into(), key: "alice".into(), meta: json!({}) }, 0).unwrap();
//!
//! // a's first tick broadcasts a heartbeat carrying the join.
//! let heartbeat = a.handle(Input::Tick, 0).unwrap().into_iter().find_map(|output| match output {
//!     Output::Broadcast(message @ Message::Heartbeat { .. }) => Some(message),
//!     _ => None,
//! }).unwrap();
//! let outputs = b.handle(Input::Receive(heartbeat), 5).unwrap();
//! assert!(outputs.iter().any(|output| matches!(output, Output::Diff(diff) if diff.joins.len() == 1)));
//! assert_eq!(b.state().count_keys("room:lobby"), 1);
//! ```

pub mod buggify;
#[cfg(feature = "inspect")]
pub mod checks;
pub mod config;
pub mod marks;
pub mod message;
pub mod node;
pub mod seal;

mod generations;
#[cfg(feature = "sabotage")]
pub use presence_core::sabotage;

pub use config::{Config, ConfigError};
pub use message::{Clocks, Message, MessageError, Transfer};
pub use node::{Footprint, Input, Node, NodeError, Output, Peer, PeerStatus, ReplicaEvent};
pub use seal::{Refusal, Sealer, Secret};

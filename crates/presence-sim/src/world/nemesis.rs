//! The forging nemesis: what an attacker on the nodes' network, without the
//! cluster's secret, can do to frames. Every frame it makes is marked
//! forged, so its refusal is expected; the checks judge whatever gets
//! through.

use std::sync::Arc;

use presence_core::{ReplicaId, State};
use presence_tracker::{Message, Sealer, Secret};
use serde_json::json;

use super::World;
use crate::network::{Envelope, Payload};
use crate::trace::TraceEvent;

/// How many of the latest frames the nemesis keeps to replay or corrupt.
const REMEMBERED_FRAMES: usize = 64;

impl World {
    /// Keeps a frame just sent for the nemesis.
    pub(super) fn remember_frame(&mut self, from: usize, frame: &Arc<[u8]>) {
        if self.scenario.random_faults.forge == 0 {
            return;
        }
        if self.recent_frames.len() == REMEMBERED_FRAMES {
            self.recent_frames.pop_front();
        }
        self.recent_frames.push_back((from, Arc::clone(frame)));
    }

    /// One forgery aimed at node `target`: a remembered frame with a bit
    /// flipped, cut short, or replayed as it was (of whatever incarnation
    /// sent it, however long ago); or a heartbeat of a stranger, sealed
    /// under another secret or under the cluster's from a base that is not
    /// a member.
    pub(super) fn forge(&mut self, target: usize, other: usize) {
        let remembered = if self.recent_frames.is_empty() {
            None
        } else {
            let at = self.fault_rng.below(self.recent_frames.len());
            Some(self.recent_frames[at].clone())
        };
        let (from, frame, how) = match (self.fault_rng.below(5), remembered) {
            (0, Some((from, frame))) => {
                let mut bytes = frame.to_vec();
                let bit = self.fault_rng.below(bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
                (from, bytes, "bit-flip")
            }
            (1, Some((from, frame))) => {
                let len = self.fault_rng.below(frame.len());
                (from, frame[..len].to_vec(), "truncate")
            }
            (2, Some((from, frame))) => (from, frame.to_vec(), "replay"),
            (3, _) => (
                other,
                self.stranger_frame(target, true),
                "stranger-with-another-secret",
            ),
            _ => (other, self.stranger_frame(target, false), "stranger-not-a-member"),
        };
        self.trace.record(TraceEvent::Fault {
            t: self.now_ms,
            what: format!("forge {how} -> {target}"),
            nodes: vec![target],
        });
        if from == target {
            return;
        }
        self.transmit(Envelope {
            from,
            to: target,
            sent_ms: self.now_ms,
            kind: "forged",
            payload: Payload::Bytes(Arc::from(frame)),
            forged: true,
        });
    }

    /// A heartbeat from `mallory@1` carrying a join, sealed at `target`'s
    /// clock (so only the secret or the member list can refuse it): under a
    /// secret of its own, or (an honest process the member list leaves out)
    /// under the cluster's.
    fn stranger_frame(&mut self, target: usize, another_secret: bool) -> Vec<u8> {
        let now_ms = self.node_now(target);
        let mallory = ReplicaId::new("mallory", 1);
        let mut state = State::new(mallory.clone());
        let topic = format!(
            "room:{}",
            self.fault_rng.below(self.scenario.workload.topics.max(1))
        );
        state
            .join("mallory-pid", &topic, "mallory", json!({"forged": true}))
            .expect("a fresh state joins");
        let message = Message::Heartbeat {
            from: mallory,
            clocks: state.clocks(),
            delta: Some(state.take_delta()),
            uptime_ms: 0,
        };
        if another_secret {
            let secret =
                Secret::from_text("mallory's own secret, not the cluster's").expect("a valid secret");
            Sealer::new(&secret, None, u64::MAX).seal(&message, now_ms)
        } else {
            self.sealer.seal(&message, now_ms)
        }
    }
}

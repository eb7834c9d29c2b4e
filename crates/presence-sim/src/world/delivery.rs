//! The network between nodes: sending (cuts, loss, duplication), queues and
//! clogs, delays and reordering, and delivery (decoding included).

use std::sync::Arc;

use presence_tracker::{Input, Message};

use super::{Event, Phase, Verdict, World};
use crate::network::{Envelope, Payload};
use crate::trace::TraceEvent;

impl World {
    /// Sends `message` from `from` to `to`. `frame` holds its sealed bytes
    /// once made, so a broadcast encodes and seals once for every
    /// receiver (the bytes depend only on the message and the sender's
    /// clock, which a broadcast shares).
    pub(super) fn send(
        &mut self,
        from: usize,
        to: usize,
        message: &Arc<Message>,
        frame: &mut Option<Arc<[u8]>>,
    ) {
        self.messages += 1;
        let kind = message.kind();
        let faulty = self.phase == Phase::Faults;
        let network = &self.scenario.network;
        let reason = if self.links.is_cut(from, to) {
            Some("cut")
        } else if faulty && self.network_rng.chance(network.loss) {
            Some("loss")
        } else {
            None
        };
        if let Some(reason) = reason {
            self.dropped(from, to, kind, reason);
            return;
        }
        let payload = if self.scenario.network.encode_messages {
            let frame = match frame {
                Some(frame) => Arc::clone(frame),
                None => Arc::clone(frame.insert(Arc::from(self.sealer.seal(message, self.node_now(from))))),
            };
            self.remember_frame(from, &frame);
            Payload::Bytes(frame)
        } else {
            Payload::Message(Arc::clone(message))
        };
        let envelope = Envelope {
            from,
            to,
            sent_ms: self.now_ms,
            kind,
            payload,
            forged: false,
        };
        let copies = if faulty && self.network_rng.chance(self.scenario.network.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.transmit(envelope.clone());
        }
    }

    /// Records that a message from `from` to `to` was lost, and why.
    pub(super) fn dropped(&mut self, from: usize, to: usize, kind: &'static str, reason: &'static str) {
        self.trace.record(TraceEvent::Drop {
            t: self.now_ms,
            from,
            to,
            msg: kind,
            reason,
        });
    }

    /// Puts a message on its link: held if clogged, else delivered after a
    /// drawn delay; dropped if the link's queue is full.
    pub(super) fn transmit(&mut self, envelope: Envelope) {
        let (from, to, kind) = (envelope.from, envelope.to, envelope.kind);
        let accepted = if self.links.is_clogged(from, to) {
            self.links.hold(envelope.clone())
        } else {
            self.links.enqueue(from, to)
        };
        if !accepted {
            self.dropped(from, to, kind, "overflow");
            return;
        }
        if self.links.is_clogged(from, to) {
            return;
        }
        let network = &self.scenario.network;
        let mut delay = network.delay_min_ms + self.network_rng.exponential_ms(network.delay_mean_ms);
        if self.phase == Phase::Faults && self.network_rng.chance(network.reorder) {
            delay += self.network_rng.exponential_ms(network.reorder_delay_ms);
        }
        self.schedule(self.now_ms + delay, Event::Deliver(envelope));
    }

    pub(super) fn release(&mut self, held: Vec<Envelope>) {
        for envelope in held {
            self.transmit(envelope);
        }
    }

    pub(super) fn deliver(&mut self, envelope: Envelope) {
        let (from, to, kind) = (envelope.from, envelope.to, envelope.kind);
        self.links.dequeue(from, to);
        let reason = if self.links.is_cut(from, to) {
            Some("cut")
        } else if !self.nodes[to].running() {
            Some("down")
        } else {
            None
        };
        if let Some(reason) = reason {
            self.dropped(from, to, kind, reason);
            return;
        }
        let message = match envelope.payload {
            Payload::Message(message) => Message::clone(&message),
            Payload::Bytes(bytes) => match self.sealer.open(&bytes, self.node_now(to)) {
                Ok(message) => message,
                Err(refusal) if envelope.forged => {
                    self.dropped(from, to, kind, refusal.kind().name());
                    return;
                }
                Err(refusal) => {
                    if self.verdict.is_none() {
                        self.verdict = Some(Verdict::HarnessError {
                            at_ms: self.now_ms,
                            node: to,
                            detail: format!("an honest {kind} frame from node {from} was refused: {refusal}"),
                        });
                    }
                    return;
                }
            },
        };
        self.trace.record(TraceEvent::Deliver {
            t: self.now_ms,
            sent: envelope.sent_ms,
            from,
            to,
            msg: kind,
        });
        self.step(to, Input::Receive(message), false);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::scenario::Scenario;

    #[test]
    fn a_message_that_fails_to_decode_is_a_harness_error_not_an_invariant() {
        let scenario = Scenario::parse(
            "name = \"t\"\nseeds = [1]\nnodes = 2\nfault_phase_ms = 1000\nliveness_bound_ms = 10000\n",
            Path::new("t.toml"),
        )
        .expect("valid");
        let mut world = World::new(&scenario, 1, false);
        world.deliver(Envelope {
            from: 0,
            to: 1,
            sent_ms: 0,
            kind: "heartbeat",
            payload: Payload::Bytes(Arc::from(&b"{\"not\": \"a message\""[..])),
            forged: false,
        });
        let verdict = world.verdict.clone().expect("judged");
        assert!(
            matches!(verdict, Verdict::HarnessError { node: 1, .. }),
            "{verdict}"
        );
        assert_eq!(verdict.invariant(), None, "no invariant is named");
        assert!(!verdict.passed());
    }
}

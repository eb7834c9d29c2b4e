//! An in-test, deterministic message bus with a fake clock: nodes exchange
//! messages instantly unless their link is cut, time advances in ticks, and
//! every delivery is followed by the core invariant checks.
#![allow(dead_code)]

use std::collections::{BTreeSet, VecDeque};

use presence_core::invariants::{
    check_bounded_memory, check_causal_sanity, check_convergence, check_mirror_matches,
    check_no_resurrection, check_own_authority, check_provenance, check_view_fingerprint, History,
    MemoryBounds, ResurrectionWatch,
};
use presence_core::{ClientMirror, Diff, ReplicaId};
use presence_tracker::{Config, Input, Message, Node, Output, ReplicaEvent, Transfer};
use serde_json::json;

/// The most messages one drain may deliver: more means a message loop.
const MAX_DELIVERIES_PER_DRAIN: usize = 100_000;

/// The heartbeat `node` broadcasts when it ticks at `now_ms` (a first tick,
/// or one past the broadcast period, always broadcasts).
pub fn heartbeat_of(node: &mut Node, now_ms: u64) -> Message {
    node.handle(Input::Tick, now_ms)
        .unwrap()
        .into_iter()
        .find_map(|output| match output {
            Output::Broadcast(message @ Message::Heartbeat { .. }) => Some(message),
            _ => None,
        })
        .expect("a first tick broadcasts")
}

/// Timings scaled down from Phoenix's so tests run few periods.
pub fn test_config() -> Config {
    Config {
        broadcast_period_ms: 1_000,
        max_silent_periods: 3,
        down_period_ms: 10_000,
        permdown_period_ms: 60_000,
        clock_sample_periods: 2,
        max_delta_sizes: vec![10, 100, 1_000],
        transfer_timeout_ms: 2_000,
        retirement_memory_ms: 120_000,
    }
}

pub struct Member {
    pub node: Node,
    pub mirror: ClientMirror,
    pub watch: ResurrectionWatch,
    pub diffs_fingerprint: u64,
    pub alive: bool,
    /// Every diff this node emitted, in order, with the time.
    pub diffs: Vec<(u64, Diff)>,
    pub events: Vec<(u64, ReplicaEvent)>,
}

impl Member {
    /// A node that starts as `replica` at `now_ms`, with a fresh mirror.
    fn start(replica: ReplicaId, config: &Config, now_ms: u64) -> Self {
        Self {
            node: Node::new(replica, config.clone(), now_ms).unwrap(),
            mirror: ClientMirror::new(),
            watch: ResurrectionWatch::default(),
            diffs_fingerprint: 0,
            alive: true,
            diffs: Vec::new(),
            events: Vec::new(),
        }
    }
}

pub struct Bus {
    pub members: Vec<Member>,
    pub now_ms: u64,
    pub tick_ms: u64,
    pub config: Config,
    queue: VecDeque<(usize, usize, Message)>,
    cut: BTreeSet<(usize, usize)>,
    pub history: History,
    /// Messages delivered, by kind, for loop and cost checks.
    pub delivered: std::collections::BTreeMap<&'static str, usize>,
}

impl Bus {
    /// Nodes `n0@1`, `n1@1`, ... that have not yet heard of each other.
    pub fn new(count: usize) -> Self {
        let config = test_config();
        let members = (0..count)
            .map(|i| Member::start(ReplicaId::new(&format!("n{i}"), 1), &config, 0))
            .collect();
        Self {
            members,
            now_ms: 0,
            tick_ms: 100,
            config,
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            history: History::new(),
            delivered: Default::default(),
        }
    }

    pub fn id(&self, at: usize) -> ReplicaId {
        self.members[at].node.replica().clone()
    }

    /// Runs a local request on node `at`, recording it in the history.
    pub fn local(&mut self, at: usize, input: Input) -> Result<(), presence_tracker::NodeError> {
        let outputs = self.members[at].node.handle(input, self.now_ms)?;
        for output in &outputs {
            if let Output::Diff(diff) = output {
                self.history
                    .record_local(self.members[at].node.state(), diff)
                    .unwrap();
            }
        }
        self.absorb(at, outputs);
        self.drain();
        Ok(())
    }

    pub fn track(&mut self, at: usize, pid: &str, topic: &str, key: &str) {
        let input = Input::Track {
            pid: pid.into(),
            topic: topic.into(),
            key: key.into(),
            meta: json!({"node": at}),
        };
        self.local(at, input).unwrap();
    }

    pub fn untrack(&mut self, at: usize, pid: &str, topic: &str, key: &str) {
        let input = Input::Untrack {
            pid: pid.into(),
            topic: topic.into(),
            key: key.into(),
        };
        self.local(at, input).unwrap();
    }

    pub fn update(&mut self, at: usize, pid: &str, topic: &str, key: &str, version: u32) {
        let input = Input::Update {
            pid: pid.into(),
            topic: topic.into(),
            key: key.into(),
            meta: json!({"node": at, "version": version}),
        };
        self.local(at, input).unwrap();
    }

    /// Cuts both directions between `a` and `b`.
    pub fn split(&mut self, a: usize, b: usize) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    /// Repairs both directions between `a` and `b`.
    pub fn repair(&mut self, a: usize, b: usize) {
        self.cut.remove(&(a, b));
        self.cut.remove(&(b, a));
    }

    /// Cuts `group` off from everyone else.
    pub fn isolate(&mut self, group: &[usize]) {
        for &a in group {
            for b in 0..self.members.len() {
                if !group.contains(&b) {
                    self.split(a, b);
                }
            }
        }
    }

    pub fn heal_all(&mut self) {
        self.cut.clear();
    }

    /// Node `at` crashes: its memory and its connections are gone.
    pub fn crash(&mut self, at: usize) {
        let old = self.id(at);
        self.history.record_dead(&old);
        self.members[at].alive = false;
        self.queue.retain(|(from, to, _)| *from != at && *to != at);
    }

    /// Node `at` starts again as the next incarnation of its base.
    pub fn restart(&mut self, at: usize) {
        if self.members[at].alive {
            self.crash(at);
        }
        let old = self.id(at);
        let new = old.with_incarnation(old.incarnation() + 1);
        self.members[at] = Member::start(new, &self.config, self.now_ms);
    }

    /// Orderly shutdown of node `at`.
    pub fn shutdown(&mut self, at: usize) {
        let outputs = self.members[at]
            .node
            .handle(Input::Shutdown, self.now_ms)
            .unwrap();
        self.absorb(at, outputs);
        // The goodbye leaves before the node is gone.
        self.drain();
        let old = self.id(at);
        self.history.record_dead(&old);
        self.members[at].alive = false;
    }

    /// Advances virtual time by `duration_ms`, ticking every live node each
    /// `tick_ms` and delivering all messages in between.
    pub fn run_for(&mut self, duration_ms: u64) {
        let end = self.now_ms + duration_ms;
        while self.now_ms < end {
            self.now_ms += self.tick_ms;
            for at in 0..self.members.len() {
                if self.members[at].alive {
                    let outputs = self.members[at].node.handle(Input::Tick, self.now_ms).unwrap();
                    self.absorb(at, outputs);
                }
            }
            self.drain();
        }
    }

    fn absorb(&mut self, at: usize, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Broadcast(message) => {
                    for to in 0..self.members.len() {
                        if to != at {
                            self.queue.push_back((at, to, message.clone()));
                        }
                    }
                }
                Output::Send { to, message } => {
                    let target = self
                        .members
                        .iter()
                        .position(|member| member.node.replica().base() == to.base());
                    if let Some(target) = target {
                        self.queue.push_back((at, target, message));
                    }
                }
                Output::Diff(diff) => {
                    let member = &mut self.members[at];
                    member.mirror.apply(&diff);
                    member.diffs_fingerprint = member.diffs_fingerprint.wrapping_add(diff.fingerprint());
                    member.diffs.push((self.now_ms, diff));
                }
                Output::Event(event) => {
                    if let ReplicaEvent::Reincarnated { old, .. } = &event {
                        let state = self.members[at].node.state();
                        self.history.record_reincarnation(old, state).unwrap();
                    }
                    self.members[at].events.push((self.now_ms, event));
                }
            }
        }
        self.check(at);
    }

    /// Delivers queued messages (and those they cause) until none is left.
    pub fn drain(&mut self) {
        let mut deliveries = 0;
        while let Some((from, to, message)) = self.queue.pop_front() {
            let receiver = &self.members[to];
            let gone = !receiver.alive || receiver.node.is_stopped() || !self.members[from].alive;
            if gone || self.cut.contains(&(from, to)) {
                continue;
            }
            deliveries += 1;
            assert!(
                deliveries <= MAX_DELIVERIES_PER_DRAIN,
                "message loop: {deliveries} deliveries"
            );
            let kind = match &message {
                Message::TransferAck {
                    transfer: Transfer::Delta(_),
                    ..
                } => "transfer_ack:delta",
                Message::TransferAck {
                    transfer: Transfer::State(_),
                    ..
                } => "transfer_ack:state",
                other => other.kind(),
            };
            *self.delivered.entry(kind).or_default() += 1;
            // Every message crosses the wire as JSON, as it would for real.
            let decoded = Message::from_json(&message.to_json()).expect("own messages decode");
            assert_eq!(decoded, message);
            let outputs = self.members[to]
                .node
                .handle(Input::Receive(decoded), self.now_ms)
                .unwrap();
            self.absorb(to, outputs);
        }
    }

    /// I1 and I3-I7 on node `at`.
    fn check(&mut self, at: usize) {
        let member = &mut self.members[at];
        let state = member.node.state();
        check_mirror_matches(&member.mirror, state).unwrap();
        check_view_fingerprint(member.diffs_fingerprint, state).unwrap();
        check_no_resurrection(&mut member.watch, state).unwrap();
        check_provenance(&self.history, state).unwrap();
        check_own_authority(&self.history, state).unwrap();
        check_causal_sanity(&self.history, state).unwrap();
        check_bounded_memory(state, MemoryBounds::default()).unwrap();
    }

    /// I2: every live node's view is the ground truth.
    pub fn check_converged(&self) {
        let states = self
            .members
            .iter()
            .filter(|member| member.alive)
            .map(|member| member.node.state());
        check_convergence(states, &self.history.live_view()).unwrap();
    }

    /// Keys visible on `topic` at node `at`.
    pub fn keys(&self, at: usize, topic: &str) -> Vec<String> {
        self.members[at]
            .node
            .state()
            .online_keys(topic)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Whether node `at` emitted a join of `key` after time `since_ms`.
    pub fn joined_since(&self, at: usize, key: &str, since_ms: u64) -> bool {
        self.members[at]
            .diffs
            .iter()
            .filter(|(time, _)| *time > since_ms)
            .any(|(_, diff)| diff.joins.iter().any(|presence| &*presence.entry.key == key))
    }

    pub fn events_of(&self, at: usize) -> Vec<ReplicaEvent> {
        self.members[at]
            .events
            .iter()
            .map(|(_, event)| event.clone())
            .collect()
    }
}

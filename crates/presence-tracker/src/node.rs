//! The replication node: one replica's state plus the protocol around it, as
//! a pure state machine `handle(input, now) -> outputs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use presence_core::{Diff, EntryError, LocalError, ReplicaId, State};
use serde_json::Value;

use crate::buggify::{self, Hook};
use crate::config::{Config, ConfigError};
use crate::generations::Generations;
use crate::marks::{self, Mark};
use crate::message::{Clocks, Message, Transfer};
use presence_core::sabotage::{self, Sabotage};

/// What a node is told. Time comes with every input, as `now_ms`.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A timer fired: detect failures, and broadcast if a period has passed.
    /// Drive it at least once per broadcast period.
    Tick,
    /// A message from a peer.
    Receive(Message),
    /// Track a local presence.
    Track {
        /// The connection.
        pid: String,
        /// The channel.
        topic: String,
        /// Who.
        key: String,
        /// Its metadata.
        meta: Value,
    },
    /// Stop tracking a local presence (no error if it is not tracked).
    Untrack {
        /// The connection.
        pid: String,
        /// The channel.
        topic: String,
        /// Who.
        key: String,
    },
    /// Stop tracking every presence of a local connection (it went away).
    UntrackAll {
        /// The connection.
        pid: String,
    },
    /// Replace a local presence's metadata.
    Update {
        /// The connection.
        pid: String,
        /// The channel.
        topic: String,
        /// Who.
        key: String,
        /// The new metadata.
        meta: Value,
    },
    /// The transport found a peer: say hello at once instead of waiting for
    /// the next broadcast.
    Discovered(ReplicaId),
    /// Leave the cluster in order: peers drop this node's presences at once.
    Shutdown,
}

/// What a node asks its surroundings to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send to every peer.
    Broadcast(Message),
    /// Send to one peer (addressed by replica; transports route by base).
    Send {
        /// The peer.
        to: ReplicaId,
        /// The message.
        message: Message,
    },
    /// The view changed: tell local subscribers (`Diff::by_topic` gives the
    /// Phoenix `presence_diff` payloads).
    Diff(Diff),
    /// A peer's liveness changed, or this node took a new incarnation.
    Event(ReplicaEvent),
}

/// Changes in what the node believes about replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaEvent {
    /// A peer was heard from and is shown.
    Up(ReplicaId),
    /// A peer was silent for `down_period_ms`: its presences are hidden.
    Down(ReplicaId),
    /// A peer is gone for good: its presences are discarded.
    Permdown(ReplicaId),
    /// This node learned it had been permdowned and re-asserted its
    /// presences under a new incarnation.
    Reincarnated {
        /// The retired identity.
        old: ReplicaId,
        /// The new one.
        new: ReplicaId,
    },
}

/// Why a local request was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeError {
    /// That (pid, topic, key) is already tracked here.
    AlreadyTracked,
    /// Update of a presence that is not tracked here.
    NotTracked,
    /// The presence breaks a limit (empty or long names, deep meta).
    Invalid(EntryError),
    /// The node has issued all its clocks; restart it.
    ClocksExhausted,
    /// The node was shut down.
    Stopped,
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyTracked => write!(f, "presence already tracked"),
            Self::NotTracked => write!(f, "presence not tracked"),
            Self::Invalid(problem) => write!(f, "invalid presence: {problem}"),
            Self::ClocksExhausted => write!(f, "clocks exhausted; restart the node"),
            Self::Stopped => write!(f, "node is shut down"),
        }
    }
}

impl std::error::Error for NodeError {}

impl From<LocalError> for NodeError {
    fn from(error: LocalError) -> Self {
        match error {
            LocalError::AlreadyTracked => Self::AlreadyTracked,
            LocalError::NotTracked => Self::NotTracked,
            LocalError::Invalid(problem) => Self::Invalid(problem),
            LocalError::ClocksExhausted => Self::ClocksExhausted,
        }
    }
}

/// Whether a peer's presences are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerStatus {
    /// Heard within `down_period_ms`, and caught up with.
    Up,
    /// Silent for `down_period_ms`, or heard again but not yet caught up with.
    Down,
}

/// What a node knows of one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// When a message from it last arrived.
    pub last_heard_ms: u64,
    /// Shown or hidden.
    pub status: PeerStatus,
    /// Its clocks, from its last heartbeat or transfer request.
    pub clocks: Clocks,
}

/// Sizes of everything a node keeps, for checking that nothing grows
/// without bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// Peers tracked.
    pub peers: usize,
    /// Transfer requests outstanding.
    pub pending_transfers: usize,
    /// Operations held in delta generations.
    pub generation_ops: usize,
    /// Replicas the state knows.
    pub known_replicas: usize,
    /// Retirement watermarks (one per base ever retired).
    pub retired_bases: usize,
}

/// One node of the presence cluster. See the crate docs for the protocol.
#[derive(Clone, Debug)]
pub struct Node {
    config: Config,
    state: State,
    peers: BTreeMap<ReplicaId, Peer>,
    generations: Generations,
    pending: BTreeMap<ReplicaId, u64>,
    next_broadcast_ms: u64,
    silent_periods: u32,
    periods: u64,
    stopped: bool,
    /// The latest time an input came with (see [`Node::handle`]).
    clock_ms: u64,
    /// How long this incarnation has run: the sum of the forward steps of
    /// the times inputs came with (a step back adds nothing).
    uptime_ms: u64,
    /// Per retired base but our own: its watermark, and when we learned it.
    retired_since: BTreeMap<Arc<str>, (u64, u64)>,
    /// When a watermark was last forgotten, if one ever was.
    forgot_at_ms: Option<u64>,
}

impl Node {
    /// A node for `replica`, starting at `now_ms`. Its first tick broadcasts.
    pub fn new(replica: ReplicaId, config: Config, now_ms: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            generations: Generations::new(&config.max_delta_sizes),
            silent_periods: config.max_silent_periods,
            config,
            state: State::new(replica),
            peers: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_broadcast_ms: now_ms,
            periods: 0,
            stopped: false,
            clock_ms: now_ms,
            uptime_ms: 0,
            retired_since: BTreeMap::new(),
            forgot_at_ms: None,
        })
    }

    /// This node's replica id (it changes on reincarnation).
    pub fn replica(&self) -> &ReplicaId {
        self.state.replica()
    }

    /// The replica state, for queries.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The peers this node tracks, by replica.
    pub fn peers(&self) -> &BTreeMap<ReplicaId, Peer> {
        &self.peers
    }

    /// Whether this node knows `replica`: as a peer, or by what its state
    /// holds of it. One it does not know, once the node has forgotten a
    /// watermark, is judged by its age (see `Config::retirement_memory_ms`).
    pub fn knows(&self, replica: &ReplicaId) -> bool {
        self.peers.contains_key(replica) || self.state.log(replica).is_some()
    }

    /// The peers a transfer request is outstanding to.
    pub fn pending_transfers(&self) -> impl Iterator<Item = &ReplicaId> + '_ {
        self.pending.keys()
    }

    /// Whether the node was shut down.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    #[cfg(feature = "inspect")]
    /// Feeds `hasher` everything the node keeps (replicated data, local
    /// liveness, peers, outstanding transfers, timers' progress, uptime and
    /// what it remembers of retirements, delta generations), field by field: nodes that behave alike feed it alike.
    /// Model checkers fingerprint nodes by it.
    pub fn hash_canonical<H: std::hash::Hasher>(&self, hasher: &mut H) {
        use std::hash::Hash as _;
        self.state.hash_canonical(hasher);
        self.peers.len().hash(hasher);
        for (id, peer) in &self.peers {
            (
                id,
                peer.last_heard_ms,
                peer.status == PeerStatus::Up,
                &peer.clocks,
            )
                .hash(hasher);
        }
        self.pending.hash(hasher);
        (
            self.next_broadcast_ms,
            self.silent_periods,
            self.periods,
            self.stopped,
        )
            .hash(hasher);
        (self.uptime_ms, &self.retired_since, self.forgot_at_ms).hash(hasher);
        self.generations.hash_canonical(hasher);
    }

    #[cfg(feature = "inspect")]
    /// [`Node::hash_canonical`] as if every replica base were renamed by
    /// `rename` (see `State::hash_renamed`): for symmetry reduction.
    pub fn hash_renamed<H: std::hash::Hasher>(
        &self,
        rename: presence_core::digest::Rename<'_>,
        hasher: &mut H,
    ) {
        use presence_core::digest::{hash_per_replica_renamed, renamed_id};
        use std::hash::Hash as _;
        self.state.hash_renamed(rename, hasher);
        let mut peers: Vec<_> = self
            .peers
            .iter()
            .map(|(id, peer)| (renamed_id(id, rename), peer))
            .collect();
        peers.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        peers.len().hash(hasher);
        for (id, peer) in peers {
            (id, peer.last_heard_ms, peer.status == PeerStatus::Up).hash(hasher);
            hash_per_replica_renamed(&peer.clocks, rename, hasher);
        }
        hash_per_replica_renamed(&self.pending, rename, hasher);
        (
            self.next_broadcast_ms,
            self.silent_periods,
            self.periods,
            self.stopped,
        )
            .hash(hasher);
        let mut retired_since: Vec<_> = self
            .retired_since
            .iter()
            .map(|(base, &memory)| (rename(base), memory))
            .collect();
        retired_since.sort_unstable();
        (self.uptime_ms, retired_since, self.forgot_at_ms).hash(hasher);
        self.generations.hash_renamed(rename, hasher);
    }

    /// Sizes of everything the node keeps.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            peers: self.peers.len(),
            pending_transfers: self.pending.len(),
            generation_ops: self.generations.len(),
            known_replicas: self.state.replicas().count(),
            retired_bases: self.state.retired().len(),
        }
    }

    /// Handles one input at time `now_ms`. Only local requests can fail; a
    /// message never errs (one that makes no sense is ignored).
    ///
    /// Time should not go backward, but a wall clock can step back (an NTP
    /// correction, a VM restored). The node rides such a step out: it
    /// takes the step as no time passing, pulling every time it keeps
    /// (when each peer was last heard, when a transfer was asked, when to
    /// broadcast next) back to `now_ms` at most. So it never goes mute,
    /// and failure detection and transfer timeouts are delayed by at most
    /// the size of the step. A step forward by J is J of silence from
    /// every peer: J of at least the down period hides them until they
    /// are heard again, and J of at least the permdown period permdowns
    /// them (they then reincarnate, as after any permdown of a live node).
    pub fn handle(&mut self, input: Input, now_ms: u64) -> Result<Vec<Output>, NodeError> {
        if self.stopped {
            return Err(NodeError::Stopped);
        }
        if now_ms < self.clock_ms && !sabotage::active(Sabotage::NoClockStepBack) {
            self.clock_stepped_back(now_ms);
        }
        self.uptime_ms = self
            .uptime_ms
            .saturating_add(now_ms.saturating_sub(self.clock_ms));
        self.clock_ms = now_ms;
        let mut out = Vec::new();
        match input {
            Input::Tick => self.on_tick(now_ms, &mut out),
            Input::Receive(message) => self.on_message(message, now_ms, &mut out),
            Input::Track {
                pid,
                topic,
                key,
                meta,
            } => push_diff(&mut out, self.state.join(&pid, &topic, &key, meta)?),
            Input::Untrack { pid, topic, key } => push_diff(&mut out, self.state.leave(&pid, &topic, &key)),
            Input::UntrackAll { pid } => push_diff(&mut out, self.state.leave_by_pid(&pid)),
            Input::Update {
                pid,
                topic,
                key,
                meta,
            } => push_diff(&mut out, self.state.update(&pid, &topic, &key, meta)?),
            Input::Discovered(peer) => {
                if peer.base() != self.replica().base() {
                    let hello = self.heartbeat(None);
                    out.push(Output::Send {
                        to: peer,
                        message: hello,
                    });
                }
            }
            Input::Shutdown => {
                self.stopped = true;
                out.push(Output::Broadcast(Message::GracefulPermdown {
                    from: self.replica().clone(),
                }));
            }
        }
        self.note_retirements(now_ms);
        Ok(out)
    }

    /// The clock stepped back to `now_ms`: no time kept lies ahead of it
    /// but the next broadcast, at most a period ahead. The next broadcast
    /// moves back with the clock, so the period under way keeps the time it
    /// has run: clamping it to a period from now lost up to a period at
    /// every step back, and two steps back in one silent stretch kept a
    /// node quiet past `max_silent_periods + 1` periods of true time (I10;
    /// found by a 1,000,000-seed swarm: seeds 141928, 252696, 342552,
    /// 439560, 476520 and 808104).
    fn clock_stepped_back(&mut self, now_ms: u64) {
        marks::hit(Mark::ClockSteppedBack);
        let jump = self.clock_ms - now_ms;
        for peer in self.peers.values_mut() {
            peer.last_heard_ms = peer.last_heard_ms.min(now_ms);
        }
        for asked_ms in self.pending.values_mut() {
            *asked_ms = (*asked_ms).min(now_ms);
        }
        let next = now_ms.saturating_add(self.config.broadcast_period_ms);
        self.next_broadcast_ms = self.next_broadcast_ms.saturating_sub(jump).min(next);
        for (_, since_ms) in self.retired_since.values_mut() {
            *since_ms = (*since_ms).min(now_ms);
        }
        if let Some(forgot_at_ms) = &mut self.forgot_at_ms {
            *forgot_at_ms = (*forgot_at_ms).min(now_ms);
        }
    }

    // ----- forgetting departed bases -----------------------------------------------

    /// Keeps `retired_since` in step with the state's watermarks: a new or
    /// raised watermark starts its memory now.
    fn note_retirements(&mut self, now_ms: u64) {
        let own = self.state.replica().base();
        let watermarks = self.state.retired();
        let others = || watermarks.iter().filter(|(base, _)| base.as_ref() != own);
        let unchanged = others().count() == self.retired_since.len()
            && others().all(|(base, &watermark)| {
                self.retired_since
                    .get(base)
                    .is_some_and(|&(known, _)| known == watermark)
            });
        if unchanged {
            return;
        }
        let mut since = BTreeMap::new();
        for (base, &watermark) in watermarks {
            if base.as_ref() == own {
                continue;
            }
            let learned_ms = match self.retired_since.get(base) {
                Some(&(known, learned_ms)) if known == watermark => learned_ms,
                _ => now_ms,
            };
            since.insert(Arc::clone(base), (watermark, learned_ms));
        }
        self.retired_since = since;
    }

    /// Forgets the watermark of each departed base held for the retirement
    /// memory that nothing here still names: no peer of that base (a live
    /// successor keeps it, so it stays bounded by the live bases), no
    /// peer's clocks naming one of its retired incarnations.
    ///
    /// Why this cannot bring a retired incarnation back: its data reaches a
    /// node only from itself or in an extract the node asked for, and an
    /// extract carries only replicas the asker names, which a retired one
    /// no longer is; a message of it still in flight is older than the
    /// stated bound (half the memory); and the incarnation itself, should
    /// it come back from a long partition, is older than what was
    /// forgotten, which the age check in `on_message` refuses.
    fn forget_departed(&mut self, now_ms: u64) {
        if sabotage::active(Sabotage::KeepWatermarks) {
            return;
        }
        let memory_ms = self.config.retirement_memory_ms;
        let due: Vec<Arc<str>> = self
            .retired_since
            .iter()
            .filter(|&(base, &(watermark, since_ms))| {
                now_ms.saturating_sub(since_ms) >= memory_ms && !self.still_names(base, watermark)
            })
            .map(|(base, _)| Arc::clone(base))
            .collect();
        for base in due {
            self.state.forget_retirement(&base);
            self.retired_since.remove(&base);
            self.forgot_at_ms = Some(now_ms);
            marks::hit(Mark::WatermarkForgotten);
        }
    }

    /// Whether a peer is of `base`, or names one of its incarnations up to
    /// `watermark` in its clocks.
    fn still_names(&self, base: &str, watermark: u64) -> bool {
        self.peers.iter().any(|(id, peer)| {
            id.base() == base
                || peer
                    .clocks
                    .keys()
                    .any(|named| named.base() == base && named.incarnation() <= watermark)
        })
    }

    /// Whether `from`, a replica this node does not know, started before
    /// half a retirement memory ahead of the last forgetting: it may be an
    /// incarnation that was retired and forgotten, back from a partition,
    /// so it is retired again (and told so) rather than taken in. A new
    /// replica is younger; an old one this node never knew reincarnates
    /// once, which costs its presences a leave and a join, nothing more.
    fn older_than_forgotten(&self, from: &ReplicaId, uptime_ms: u64, now_ms: u64) -> bool {
        let Some(forgot_at_ms) = self.forgot_at_ms else {
            return false;
        };
        if sabotage::active(Sabotage::AcceptOldStrangers) || self.knows(from) {
            return false;
        }
        let born_ms = now_ms.saturating_sub(uptime_ms);
        born_ms.saturating_add(self.config.retirement_memory_ms / 2) < forgot_at_ms
    }

    // ----- timers -------------------------------------------------------------------

    fn on_tick(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        self.detect_failures(now_ms, out);
        self.note_retirements(now_ms);
        self.forget_departed(now_ms);
        let timeout = self.config.transfer_timeout_ms;
        self.pending
            .retain(|_, &mut asked_ms| now_ms < asked_ms.saturating_add(timeout));
        if now_ms < self.next_broadcast_ms {
            return;
        }
        self.next_broadcast_ms = now_ms.saturating_add(self.config.broadcast_period_ms);
        self.periods += 1;
        self.broadcast(out);
        if buggify::fires(Hook::EvictGenerations) {
            self.generations.reset();
        }
        if self.periods % u64::from(self.config.clock_sample_periods) == 0
            && !buggify::fires(Hook::SkipClockSample)
        {
            self.anti_entropy(now_ms, out);
        }
    }

    fn detect_failures(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let ids: Vec<ReplicaId> = self.peers.keys().cloned().collect();
        for id in ids {
            let peer = &self.peers[&id];
            let silent_ms = now_ms.saturating_sub(peer.last_heard_ms);
            match peer.status {
                PeerStatus::Up if silent_ms >= self.down_after_ms() => {
                    self.set_status(&id, PeerStatus::Down);
                    let mut diff = self.state.replica_down(&id);
                    if sabotage::active(Sabotage::SwappedDownDiff) {
                        std::mem::swap(&mut diff.joins, &mut diff.leaves);
                    }
                    push_diff(out, diff);
                    out.push(Output::Event(ReplicaEvent::Down(id.clone())));
                    marks::hit(Mark::DownDetected);
                    // Silent past the permdown period too (this node was
                    // paused, or ticked late): gone now, not a tick later.
                    if silent_ms >= self.config.permdown_period_ms {
                        marks::hit(Mark::PermdownOfSilentPeer);
                        self.permdown(&id, out);
                    }
                }
                PeerStatus::Down if silent_ms >= self.config.permdown_period_ms => {
                    marks::hit(Mark::PermdownOfSilentPeer);
                    self.permdown(&id, out);
                }
                _ => {}
            }
        }
    }

    /// How long a peer may be silent before it is hidden.
    fn down_after_ms(&self) -> u64 {
        if sabotage::active(Sabotage::LateDown) {
            return self.config.permdown_period_ms;
        }
        self.config.down_period_ms
    }

    /// A heartbeat with the changes since the last one; after quiet periods,
    /// an empty one so peers know this node is alive.
    fn broadcast(&mut self, out: &mut Vec<Output>) {
        let delta = self.state.take_delta();
        if delta.is_empty() {
            self.silent_periods += 1;
            if self.silent_periods < self.config.max_silent_periods {
                return;
            }
            self.silent_periods = 0;
            out.push(Output::Broadcast(self.heartbeat(None)));
            return;
        }
        self.silent_periods = 0;
        self.generations.record(&delta);
        out.push(Output::Broadcast(self.heartbeat(Some(delta))));
    }

    fn heartbeat(&self, delta: Option<presence_core::Delta>) -> Message {
        Message::Heartbeat {
            from: self.replica().clone(),
            clocks: self.state.clocks(),
            delta,
            uptime_ms: self.uptime_ms,
        }
    }

    /// Asks for a transfer from each peer that is ahead of us on some replica
    /// we know, skipping a peer whose clocks another such peer dominates.
    fn anti_entropy(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let ours = self.state.clocks();
        let ahead: Vec<(&ReplicaId, &Clocks)> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.status == PeerStatus::Up && is_ahead(&peer.clocks, &ours))
            .map(|(id, peer)| (id, &peer.clocks))
            .collect();
        for id in transfer_sources(&ahead, &ours) {
            self.request_transfer(&id, false, now_ms, out);
        }
    }

    // ----- messages -----------------------------------------------------------------

    fn on_message(&mut self, message: Message, now_ms: u64, out: &mut Vec<Output>) {
        let from = message.from().clone();
        // Our own echo, or another process claiming our base: not a peer.
        if from.base() == self.replica().base() {
            return;
        }
        // A late message of an incarnation older than one we hear is from
        // the dead: retire it rather than take it in as a peer, which
        // would show its presences until the down period.
        let zombies = sabotage::active(Sabotage::ZombiesAccepted);
        if self.superseded(&from) && !zombies {
            marks::hit(Mark::SupersededMessage);
            if let Ok(diff) = self.state.remove_down_replica(&from) {
                push_diff(out, diff);
            }
            return;
        }
        let retired_sender = self.state.is_retired_id(&from) && !zombies;
        if retired_sender && !matches!(message, Message::TransferAck { .. }) {
            self.tell_retired(&from, &message, out);
            return;
        }
        if let Message::Heartbeat { uptime_ms, .. } | Message::TransferRequest { uptime_ms, .. } = &message {
            if self.older_than_forgotten(&from, *uptime_ms, now_ms) {
                marks::hit(Mark::OldStrangerRefused);
                if let Ok(diff) = self.state.remove_down_replica(&from) {
                    push_diff(out, diff);
                }
                self.tell_retired(&from, &message, out);
                return;
            }
        }
        match message {
            Message::Heartbeat { clocks, delta, .. } => {
                self.hear(&from, Some(clocks), now_ms, out);
                // A heartbeat carries its sender's own changes, nobody else's.
                if let Some(delta) = delta.filter(|delta| *delta.replica() == from) {
                    match self.state.merge_delta(&delta) {
                        Ok(diff) => push_diff(out, diff),
                        Err(_gap) => {
                            marks::hit(Mark::GapRefused);
                            self.request_transfer(&from, false, now_ms, out);
                        }
                    }
                }
                if self.lags_on(&from) {
                    self.request_transfer(&from, false, now_ms, out);
                }
            }
            Message::TransferRequest { clocks, full, .. } => {
                self.hear(&from, Some(clocks.clone()), now_ms, out);
                let transfer = self.transfer_for(&from, &clocks, full);
                out.push(Output::Send {
                    to: from.clone(),
                    message: Message::TransferAck {
                        from: self.replica().clone(),
                        transfer,
                    },
                });
            }
            Message::TransferAck { transfer, .. } => {
                // Merged even from a retired sender: the merge ignores its
                // log but takes its watermarks, which is how two sides that
                // permdowned each other learn it and reincarnate. From a
                // sender that is not a peer (we asked nothing of it), only
                // the watermarks are taken: what it holds may be of an
                // incarnation this node retired and has since forgotten.
                self.pending.remove(&from);
                if !self.peers.contains_key(&from) {
                    if let Transfer::State(snapshot) = &transfer {
                        let watermarks = snapshot.retain_replicas(|_| false);
                        push_diff(out, self.state.merge_snapshot(&watermarks));
                    }
                    self.after_merge(out);
                    return;
                }
                self.hear(&from, None, now_ms, out);
                match transfer {
                    Transfer::Delta(_) if buggify::fires(Hook::ForceFullStateFallback) => {
                        marks::hit(Mark::TransferFallbackToFullState);
                        self.request_transfer(&from, true, now_ms, out);
                    }
                    // A stored delta generation is the sender's own.
                    Transfer::Delta(delta) if *delta.replica() != from => {}
                    Transfer::Delta(delta) => match self.state.merge_delta(&delta) {
                        Ok(diff) => push_diff(out, diff),
                        Err(_gap) => {
                            marks::hit(Mark::TransferFallbackToFullState);
                            self.request_transfer(&from, true, now_ms, out);
                        }
                    },
                    Transfer::State(snapshot) => {
                        // Claims are bounded: an answer names only replicas we
                        // named when we asked, and its sender; anything else
                        // (thousands of replicas no member ever announced) is
                        // dropped unread, so no message can grow what this
                        // node keeps, and sends in its heartbeats, by more
                        // than its sender.
                        let known = |id: &ReplicaId| *id == from || self.state.log(id).is_some();
                        let diff = if snapshot.logs().keys().all(known) {
                            self.state.merge_snapshot(&snapshot)
                        } else {
                            marks::hit(Mark::UnaskedClaimsDropped);
                            let claims = snapshot.retain_replicas(known);
                            self.state.merge_snapshot(&claims)
                        };
                        push_diff(out, diff);
                    }
                }
            }
            Message::GracefulPermdown { .. } => {
                marks::hit(Mark::GracefulPermdown);
                self.permdown(&from, out);
            }
        }
        self.heal_if_caught_up(&from, out);
        self.after_merge(out);
    }

    /// Whether a newer incarnation of `from`'s base is among our peers.
    fn superseded(&self, from: &ReplicaId) -> bool {
        self.peers
            .keys()
            .any(|id| id.base() == from.base() && id.incarnation() > from.incarnation())
    }

    /// A retired replica (permdowned, or superseded) is still talking: answer
    /// with our state, whose watermarks tell it so; it will reincarnate.
    fn tell_retired(&self, to: &ReplicaId, message: &Message, out: &mut Vec<Output>) {
        let clocks = match message {
            Message::Heartbeat { clocks, .. } | Message::TransferRequest { clocks, .. } => clocks,
            Message::TransferAck { .. } | Message::GracefulPermdown { .. } => return,
        };
        marks::hit(Mark::ToldRetired);
        out.push(Output::Send {
            to: to.clone(),
            message: Message::TransferAck {
                from: self.replica().clone(),
                transfer: Transfer::State(self.state.extract(to, clocks)),
            },
        });
    }

    /// Records that `from` is alive. A new peer is shown at once (we hold
    /// nothing of it to be stale about); a newer incarnation retires the
    /// older ones at once.
    fn hear(&mut self, from: &ReplicaId, clocks: Option<Clocks>, now_ms: u64, out: &mut Vec<Output>) {
        self.retire_older_incarnations(from, out);
        match self.peers.get_mut(from) {
            Some(peer) => {
                peer.last_heard_ms = now_ms;
                if let Some(clocks) = clocks {
                    peer.clocks = clocks;
                }
            }
            None => {
                self.peers.insert(
                    from.clone(),
                    Peer {
                        last_heard_ms: now_ms,
                        status: PeerStatus::Up,
                        clocks: clocks.unwrap_or_default(),
                    },
                );
                push_diff(out, self.state.replica_up(from));
                out.push(Output::Event(ReplicaEvent::Up(from.clone())));
            }
        }
    }

    /// A peer that was down and is heard again is shown only once we hold
    /// everything it had when it spoke: otherwise presences that left during
    /// the split would be joined and then left again (bug class B13).
    fn heal_if_caught_up(&mut self, from: &ReplicaId, out: &mut Vec<Output>) {
        let down = self
            .peers
            .get(from)
            .is_some_and(|peer| peer.status == PeerStatus::Down);
        if !down || self.lags_on(from) {
            return;
        }
        marks::hit(Mark::HealedPeerShown);
        self.set_status(from, PeerStatus::Up);
        push_diff(out, self.state.replica_up(from));
        out.push(Output::Event(ReplicaEvent::Up(from.clone())));
    }

    /// Whether the peer's own clock (as it last told us) is ahead of ours for it.
    fn lags_on(&self, peer: &ReplicaId) -> bool {
        let theirs = self
            .peers
            .get(peer)
            .and_then(|known| known.clocks.get(peer))
            .copied()
            .unwrap_or(0);
        let ours = self.state.log(peer).map_or(0, |log| log.context());
        theirs > ours
    }

    fn request_transfer(&mut self, to: &ReplicaId, full: bool, now_ms: u64, out: &mut Vec<Output>) {
        if self.pending.contains_key(to) {
            return;
        }
        self.pending.insert(to.clone(), now_ms);
        out.push(Output::Send {
            to: to.clone(),
            message: Message::TransferRequest {
                from: self.replica().clone(),
                clocks: self.state.clocks(),
                full,
                uptime_ms: self.uptime_ms,
            },
        });
    }

    /// The smallest stored delta if the asker lags only on this replica,
    /// else the state limited to replicas the asker knows.
    fn transfer_for(&self, asker: &ReplicaId, clocks: &Clocks, full: bool) -> Transfer {
        if sabotage::active(Sabotage::WholeState) {
            return Transfer::State(self.state.snapshot());
        }
        let me = self.replica();
        let lags_only_on_me = self
            .state
            .clocks()
            .iter()
            .filter(|(id, _)| *id != me && *id != asker)
            .all(|(id, &ours)| clocks.get(id).is_none_or(|&theirs| theirs >= ours));
        if !full && lags_only_on_me && !buggify::fires(Hook::SkipGenerations) {
            let since = clocks.get(me).copied().unwrap_or(0);
            if let Some(delta) = self.generations.covering(since, self.state.delta()) {
                marks::hit(Mark::TransferFromGenerations);
                return Transfer::Delta(delta);
            }
        }
        Transfer::State(self.state.extract(asker, clocks))
    }

    fn retire_older_incarnations(&mut self, from: &ReplicaId, out: &mut Vec<Output>) {
        if from.incarnation() == 0 || sabotage::active(Sabotage::OldIncarnationLingers) {
            return;
        }
        let is_older = |id: &ReplicaId| id.base() == from.base() && id.incarnation() < from.incarnation();
        let older_peers: Vec<ReplicaId> = self.peers.keys().filter(|id| is_older(id)).cloned().collect();
        let state_knows_older = self.state.replicas().any(|(id, _, _)| is_older(id));
        if older_peers.is_empty() && !state_knows_older {
            return;
        }
        marks::hit(Mark::PeerReincarnated);
        let older = from.with_incarnation(from.incarnation() - 1);
        if let Ok(diff) = self.state.remove_down_replica(&older) {
            push_diff(out, diff);
        }
        for id in older_peers {
            self.forget_peer(&id);
            out.push(Output::Event(ReplicaEvent::Permdown(id)));
        }
    }

    fn permdown(&mut self, id: &ReplicaId, out: &mut Vec<Output>) {
        if let Ok(diff) = self.state.remove_down_replica(id) {
            push_diff(out, diff);
        }
        self.forget_peer(id);
        out.push(Output::Event(ReplicaEvent::Permdown(id.clone())));
    }

    /// Drops everything kept about a peer (Phoenix #179: never leave a dead
    /// replica's status behind).
    fn forget_peer(&mut self, id: &ReplicaId) {
        if sabotage::active(Sabotage::KeepRetiredPeers) {
            return;
        }
        self.peers.remove(id);
        self.pending.remove(id);
    }

    /// After anything merged: forget peers the state has learned are
    /// retired, and if this node itself was retired, re-assert its presences
    /// under a new incarnation and announce it at once.
    fn after_merge(&mut self, out: &mut Vec<Output>) {
        let retired: Vec<ReplicaId> = self
            .peers
            .keys()
            .filter(|id| self.state.is_retired_id(id))
            .cloned()
            .collect();
        for id in retired {
            self.forget_peer(&id);
            out.push(Output::Event(ReplicaEvent::Permdown(id)));
        }
        if !self.state.is_retired() {
            return;
        }
        marks::hit(Mark::HealAfterPermdown);
        let old = self.replica().clone();
        let incarnation = self.state.next_incarnation();
        let diff = self
            .state
            .reincarnate(incarnation)
            .expect("the next incarnation is always accepted");
        push_diff(out, diff);
        self.uptime_ms = 0;
        out.push(Output::Event(ReplicaEvent::Reincarnated {
            old,
            new: self.replica().clone(),
        }));
        self.generations.reset();
        let delta = self.state.take_delta();
        self.generations.record(&delta);
        self.silent_periods = 0;
        out.push(Output::Broadcast(self.heartbeat(Some(delta))));
    }

    fn set_status(&mut self, id: &ReplicaId, status: PeerStatus) {
        if let Some(peer) = self.peers.get_mut(id) {
            peer.status = status;
        }
    }
}

fn push_diff(out: &mut Vec<Output>, diff: Diff) {
    if !diff.is_empty() {
        out.push(Output::Diff(diff));
    }
}

/// Whether `theirs` is ahead of `ours` on a replica we know.
fn is_ahead(theirs: &Clocks, ours: &Clocks) -> bool {
    theirs
        .iter()
        .any(|(id, &clock)| ours.get(id).is_some_and(|&known| clock > known))
}

/// Of the peers `ahead` of us (each with its clocks), those to ask for a
/// transfer: every one that no other dominates on the replicas we know
/// (`ours`); of peers with equal clocks there, only the least.
fn transfer_sources(ahead: &[(&ReplicaId, &Clocks)], ours: &Clocks) -> Vec<ReplicaId> {
    ahead
        .iter()
        .filter(|(id, clocks)| {
            !ahead.iter().any(|(other, other_clocks)| {
                other != id
                    && dominates(other_clocks, clocks, ours)
                    && (!dominates(clocks, other_clocks, ours) || other < id)
            })
        })
        .map(|(id, _)| (*id).clone())
        .collect()
}

/// Whether `a` has at least `b`'s clock for every replica we know.
fn dominates(a: &Clocks, b: &Clocks, ours: &Clocks) -> bool {
    ours.keys()
        .all(|id| a.get(id).copied().unwrap_or(0) >= b.get(id).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clocks(pairs: &[(&ReplicaId, u64)]) -> Clocks {
        pairs.iter().map(|&(id, clock)| (id.clone(), clock)).collect()
    }

    /// A node is stopped after its shutdown and not before: the server and
    /// `presence node` read this to know a shutdown has been carried out
    /// (mutation testing found it replaceable by `false` unnoticed).
    #[test]
    fn a_node_is_stopped_only_after_its_shutdown() {
        let mut node = Node::new(ReplicaId::new("a", 1), Config::default(), 0).expect("a valid config");
        assert!(!node.is_stopped());
        node.handle(Input::Tick, 1_500).expect("a tick");
        assert!(!node.is_stopped());
        node.handle(Input::Shutdown, 2_000).expect("a shutdown");
        assert!(node.is_stopped());
    }

    /// A reincarnated peer retires only its own older incarnations: a peer
    /// of another base with a lower incarnation is left alone. (Mutation
    /// testing found `is_older`'s `&&` replaceable by `||` unnoticed: every
    /// peer of a lower incarnation, whatever its base, was then forgotten
    /// and reported permdown.)
    #[test]
    fn a_reincarnation_retires_only_its_own_base() {
        let heartbeat = |from: ReplicaId| {
            Input::Receive(Message::Heartbeat {
                from,
                clocks: Clocks::new(),
                delta: None,
                uptime_ms: 0,
            })
        };
        let (b, c1, c2) = (
            ReplicaId::new("b", 1),
            ReplicaId::new("c", 1),
            ReplicaId::new("c", 2),
        );
        let mut node = Node::new(ReplicaId::new("a", 1), Config::default(), 0).expect("a valid config");
        node.handle(heartbeat(b.clone()), 100).expect("b is heard");
        node.handle(heartbeat(c1.clone()), 200).expect("c@1 is heard");
        let out = node.handle(heartbeat(c2.clone()), 300).expect("c@2 is heard");
        assert!(node.peers().contains_key(&b), "{:?}", node.peers().keys());
        assert!(!node.peers().contains_key(&c1));
        let permdowns: Vec<&ReplicaId> = out
            .iter()
            .filter_map(|output| match output {
                Output::Event(ReplicaEvent::Permdown(id)) => Some(id),
                _ => None,
            })
            .collect();
        assert_eq!(permdowns, vec![&c1]);
    }

    /// Peers ahead on different replicas are each asked; a peer another
    /// dominates is skipped; of two alike, the least is asked. (Mutation
    /// testing found `dominates` replaceable by `true` or `false` with no
    /// test noticing: only the number of transfers changes, which no
    /// invariant sees.)
    #[test]
    fn transfer_sources_skip_only_dominated_peers() {
        let (b, c) = (ReplicaId::new("b", 1), ReplicaId::new("c", 1));
        let ours = clocks(&[(&b, 0), (&c, 0)]);
        let b_ahead = clocks(&[(&b, 2), (&c, 0)]);
        let c_ahead = clocks(&[(&b, 0), (&c, 2)]);
        let both_ahead = clocks(&[(&b, 2), (&c, 2)]);
        assert_eq!(
            transfer_sources(&[(&b, &b_ahead), (&c, &c_ahead)], &ours),
            vec![b.clone(), c.clone()],
            "neither dominates: both asked"
        );
        assert_eq!(
            transfer_sources(&[(&b, &both_ahead), (&c, &c_ahead)], &ours),
            vec![b.clone()],
            "b dominates c: only b asked"
        );
        assert_eq!(
            transfer_sources(&[(&b, &both_ahead), (&c, &both_ahead)], &ours),
            vec![b.clone()],
            "alike: the least asked"
        );
    }
}

//! Coverage marks: named points at the rare events of the protocol that a
//! harness must reach to have tested them (after the `cov_mark` idea). The
//! node calls [`hit`] there. With the `marks` feature, which the simulator
//! turns on, hits are counted per thread, and a harness reads and resets
//! them with [`take`] around each run; without it, [`hit`] does nothing.

/// A rare event the node reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mark {
    /// A peer silent for the down period is hidden.
    DownDetected,
    /// A peer still silent after the permdown period is permdowned: a node
    /// that never came back.
    PermdownOfSilentPeer,
    /// A peer announced its orderly shutdown.
    GracefulPermdown,
    /// A heartbeat's delta did not connect and was refused for a transfer.
    GapRefused,
    /// A delta transfer still did not connect; a full state is asked for.
    TransferFallbackToFullState,
    /// A transfer was answered from the stored delta generations.
    TransferFromGenerations,
    /// A newer incarnation of a peer retired the older one.
    PeerReincarnated,
    /// A late message of an older incarnation was dropped and retired.
    SupersededMessage,
    /// A retired peer was told so with our state.
    ToldRetired,
    /// This node learned it was permdowned while alive, and came back as a
    /// new incarnation: the heal after permdown.
    HealAfterPermdown,
    /// A peer that was down was shown again once caught up with.
    HealedPeerShown,
    /// The clock stepped back and the node rode it out.
    ClockSteppedBack,
    /// A departed base's retirement watermark was forgotten.
    WatermarkForgotten,
    /// A replica unknown here and older than a forgotten watermark was
    /// retired rather than taken in.
    OldStrangerRefused,
    /// A frame was refused before it reached the node: forged, corrupted,
    /// replayed too late, or from a stranger.
    FrameRefused,
    /// A transfer named replicas the node had not asked about; they were
    /// dropped unread.
    UnaskedClaimsDropped,
}

impl Mark {
    /// Every mark, in order.
    pub const ALL: [Mark; 16] = [
        Mark::DownDetected,
        Mark::PermdownOfSilentPeer,
        Mark::GracefulPermdown,
        Mark::GapRefused,
        Mark::TransferFallbackToFullState,
        Mark::TransferFromGenerations,
        Mark::PeerReincarnated,
        Mark::SupersededMessage,
        Mark::ToldRetired,
        Mark::HealAfterPermdown,
        Mark::HealedPeerShown,
        Mark::ClockSteppedBack,
        Mark::WatermarkForgotten,
        Mark::OldStrangerRefused,
        Mark::FrameRefused,
        Mark::UnaskedClaimsDropped,
    ];

    /// Its name, in kebab case, as tables and result files show it.
    pub fn name(self) -> &'static str {
        match self {
            Mark::DownDetected => "down-detected",
            Mark::PermdownOfSilentPeer => "permdown-of-silent-peer",
            Mark::GracefulPermdown => "graceful-permdown",
            Mark::GapRefused => "gap-refused",
            Mark::TransferFallbackToFullState => "transfer-fallback-to-full-state",
            Mark::TransferFromGenerations => "transfer-from-generations",
            Mark::PeerReincarnated => "peer-reincarnated",
            Mark::SupersededMessage => "superseded-message",
            Mark::ToldRetired => "told-retired",
            Mark::HealAfterPermdown => "heal-after-permdown",
            Mark::HealedPeerShown => "healed-peer-shown",
            Mark::ClockSteppedBack => "clock-stepped-back",
            Mark::WatermarkForgotten => "watermark-forgotten",
            Mark::OldStrangerRefused => "old-stranger-refused",
            Mark::FrameRefused => "frame-refused",
            Mark::UnaskedClaimsDropped => "unasked-claims-dropped",
        }
    }
}

/// Hits per mark, in the order of [`Mark::ALL`].
pub type Counts = [u64; Mark::ALL.len()];

#[cfg(feature = "marks")]
thread_local! {
    static COUNTS: std::cell::Cell<Counts> = const { std::cell::Cell::new([0; Mark::ALL.len()]) };
}

/// The node reached `mark`.
#[inline]
pub(crate) fn hit(mark: Mark) {
    #[cfg(feature = "marks")]
    COUNTS.with(|counts| {
        let mut now = counts.get();
        now[mark as usize] += 1;
        counts.set(now);
    });
    #[cfg(not(feature = "marks"))]
    let _ = mark;
}

/// The hits counted in this thread since the last call, and a fresh start.
#[cfg(feature = "marks")]
pub fn take() -> Counts {
    COUNTS.with(|counts| counts.replace([0; Mark::ALL.len()]))
}

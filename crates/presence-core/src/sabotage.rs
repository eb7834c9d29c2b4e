//! Switches that turn one of the product's protections off (in the
//! CRDT or the node). A test turns one on around a simulated run to show
//! that the harness's check for that protection fails without it: a check
//! that cannot fail proves nothing. The protections ask [`active`]; only
//! with the `sabotage` feature, which nothing but test builds enable, can
//! a switch be turned on ([`with`]), and without it [`active`] is a
//! constant `false` the compiler removes.

#[cfg(feature = "sabotage")]
use std::sync::atomic::{AtomicU8, Ordering};
#[cfg(feature = "sabotage")]
use std::sync::Mutex;

/// A protection to turn off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// Merge a delta that does not connect as if it did (bug class B5).
    MergeGapDelta,
    /// An update's delta drops the removal of the old presence (B7).
    UpdateDropsRemoval,
    /// A leave takes no clock of its own: the context does not show it,
    /// so a peer that missed the delta cannot tell by clocks (B4).
    LeaveTakesNoClock,
    /// Clouds are never compacted into contexts (B12).
    SkipCompaction,
    /// A permdown drops the replica but keeps no watermark, so a lagging
    /// peer can bring its entries back (B10).
    ForgetWatermark,
    /// Wait for the permdown period, not the down period, before hiding a
    /// silent peer (caught by I10).
    LateDown,
    /// Never drop a retired peer from the peer table (caught by I7 on the
    /// node; Phoenix #179).
    KeepRetiredPeers,
    /// Answer every transfer request with the whole state, replicas the
    /// asker never named included (caught by I11; bug class B6).
    WholeState,
    /// Keep every time as it was when the clock steps back, so the node
    /// waits out the step before it broadcasts again (caught by I10: a
    /// running node is heard).
    NoClockStepBack,
    /// Report a peer going down as joins instead of leaves: the XOR
    /// fingerprint the models once judged I1 by could not tell (caught by
    /// I1's signed fingerprint, and by the simulator's mirror).
    SwappedDownDiff,
    /// Never forget a departed base's watermark (caught by the simulator's
    /// end-of-run bound on what a node keeps per departed base).
    KeepWatermarks,
    /// Take in an unknown replica however old, after forgetting: a
    /// retired incarnation back from a long partition returns with its
    /// old tags (caught by I3).
    AcceptOldStrangers,
    /// The next own clock is the last one observed, not one above it: a
    /// plain off-by-one that issues a clock twice (bug class B9).
    ClockNotAdvanced,
    /// A local leave also removes other replicas' entries of the same pid,
    /// topic and key, which only their owners may remove (B14).
    LeaveForeign,
    /// A full-log merge removes every local entry the remote does not hold,
    /// observed or not: a stale transfer overwrites newer entries (B1).
    RemovedWithoutObserving,
    /// A retired incarnation's messages and deltas are taken as live, both
    /// where the node screens senders and where the state merges deltas:
    /// the zombie of a restarted node comes back (B8).
    ZombiesAccepted,
    /// A merged join replaces whatever other replicas' entries of the same
    /// pid, topic and key the state holds: the last merged wins, so the
    /// result depends on merge order (B3).
    LastMergedWins,
    /// A new incarnation heard from does not retire the older ones at once:
    /// the old incarnation's entries stay beside the new one's (B11).
    OldIncarnationLingers,
    /// Frames are opened without checking their tag, their age or their
    /// sender's membership: forged, corrupted and replayed bytes reach the
    /// node (caught by the forging nemesis's runs).
    Unauthenticated,
}

impl Sabotage {
    /// Every switch, in declaration order.
    pub const ALL: [Sabotage; 19] = [
        Sabotage::MergeGapDelta,
        Sabotage::UpdateDropsRemoval,
        Sabotage::LeaveTakesNoClock,
        Sabotage::SkipCompaction,
        Sabotage::ForgetWatermark,
        Sabotage::LateDown,
        Sabotage::KeepRetiredPeers,
        Sabotage::WholeState,
        Sabotage::NoClockStepBack,
        Sabotage::SwappedDownDiff,
        Sabotage::KeepWatermarks,
        Sabotage::AcceptOldStrangers,
        Sabotage::ClockNotAdvanced,
        Sabotage::LeaveForeign,
        Sabotage::RemovedWithoutObserving,
        Sabotage::ZombiesAccepted,
        Sabotage::LastMergedWins,
        Sabotage::OldIncarnationLingers,
        Sabotage::Unauthenticated,
    ];
}

/// The switch on, as `Sabotage as u8 + 1`, or 0. Global rather than per
/// thread, so a model checker's worker threads see it too; [`with`]
/// holds a lock, so two tests that sabotage never overlap. A test binary
/// that sabotages should do nothing else.
#[cfg(feature = "sabotage")]
static ACTIVE: AtomicU8 = AtomicU8::new(0);
#[cfg(feature = "sabotage")]
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `run` with `sabotage` on in the whole process.
#[cfg(feature = "sabotage")]
pub fn with<R>(sabotage: Sabotage, run: impl FnOnce() -> R) -> R {
    switched(sabotage as u8 + 1, run)
}

/// Runs `run` with every protection on, while no other test of the
/// process sabotages: the control beside a [`with`] run.
#[cfg(feature = "sabotage")]
pub fn without<R>(run: impl FnOnce() -> R) -> R {
    switched(0, run)
}

#[cfg(feature = "sabotage")]
fn switched<R>(value: u8, run: impl FnOnce() -> R) -> R {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            ACTIVE.store(0, Ordering::SeqCst);
        }
    }
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    ACTIVE.store(value, Ordering::SeqCst);
    let _off = Off;
    run()
}

/// Whether `sabotage` is on (for the product crates' call sites).
#[cfg(feature = "sabotage")]
pub fn active(sabotage: Sabotage) -> bool {
    ACTIVE.load(Ordering::Relaxed) == sabotage as u8 + 1
}

/// Whether `sabotage` is on: never, in a build without the feature.
#[cfg(not(feature = "sabotage"))]
#[inline(always)]
pub fn active(_: Sabotage) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::Sabotage;

    #[test]
    fn all_lists_every_switch_once_in_order() {
        for (index, switch) in Sabotage::ALL.iter().enumerate() {
            assert_eq!(*switch as usize, index, "{switch:?}");
        }
        // The last switch declared closes the list: a new one goes after it
        // and into `ALL`.
        assert_eq!(Sabotage::ALL.len(), Sabotage::Unauthenticated as usize + 1);
    }
}

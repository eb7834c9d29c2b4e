//! Deterministic work counters: how many index slots the state's lookups
//! compared, and how many filed clocks they walked. A complexity test reads them to show that an operation's work
//! does not grow with how entries are spread over names; a timing would be
//! flaky, a count is not.
//!
//! Compiled only with the `work-counters` feature; without it, counting is
//! an empty function the optimiser removes.

#[cfg(feature = "work-counters")]
thread_local! {
    static PROBES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts one comparison of an index slot (a group, a clock or an own
/// entry) against what a lookup looks for, or one clock a lookup walked.
#[inline(always)]
pub(crate) fn probe() {
    #[cfg(feature = "work-counters")]
    PROBES.with(|probes| probes.set(probes.get() + 1));
}

/// Index slots compared on this thread since it started.
#[cfg(feature = "work-counters")]
pub fn probes() -> u64 {
    PROBES.with(std::cell::Cell::get)
}

/// The index slots `work` compares on this thread.
#[cfg(feature = "work-counters")]
pub fn probes_of<T>(work: impl FnOnce() -> T) -> (T, u64) {
    let before = probes();
    let result = work();
    (result, probes() - before)
}

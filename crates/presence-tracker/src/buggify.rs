//! BUGGIFY hooks, after FoundationDB: points in the node where a
//! simulation may make a rare but legal thing happen far more often than
//! it would (answer with a full state rather than a stored delta, forget
//! delta generations early, take the full-state fallback, skip a clock
//! sample). Each is something a real node may do; none is a bug. With the
//! `buggify` feature, a harness arms them per thread with a seed
//! ([`arm`]): each hook is then enabled for the run with probability 1/2,
//! and an enabled hook fires with probability 1/4, all drawn from the
//! seed, so a run stays reproducible. Without the feature, or unarmed, no
//! hook ever fires.

/// A place where the node may be pushed onto a rare path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// Answer a transfer with the state even when a stored delta covers it.
    SkipGenerations,
    /// Drop every stored delta generation, as if evicted early.
    EvictGenerations,
    /// Take a delta transfer as not connecting and ask for the full state.
    ForceFullStateFallback,
    /// Skip this period's clock sample (anti-entropy waits a period more).
    SkipClockSample,
}

impl Hook {
    /// Every hook.
    #[cfg(feature = "buggify")]
    pub const ALL: [Hook; 4] = [
        Hook::SkipGenerations,
        Hook::EvictGenerations,
        Hook::ForceFullStateFallback,
        Hook::SkipClockSample,
    ];
}

#[cfg(feature = "buggify")]
thread_local! {
    static ARMED: std::cell::Cell<Option<(u64, [bool; Hook::ALL.len()])>> = const { std::cell::Cell::new(None) };
    /// How often each hook fired in this thread since it was last armed.
    static FIRED: std::cell::Cell<[u64; Hook::ALL.len()]> = const { std::cell::Cell::new([0; Hook::ALL.len()]) };
}

#[cfg(feature = "buggify")]
fn next(state: &mut u64) -> u64 {
    // splitmix64: small, fast, and the same everywhere.
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How often `hook` fired in this thread since the last [`arm`] with a
/// seed (disarming keeps the count, so a harness can read it after a run).
/// A hook that never fires over many armed runs is a rare path the
/// simulation does not reach.
#[cfg(feature = "buggify")]
pub fn fired(hook: Hook) -> u64 {
    FIRED.with(|cell| cell.get()[hook as usize])
}

/// Arms the hooks in this thread from `seed` (`None` disarms them).
#[cfg(feature = "buggify")]
pub fn arm(seed: Option<u64>) {
    if seed.is_some() {
        FIRED.with(|cell| cell.set([0; Hook::ALL.len()]));
    }
    let armed = seed.map(|seed| {
        let mut state = seed ^ 0x6275_6767_6966_7921;
        let mut enabled = [false; Hook::ALL.len()];
        for slot in &mut enabled {
            *slot = next(&mut state) % 2 == 0;
        }
        (state, enabled)
    });
    ARMED.with(|cell| cell.set(armed));
}

/// Whether `hook` fires here and now.
#[inline]
pub(crate) fn fires(hook: Hook) -> bool {
    #[cfg(feature = "buggify")]
    {
        ARMED.with(|cell| {
            let Some((mut state, enabled)) = cell.get() else {
                return false;
            };
            if !enabled[hook as usize] {
                return false;
            }
            let fire = next(&mut state) % 4 == 0;
            cell.set(Some((state, enabled)));
            if fire {
                FIRED.with(|fired| {
                    let mut counts = fired.get();
                    counts[hook as usize] += 1;
                    fired.set(counts);
                });
            }
            fire
        })
    }
    #[cfg(not(feature = "buggify"))]
    {
        let _ = hook;
        false
    }
}

//! The keyed hash of topic, key and pid names, and the per-process secret
//! that keys it.
//!
//! Every index of a state files entries by the hash of a name that a client
//! chose. With an unkeyed hash anyone who picks names can pick names that
//! share a hash, or a probe sequence, and pile entries into one spot: each
//! join or lookup then walks all of them. Keyed with a secret the client
//! does not know, which names collide is unpredictable, so the cost of an
//! operation does not depend on which names were chosen.
//!
//! The secret is fixed once per process, before the first name is hashed:
//! an entry keeps the hashes it was made with, and a lookup must hash its
//! name the same way. A program that never calls [`set_secret`] gets a
//! random secret from the standard library's `RandomState` (the source every
//! std `HashMap` keys itself from): the one place the core takes randomness,
//! and it never reaches an output, because nothing iterates an index into
//! output without sorting it first. The simulator and the model checkers set
//! a fixed secret, so that even their work counts reproduce.

use std::hash::BuildHasher;
use std::sync::OnceLock;

static KEYS: OnceLock<ahash::RandomState> = OnceLock::new();

/// [`set_secret`] was called after the secret had been fixed to another
/// value (by an earlier call, or by the first name hashed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretAlreadySet;

impl std::fmt::Display for SecretAlreadySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the name-hash secret was already fixed for this process")
    }
}

impl std::error::Error for SecretAlreadySet {}

/// splitmix64's increment.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 output for generator state `state`: a well-spread 64-bit
/// number, different for every `state`.
pub(crate) fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn keys_from(secret: u64) -> ahash::RandomState {
    // Four 64-bit keys spread from one secret (splitmix64 steps).
    let mut state = secret;
    let mut next = || {
        let key = splitmix64(state);
        state = state.wrapping_add(GOLDEN_GAMMA);
        key
    };
    ahash::RandomState::with_seeds(next(), next(), next(), next())
}

fn keys() -> &'static ahash::RandomState {
    KEYS.get_or_init(|| keys_from(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)))
}

/// Fixes this process's secret. Call it before any entry is made; calling
/// it again with the same secret is allowed, with another is refused.
pub fn set_secret(secret: u64) -> Result<(), SecretAlreadySet> {
    let wanted = keys_from(secret);
    let fixed = KEYS.get_or_init(|| wanted.clone());
    // Equal keys hash alike: compare by what they do.
    if fixed.hash_one(0x5eed_u64) == wanted.hash_one(0x5eed_u64) {
        Ok(())
    } else {
        Err(SecretAlreadySet)
    }
}

/// The keyed hash of a topic, key or pid.
pub(crate) fn name_hash(name: &str) -> u64 {
    keys().hash_one(name)
}

/// Mixes a 64-bit integer (a clock, or a combination of hashes) so that
/// close values land far apart: the table hash of numbers that are not
/// client-chosen names.
pub(crate) fn mix(value: u64) -> u64 {
    let folded = u128::from(value ^ 0x243F_6A88_85A3_08D3) * 0x9E37_79B9_7F4A_7C15_u128;
    (folded as u64) ^ ((folded >> 64) as u64)
}

/// One hash of a (topic, key, pid) triple from its names' keyed hashes; the
/// order of the three matters.
pub(crate) fn triple_hash(topic: u64, key: u64, pid: u64) -> u64 {
    mix(topic ^ mix(key ^ mix(pid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_fixed_once() {
        // Whatever fixed it first, the same value is accepted again and
        // another refused.
        let probe = name_hash("alice");
        assert_eq!(name_hash("alice"), probe, "one process, one hash");
        assert_ne!(name_hash("alice"), name_hash("bob"));
        assert_ne!(triple_hash(1, 2, 3), triple_hash(2, 1, 3));
        assert_ne!(triple_hash(1, 2, 3), triple_hash(1, 3, 2));
    }

    #[test]
    fn each_secret_keys_a_hash_of_its_own() {
        // The same secret hashes alike in every process (the harness's work
        // counts reproduce by it); another secret hashes otherwise, so names
        // that collide under one are no use against another.
        assert_eq!(keys_from(7).hash_one("alice"), keys_from(7).hash_one("alice"));
        assert_ne!(keys_from(7).hash_one("alice"), keys_from(8).hash_one("alice"));
    }

    #[test]
    fn a_refused_secret_says_why() {
        assert_eq!(
            SecretAlreadySet.to_string(),
            "the name-hash secret was already fixed for this process"
        );
    }
}

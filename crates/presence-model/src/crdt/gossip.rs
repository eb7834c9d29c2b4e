//! What replicas of the CRDT model send one another: a full state or a
//! delta ([`Gossip`]), kept with its encoding and digests ([`Produced`]).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use presence_core::{Delta, Snapshot};

use super::symmetry::RenamableParts;
use crate::symmetry::digester;

/// A payload some replica produced: what a later delivery may carry.
#[derive(Clone, Debug)]
pub enum Gossip {
    /// A replica's full state at the time.
    Full {
        /// The producer.
        from: usize,
        /// Its state.
        snapshot: Arc<Snapshot>,
    },
    /// A replica's delta of one local operation.
    Delta {
        /// The producer.
        from: usize,
        /// Its delta.
        delta: Arc<Delta>,
    },
}

impl Gossip {
    pub(super) fn from(&self) -> usize {
        match self {
            Self::Full { from, .. } | Self::Delta { from, .. } => *from,
        }
    }

    pub(super) fn encoded(&self) -> Vec<u8> {
        match self {
            Self::Full { snapshot, .. } => snapshot.to_json(),
            Self::Delta { delta, .. } => delta.to_json(),
        }
    }
}

/// A payload as produced, with what the checker reads of it.
#[derive(Clone, Debug)]
pub struct Produced {
    /// The payload and what is derived from it, in one allocation shared by
    /// every state that holds it (copying a state's payloads costs one
    /// count each).
    pub(super) body: Arc<ProducedBody>,
    /// The replicas it is spent on: bit `q` is set once delivering it to
    /// replica `q` changes nothing, which stays so until `q` restarts (see
    /// [`CrdtModel::prune`]). Follows from the payload and the replicas, so
    /// it is not hashed.
    pub(super) spent: u8,
}

#[derive(Debug)]
pub(super) struct ProducedBody {
    pub(super) payload: Gossip,
    /// Its wire encoding, which stands for it in equality.
    pub(super) encoded: Box<[u8]>,
    /// A digest of its encoding, which stands for it in hashing.
    pub(super) digest: u64,
    /// Its digest under each renaming of replicas (see [`representative`]).
    pub(super) renamed: Arc<[u64]>,
}

impl Produced {
    pub(super) fn new(payload: Gossip, replicas: usize) -> Self {
        let encoded = payload.encoded().into_boxed_slice();
        let mut digest = digester();
        encoded.hash(&mut digest);
        Self {
            body: Arc::new(ProducedBody {
                digest: digest.finish(),
                encoded,
                renamed: RenamableParts::payload(&payload).renamed(replicas),
                payload,
            }),
            spent: 0,
        }
    }

    /// The payload.
    pub fn payload(&self) -> &Gossip {
        &self.body.payload
    }

    /// Its wire encoding, which stands for it in equality.
    pub fn encoded(&self) -> &[u8] {
        &self.body.encoded
    }

    pub(super) fn digest(&self) -> u64 {
        self.body.digest
    }
}

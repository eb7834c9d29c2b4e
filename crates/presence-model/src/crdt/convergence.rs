//! I2 in the CRDT model: from any state, a complete anti-entropy exchange
//! of full states converges on the ground truth. The exchange is
//! remembered by the replicas' digests.

use std::hash::Hasher;
use std::sync::Arc;

use presence_core::invariants::{check_convergence, exchange_full_states};
use presence_core::{ReplicaId, State};

use super::{CrdtModel, CrdtState};
use crate::symmetry::digester;

/// I2 judged from any state: every replica believes every other up, then
/// full states are exchanged all to all until quiet (replicas that learn
/// they were retired re-assert themselves, as their nodes would). Then every
/// view must equal the ground truth.
///
/// The exchange is a function of the replicas' states, so it is remembered
/// by their digests (see [`Caches`]); the ground truth is the state's
/// own, with the exchange's reincarnations recorded in it in order. The
/// verdict is a function of the two, so it is remembered too: many states
/// differ only in the payloads in flight, which this does not read.
pub fn anti_entropy_converges(model: &CrdtModel, state: &CrdtState) -> Result<(), String> {
    let replicas: Vec<u64> = state.replicas.iter().map(|replica| replica.canonical).collect();
    let mut truth = digester();
    state.history.hash_canonical(&mut truth);
    let truth = truth.finish();
    let spread = replicas.iter().fold(truth, |spread, digest| spread ^ digest);
    model
        .caches
        .convergence
        .get_or_compute((replicas, truth), spread, || judge_convergence(model, state))
}

/// [`anti_entropy_converges`], judged afresh (the exchange itself may be
/// remembered).
pub(super) fn judge_convergence(model: &CrdtModel, state: &CrdtState) -> Result<(), String> {
    let outcome = exchanged(model, state);
    let exchange = outcome.as_ref().as_ref()?;
    let mut history = std::borrow::Cow::Borrowed(&*state.history);
    for (old, reincarnated) in &exchange.reincarnations {
        history
            .to_mut()
            .record_reincarnation(old, reincarnated)
            .map_err(|violation| violation.to_string())?;
    }
    check_convergence(exchange.replicas.iter(), &history.live_view())
        .map_err(|violation| violation.to_string())
}

/// What a complete exchange leaves: the replicas, and each reincarnation
/// on the way (the incarnation left, and the state just after).
pub(super) struct Exchange {
    pub(super) replicas: Vec<State>,
    pub(super) reincarnations: Vec<(ReplicaId, State)>,
}

/// The complete exchange from `state`'s replicas, remembered by their
/// digests (see [`Caches`]).
pub(super) fn exchanged(model: &CrdtModel, state: &CrdtState) -> Arc<Result<Exchange, String>> {
    let key: Vec<u64> = state.replicas.iter().map(|replica| replica.canonical).collect();
    let spread = key.iter().fold(0, |spread, digest| spread ^ digest);
    model.caches.exchanges.get_or_compute(key, spread, || {
        let mut replicas: Vec<State> = state.replicas.iter().map(|r| State::clone(&r.state)).collect();
        let mut reincarnations = Vec::new();
        let exchange = exchange_full_states(&mut replicas, 3, |old, state| {
            reincarnations.push((old.clone(), state.clone()));
            Ok(())
        });
        Arc::new(match exchange {
            Ok(()) => Ok(Exchange {
                replicas,
                reincarnations,
            }),
            Err(violation) => Err(violation.to_string()),
        })
    })
}

//! Links between simulated nodes: cuts (partitions), clogs, bounded queues.
//! Delays, loss, duplication and reordering are drawn by the world, which
//! owns the event queue; this module keeps the link state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use presence_tracker::Message;

/// A message on its way, as bytes when the scenario sends through JSON.
#[derive(Clone, Debug)]
pub(crate) enum Payload {
    Message(Arc<Message>),
    Bytes(Arc<[u8]>),
}

#[derive(Clone, Debug)]
pub(crate) struct Envelope {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) sent_ms: u64,
    pub(crate) kind: &'static str,
    pub(crate) payload: Payload,
    /// Made or altered by the forging nemesis: its refusal is expected,
    /// where an honest frame's refusal is a harness error.
    pub(crate) forged: bool,
}

/// Directed link state.
#[derive(Clone, Debug)]
pub(crate) struct Links {
    cut: BTreeSet<(usize, usize)>,
    clogged: BTreeMap<(usize, usize), Vec<Envelope>>,
    in_flight: BTreeMap<(usize, usize), usize>,
    queue_limit: usize,
}

impl Links {
    pub(crate) fn new(queue_limit: usize) -> Self {
        Self {
            cut: BTreeSet::new(),
            clogged: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            queue_limit,
        }
    }

    pub(crate) fn is_cut(&self, from: usize, to: usize) -> bool {
        self.cut.contains(&(from, to))
    }

    pub(crate) fn cut(&mut self, from: usize, to: usize) {
        if from != to {
            self.cut.insert((from, to));
        }
    }

    pub(crate) fn cut_both(&mut self, a: usize, b: usize) {
        self.cut(a, b);
        self.cut(b, a);
    }

    /// Cuts every link between nodes of different groups; nodes in no group
    /// form one more group.
    pub(crate) fn split(&mut self, nodes: usize, groups: &[Vec<usize>]) {
        let group_of = |node: usize| {
            groups
                .iter()
                .position(|group| group.contains(&node))
                .unwrap_or(usize::MAX)
        };
        for a in 0..nodes {
            for b in 0..nodes {
                if group_of(a) != group_of(b) {
                    self.cut(a, b);
                }
            }
        }
    }

    /// Repairs every cut.
    pub(crate) fn heal(&mut self) {
        self.cut.clear();
    }

    pub(crate) fn clog(&mut self, from: usize, to: usize) {
        self.clogged.entry((from, to)).or_default();
    }

    pub(crate) fn is_clogged(&self, from: usize, to: usize) -> bool {
        self.clogged.contains_key(&(from, to))
    }

    /// Holds a message on a clogged link; false when the link's queue is full.
    pub(crate) fn hold(&mut self, envelope: Envelope) -> bool {
        let limit = self.queue_limit;
        let held = self.clogged.entry((envelope.from, envelope.to)).or_default();
        if held.len() >= limit {
            return false;
        }
        held.push(envelope);
        true
    }

    /// Unclogs a link, returning what it held, in order.
    pub(crate) fn unclog(&mut self, from: usize, to: usize) -> Vec<Envelope> {
        self.clogged.remove(&(from, to)).unwrap_or_default()
    }

    /// Unclogs every link.
    pub(crate) fn unclog_all(&mut self) -> Vec<Envelope> {
        std::mem::take(&mut self.clogged)
            .into_values()
            .flatten()
            .collect()
    }

    /// Counts a message onto a link; false when the link's queue is full.
    pub(crate) fn enqueue(&mut self, from: usize, to: usize) -> bool {
        let count = self.in_flight.entry((from, to)).or_default();
        if *count >= self.queue_limit {
            return false;
        }
        *count += 1;
        true
    }

    pub(crate) fn dequeue(&mut self, from: usize, to: usize) {
        if let Some(count) = self.in_flight.get_mut(&(from, to)) {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cuts_across_groups_only() {
        let mut links = Links::new(10);
        links.split(4, &[vec![0, 1]]);
        assert!(!links.is_cut(0, 1));
        assert!(links.is_cut(0, 2) && links.is_cut(2, 0));
        assert!(!links.is_cut(2, 3), "unlisted nodes form one group");
        links.heal();
        assert!(!links.is_cut(0, 2) && !links.is_cut(2, 0));
    }

    #[test]
    fn queues_are_bounded() {
        let mut links = Links::new(2);
        assert!(links.enqueue(0, 1));
        assert!(links.enqueue(0, 1));
        assert!(!links.enqueue(0, 1));
        links.dequeue(0, 1);
        assert!(links.enqueue(0, 1));
    }
}

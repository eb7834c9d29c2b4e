//! The skew section of a bench report: each figure of the `skew` bench per
//! shape and size, its ratio to the uniform shape's figure at the same size
//! (the target: at most 2x), and Phoenix's figure for the same workload
//! where one was measured (phoenix_pubsub 2.2 on the same kind of machine;
//! its states were those of the figure's own workload, at the sizes named).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{parse_size, size_text, time_text, Estimate, Throughput};

/// How far a skewed figure may be from the uniform one.
const WITHIN_UNIFORM: f64 = 2.0;

/// One figure of the skew bench: its criterion group, what it measures,
/// and whether it is read per unit of its throughput (per presence
/// returned, per entry removed) or per call.
struct Figure {
    group: &'static str,
    what: &'static str,
    per_unit: Option<&'static str>,
}

const FIGURES: [Figure; 8] = [
    Figure {
        group: "skew_joins",
        what: "10,000 own joins",
        per_unit: None,
    },
    Figure {
        group: "skew_leave",
        what: "one leave",
        per_unit: None,
    },
    Figure {
        group: "skew_leave_by_pid",
        what: "leave_by_pid of the busiest pid",
        per_unit: Some("entry removed"),
    },
    Figure {
        group: "skew_full_merge",
        what: "full merge, N + N",
        per_unit: None,
    },
    Figure {
        group: "skew_snapshot_merge",
        what: "snapshot of N into an empty peer",
        per_unit: None,
    },
    Figure {
        group: "skew_delta",
        what: "100-op delta",
        per_unit: None,
    },
    Figure {
        group: "skew_get_by_key",
        what: "get_by_key of the hottest key",
        per_unit: Some("presence"),
    },
    Figure {
        group: "skew_count",
        what: "count_presences + count_keys",
        per_unit: None,
    },
];

/// Phoenix's figures from the skew issue's table: (group, shape, what
/// Phoenix did, its time in nanoseconds per call or per unit).
const PHOENIX: [(&str, &str, &str, f64); 6] = [
    (
        "skew_joins",
        "uniform",
        "10,000 joins of distinct keys on one topic",
        40e6,
    ),
    ("skew_joins", "one_key", "10,000 joins under one key", 49e6),
    (
        "skew_joins",
        "pid_everywhere",
        "one pid joined on 10,000 topics",
        35e6,
    ),
    ("skew_leave", "one_key", "one leave under a key of 50,000", 0.05e6),
    (
        "skew_leave_by_pid",
        "pid_everywhere",
        "leave_by_pid of a pid on 10,000 topics, per entry",
        159.7e3,
    ),
    (
        "skew_get_by_key",
        "uniform",
        "get_by_topic of 10,000, per presence",
        165.0,
    ),
];

/// Targets beyond the ratio: (group, shape, size label, at most ns).
const TARGETS: [(&str, &str, &str, f64); 1] = [("skew_full_merge", "one_key", "100k", 25e6)];

/// One row: a figure for one shape at one size.
pub(super) struct SkewRow {
    figure: String,
    shape: String,
    size: f64,
    /// Per call, or per unit.
    nanos: f64,
    uniform: Option<f64>,
    phoenix: Option<(&'static str, f64)>,
    target: Option<f64>,
}

impl SkewRow {
    /// The figure over the uniform one at the same size.
    fn ratio_to_uniform(&self) -> Option<f64> {
        self.uniform.map(|uniform| self.nanos / uniform)
    }

    /// Whether it meets its targets: within 2x of uniform (skewed shapes),
    /// and under any fixed target.
    pub(super) fn met(&self) -> Option<bool> {
        let ratio = (self.shape != "uniform")
            .then(|| self.ratio_to_uniform())
            .flatten()
            .map(|ratio| ratio <= WITHIN_UNIFORM);
        let fixed = self.target.map(|limit| self.nanos <= limit);
        match (ratio, fixed) {
            (None, None) => None,
            (ratio, fixed) => Some(ratio.unwrap_or(true) && fixed.unwrap_or(true)),
        }
    }
}

/// Every figure of the skew bench found in `estimates`, figure by figure,
/// then size, then shape (uniform first).
pub(super) fn rows(estimates: &BTreeMap<String, Estimate>) -> Vec<SkewRow> {
    let mut rows = Vec::new();
    for figure in &FIGURES {
        // shape -> size -> per-call or per-unit nanoseconds.
        let mut found: BTreeMap<(u64, usize), (String, f64)> = BTreeMap::new();
        for (id, estimate) in estimates {
            let mut parts = id.split('/');
            let (Some(group), Some(shape), Some(size), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(size) = parse_size(size).filter(|_| group == figure.group) else {
                continue;
            };
            let units = match (figure.per_unit, estimate.throughput) {
                (Some(_), Some(Throughput::Elements(units))) if units > 0.0 => units,
                _ => 1.0,
            };
            let order = shape_order(shape);
            found.insert((size as u64, order), (shape.to_owned(), estimate.point / units));
        }
        for (&(size, _), (shape, nanos)) in &found {
            let uniform = found
                .get(&(size, shape_order("uniform")))
                .map(|(_, nanos)| *nanos);
            let size_label = presence_core::fixtures::size_label(size as usize);
            rows.push(SkewRow {
                figure: match figure.per_unit {
                    Some(unit) => format!("{}, per {unit}", figure.what),
                    None => figure.what.to_owned(),
                },
                shape: shape.clone(),
                size: size as f64,
                nanos: *nanos,
                uniform,
                phoenix: PHOENIX
                    .iter()
                    .find(|(group, of, _, _)| *group == figure.group && of == shape)
                    .map(|&(_, _, what, nanos)| (what, nanos)),
                target: TARGETS
                    .iter()
                    .find(|(group, of, at, _)| *group == figure.group && of == shape && *at == size_label)
                    .map(|&(_, _, _, limit)| limit),
            });
        }
    }
    rows
}

fn shape_order(shape: &str) -> usize {
    ["uniform", "one_key", "zipf", "pid_everywhere"]
        .iter()
        .position(|known| *known == shape)
        .unwrap_or(usize::MAX)
}

/// The skew table in Markdown; empty when the run has no skew figures.
pub(super) fn table(rows: &[SkewRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "| figure | shape | entries | measured | to uniform | target | met | Phoenix | Phoenix / ours |\n\
         |---|---|--:|--:|--:|--:|:-:|---|--:|\n",
    );
    for row in rows {
        let ratio = row
            .ratio_to_uniform()
            .map_or(String::new(), |ratio| format!("{ratio:.2}×"));
        let mut targets = Vec::new();
        if row.shape != "uniform" && row.uniform.is_some() {
            targets.push(format!("≤ {WITHIN_UNIFORM}× uniform"));
        }
        if let Some(limit) = row.target {
            targets.push(format!("≤ {}", time_text(limit)));
        }
        let met = match row.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let (phoenix, phoenix_ratio) = match row.phoenix {
            Some((what, nanos)) => (
                format!("{what}: {}", time_text(nanos)),
                format!("{:.0}×", nanos / row.nanos),
            ),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {ratio} | {} | {met} | {phoenix} | {phoenix_ratio} |",
            row.figure,
            row.shape,
            size_text(row.size),
            time_text(row.nanos),
            targets.join(", "),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn estimate(id: &str, nanos: f64, elements: f64) -> (String, Estimate) {
        let estimate = Estimate {
            id: id.into(),
            point: nanos,
            low: nanos,
            high: nanos,
            throughput: Some(Throughput::Elements(elements)),
            raw: Value::Null,
        };
        (id.to_owned(), estimate)
    }

    #[test]
    fn skewed_figures_are_held_to_twice_uniform_and_read_per_unit() {
        let estimates: BTreeMap<String, Estimate> = [
            estimate("skew_joins/uniform/100k", 4e6, 1e4),
            estimate("skew_joins/one_key/100k", 7e6, 1e4),
            estimate("skew_joins/zipf/100k", 9e6, 1e4),
            estimate("skew_get_by_key/uniform/100k", 200.0, 1.0),
            estimate("skew_get_by_key/one_key/100k", 5e6, 1e5),
            estimate("skew_full_merge/one_key/100k", 30e6, 1e5),
            estimate("full_merge/100k", 1e6, 1e5),
        ]
        .into_iter()
        .collect();
        let rows = rows(&estimates);
        let find = |group: &str, shape: &str| {
            rows.iter()
                .find(|row| row.figure.starts_with(group) && row.shape == shape)
                .expect("a row")
        };
        assert_eq!(
            find("10,000 own joins", "one_key").met(),
            Some(true),
            "1.75x is within 2x"
        );
        assert_eq!(
            find("10,000 own joins", "zipf").met(),
            Some(false),
            "2.25x is not"
        );
        assert_eq!(
            find("10,000 own joins", "uniform").met(),
            None,
            "uniform is the reference"
        );
        let by_key = find("get_by_key", "one_key");
        assert_eq!(by_key.nanos, 50.0, "per presence returned");
        assert_eq!(by_key.met(), Some(true));
        assert_eq!(
            find("full merge", "one_key").met(),
            Some(false),
            "over its fixed 25 ms"
        );
        let table = table(&rows);
        assert!(table.contains("10,000 joins under one key: 49.00 ms"), "{table}");
        assert!(table.contains("| **no** |"));
        assert_eq!(rows.len(), 6, "only skew figures");
        assert!(super::table(&[]).is_empty());
    }
}

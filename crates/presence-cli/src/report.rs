//! `presence report`: criterion's estimates (and the memory bench's figures)
//! as a dated report under `reports/bench/<date>-<machine>/`: a README with
//! the provenance and one table of every figure against its target and the
//! Phoenix anchor, the raw estimates, and two SVG charts. It also rewrites
//! the bench section of `reports/README.md`.

mod plot;
mod skew;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use presence_core::fixtures::size_label;
use serde_json::Value;

use crate::provenance::{command_output, commit, cores, cpu_model, machine_name, today};
use crate::Failure;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Criterion's output folder.
    #[arg(long, default_value = "target/criterion")]
    pub criterion_dir: PathBuf,
    /// The folder that receives this run's folder.
    #[arg(long, default_value = "reports/bench")]
    pub out: PathBuf,
    /// This run's folder name [default: <date>-<machine>].
    #[arg(long)]
    pub name: Option<String>,
    /// The index whose bench section lists the runs and the latest table.
    #[arg(long, default_value = "reports/README.md")]
    pub index: PathBuf,
    /// The command that produced the estimates, recorded in the report.
    #[arg(long, default_value = "cargo bench")]
    pub bench_command: String,
}

/// One criterion benchmark: its id and its time per iteration in
/// nanoseconds (criterion's slope where it has one, else its mean).
#[derive(Debug, Clone)]
struct Estimate {
    id: String,
    point: f64,
    low: f64,
    high: f64,
    throughput: Option<Throughput>,
    raw: Value,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Throughput {
    Elements(f64),
    Bytes(f64),
}

/// Why a report could not be written.
#[derive(Debug)]
enum ReportError {
    Io(PathBuf, std::io::Error),
    Json(PathBuf, serde_json::Error),
    Field(PathBuf, &'static str),
    Empty(PathBuf),
}

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportError::Io(path, error) => write!(f, "{}: {error}", path.display()),
            ReportError::Json(path, error) => write!(f, "{}: not criterion's JSON: {error}", path.display()),
            ReportError::Field(path, field) => write!(f, "{}: no field `{field}`", path.display()),
            ReportError::Empty(path) => {
                write!(
                    f,
                    "{}: no criterion estimates (run `cargo bench` first)",
                    path.display()
                )
            }
        }
    }
}

fn read_json(path: &Path) -> Result<Value, ReportError> {
    let bytes = std::fs::read(path).map_err(|error| ReportError::Io(path.to_owned(), error))?;
    serde_json::from_slice(&bytes).map_err(|error| ReportError::Json(path.to_owned(), error))
}

fn number(value: &Value, pointer: &str) -> Option<f64> {
    value.pointer(pointer).and_then(Value::as_f64)
}

/// Reads one benchmark's `new/` folder.
fn read_estimate(new: &Path) -> Result<Estimate, ReportError> {
    let benchmark_path = new.join("benchmark.json");
    let estimates_path = new.join("estimates.json");
    let benchmark = read_json(&benchmark_path)?;
    let estimates = read_json(&estimates_path)?;
    let id = benchmark
        .get("full_id")
        .and_then(Value::as_str)
        .ok_or(ReportError::Field(benchmark_path.clone(), "full_id"))?
        .to_owned();
    let statistic = if estimates.get("slope").is_some_and(|slope| !slope.is_null()) {
        "slope"
    } else {
        "mean"
    };
    let field = |pointer: &'static str| {
        number(&estimates, &format!("/{statistic}{pointer}"))
            .ok_or(ReportError::Field(estimates_path.clone(), pointer))
    };
    let throughput = match benchmark.get("throughput") {
        Some(Value::Object(kind)) => kind.iter().next().and_then(|(kind, amount)| {
            let amount = amount.as_f64()?;
            match kind.as_str() {
                "Elements" => Some(Throughput::Elements(amount)),
                "Bytes" | "BytesDecimal" => Some(Throughput::Bytes(amount)),
                _ => None,
            }
        }),
        _ => None,
    };
    Ok(Estimate {
        id,
        point: field("/point_estimate")?,
        low: field("/confidence_interval/lower_bound")?,
        high: field("/confidence_interval/upper_bound")?,
        throughput,
        raw: serde_json::json!({ "benchmark": benchmark, "estimates": estimates }),
    })
}

/// Every benchmark under `dir`, by id. Criterion nests a benchmark's
/// folder at most three deep (`group/function/value/new`).
fn read_estimates(dir: &Path) -> Result<BTreeMap<String, Estimate>, ReportError> {
    fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> Result<(), ReportError> {
        let entries = std::fs::read_dir(dir).map_err(|error| ReportError::Io(dir.to_owned(), error))?;
        let mut children: Vec<PathBuf> = entries.filter_map(Result::ok).map(|entry| entry.path()).collect();
        children.sort();
        for child in children.into_iter().filter(|child| child.is_dir()) {
            if child.file_name().is_some_and(|name| name == "new") && child.join("benchmark.json").is_file() {
                found.push(child);
            } else if depth < 4 && child.file_name().is_none_or(|name| name != "report") {
                walk(&child, depth + 1, found)?;
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(dir, 0, &mut found)?;
    let mut estimates = BTreeMap::new();
    for new in found {
        let estimate = read_estimate(&new)?;
        estimates.insert(estimate.id.clone(), estimate);
    }
    if estimates.is_empty() {
        return Err(ReportError::Empty(dir.to_owned()));
    }
    Ok(estimates)
}

/// A duration in nanoseconds, in the unit that reads best.
fn time_text(nanos: f64) -> String {
    if nanos < 1e3 {
        format!("{nanos:.0} ns")
    } else if nanos < 1e6 {
        format!("{:.1} µs", nanos / 1e3)
    } else if nanos < 1e9 {
        format!("{:.2} ms", nanos / 1e6)
    } else {
        format!("{:.2} s", nanos / 1e9)
    }
}

/// A whole number with thousands grouped: `161,234`.
fn grouped(value: f64) -> String {
    let digits = (value.round() as u64).to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A rate: `161,234 states/s`.
fn rate_text(rate: f64, unit: &str) -> String {
    format!("{} {unit}", grouped(rate))
}

/// What a figure is held to.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Time in nanoseconds, at most.
    TimeAtMost(f64),
    /// A rate in the row's unit, at least.
    RateAtLeast(f64),
    /// A plain number, at most.
    AtMost(f64),
}

/// The reference a figure is compared with: Phoenix.Tracker.State's figure
/// on the same workload (see `benches/README.md`), or presence-core's own for a peer's row.
#[derive(Debug, Clone)]
struct Anchor {
    label: String,
    /// The reference's time over the row's, as a range.
    ratio: (f64, f64),
    /// What a ratio above one means: `faster`, or `slower` for a peer.
    wording: &'static str,
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Row {
    figure: String,
    /// The measured value: nanoseconds, a rate or a plain number.
    value: f64,
    text: String,
    interval: String,
    target: Option<Target>,
    anchor: Option<Anchor>,
}

impl Row {
    fn met(&self) -> Option<bool> {
        Some(match self.target? {
            Target::TimeAtMost(limit) | Target::AtMost(limit) => self.value <= limit,
            Target::RateAtLeast(floor) => self.value >= floor,
        })
    }

    fn target_text(&self) -> String {
        match self.target {
            Some(Target::TimeAtMost(limit)) => format!("≤ {}", time_text(limit)),
            Some(Target::RateAtLeast(floor)) => format!("≥ {}", rate_text(floor, self.rate_unit())),
            Some(Target::AtMost(limit)) => format!("≤ {limit}"),
            None => String::new(),
        }
    }

    fn rate_unit(&self) -> &str {
        self.text.split_once(' ').map_or("", |(_, unit)| unit)
    }

    fn ratio_text(&self) -> String {
        let Some(anchor) = &self.anchor else {
            return String::new();
        };
        let (low, high) = anchor.ratio;
        let speed = |ratio: f64| {
            if ratio >= 10.0 {
                format!("{ratio:.0}")
            } else {
                format!("{ratio:.1}")
            }
        };
        if speed(low) == speed(high) {
            format!("{}× {}", speed(low), anchor.wording)
        } else {
            format!("{}–{}× {}", speed(low), speed(high), anchor.wording)
        }
    }
}

const PHOENIX_FULL_MERGE: (f64, f64) = (271e6, 300e6);
const PHOENIX_PERMDOWN: (f64, f64) = (293e6, 310e6);
const PHOENIX_DELTA_200K: f64 = 60e6;

/// Phoenix's time `(low, high)` in nanoseconds against a row's `nanos`.
fn phoenix(label: &str, (low, high): (f64, f64), nanos: f64) -> Option<Anchor> {
    Some(Anchor {
        label: format!("Phoenix: {label}"),
        ratio: (low / nanos, high / nanos),
        wording: "faster",
    })
}

/// The benchmarks `group/<size>`, by size.
fn sized<'a>(estimates: &'a BTreeMap<String, Estimate>, group: &str) -> Vec<(f64, &'a Estimate)> {
    let mut found: Vec<(f64, &Estimate)> = estimates
        .iter()
        .filter_map(|(id, estimate)| {
            let (prefix, size) = id.rsplit_once('/')?;
            if prefix != group {
                return None;
            }
            Some((parse_size(size)?, estimate))
        })
        .collect();
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    found
}

/// The rows of the table: merges, deltas, replica-level and local
/// operations, rates, then memory.
fn rows(estimates: &BTreeMap<String, Estimate>, memory: Option<&Value>) -> Vec<Row> {
    let mut rows = merge_rows(estimates);
    rows.extend(delta_rows(estimates));
    rows.extend(named_rows(estimates));
    rows.extend(rate_rows(estimates));
    rows.extend(memory.map(memory_rows).unwrap_or_default());
    rows
}

/// A row that reads a time.
fn time_row(estimate: &Estimate, figure: String) -> Row {
    Row {
        figure,
        value: estimate.point,
        text: time_text(estimate.point),
        interval: format!("{} – {}", time_text(estimate.low), time_text(estimate.high)),
        target: None,
        anchor: None,
    }
}

/// A row that reads a rate in `unit`: the estimate's throughput (or one
/// element) over its time, divided by `scale`.
fn rate_row(estimate: &Estimate, figure: String, unit: &str, scale: f64) -> Row {
    let amount = match estimate.throughput {
        Some(Throughput::Elements(amount) | Throughput::Bytes(amount)) => amount,
        None => 1.0,
    };
    let rate = |nanos: f64| amount / scale / (nanos / 1e9);
    Row {
        figure,
        value: rate(estimate.point),
        text: rate_text(rate(estimate.point), unit),
        // A longer time is a lower rate.
        interval: format!(
            "{} – {}",
            grouped(rate(estimate.high)),
            grouped(rate(estimate.low))
        ),
        target: None,
        anchor: None,
    }
}

/// Full merges by size, with the target and Phoenix at 100k, then the
/// `crdts` `Orswot` merging the same members beside ours.
fn merge_rows(estimates: &BTreeMap<String, Estimate>) -> Vec<Row> {
    let mut rows = Vec::new();
    for (size, estimate) in sized(estimates, "full_merge") {
        let mut row = time_row(
            estimate,
            format!("full merge, {0} + {0} entries", size_text(size)),
        );
        if size == 1e5 {
            row.target = Some(Target::TimeAtMost(25e6));
            row.anchor = phoenix("271–300 ms", PHOENIX_FULL_MERGE, row.value);
        }
        rows.push(row);
    }
    for (size, estimate) in sized(estimates, "full_merge_orswot") {
        let mut row = time_row(
            estimate,
            format!("crdts `Orswot` merge, {0} + {0}", size_text(size)),
        );
        if let Some(ours) = estimates.get(&format!("full_merge/{}", size_label(size as usize))) {
            let ratio = row.value / ours.point;
            row.anchor = Some(Anchor {
                label: format!("presence-core: {}", time_text(ours.point)),
                ratio: (ratio, ratio),
                wording: "slower",
            });
        }
        rows.push(row);
    }
    rows
}

/// Delta merges by size, with the target and Phoenix at 1m, and the ratio
/// of 1m to 10k (the curve must stay flat).
fn delta_rows(estimates: &BTreeMap<String, Estimate>) -> Vec<Row> {
    let mut rows = Vec::new();
    let deltas = sized(estimates, "delta_merge");
    for &(size, estimate) in &deltas {
        let mut row = time_row(estimate, format!("100-op delta into {} entries", size_text(size)));
        if size == 1e6 {
            row.target = Some(Target::TimeAtMost(50e3));
            row.anchor = phoenix(
                "60 ms into 200k",
                (PHOENIX_DELTA_200K, PHOENIX_DELTA_200K),
                row.value,
            );
        }
        rows.push(row);
    }
    if let (Some(small), Some(large)) = (
        deltas.iter().find(|(size, _)| *size == 1e4),
        deltas.iter().find(|(size, _)| *size == 1e6),
    ) {
        let ratio = large.1.point / small.1.point;
        rows.push(Row {
            figure: "delta merge, 1m / 10k".into(),
            value: ratio,
            text: format!("{ratio:.2}×"),
            interval: String::new(),
            target: Some(Target::AtMost(2.0)),
            anchor: None,
        });
    }
    rows
}

/// Replica-level and local operations, by benchmark id.
const NAMED: [(&str, &str); 8] = [
    (
        "replicas/extract_lag_1pct",
        "extract for a peer lagging 1% (of 200k)",
    ),
    ("replicas/replica_down_100k", "replica_down, 100k entries"),
    ("replicas/replica_up_100k", "replica_up, 100k entries"),
    ("replicas/permdown_100k", "permdown, 100k entries"),
    ("local_ops_10k_topic/join", "join, topic of 10k"),
    ("local_ops_10k_topic/leave", "leave, topic of 10k"),
    ("local_ops_10k_topic/update", "update, topic of 10k"),
    ("local_ops_10k_topic/get_by_topic", "get_by_topic, topic of 10k"),
];

fn named_rows(estimates: &BTreeMap<String, Estimate>) -> Vec<Row> {
    NAMED
        .iter()
        .filter_map(|&(id, figure)| {
            let mut row = time_row(estimates.get(id)?, figure.into());
            if id == "replicas/permdown_100k" {
                row.target = Some(Target::TimeAtMost(20e6));
                row.anchor = phoenix("293–310 ms", PHOENIX_PERMDOWN, row.value);
            }
            Some(row)
        })
        .collect()
}

/// Rates: (benchmark id, figure, unit, scale, the least rate wanted).
const RATES: [(&str, &str, &str, f64, Option<f64>); 5] = [
    (
        "json/encode_100k",
        "JSON encode, 100k entries",
        "MB/s",
        1e6,
        Some(300.0),
    ),
    (
        "json/decode_100k",
        "JSON decode with validation, 100k",
        "MB/s",
        1e6,
        Some(150.0),
    ),
    (
        "simulator/swarm_events",
        "simulator, swarm seeds 1-10",
        "events/s",
        1.0,
        None,
    ),
    (
        "stateright/crdt_states",
        "stateright CRDT model (2 replicas, 2 ops, 1 fault or restart), 1 thread",
        "unique states/s",
        1.0,
        None,
    ),
    (
        "stateright/protocol_states",
        "stateright protocol model (3 nodes, 1 tick), 1 thread",
        "unique states/s",
        1.0,
        Some(100_000.0),
    ),
];

fn rate_rows(estimates: &BTreeMap<String, Estimate>) -> Vec<Row> {
    RATES
        .iter()
        .filter_map(|&(id, figure, unit, scale, floor)| {
            let mut row = rate_row(estimates.get(id)?, figure.into(), unit, scale);
            row.target = floor.map(Target::RateAtLeast);
            Some(row)
        })
        .collect()
}

/// The memory bench's figures: per entry for the uniform own replica, a
/// peer's copy, the `Orswot`, and each skewed shape.
fn memory_rows(memory: &Value) -> Vec<Row> {
    let mut rows = Vec::new();
    let entries = memory.get("entries").and_then(Value::as_f64).unwrap_or(0.0);
    for (field, figure) in [
        ("own_replica_bytes_per_entry", "memory, own replica"),
        ("peer_copy_bytes_per_entry", "memory, a peer's copy"),
        ("orswot_bytes_per_member", "memory, crdts `Orswot`"),
    ] {
        if let Some(bytes) = memory.get(field).and_then(Value::as_f64) {
            rows.push(memory_row(
                format!("{figure}, {} entries, meta excluded", size_text(entries)),
                bytes,
            ));
        }
    }
    let skewed = memory.get("skewed_own_replica").and_then(Value::as_object);
    for (field, bytes) in skewed.into_iter().flatten() {
        let (Some(shape), Some(bytes)) = (field.strip_suffix("_bytes_per_entry"), bytes.as_f64()) else {
            continue;
        };
        rows.push(memory_row(
            format!(
                "memory, own replica, `{shape}` shape, {} entries, meta excluded",
                size_text(entries)
            ),
            bytes,
        ));
    }
    rows
}

fn memory_row(figure: String, bytes: f64) -> Row {
    Row {
        figure,
        value: bytes,
        text: format!("{bytes:.0} bytes/entry"),
        interval: String::new(),
        target: None,
        anchor: None,
    }
}

fn parse_size(label: &str) -> Option<f64> {
    let (digits, scale) = match label.as_bytes().last()? {
        b'k' => (&label[..label.len() - 1], 1e3),
        b'm' => (&label[..label.len() - 1], 1e6),
        _ => (label, 1.0),
    };
    digits.parse::<f64>().ok().map(|value| value * scale)
}

/// `100,000`.
fn size_text(size: f64) -> String {
    grouped(size)
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| figure | measured | 95% CI | target | met | anchor | ratio to anchor |\n|---|--:|--:|--:|:-:|---|---|\n",
    );
    for row in rows {
        let met = match row.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {met} | {} | {} |",
            row.figure,
            row.text,
            row.interval,
            row.target_text(),
            row.anchor.as_ref().map_or("", |anchor| anchor.label.as_str()),
            row.ratio_text()
        );
    }
    out
}

fn merge_chart(estimates: &BTreeMap<String, Estimate>) -> String {
    let series_of = |group: &str| -> Vec<(f64, f64)> {
        sized(estimates, group)
            .into_iter()
            .map(|(size, estimate)| (size, estimate.point / 1e9))
            .collect()
    };
    let mut series = vec![
        plot::Series {
            label: "presence-core full merge (N + N)".into(),
            colour: "#2563eb",
            points: series_of("full_merge"),
        },
        plot::Series {
            label: "crdts Orswot full merge (N + N)".into(),
            colour: "#9333ea",
            points: series_of("full_merge_orswot"),
        },
        plot::Series {
            label: "presence-core 100-op delta into N".into(),
            colour: "#059669",
            points: series_of("delta_merge"),
        },
    ];
    if let Some(permdown) = estimates.get("replicas/permdown_100k") {
        series.push(plot::Series {
            label: "presence-core permdown of N".into(),
            colour: "#d97706",
            points: vec![(1e5, permdown.point / 1e9)],
        });
    }
    series.retain(|line| !line.points.is_empty());
    let anchor = |label: &str, x: f64, (low, high): (f64, f64), label_left: bool| plot::Anchor {
        label: format!("Phoenix {label}"),
        x,
        low: low / 1e9,
        high: high / 1e9,
        label_left,
    };
    // Phoenix's permdown is drawn a little right of 100k, clear of its full merge.
    let anchors = [
        anchor("full merge", 1e5, PHOENIX_FULL_MERGE, true),
        anchor("permdown", 1.25e5, PHOENIX_PERMDOWN, false),
        anchor(
            "delta into 200k",
            2e5,
            (PHOENIX_DELTA_200K, PHOENIX_DELTA_200K),
            false,
        ),
    ];
    plot::log_log(
        "Merge time against state size (log-log)",
        "entries per replica (N)",
        &series,
        &anchors,
    )
}

fn throughput_chart(estimates: &BTreeMap<String, Estimate>, rows: &[Row]) -> String {
    let mut sections: BTreeMap<String, Vec<plot::Bar>> = BTreeMap::new();
    let per_second = [
        ("full_merge/100k", "full merge, 100k + 100k", "entries/s"),
        (
            "full_merge_orswot/100k",
            "crdts Orswot merge, 100k + 100k",
            "entries/s",
        ),
        ("full_merge/1m", "full merge, 1m + 1m", "entries/s"),
        ("full_merge_orswot/1m", "crdts Orswot merge, 1m + 1m", "entries/s"),
        ("replicas/permdown_100k", "permdown, 100k", "entries/s"),
        ("replicas/replica_down_100k", "replica_down, 100k", "entries/s"),
        ("replicas/replica_up_100k", "replica_up, 100k", "entries/s"),
        ("delta_merge/10k", "100-op delta into 10k", "ops/s"),
        ("delta_merge/1m", "100-op delta into 1m", "ops/s"),
    ];
    for (id, label, unit) in per_second {
        if let Some(Estimate {
            point,
            throughput: Some(Throughput::Elements(amount)),
            ..
        }) = estimates.get(id)
        {
            let rate = amount / (point / 1e9);
            sections.entry(unit.to_owned()).or_default().push(plot::Bar {
                label: label.into(),
                value: rate,
                text: rate_text(rate, unit),
                target: None,
            });
        }
    }
    for row in rows {
        let unit = row.rate_unit();
        if !unit.ends_with("/s") {
            continue;
        }
        let target = match row.target {
            Some(Target::RateAtLeast(floor)) => Some(floor),
            _ => None,
        };
        sections.entry(unit.to_owned()).or_default().push(plot::Bar {
            label: row.figure.clone(),
            value: row.value,
            text: row.text.clone(),
            target,
        });
    }
    let sections: Vec<plot::Section> = sections
        .into_iter()
        .map(|(title, bars)| plot::Section { title, bars })
        .collect();
    plot::bars("Throughput (higher is better)", &sections)
}

/// The run's README.
fn readme(args: &ReportArgs, name: &str, rows: &[Row], skewed: &[skew::SkewRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmark run {name}\n");
    let _ = writeln!(
        out,
        "Generated by `presence report` from criterion's estimates; do not edit.\n"
    );
    let _ = writeln!(out, "- benches: `{}`", args.bench_command);
    let _ = writeln!(out, "- report: `presence report --name {name}`");
    let _ = writeln!(out, "- commit: `{}`", commit());
    let _ = writeln!(out, "- toolchain: `{}`", command_output("rustc", &["--version"]));
    let _ = writeln!(out, "- machine: {} cores, {}", cores(), cpu_model());
    let _ = writeln!(out, "- date: {}\n", today());
    let _ = writeln!(
        out,
        "Times are criterion's slope estimate (its mean for flat sampling), with the 95% confidence \
         interval. Anchors are Phoenix.Tracker.State's figures on the same workload (see \
         `benches/README.md`).\n"
    );
    out.push_str(&table(rows));
    if !skewed.is_empty() {
        let _ = writeln!(
            out,
            "\n## Skew\n\nThe `skew` bench: the same operations on states whose entries all share one \
             room and one key (`one_key`), one room with Zipf(1.1) keys (`zipf`), or one pid on every \
             topic (`pid_everywhere`), beside the first wave's uniform spread. Each skewed figure is held \
             to at most twice the uniform one at the same size. Phoenix's figures are from the skew \
             issue (phoenix_pubsub 2.2, same kind of machine, at the sizes named).\n"
        );
        out.push_str(&skew::table(skewed));
    }
    let _ = writeln!(out, "\n![merge time against state size](merge.svg)\n");
    let _ = writeln!(out, "![throughput](throughput.svg)\n");
    let _ = writeln!(
        out,
        "Raw estimates, as criterion wrote them: `raw-estimates.json`."
    );
    out
}

const INDEX_START: &str = "<!-- bench-runs:start (generated by `presence report`) -->";
const INDEX_END: &str = "<!-- bench-runs:end -->";

/// Rewrites the bench section of the index: every run in `out`, newest
/// first, and the table of the run just written.
fn update_index(args: &ReportArgs, name: &str, rows: &[Row]) -> Result<(), ReportError> {
    let mut runs: Vec<String> = std::fs::read_dir(&args.out)
        .map_err(|error| ReportError::Io(args.out.clone(), error))?
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("README.md").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    runs.sort();
    runs.reverse();
    let base = args.index.parent().unwrap_or(Path::new(""));
    let link = args
        .out
        .strip_prefix(base)
        .map_or_else(|_| args.out.clone(), Path::to_path_buf);
    let mut section = format!("{INDEX_START}\n## Benchmark runs\n\n");
    for run in &runs {
        let _ = writeln!(section, "- [{run}]({}/{run}/README.md)", link.display());
    }
    let _ = writeln!(section, "\n### Latest: {name}\n");
    section.push_str(&table(rows));
    section.push_str(INDEX_END);

    let current = match std::fs::read_to_string(&args.index) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => "# reports/\n".to_owned(),
        Err(error) => return Err(ReportError::Io(args.index.clone(), error)),
    };
    let updated = match (current.find(INDEX_START), current.find(INDEX_END)) {
        (Some(start), Some(end)) if start < end => {
            format!(
                "{}{section}{}",
                &current[..start],
                &current[end + INDEX_END.len()..]
            )
        }
        _ => format!("{}\n{section}\n", current.trim_end()),
    };
    std::fs::write(&args.index, updated).map_err(|error| ReportError::Io(args.index.clone(), error))
}

fn generate(args: &ReportArgs) -> Result<PathBuf, ReportError> {
    let estimates = read_estimates(&args.criterion_dir)?;
    let memory_path = args.criterion_dir.join("presence-memory.json");
    let memory = if memory_path.is_file() {
        Some(read_json(&memory_path)?)
    } else {
        None
    };
    let rows = rows(&estimates, memory.as_ref());
    let skewed = skew::rows(&estimates);
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", today(), machine_name()));
    let folder = args.out.join(&name);
    std::fs::create_dir_all(&folder).map_err(|error| ReportError::Io(folder.clone(), error))?;
    let raw: BTreeMap<&str, &Value> = estimates
        .iter()
        .map(|(id, estimate)| (id.as_str(), &estimate.raw))
        .collect();
    let raw = serde_json::json!({ "criterion": raw, "memory": memory });
    let files = [
        ("README.md", readme(args, &name, &rows, &skewed)),
        ("merge.svg", merge_chart(&estimates)),
        ("throughput.svg", throughput_chart(&estimates, &rows)),
        (
            "raw-estimates.json",
            serde_json::to_string_pretty(&raw).expect("JSON values serialise") + "\n",
        ),
    ];
    for (file, contents) in files {
        let path = folder.join(file);
        std::fs::write(&path, contents).map_err(|error| ReportError::Io(path, error))?;
    }
    update_index(args, &name, &rows)?;
    Ok(folder)
}

pub fn run(args: &ReportArgs) -> Result<(), Failure> {
    match generate(args) {
        Ok(folder) => {
            say!("wrote {}", folder.display());
            say!("updated {}", args.index.display());
            Ok(())
        }
        Err(error) => {
            eprintln!("error: {error}");
            Err(Failure::Usage)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(id: &str, nanos: f64, throughput: Option<Throughput>) -> (String, Estimate) {
        let estimate = Estimate {
            id: id.into(),
            point: nanos,
            low: nanos * 0.9,
            high: nanos * 1.1,
            throughput,
            raw: Value::Null,
        };
        (id.to_owned(), estimate)
    }

    #[test]
    fn rows_hold_figures_to_targets_and_anchors() {
        let estimates: BTreeMap<_, _> = [
            estimate("full_merge/100k", 15e6, Some(Throughput::Elements(1e5))),
            estimate("full_merge_orswot/100k", 105e6, None),
            estimate("delta_merge/10k", 30e3, None),
            estimate("delta_merge/1m", 66e3, None),
            estimate("replicas/permdown_100k", 5e6, None),
            estimate("json/encode_100k", 50e6, Some(Throughput::Bytes(16e6))),
        ]
        .into_iter()
        .collect();
        let rows = rows(&estimates, None);
        let find = |prefix: &str| {
            rows.iter()
                .find(|row| row.figure.starts_with(prefix))
                .expect(prefix)
        };

        let full = find("full merge, 100,000");
        assert_eq!(full.met(), Some(true));
        assert_eq!(full.ratio_text(), "18–20× faster");
        assert_eq!(find("crdts `Orswot` merge").ratio_text(), "7.0× slower");
        let delta = find("100-op delta into 1,000,000");
        assert_eq!(delta.met(), Some(false), "66 µs misses 50 µs");
        let ratio = find("delta merge, 1m / 10k");
        assert_eq!(ratio.text, "2.20×");
        assert_eq!(ratio.met(), Some(false));
        let encode = find("JSON encode");
        assert_eq!(encode.text, "320 MB/s");
        assert_eq!(encode.met(), Some(true));
        let markdown = table(&rows);
        assert!(markdown.contains("| **no** |"), "{markdown}");
    }

    #[test]
    fn sizes_and_rates_read_well() {
        assert_eq!(parse_size("100k"), Some(1e5));
        assert_eq!(parse_size("1m"), Some(1e6));
        assert_eq!(parse_size("x"), None);
        assert_eq!(size_label(1e6 as usize), "1m");
        assert_eq!(rate_text(161_234.4, "states/s"), "161,234 states/s");
        assert_eq!(time_text(1_500.0), "1.5 µs");
        assert_eq!(time_text(2.5e7), "25.00 ms");
    }

    #[test]
    fn a_report_reads_criterion_output_and_keeps_the_index_section() {
        let dir = std::env::temp_dir().join(format!("presence-report-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let new = dir.join("criterion/full_merge/100k/new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"full_merge","function_id":null,"value_str":"100k","throughput":{"Elements":100000},"full_id":"full_merge/100k","directory_name":"full_merge/100k","title":"full_merge/100k"}"#,
        )
        .unwrap();
        let interval = r#"{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.4e7,"upper_bound":1.6e7},"point_estimate":1.5e7,"standard_error":1e5}"#;
        std::fs::write(
            new.join("estimates.json"),
            format!(r#"{{"mean":{interval},"slope":null}}"#),
        )
        .unwrap();
        std::fs::write(dir.join("README.md"), "# reports/\n\nHand-written intro.\n").unwrap();
        let args = ReportArgs {
            criterion_dir: dir.join("criterion"),
            out: dir.join("bench"),
            name: Some("2026-11-22-test".into()),
            index: dir.join("README.md"),
            bench_command: "cargo bench".into(),
        };
        for _ in 0..2 {
            generate(&args).expect("the report is written");
        }
        let readme = std::fs::read_to_string(dir.join("bench/2026-11-22-test/README.md")).unwrap();
        assert!(
            readme.contains("| full merge, 100,000 + 100,000 entries | 15.00 ms |"),
            "{readme}"
        );
        assert!(
            std::fs::read_to_string(dir.join("bench/2026-11-22-test/merge.svg"))
                .unwrap()
                .contains("<polyline")
        );
        let index = std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(index.starts_with("# reports/\n\nHand-written intro.\n"));
        assert_eq!(
            index.matches(INDEX_START).count(),
            1,
            "regenerating replaces the section"
        );
        assert!(
            index.contains("- [2026-11-22-test](bench/2026-11-22-test/README.md)"),
            "{index}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(read_estimates(&dir), Err(ReportError::Io(..))));
    }
}

//! `presence swarm`: swarm testing over many seeds.
//!
//! A sweep can be cut into shards for a fleet (`--shard K/N`, or
//! `--shards N` with K from the scheduler: Kubernetes Indexed Jobs'
//! `JOB_COMPLETION_INDEX`, Slurm's `SLURM_ARRAY_TASK_ID`): shard K runs the
//! seeds whose offset from `--first` is K modulo N, so the N shards run
//! exactly the unsharded sweep's seeds, each about as long. `--results FILE`
//! writes one JSON line per seed, as each passing seed ends (so a stopped
//! shard keeps what it ran; failing seeds follow at the end, with their
//! shrunk signatures), and `presence swarm merge FILE...` sums the shards
//! (see [`crate::merge`]).

use std::io::Write;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use presence_sim::Scenario;

use presence_tracker::marks::Mark;

use crate::runner::{parallel, run_one, shrink_and_save, threads, Outcome};
use crate::Failure;

/// Arguments of `presence swarm`.
#[derive(clap::Args, Debug)]
pub struct SwarmArgs {
    /// How many seeds.
    #[arg(long, default_value_t = 1_000)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Worker threads, 1 to 1,024 (default: the machine's cores).
    #[arg(long, value_parser = crate::thread_count)]
    pub threads: Option<usize>,
    /// Do not shrink a failing run.
    #[arg(long)]
    pub no_shrink: bool,
    /// A coverage mark these seeds must reach (repeatable). A sweep of 300
    /// seeds or more must reach every mark the preset requires anyway.
    #[arg(long = "require-mark", value_parser = mark_named)]
    pub require_marks: Vec<Mark>,
    /// Run shard K of N (0 <= K < N): the seeds whose offset from --first
    /// is K modulo N.
    #[arg(long, value_parser = shard_of, conflicts_with = "shards")]
    pub shard: Option<(u64, u64)>,
    /// Run one of N shards, K taken from the scheduler's environment:
    /// JOB_COMPLETION_INDEX (Kubernetes Indexed Job), else
    /// SLURM_ARRAY_TASK_ID minus SLURM_ARRAY_TASK_MIN (Slurm job array).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub shards: Option<u64>,
    /// Write one JSON line per seed here (seed, verdict, invariant, trace
    /// hash, drawn options, wall time, commit, coverage marks), for
    /// `presence swarm merge`.
    #[arg(long)]
    pub results: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub action: Option<SwarmAction>,
}

/// What else `presence swarm` does.
#[derive(clap::Subcommand, Debug)]
pub enum SwarmAction {
    /// Sum the results of shards: totals, failures by invariant and shrunk
    /// signature, coverage, and missing or duplicated seeds. Exits with the
    /// worst failure's code, or 5 if a seed is missing or ran twice.
    Merge(crate::merge::MergeArgs),
}

fn shard_of(text: &str) -> Result<(u64, u64), String> {
    let (k, n) = text.split_once('/').ok_or("a shard is K/N, as 3/16")?;
    let k: u64 = k.parse().map_err(|_| format!("{k:?} is not a shard number"))?;
    let n: u64 = n.parse().map_err(|_| format!("{n:?} is not a shard count"))?;
    if n == 0 || k >= n {
        return Err(format!("shard {k}/{n}: K must be below N, and N at least 1"));
    }
    Ok((k, n))
}

/// K of N from the scheduler's environment.
fn shard_from_env(shards: u64) -> Result<(u64, u64), String> {
    let number = |name: &str| -> Result<Option<u64>, String> {
        match std::env::var(name) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("{name}={text:?} is not a number")),
            Err(_) => Ok(None),
        }
    };
    let index = match number("JOB_COMPLETION_INDEX")? {
        Some(index) => index,
        None => match number("SLURM_ARRAY_TASK_ID")? {
            Some(id) => {
                let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                id.checked_sub(min)
                    .ok_or("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN")?
            }
            None => {
                return Err(
                    "--shards needs JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID in the environment".into(),
                )
            }
        },
    };
    if index >= shards {
        return Err(format!(
            "the scheduler's index {index} is not below --shards {shards}"
        ));
    }
    Ok((index, shards))
}

fn mark_named(name: &str) -> Result<Mark, String> {
    Mark::ALL
        .into_iter()
        .find(|mark| mark.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = Mark::ALL.iter().map(|mark| mark.name()).collect();
            format!("no mark is named {name:?}; the marks are {}", names.join(", "))
        })
}

/// The results file of a sweep, and the first error writing it.
struct Results {
    file: std::io::BufWriter<std::fs::File>,
    error: Option<std::io::Error>,
}

impl Results {
    /// Writes one line and hands it to the system at once; after an
    /// error, writes nothing more.
    fn write(&mut self, line: &serde_json::Value) {
        if self.error.is_none() {
            if let Err(error) = writeln!(self.file, "{line}").and_then(|()| self.file.flush()) {
                self.error = Some(error);
            }
        }
    }

    fn finish(mut self) -> std::io::Result<()> {
        match self.error.take() {
            Some(error) => Err(error),
            None => self.file.flush(),
        }
    }
}

/// The most seeds one `presence swarm` runs.
const MAX_SEEDS: u64 = 10_000_000;

pub fn run(args: &SwarmArgs) -> Result<(), Failure> {
    if let Some(SwarmAction::Merge(merge)) = &args.action {
        return crate::merge::run(merge);
    }
    // A swarm of no seed checks nothing, and a range past u64::MAX would
    // wrap to one that does not hold the seeds asked for.
    // One run keeps every seed's outcome in memory: more seeds than
    // MAX_SEEDS go in several runs.
    let last = args.first.checked_add(args.seeds);
    let Some(last) = last.filter(|_| (1..=MAX_SEEDS).contains(&args.seeds)) else {
        eprintln!(
            "error: --first {} --seeds {} is not a range of 1 to {MAX_SEEDS} seeds within 64 bits",
            args.first, args.seeds
        );
        return Err(Failure::Usage);
    };
    let shard = match (args.shard, args.shards) {
        (Some(shard), _) => Some(shard),
        (None, Some(shards)) => Some(shard_from_env(shards).map_err(|error| {
            eprintln!("error: {error}");
            Failure::Usage
        })?),
        (None, None) => None,
    };
    let (k, n) = shard.unwrap_or((0, 1));
    let seeds: Vec<u64> = (args.first..last)
        .filter(|seed| (seed - args.first) % n == k)
        .collect();
    if seeds.is_empty() {
        eprintln!("error: shard {k}/{n} of {} seeds holds none", args.seeds);
        return Err(Failure::Usage);
    }
    let bar = ProgressBar::new(seeds.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {elapsed_precise}  {msg}")
            .expect("a valid template"),
    );
    let run_info = crate::merge::RunInfo {
        range: (args.first, last),
        shard: (k, n),
        commit: env!("PRESENCE_BUILD_COMMIT").to_owned(),
    };
    // The results file is opened before any seed runs, so a path that
    // cannot be written fails at once, not after the sweep. A passing
    // seed's line is written as soon as it ends, so a shard stopped
    // part-way (a preempted node) keeps what it ran, and the merge names
    // the rest as missing; failing seeds are written at the end, with the
    // signatures of their shrunk runs.
    let results = match &args.results {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Some(std::sync::Mutex::new(Results {
                file: std::io::BufWriter::new(file),
                error: None,
            })),
            Err(error) => {
                eprintln!("error: cannot write {}: {error}", path.display());
                return Err(Failure::Io);
            }
        },
        None => None,
    };
    let started = Instant::now();
    let outcomes = parallel(&seeds, threads(args.threads), |&seed| {
        let scenario = presence_sim::swarm::draw(seed);
        let outcome = run_one(&scenario, seed, false, false);
        bar.inc(1);
        if outcome.failure().is_some() {
            bar.set_message(format!("seed {seed} failed"));
        } else if let Some(results) = &results {
            let line = crate::merge::result_line(&run_info, seed, &scenario, &outcome, None);
            results.lock().expect("no writer panics").write(&line);
        }
        (scenario, outcome)
    });
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    let events: u64 = outcomes
        .iter()
        .filter_map(|(_, outcome)| outcome.report.as_ref().ok())
        .map(|report| report.events)
        .sum();
    let failures: Vec<(u64, &Scenario, Failure)> = seeds
        .iter()
        .zip(&outcomes)
        .filter_map(|(&seed, (scenario, outcome))| outcome.failure().map(|failure| (seed, scenario, failure)))
        .collect();
    let shard_note = shard.map_or(String::new(), |(k, n)| format!(" (shard {k}/{n})"));
    say!(
        "presence swarm{shard_note}: {} seeds in {wall:.1} s wall, {events} events ({:.0} events/s), {} failed",
        seeds.len(),
        events as f64 / wall.max(1e-9),
        failures.len()
    );
    let coverage = coverage(&outcomes, &args.require_marks);
    let mut worst = None;
    let mut signatures = std::collections::BTreeMap::new();
    for (seed, scenario, failure) in failures.iter().take(5) {
        worst = worst.max(Some(*failure));
        let at = seeds
            .binary_search(seed)
            .expect("a failing seed is one of the seeds");
        let (_, outcome) = &outcomes[at];
        say!("\nseed {seed}: {failure:?}");
        match &outcome.report {
            Ok(report) => say!("  {}", report.verdict),
            Err(panic) => say!("  crashed: {panic}"),
        }
        say!("  drawn options:\n{}", indent(&scenario.to_toml()));
        say!("  reproduce: cargo run --release -- swarm --first {seed} --seeds 1");
        if !args.no_shrink && matches!(failure, Failure::Safety | Failure::Liveness) {
            if let Some(shrunk) = shrink_and_save(scenario, *seed) {
                signatures.insert(*seed, crate::merge::signature(&shrunk.verdict));
            }
        }
    }
    if let (Some(path), Some(results)) = (&args.results, results) {
        let mut results = results.into_inner().expect("no writer panics");
        for (&seed, (scenario, outcome)) in seeds.iter().zip(&outcomes) {
            if outcome.failure().is_some() {
                let line =
                    crate::merge::result_line(&run_info, seed, scenario, outcome, signatures.get(&seed));
                results.write(&line);
            }
        }
        if let Err(error) = results.finish() {
            eprintln!("error: cannot write {}: {error}", path.display());
            return Err(Failure::Io);
        }
    }
    for (_, _, failure) in &failures {
        worst = worst.max(Some(*failure));
    }
    if let Some(failure) = worst {
        return Err(failure);
    }
    coverage
}

/// The marks the default preset must reach over any 300 seeds: every
/// rare event the swarm exists to exercise. A returning stranger refused
/// for its age is too rare to require of every 300 (18 seeds in 1,000);
/// `sims/forgotten-partition.toml` requires it instead.
pub(crate) const REQUIRED_MARKS: [Mark; 13] = [
    Mark::DownDetected,
    Mark::PermdownOfSilentPeer,
    Mark::GracefulPermdown,
    Mark::GapRefused,
    Mark::TransferFallbackToFullState,
    Mark::TransferFromGenerations,
    Mark::PeerReincarnated,
    Mark::ToldRetired,
    Mark::HealAfterPermdown,
    Mark::HealedPeerShown,
    Mark::ClockSteppedBack,
    Mark::FrameRefused,
    Mark::WatermarkForgotten,
];

/// Prints the coverage table (per mark: seeds that reached it, and hits
/// in all) and fails if a required mark was never reached: those asked
/// for, and, in a sweep of 300 seeds or more, those of [`REQUIRED_MARKS`]
/// (a few seeds reach few rare events by design).
fn coverage(outcomes: &[(Scenario, Outcome)], asked: &[Mark]) -> Result<(), Failure> {
    let reports: Vec<&presence_sim::RunReport> = outcomes
        .iter()
        .filter_map(|(_, outcome)| outcome.report.as_ref().ok())
        .collect();
    say!("\n{:<34} {:>8} {:>12}", "coverage mark", "seeds", "hits");
    let mut missing = Vec::new();
    for (at, mark) in Mark::ALL.into_iter().enumerate() {
        let seeds = reports.iter().filter(|report| report.marks[at] > 0).count();
        let hits: u64 = reports.iter().map(|report| report.marks[at]).sum();
        let required = asked.contains(&mark) || (outcomes.len() >= 300 && REQUIRED_MARKS.contains(&mark));
        if !coverage_row(mark, seeds as u64, hits, required) {
            missing.push(mark.name());
        }
    }
    if !missing.is_empty() {
        eprintln!("error: the swarm never reached {}", missing.join(", "));
        return Err(Failure::Coverage);
    }
    Ok(())
}

/// Prints one row of the coverage table (mark, seeds, hits);
/// false if the mark is required and no seed reached it.
pub(crate) fn coverage_row(mark: Mark, seeds: u64, hits: u64, required: bool) -> bool {
    let never = required && seeds == 0;
    say!(
        "{:<34} {seeds:>8} {hits:>12}{}",
        mark.name(),
        if never { "  NEVER REACHED" } else { "" }
    );
    !never
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("    {line}\n")).collect()
}

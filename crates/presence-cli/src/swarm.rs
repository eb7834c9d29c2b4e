//! `presence swarm`: swarm testing over many seeds.

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

/// The most seeds one `presence swarm` runs.
const MAX_SEEDS: u64 = 10_000_000;

pub fn run(args: &SwarmArgs) -> Result<(), Failure> {
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
    let seeds: Vec<u64> = (args.first..last).collect();
    let bar = ProgressBar::new(seeds.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {elapsed_precise}  {msg}")
            .expect("a valid template"),
    );
    let started = Instant::now();
    let outcomes = parallel(&seeds, threads(args.threads), |&seed| {
        let scenario = presence_sim::swarm::draw(seed);
        let outcome = run_one(&scenario, seed, false, false);
        bar.inc(1);
        if outcome.failure().is_some() {
            bar.set_message(format!("seed {seed} failed"));
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
    say!(
        "presence swarm: {} seeds in {wall:.1} s wall, {events} events ({:.0} events/s), {} failed",
        seeds.len(),
        events as f64 / wall.max(1e-9),
        failures.len()
    );
    let coverage = coverage(&outcomes, &args.require_marks);
    let mut worst = None;
    for (seed, scenario, failure) in failures.iter().take(5) {
        worst = worst.max(Some(*failure));
        let (_, outcome) = &outcomes[(seed - args.first) as usize];
        say!("\nseed {seed}: {failure:?}");
        match &outcome.report {
            Ok(report) => say!("  {}", report.verdict),
            Err(panic) => say!("  crashed: {panic}"),
        }
        say!("  drawn options:\n{}", indent(&scenario.to_toml()));
        say!("  reproduce: cargo run --release -- swarm --first {seed} --seeds 1");
        if !args.no_shrink && matches!(failure, Failure::Safety | Failure::Liveness) {
            shrink_and_save(scenario, *seed);
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
const REQUIRED_MARKS: [Mark; 13] = [
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
        say!(
            "{:<34} {seeds:>8} {hits:>12}{}",
            mark.name(),
            if required && seeds == 0 {
                "  NEVER REACHED"
            } else {
                ""
            }
        );
        if required && seeds == 0 {
            missing.push(mark.name());
        }
    }
    if !missing.is_empty() {
        eprintln!("error: the swarm never reached {}", missing.join(", "));
        return Err(Failure::Coverage);
    }
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("    {line}\n")).collect()
}

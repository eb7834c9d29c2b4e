//! `presence swarm`: swarm testing over many seeds.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use presence_sim::Scenario;

use crate::runner::{parallel, run_one, shrink_and_save, threads};
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
    worst.map_or(Ok(()), Err)
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("    {line}\n")).collect()
}

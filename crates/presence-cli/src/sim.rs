//! `presence sim`: the seeded scenario suite.

use std::path::{Path, PathBuf};
use std::time::Instant;

use presence_sim::{RunReport, Scenario, Verdict};

use crate::runner::{parallel, reproduce_command, run_one, shrink_and_save, threads, Outcome};
use crate::Failure;

/// Arguments of `presence sim`.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Folder of scenario files. Without it, `sims/` if this folder has
    /// one, else the suite built into the binary.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run only this scenario.
    #[arg(long)]
    pub scenario: Option<String>,
    /// Run only this seed of the scenario.
    #[arg(long, requires = "scenario")]
    pub seed: Option<u64>,
    /// Write the run's events as JSON lines to FILE, and a timeline picture
    /// beside it (FILE with `.svg`). Needs --scenario and --seed.
    #[arg(long, requires = "seed")]
    pub trace: Option<PathBuf>,
    /// Run every seed twice and compare the trace hashes.
    #[arg(long)]
    pub check_determinism: bool,
    /// Do not shrink a failing run.
    #[arg(long)]
    pub no_shrink: bool,
    /// Worker threads, 1 to 1,024 (default: the machine's cores).
    #[arg(long, value_parser = crate::thread_count)]
    pub threads: Option<usize>,
    /// Also print every run's trace hash, one line a run: the record that a
    /// refactor changed no behaviour (compare before and after).
    #[arg(long)]
    pub hashes: bool,
}

mod suite {
    include!(concat!(env!("OUT_DIR"), "/suite.rs"));
}

/// The scenarios: those of `--dir`, else of `./sims` if there is one (a
/// checkout's files override the built-in suite), else the suite built
/// into the binary. Also says where they came from.
fn scenarios(dir: Option<&std::path::Path>) -> Result<(Vec<Scenario>, String), presence_sim::ScenarioError> {
    let local = std::path::Path::new("sims");
    match dir {
        Some(dir) => Ok((Scenario::load_dir(dir)?, dir.display().to_string())),
        None if local.is_dir() => Ok((Scenario::load_dir(local)?, "sims".to_owned())),
        None => {
            let mut scenarios = suite::EMBEDDED
                .iter()
                .map(|(name, text)| Scenario::parse(text, std::path::Path::new(name)))
                .collect::<Result<Vec<_>, _>>()?;
            scenarios.sort_by(|a, b| a.name.cmp(&b.name));
            eprintln!("note: no sims/ folder here; running the suite built into this binary");
            Ok((scenarios, "the suite built into this binary".to_owned()))
        }
    }
}

pub fn run(args: &SimArgs) -> Result<(), Failure> {
    let (scenarios, source) = match scenarios(args.dir.as_deref()) {
        Ok(found) => found,
        Err(error) => {
            eprintln!("error: {error}");
            return Err(Failure::Usage);
        }
    };
    let selected: Vec<Scenario> = match &args.scenario {
        None => scenarios,
        Some(name) => {
            let found: Vec<Scenario> = scenarios.into_iter().filter(|s| &s.name == name).collect();
            if found.is_empty() {
                eprintln!("error: no scenario named {name:?} in {source}");
                return Err(Failure::Usage);
            }
            found
        }
    };
    let jobs: Vec<(usize, u64)> = selected
        .iter()
        .enumerate()
        .flat_map(|(index, scenario)| {
            let seeds = match args.seed {
                Some(seed) => vec![seed],
                None => scenario.seeds.clone(),
            };
            seeds.into_iter().map(move |seed| (index, seed))
        })
        .collect();
    let keep_trace = args.trace.is_some();
    say!(
        "presence sim: {} scenarios, {} runs{}",
        selected.len(),
        jobs.len(),
        if args.check_determinism {
            ", each twice (determinism)"
        } else {
            ""
        }
    );
    let started = Instant::now();
    let outcomes = parallel(&jobs, threads(args.threads), |&(index, seed)| {
        run_one(&selected[index], seed, keep_trace, args.check_determinism)
    });

    print_summary(&selected, &jobs, &outcomes);
    if args.hashes {
        print_hashes(&selected, &jobs, &outcomes);
    }
    let mut worst: Option<Failure> = None;
    for (&(index, seed), outcome) in jobs.iter().zip(&outcomes) {
        let Some(failure) = outcome.failure() else {
            continue;
        };
        worst = worst.max(Some(failure));
        let scenario = &selected[index];
        report_failure(scenario, seed, outcome, failure);
        if !args.no_shrink && matches!(failure, Failure::Safety | Failure::Liveness) {
            shrink_and_save(scenario, seed);
        }
    }
    if let (Some(path), Some(outcome)) = (&args.trace, outcomes.first()) {
        if let Ok(report) = &outcome.report {
            write_trace(path, report);
        }
    }
    say!(
        "\n{} runs in {:.1} s wall: {}",
        jobs.len(),
        started.elapsed().as_secs_f64(),
        if worst.is_none() { "all passed" } else { "FAILED" }
    );
    worst.map_or(Ok(()), Err)
}

fn print_summary(scenarios: &[Scenario], jobs: &[(usize, u64)], outcomes: &[Outcome]) {
    say!(
        "\n{:<26} {:>5} {:>12} {:>10} {:>10} {:>9} {:>11}  verdict",
        "scenario",
        "seeds",
        "virtual (s)",
        "events",
        "messages",
        "wall (s)",
        "events/s"
    );
    for (index, scenario) in scenarios.iter().enumerate() {
        let runs: Vec<&Outcome> = jobs
            .iter()
            .zip(outcomes)
            .filter(|((job, _), _)| *job == index)
            .map(|(_, outcome)| outcome)
            .collect();
        let reports: Vec<&RunReport> = runs.iter().filter_map(|run| run.report.as_ref().ok()).collect();
        let virtual_s: f64 = reports.iter().map(|r| r.virtual_ms as f64 / 1e3).sum();
        let events: u64 = reports.iter().map(|r| r.events).sum();
        let messages: u64 = reports.iter().map(|r| r.messages).sum();
        let wall: f64 = runs.iter().map(|run| run.wall.as_secs_f64()).sum();
        let failed = runs.iter().filter(|run| run.failure().is_some()).count();
        let verdict = if failed == 0 {
            let slowest = reports
                .iter()
                .filter_map(|r| match r.verdict {
                    Verdict::Pass { converged_after_ms } => Some(converged_after_ms),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            format!("pass (converged within {:.1} s of heal)", slowest as f64 / 1e3)
        } else {
            format!("FAIL ({failed} of {})", runs.len())
        };
        say!(
            "{:<26} {:>5} {:>12.0} {:>10} {:>10} {:>9.2} {:>11.0}  {verdict}",
            scenario.name,
            runs.len(),
            virtual_s,
            events,
            messages,
            wall,
            events as f64 / wall.max(1e-9),
        );
    }
}

fn print_hashes(scenarios: &[Scenario], jobs: &[(usize, u64)], outcomes: &[Outcome]) {
    say!("\ntrace hashes (scenario seed hash):");
    for (&(index, seed), outcome) in jobs.iter().zip(outcomes) {
        match &outcome.report {
            Ok(report) => say!("{} {seed} {:#018x}", scenarios[index].name, report.trace.hash()),
            Err(_) => say!("{} {seed} crashed", scenarios[index].name),
        }
    }
}

fn report_failure(scenario: &Scenario, seed: u64, outcome: &Outcome, failure: Failure) {
    say!("\n{} seed {seed}: {:?}", scenario.name, failure);
    match (&outcome.report, failure) {
        (Err(panic), _) => say!("  crashed: {panic}"),
        (Ok(report), Failure::Determinism) => say!(
            "  trace hashes differ: {:#018x} then {:#018x}",
            report.trace.hash(),
            outcome.rerun_hash.unwrap_or(0)
        ),
        (Ok(report), _) => say!("  {}", report.verdict),
    }
    say!("  reproduce: {}", reproduce_command(&scenario.name, seed));
}

fn write_trace(path: &Path, report: &RunReport) {
    match std::fs::write(path, report.trace.to_json_lines()) {
        Ok(()) => say!("trace: {} ({} events)", path.display(), report.trace.count()),
        Err(error) => eprintln!("error: cannot write {}: {error}", path.display()),
    }
    let picture = path.with_extension("svg");
    let svg = presence_sim::timeline::svg(report);
    match std::fs::write(&picture, svg) {
        Ok(()) => say!("timeline: {}", picture.display()),
        Err(error) => eprintln!("error: cannot write {}: {error}", picture.display()),
    }
}

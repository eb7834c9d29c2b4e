//! What `presence sim` and `presence swarm` share: running one scenario and
//! seed (a panic caught as a crash), running many on worker threads, and
//! shrinking a failing run to a smaller one saved as a scenario file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use presence_sim::{RunReport, Scenario, Verdict};

use crate::Failure;

/// One finished run, as the summary needs it.
pub struct Outcome {
    pub report: Result<RunReport, String>,
    pub wall: Duration,
    pub rerun_hash: Option<u64>,
}

impl Outcome {
    pub fn failure(&self) -> Option<Failure> {
        match &self.report {
            Err(_) => Some(Failure::Crash),
            Ok(report) => match (&report.verdict, self.rerun_hash) {
                (Verdict::Violation { .. }, _) => Some(Failure::Safety),
                (Verdict::NoConvergence { .. }, _) => Some(Failure::Liveness),
                (Verdict::HarnessError { .. }, _) => Some(Failure::Harness),
                (Verdict::Pass { .. }, Some(hash)) if hash != report.trace.hash() => {
                    Some(Failure::Determinism)
                }
                (Verdict::Pass { .. }, _) => None,
            },
        }
    }
}

/// Runs one scenario and seed, catching a panic as a crash.
pub fn run_one(scenario: &Scenario, seed: u64, keep_trace: bool, check_determinism: bool) -> Outcome {
    let start = Instant::now();
    let report = catch(|| presence_sim::run(scenario, seed, keep_trace));
    let wall = start.elapsed();
    let rerun_hash = if check_determinism {
        catch(|| presence_sim::run(scenario, seed, false).trace.hash()).ok()
    } else {
        None
    };
    Outcome {
        report,
        wall,
        rerun_hash,
    }
}

/// Runs `work`, turning a panic into its message.
pub fn catch<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
            .unwrap_or_else(|| "panic".to_owned())
    })
}

/// Runs `jobs` on `threads` workers; results come back in job order.
pub fn parallel<J: Sync, R: Send>(jobs: &[J], threads: usize, work: impl Fn(&J) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(job) = jobs.get(index) else { break };
                        done.push((index, work(job)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("workers catch their panics"))
            .collect()
    });
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

pub fn threads(requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

pub fn reproduce_command(scenario: &str, seed: u64) -> String {
    format!("cargo run --release -- sim --scenario {scenario} --seed {seed}")
}

/// Where shrunk runs are saved.
fn shrunk_dir() -> PathBuf {
    PathBuf::from("target").join("presence-shrunk")
}

/// Shrinks a failing run, prints it and saves it as a scenario file.
pub fn shrink_and_save(scenario: &Scenario, seed: u64) -> Option<presence_sim::shrink::Shrunk> {
    say!("  shrinking (at most 150 runs)...");
    let Some(shrunk) = presence_sim::shrink::shrink(scenario, seed, 150) else {
        say!("  (it did not fail again when re-run)");
        return None;
    };
    let dir = shrunk_dir();
    let file = dir.join(format!("{}.toml", shrunk.scenario.name));
    let saved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, shrunk.scenario.to_toml()));
    say!(
        "  shrunk in {} runs to {} nodes, {} faults, fault phase {} ms: {}",
        shrunk.attempts,
        shrunk.scenario.nodes,
        shrunk.scenario.faults.len(),
        shrunk.scenario.fault_phase_ms,
        shrunk.verdict
    );
    match saved {
        Ok(()) => say!(
            "  saved {}\n  replay: cargo run --release -- sim --dir {} --scenario {} --seed {seed} --trace shrunk.jsonl",
            file.display(),
            dir.display(),
            shrunk.scenario.name
        ),
        Err(error) => eprintln!("  cannot save {}: {error}", file.display()),
    }
    Some(shrunk)
}

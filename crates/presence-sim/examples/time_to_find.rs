//! How fast the harness finds each faulty variant: for every switch of
//! `presence_core::sabotage`, the wall time until the first failing run,
//! searching the scenario suite seed by seed (in the suite's order, `large`
//! and `big-room` last) and then swarm seeds from 0, at most `--seeds`
//! of them (default 1,000). Prints a table and the median; a switch that
//! no run catches is a failure (exit 1).
//!
//! `cargo run --release -p presence-sim --example time_to_find`

// An example reads the wall clock and prints its table.
#![allow(clippy::print_stdout, clippy::disallowed_types, clippy::disallowed_methods)]

use std::path::Path;
use std::time::Instant;

use presence_sim::scenario::Scenario;
use presence_sim::world::run;
use presence_tracker::sabotage::{self, Sabotage};

fn main() {
    let seeds: u64 = match std::env::args().skip_while(|arg| arg != "--seeds").nth(1) {
        Some(text) => text.parse().unwrap_or_else(|_| {
            eprintln!("time_to_find: --seeds takes a whole number");
            std::process::exit(64)
        }),
        None => 1_000,
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sims");
    let mut suite = Scenario::load_dir(&dir).expect("the committed scenarios load");
    // The two slow scenarios last, so a cheap catch is not hidden behind them.
    suite.sort_by_key(|scenario| matches!(scenario.name.as_str(), "large" | "big-room"));
    println!("| switch | found by | runs | time to find (s) | verdict |");
    println!("|---|---|---|---|---|");
    let mut times = Vec::new();
    let mut missed = Vec::new();
    for switch in Sabotage::ALL {
        let start = Instant::now();
        let mut runs = 0u64;
        let mut found = None;
        'suite: for scenario in &suite {
            for &seed in &scenario.seeds {
                runs += 1;
                let verdict = sabotage::with(switch, || run(scenario, seed, false)).verdict;
                if !verdict.passed() {
                    found = Some((format!("sim {} seed {seed}", scenario.name), verdict.to_string()));
                    break 'suite;
                }
            }
        }
        if found.is_none() {
            for seed in 0..seeds {
                runs += 1;
                let scenario = presence_sim::swarm::draw(seed);
                let verdict = sabotage::with(switch, || run(&scenario, seed, false)).verdict;
                if !verdict.passed() {
                    found = Some((format!("swarm seed {seed}"), verdict.to_string()));
                    break;
                }
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        match found {
            Some((by, verdict)) => {
                let verdict: String = verdict.chars().take(70).collect();
                println!("| {switch:?} | {by} | {runs} | {seconds:.2} | {verdict} |");
                times.push(seconds);
            }
            None => {
                println!("| {switch:?} | nothing | {runs} | {seconds:.2} | all passed |");
                missed.push(switch);
            }
        }
    }
    times.sort_by(f64::total_cmp);
    if !times.is_empty() {
        let middle = times.len() / 2;
        let median = if times.len() % 2 == 0 {
            (times[middle - 1] + times[middle]) / 2.0
        } else {
            times[middle]
        };
        println!();
        println!(
            "median time to find: {median:.2} s, slowest {:.2} s, over {} switches",
            times[times.len() - 1],
            times.len()
        );
    }
    if !missed.is_empty() {
        eprintln!("time_to_find: no run caught {missed:?}");
        std::process::exit(1);
    }
}

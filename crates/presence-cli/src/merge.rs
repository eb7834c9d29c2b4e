//! Swarm results as JSON lines, and `presence swarm merge`.
//!
//! `presence swarm --results FILE` writes one line per seed:
//!
//! ```json
//! {"seed":7,"range":[0,1000],"shard":[3,16],"verdict":"pass","invariant":null,
//!  "detail":"pass (converged 1200 ms after heal)","trace_hash":"9f3c...","events":4100,
//!  "options":"name = ...\n...","wall_ms":12.5,"commit":"a925f07",
//!  "marks":{"down-detected":3},"signature":null,
//!  "reproduce":"presence swarm --first 7 --seeds 1"}
//! ```
//!
//! `verdict` is `pass`, `safety`, `liveness`, `crash`, `harness` or
//! `determinism`; `signature` groups failures that are one defect: the
//! invariant, then its message with the numbers blanked (see [`signature`]),
//! of the shrunk run when the shard shrank it (its first five failures),
//! else of the drawn run.
//!
//! `presence swarm merge FILE...` reads every line of every file, and
//! prints the totals, the failures grouped by invariant and signature with
//! the command that reproduces the first seed of each, the coverage marks
//! summed over all seeds, and the seeds of the range that no file holds or
//! that two lines hold. It exits with the worst failure's code (1 safety, 2
//! liveness, 3 crash, 4 determinism, 5 harness), else 5 when a seed is
//! missing or duplicated (the merge cannot vouch for the sweep), else 6
//! when a sweep of 300 seeds or more never reached a required mark, else 0.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use presence_sim::{Scenario, Verdict};
use presence_tracker::marks::Mark;
use serde_json::{json, Value};

use crate::runner::Outcome;
use crate::Failure;

/// Arguments of `presence swarm merge`.
#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// Result files written by `presence swarm --results`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// What every line of one run shares.
pub struct RunInfo {
    /// The sweep's seeds, `[first, last)`, before sharding.
    pub range: (u64, u64),
    /// This run's shard, K of N (0 of 1 unsharded).
    pub shard: (u64, u64),
    /// The commit the binary was built from (embedded by `build.rs`, so a
    /// shard with no checkout still says).
    pub commit: String,
}

fn verdict_name(failure: Option<Failure>) -> &'static str {
    match failure {
        None => "pass",
        Some(Failure::Safety) => "safety",
        Some(Failure::Liveness) => "liveness",
        Some(Failure::Crash) => "crash",
        Some(Failure::Determinism) => "determinism",
        Some(Failure::Harness) => "harness",
        Some(_) => "other",
    }
}

fn failure_named(name: &str) -> Option<Failure> {
    Some(match name {
        "safety" => Failure::Safety,
        "liveness" => Failure::Liveness,
        "crash" => Failure::Crash,
        "determinism" => Failure::Determinism,
        "harness" => Failure::Harness,
        _ => return None,
    })
}

/// A failure's signature: its invariant, then what was found with every
/// run of digits blanked to `#` (where and when are left out). One defect
/// says the same thing in every run that meets it, with different times,
/// nodes, incarnations and counts:
/// "I10 ... n#@# has not broadcast for # ms of true time, past # ms". The
/// run's shape (node count, fault kinds) was the signature before, and
/// split one clock defect into three groups by how far each run shrank.
pub fn signature(verdict: &Verdict) -> String {
    let invariant = verdict.invariant().map_or("none", |invariant| invariant.id());
    // What was found, without where and when.
    let message = match verdict {
        Verdict::Pass { .. } => "pass".to_owned(),
        Verdict::Violation {
            invariant, detail, ..
        } => format!("{} violated: {detail}", invariant.name()),
        Verdict::NoConvergence { detail, .. } => format!("not converged: {detail}"),
        Verdict::HarnessError { detail, .. } => format!("harness error: {detail}"),
    };
    format!("{invariant}: {}", blank_numbers(&message))
}

/// The signature of a run that panicked: its message, numbers blanked.
pub fn crash_signature(panic: &str) -> String {
    format!("crash: {}", blank_numbers(panic))
}

/// `text` with every run of ASCII digits replaced by one `#`.
fn blank_numbers(text: &str) -> String {
    let mut blanked = String::with_capacity(text.len());
    let mut in_number = false;
    for character in text.chars() {
        if character.is_ascii_digit() {
            if !in_number {
                blanked.push('#');
            }
            in_number = true;
        } else {
            blanked.push(character);
            in_number = false;
        }
    }
    blanked
}

/// One seed's line.
pub fn result_line(
    run: &RunInfo,
    seed: u64,
    scenario: &Scenario,
    outcome: &Outcome,
    shrunk: Option<&String>,
) -> Value {
    let failure = outcome.failure();
    let (invariant, detail, hash, events, marks, drawn_signature) = match &outcome.report {
        Ok(report) => {
            let marks: serde_json::Map<String, Value> = Mark::ALL
                .iter()
                .enumerate()
                .filter(|&(at, _)| report.marks[at] > 0)
                .map(|(at, mark)| (mark.name().to_owned(), json!(report.marks[at])))
                .collect();
            (
                report.verdict.invariant().map(|invariant| invariant.id()),
                report.verdict.to_string(),
                Some(format!("{:016x}", report.trace.hash())),
                report.events,
                marks,
                signature(&report.verdict),
            )
        }
        Err(panic) => (
            None,
            format!("crashed: {panic}"),
            None,
            0,
            serde_json::Map::new(),
            crash_signature(panic),
        ),
    };
    let signature = failure.map(|_| shrunk.cloned().unwrap_or(drawn_signature));
    json!({
        "seed": seed,
        "range": [run.range.0, run.range.1],
        "shard": [run.shard.0, run.shard.1],
        "verdict": verdict_name(failure),
        "invariant": invariant,
        "detail": detail,
        "trace_hash": hash,
        "events": events,
        "options": scenario.to_toml(),
        "wall_ms": outcome.wall.as_secs_f64() * 1e3,
        "commit": run.commit,
        "marks": marks,
        "signature": signature,
        "reproduce": format!("presence swarm --first {seed} --seeds 1"),
    })
}

/// Seeds as short ranges: `3-5, 9`.
fn ranges(seeds: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut at = 0;
    while at < seeds.len() && parts.len() < 20 {
        let start = seeds[at];
        let mut end = start;
        while at + 1 < seeds.len() && seeds[at + 1] == end + 1 {
            at += 1;
            end += 1;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        at += 1;
    }
    if at < seeds.len() {
        parts.push("...".to_owned());
    }
    parts.join(", ")
}

struct Group {
    seeds: Vec<u64>,
    failure: Failure,
    detail: String,
    reproduce: String,
}

pub fn run(args: &MergeArgs) -> Result<(), Failure> {
    let mut lines: Vec<Value> = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path).map_err(|error| {
            eprintln!("error: cannot read {}: {error}", path.display());
            Failure::Usage
        })?;
        // A shard stopped while writing (a preempted node) can leave its
        // last line cut short, with no newline after it: that seed is then
        // missing, not an error. Anything else that does not parse is.
        let last = text.lines().count().saturating_sub(1);
        let cut_short = !text.is_empty() && !text.ends_with('\n');
        for (number, line) in text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
        {
            let value: Value = match serde_json::from_str(line) {
                Ok(value) => value,
                Err(_) if cut_short && number == last => {
                    eprintln!(
                        "warning: {}:{}: the last line is cut short (a stopped shard); its seed counts as missing",
                        path.display(),
                        number + 1
                    );
                    continue;
                }
                Err(error) => {
                    eprintln!(
                        "error: {}:{}: not a result line: {error}",
                        path.display(),
                        number + 1
                    );
                    return Err(Failure::Usage);
                }
            };
            if value["seed"].as_u64().is_none() || value["verdict"].as_str().is_none() {
                eprintln!(
                    "error: {}:{}: a result line needs a seed and a verdict",
                    path.display(),
                    number + 1
                );
                return Err(Failure::Usage);
            }
            lines.push(value);
        }
    }
    if lines.is_empty() {
        eprintln!("error: the files hold no result line; a merge of nothing vouches for nothing");
        return Err(Failure::Usage);
    }
    let ranges_seen: BTreeSet<(u64, u64)> = lines
        .iter()
        .filter_map(|line| Some((line["range"][0].as_u64()?, line["range"][1].as_u64()?)))
        .collect();
    let commits: BTreeSet<&str> = lines.iter().filter_map(|line| line["commit"].as_str()).collect();

    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    let mut verdicts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut marks: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let (mut events, mut wall_ms) = (0_u64, 0_f64);
    for line in &lines {
        let seed = line["seed"].as_u64().expect("checked above");
        *count.entry(seed).or_default() += 1;
        let verdict = line["verdict"].as_str().expect("checked above");
        *verdicts.entry(verdict).or_default() += 1;
        events += line["events"].as_u64().unwrap_or(0);
        wall_ms += line["wall_ms"].as_f64().unwrap_or(0.0);
        if let Some(object) = line["marks"].as_object() {
            for (name, hits) in object {
                let entry = marks.entry(name.clone()).or_default();
                entry.0 += 1;
                entry.1 += hits.as_u64().unwrap_or(0);
            }
        }
        if verdict != "pass" {
            let invariant = line["invariant"].as_str().unwrap_or("-").to_owned();
            let signature = line["signature"].as_str().unwrap_or("-").to_owned();
            let group = groups.entry((invariant, signature)).or_insert_with(|| Group {
                seeds: Vec::new(),
                failure: failure_named(verdict).unwrap_or(Failure::Harness),
                detail: line["detail"].as_str().unwrap_or_default().to_owned(),
                reproduce: line["reproduce"].as_str().unwrap_or_default().to_owned(),
            });
            group.seeds.push(seed);
        }
    }
    let mut expected: BTreeSet<u64> = BTreeSet::new();
    for &(first, last) in &ranges_seen {
        expected.extend(first..last);
    }
    let missing: Vec<u64> = expected
        .iter()
        .copied()
        .filter(|seed| !count.contains_key(seed))
        .collect();
    let duplicated: Vec<u64> = count
        .iter()
        .filter(|&(_, &n)| n > 1)
        .map(|(&seed, _)| seed)
        .collect();
    let outside: Vec<u64> = count
        .keys()
        .copied()
        .filter(|seed| !expected.contains(seed))
        .collect();

    say!(
        "presence swarm merge: {} files, {} lines, {} distinct seeds, {events} events, {:.1} s of run time",
        args.files.len(),
        lines.len(),
        count.len(),
        wall_ms / 1e3
    );
    let ranges_text: Vec<String> = ranges_seen.iter().map(|(a, b)| format!("{a}..{b}")).collect();
    say!(
        "range: {}; commits: {}",
        ranges_text.join(", "),
        commits.into_iter().collect::<Vec<_>>().join(", ")
    );
    let verdict_text: Vec<String> = verdicts.iter().map(|(name, n)| format!("{name} {n}")).collect();
    say!("verdicts: {}", verdict_text.join(", "));
    say!("missing seeds: {} {}", missing.len(), ranges(&missing));
    say!("duplicated seeds: {} {}", duplicated.len(), ranges(&duplicated));
    if !outside.is_empty() {
        say!(
            "seeds outside every range: {} {}",
            outside.len(),
            ranges(&outside)
        );
    }
    let mut worst: Option<Failure> = None;
    if !groups.is_empty() {
        say!("\nfailures, by invariant and signature:");
    }
    for ((invariant, signature), group) in &groups {
        worst = worst.max(Some(group.failure));
        say!(
            "  {invariant} [{signature}]: {} seeds ({})\n    first: {}\n    reproduce: {}",
            group.seeds.len(),
            ranges(&group.seeds),
            group.detail,
            group.reproduce
        );
    }
    say!("\n{:<34} {:>8} {:>12}", "coverage mark", "seeds", "hits");
    let mut never = Vec::new();
    for mark in Mark::ALL {
        let (seeds, hits) = marks.get(mark.name()).copied().unwrap_or_default();
        let required = count.len() >= 300 && crate::swarm::REQUIRED_MARKS.contains(&mark);
        if !crate::swarm::coverage_row(mark, seeds, hits, required) {
            never.push(mark.name());
        }
    }
    if let Some(failure) = worst {
        return Err(failure);
    }
    if !missing.is_empty() || !duplicated.is_empty() || !outside.is_empty() {
        eprintln!("error: the shards do not hold every seed of the range exactly once");
        return Err(Failure::Harness);
    }
    if !never.is_empty() {
        eprintln!("error: the sweep never reached {}", never.join(", "));
        return Err(Failure::Coverage);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use presence_core::invariants::Invariant;
    use presence_sim::Verdict;

    use super::signature;

    fn violation(invariant: Invariant, at_ms: u64, node: usize, detail: &str) -> Verdict {
        Verdict::Violation {
            invariant,
            at_ms,
            node,
            detail: detail.to_owned(),
        }
    }

    #[test]
    fn one_defect_in_runs_of_any_size_is_one_signature() {
        // Two of the 1,000,000-seed sweep's I10 failures, from runs of two
        // and five nodes: one defect.
        let two = violation(
            Invariant::Timeliness,
            24_306,
            1,
            "n1@1 has not broadcast for 8474 ms of true time, past 8257 ms",
        );
        let five = violation(
            Invariant::Timeliness,
            61_412,
            0,
            "n0@2 has not broadcast for 8636 ms of true time, past 8542 ms",
        );
        assert_eq!(signature(&two), signature(&five));
        assert_eq!(
            signature(&two),
            "I10: timeliness violated: n#@# has not broadcast for # ms of true time, past # ms"
        );
        // Another check of the same invariant, or the same words under
        // another invariant, is another defect.
        let hidden_late = violation(
            Invariant::Timeliness,
            24_306,
            1,
            "n1@1 still shows n2@1, silent for 9000 ms, past 8257 ms",
        );
        assert_ne!(signature(&two), signature(&hidden_late));
        let memory = violation(
            Invariant::BoundedMemory,
            24_306,
            1,
            "n1@1 has not broadcast for 8474 ms of true time, past 8257 ms",
        );
        assert_ne!(signature(&two), signature(&memory));
    }
}

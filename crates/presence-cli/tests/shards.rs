//! `presence swarm --shard K/N` as four separate processes, merged, equals
//! one unsharded run seed for seed (verdicts and trace hashes); a merge
//! that lacks a shard, or holds one twice, fails; the shard can come from a
//! scheduler's environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SEEDS: &str = "24";
const FIRST: &str = "500";

fn presence() -> Command {
    Command::new(env!("CARGO_BIN_EXE_presence"))
}

/// A directory of this test's own. The tests of this file run at once in
/// one process, and each removes its directory at the end: a shared one
/// would lose another test's files while it still reads them.
fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("presence-shards-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// seed -> (verdict, trace hash), from a results file.
fn outcomes(path: &Path) -> BTreeMap<u64, (String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let seed = value["seed"].as_u64().unwrap();
            let verdict = value["verdict"].as_str().unwrap().to_owned();
            let hash = value["trace_hash"].as_str().unwrap().to_owned();
            (seed, (verdict, hash))
        })
        .collect()
}

fn merge(files: &[&PathBuf]) -> Output {
    presence().args(["swarm", "merge"]).args(files).output().unwrap()
}

#[test]
fn four_shards_merge_to_the_unsharded_run() {
    let dir = dir("merge");
    let whole = dir.join("whole.jsonl");
    let status = presence()
        .args([
            "swarm",
            "--first",
            FIRST,
            "--seeds",
            SEEDS,
            "--threads",
            "1",
            "--results",
        ])
        .arg(&whole)
        .status()
        .unwrap();
    assert!(status.success());
    // Four processes at once, as a fleet would run them.
    let shards: Vec<PathBuf> = (0..4).map(|k| dir.join(format!("shard-{k}.jsonl"))).collect();
    let children: Vec<_> = shards
        .iter()
        .enumerate()
        .map(|(k, file)| {
            presence()
                .args(["swarm", "--first", FIRST, "--seeds", SEEDS, "--threads", "1"])
                .args(["--shard", &format!("{k}/4"), "--results"])
                .arg(file)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let mut sharded = BTreeMap::new();
    for file in &shards {
        let part = outcomes(file);
        assert_eq!(part.len(), 6, "each shard holds a quarter of the seeds");
        sharded.extend(part);
    }
    let unsharded = outcomes(&whole);
    assert_eq!(unsharded.len(), 24);
    // The commit is the binary's own, built in, not read where it runs.
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&whole).unwrap().lines().next().unwrap()).unwrap();
    let commit = first["commit"].as_str().unwrap();
    let hex = commit.trim_end_matches("-dirty");
    assert!(
        hex.len() >= 7 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{commit}"
    );
    assert_eq!(
        sharded, unsharded,
        "the shards ran the same seeds to the same traces"
    );

    let all: Vec<&PathBuf> = shards.iter().collect();
    let merged = merge(&all);
    let text = String::from_utf8_lossy(&merged.stdout);
    assert!(
        merged.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    assert!(text.contains("24 distinct seeds"), "{text}");
    assert!(text.contains("missing seeds: 0"), "{text}");

    // A shard lost: the merge names the seeds and fails.
    let merged = merge(&all[..3]);
    let text = String::from_utf8_lossy(&merged.stdout);
    assert_eq!(merged.status.code(), Some(5), "{text}");
    assert!(
        text.contains("missing seeds: 6 503, 507, 511, 515, 519, 523"),
        "{text}"
    );
    // A shard run twice: duplicates are named too.
    let merged = merge(&[all[0], all[1], all[2], all[3], all[3]]);
    let text = String::from_utf8_lossy(&merged.stdout);
    assert_eq!(merged.status.code(), Some(5), "{text}");
    assert!(text.contains("duplicated seeds: 6"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_shard_comes_from_the_scheduler() {
    let dir = dir("env");
    let run = |vars: &[(&str, &str)], file: &Path| {
        let mut command = presence();
        command
            .args([
                "swarm",
                "--first",
                FIRST,
                "--seeds",
                "8",
                "--threads",
                "1",
                "--shards",
                "4",
                "--results",
            ])
            .arg(file)
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("SLURM_ARRAY_TASK_MIN")
            .stdout(std::process::Stdio::null());
        for (name, value) in vars {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    let k8s = dir.join("k8s.jsonl");
    assert!(run(&[("JOB_COMPLETION_INDEX", "2")], &k8s).status.success());
    assert_eq!(outcomes(&k8s).keys().copied().collect::<Vec<_>>(), [502, 506]);
    // Slurm arrays often count from 1: the index is the id minus the min.
    let slurm = dir.join("slurm.jsonl");
    let vars = [("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_MIN", "1")];
    assert!(run(&vars, &slurm).status.success());
    assert_eq!(outcomes(&slurm).keys().copied().collect::<Vec<_>>(), [503, 507]);
    // No index, or one out of range, is a usage error, not a silent shard 0.
    assert_eq!(run(&[], &dir.join("none.jsonl")).status.code(), Some(64));
    assert_eq!(
        run(&[("JOB_COMPLETION_INDEX", "4")], &dir.join("over.jsonl"))
            .status
            .code(),
        Some(64)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn merged_failures_are_grouped_by_invariant_and_signature() {
    let dir = dir("failures");
    let line = |seed: u64, verdict: &str, invariant: Option<&str>, signature: Option<&str>| {
        serde_json::json!({
            "seed": seed, "range": [0, 4], "shard": [0, 1], "verdict": verdict,
            "invariant": invariant, "detail": format!("seed {seed}"), "trace_hash": "00",
            "events": 10, "options": "", "wall_ms": 1.0, "commit": "test",
            "marks": {"down-detected": 1}, "signature": signature,
            "reproduce": format!("presence swarm --first {seed} --seeds 1"),
        })
        .to_string()
    };
    let file = dir.join("r.jsonl");
    let lines = [
        line(0, "pass", None, None),
        line(1, "safety", Some("I3"), Some("I3 nodes=3 faults=[Isolate]")),
        line(2, "liveness", Some("I2"), Some("I2 nodes=2 faults=[Split]")),
        line(3, "safety", Some("I3"), Some("I3 nodes=3 faults=[Isolate]")),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let merged = merge(&[&file]);
    let text = String::from_utf8_lossy(&merged.stdout);
    assert_eq!(
        merged.status.code(),
        Some(2),
        "the highest failure code, as presence swarm exits\n{text}"
    );
    assert!(
        text.contains("I3 [I3 nodes=3 faults=[Isolate]]: 2 seeds (1, 3)"),
        "{text}"
    );
    assert!(
        text.contains("reproduce: presence swarm --first 1 --seeds 1"),
        "{text}"
    );
    assert!(
        text.contains("I2 [I2 nodes=2 faults=[Split]]: 1 seeds (2)"),
        "{text}"
    );
    assert!(
        text.contains("down-detected                             4            4"),
        "{text}"
    );
    // A line that is not a result is an error with its place, not skipped.
    std::fs::write(&file, "{\"seed\": 1}\n").unwrap();
    let merged = merge(&[&file]);
    assert_eq!(merged.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&merged.stderr).contains("r.jsonl:1"));
    let _ = std::fs::remove_dir_all(dir);
}

/// A shard stopped part-way (a preempted node) keeps every seed it
/// finished: lines are written as seeds end, not all at the end. The merge
/// counts the rest as missing (exit 5), and a last line cut short in the
/// middle of writing is a missing seed, not a broken file.
#[test]
// The test waits for a child process with a deadline: wall time is its
// subject, not an input to code under test.
#[allow(clippy::disallowed_types)]
fn a_stopped_shard_keeps_what_it_ran() {
    let dir = dir("stopped");
    let file = dir.join("stopped.jsonl");
    let mut child = presence()
        .args([
            "swarm",
            "--first",
            "0",
            "--seeds",
            "100000",
            "--threads",
            "1",
            "--results",
        ])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = |file: &Path| std::fs::read_to_string(file).map_or(0, |text| text.lines().count());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while lines(&file) < 5 {
        assert!(std::time::Instant::now() < deadline, "no line written in 120 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = outcomes(&file);
    assert!(
        kept.len() >= 5 && kept.len() < 100_000,
        "{} seeds kept",
        kept.len()
    );
    let merged = merge(&[&file]);
    let text = String::from_utf8_lossy(&merged.stdout);
    assert_eq!(merged.status.code(), Some(5), "{text}");
    assert!(text.contains("missing seeds:"), "{text}");
    // The same file with its last line torn in two.
    let whole = std::fs::read_to_string(&file).unwrap();
    let torn = &whole[..whole.len() - 20];
    std::fs::write(&file, torn).unwrap();
    let merged = merge(&[&file]);
    assert_eq!(merged.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&merged.stderr).contains("cut short"));
    // A broken line that is not the last is still an error.
    std::fs::write(&file, format!("{{\"seed\":\n{whole}")).unwrap();
    assert_eq!(merge(&[&file]).status.code(), Some(64));
    let _ = std::fs::remove_dir_all(dir);
}

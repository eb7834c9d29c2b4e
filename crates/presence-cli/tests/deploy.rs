//! The manifests in `deploy/` parse, agree with each other on the shard
//! count, and the `presence` command lines in them run (on a few seeds): a
//! typo in a flag fails here, not on the fleet at night.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file)
}

fn load(file: &str) -> Yaml {
    let text = std::fs::read_to_string(deploy(file)).unwrap();
    let mut documents = YamlLoader::load_from_str(&text).unwrap_or_else(|error| panic!("{file}: {error}"));
    assert_eq!(documents.len(), 1, "{file}: one document");
    documents.remove(0)
}

/// Runs a manifest's `presence ...` arguments on 12 seeds instead of its
/// many; returns the results file's lines.
fn run_on_few_seeds(mut args: Vec<String>, envs: &[(&str, &str)], results: &Path) -> Vec<String> {
    assert_eq!(args.first().map(String::as_str), Some("swarm"), "{args:?}");
    let seeds = args.iter().position(|arg| arg == "--seeds").expect("--seeds");
    args[seeds + 1] = "12".to_owned();
    let at = args.iter().position(|arg| arg == "--results").expect("--results");
    args[at + 1] = results.display().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_presence"))
        .args(&args)
        .args(["--threads", "1"])
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(results)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_github_workflow_runs_sixteen_shards_and_merges_them() {
    let workflow = load("swarm-nightly.yml");
    assert!(
        workflow["on"]["schedule"][0]["cron"].as_str().is_some(),
        "nightly"
    );
    let shard = &workflow["jobs"]["shard"];
    let matrix: Vec<i64> = shard["strategy"]["matrix"]["shard"]
        .as_vec()
        .expect("a shard matrix")
        .iter()
        .map(|k| k.as_i64().unwrap())
        .collect();
    assert_eq!(matrix, (0..16).collect::<Vec<_>>());
    let steps = shard["steps"].as_vec().unwrap();
    let swarm = steps
        .iter()
        .find_map(|step| step["run"].as_str().filter(|run| run.contains("presence swarm")))
        .expect("a swarm step");
    assert!(steps.iter().any(|step| step["uses"]
        .as_str()
        .is_some_and(|uses| uses.starts_with("actions/upload-artifact"))
        && step["if"].as_str() == Some("always()")));
    let merge = &workflow["jobs"]["merge"];
    assert_eq!(merge["needs"].as_str(), Some("shard"));
    assert!(merge["steps"].as_vec().unwrap().iter().any(|step| step["run"]
        .as_str()
        .is_some_and(|run| run.contains("presence swarm merge"))));

    // The swarm step's command, as shard 5 would run it.
    let command = swarm
        .replace("${{ matrix.shard }}", "5")
        .replace("$SEEDS", workflow["env"]["SEEDS"].as_str().unwrap());
    let args: Vec<String> = command
        .split_whitespace()
        .skip_while(|word| !word.ends_with("/presence"))
        .skip(1)
        .map(str::to_owned)
        .collect();
    assert!(args.contains(&"5/16".to_owned()), "{args:?}");
    let dir = std::env::temp_dir().join(format!("presence-deploy-gh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lines = run_on_few_seeds(args, &[], &dir.join("r.jsonl"));
    assert!(
        !lines.is_empty() && lines.iter().all(|line| line.contains("\"shard\":[5,16]")),
        "{lines:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_kubernetes_job_is_indexed_and_its_command_runs() {
    let job = load("swarm-indexed-job.yaml");
    assert_eq!(job["kind"].as_str(), Some("Job"));
    assert_eq!(job["apiVersion"].as_str(), Some("batch/v1"));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_i64().unwrap();
    assert_eq!(spec["parallelism"].as_i64(), Some(completions));
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(spec["template"]["spec"]["restartPolicy"].as_str(), Some("Never"));
    let command: Vec<String> = container["command"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|word| word.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(command[0], "presence");
    let shards = command
        .iter()
        .position(|word| word == "--shards")
        .expect("--shards");
    assert_eq!(
        command[shards + 1],
        completions.to_string(),
        "--shards matches completions"
    );
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let results = command.iter().position(|word| word == "--results").unwrap();
    assert!(
        command[results + 1].starts_with(mount),
        "results go to the shared volume"
    );
    assert!(
        command[results + 1].contains("$(JOB_COMPLETION_INDEX)"),
        "one file per index"
    );

    let dir = std::env::temp_dir().join(format!("presence-deploy-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lines = run_on_few_seeds(
        command[1..].to_vec(),
        &[("JOB_COMPLETION_INDEX", "3")],
        &dir.join("r.jsonl"),
    );
    assert!(
        !lines.is_empty() && lines.iter().all(|line| line.contains("\"shard\":[3,16]")),
        "{lines:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_dockerfile_builds_the_binary_the_job_runs() {
    let text = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    assert!(text.contains("cargo build --release --bin presence"));
    assert!(
        text.contains("/usr/local/bin/presence"),
        "on the PATH, as the Job's command expects"
    );
    let job = load("swarm-indexed-job.yaml");
    let image = job["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(
        text.contains(&format!("-t {}", image.trim_end_matches(":latest"))),
        "the build comment names the Job's image"
    );
}

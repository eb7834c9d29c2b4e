//! `presence check` and `presence explore`: the stateright CRDT model.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use presence_model::crdt::CrdtModelCfg;
use presence_model::property_names;
use presence_model::protocol::{ProtocolModelCfg, Synchrony, FORGETS};
use stateright::{Checker, Expectation, Model};

use crate::provenance::{command_output, commit, cores, cpu_model};
use crate::Failure;

/// The model's bounds, shared by `check` and `explore`.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Which model.
    #[arg(long, value_enum, default_value_t = ModelKind::Crdt)]
    pub model: ModelKind,
    /// Replicas (crdt: 2 to 4) or nodes (protocol: 2 or 3).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// crdt: local operations per replica; protocol: heartbeat ticks per node.
    #[arg(long, default_value_t = 1)]
    pub ops: u8,
    /// crdt: liveness changes and restarts in all; protocol: crashes.
    #[arg(long, default_value_t = 1)]
    pub faults: u8,
    /// crdt: include restarts among the faults.
    #[arg(long)]
    pub restarts: bool,
    /// Symmetry reduction (replicas or nodes are interchangeable); DFS only.
    #[arg(long)]
    pub symmetry: bool,
    /// protocol: the nemesis may isolate a node and heal.
    #[arg(long)]
    pub partitions: bool,
    /// protocol: the network may lose messages.
    #[arg(long)]
    pub lossy: bool,
    /// protocol: bounded synchrony, under which nodes forget a departed
    /// base's watermark: in each round every live node ticks once, and a
    /// message arrives within --max-age rounds of its sending or not at all.
    #[arg(long)]
    pub synchrony: bool,
    /// protocol, with --synchrony: rounds a message stays deliverable.
    #[arg(long, default_value_t = 1, requires = "synchrony")]
    pub max_age: u16,
    /// protocol, with --synchrony: let messages arrive at any age, which
    /// breaks the bound forgetting rests on (to see the check fail).
    #[arg(long, requires = "synchrony", conflicts_with = "max_age")]
    pub unbounded_age: bool,
}

/// The models `check` knows.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Replicas of presence-core exchanging full states and deltas.
    Crdt,
    /// presence-tracker nodes as actors over a faulty network.
    Protocol,
}

impl ModelArgs {
    fn protocol_cfg(&self) -> Result<ProtocolModelCfg, Failure> {
        if !(2..=3).contains(&self.replicas) {
            eprintln!("error: the protocol model takes --replicas 2 or 3");
            return Err(Failure::Usage);
        }
        if self.synchrony && self.symmetry {
            eprintln!("error: --synchrony has no symmetry reduction (its rounds name nodes)");
            return Err(Failure::Usage);
        }
        Ok(ProtocolModelCfg {
            nodes: self.replicas,
            ticks: self.ops,
            crashes: usize::from(self.faults),
            partitions: self.partitions,
            lossy: self.lossy,
            synchrony: self.synchrony.then_some(Synchrony {
                max_age_rounds: (!self.unbounded_age).then_some(self.max_age),
            }),
        })
    }

    fn cfg(&self) -> Result<CrdtModelCfg, Failure> {
        if self.synchrony || self.unbounded_age {
            eprintln!("error: --synchrony and --unbounded-age are for --model protocol");
            return Err(Failure::Usage);
        }
        if !(2..=4).contains(&self.replicas) {
            eprintln!("error: --replicas must be 2 to 4");
            return Err(Failure::Usage);
        }
        Ok(CrdtModelCfg {
            replicas: self.replicas,
            ops: self.ops,
            faults: self.faults,
            restarts: self.restarts,
        })
    }

    fn flags(&self) -> String {
        let switch = |on: bool, name: &str| if on { format!(" --{name}") } else { String::new() };
        format!(
            "--model {} --replicas {} --ops {} --faults {}{}{}{}{}",
            self.kind(),
            self.replicas,
            self.ops,
            self.faults,
            switch(self.restarts, "restarts"),
            switch(self.symmetry, "symmetry"),
            switch(self.partitions, "partitions"),
            switch(self.lossy, "lossy")
        ) + &if !self.synchrony {
            String::new()
        } else if self.unbounded_age {
            " --synchrony --unbounded-age".to_owned()
        } else {
            format!(" --synchrony --max-age {}", self.max_age)
        }
    }

    /// A synchronous check that never saw a node forget a watermark checked
    /// nothing of forgetting: that is a coverage failure (exit 6), not a
    /// pass.
    fn forgetting_reached(&self, reached: bool) -> Result<(), Failure> {
        if self.synchrony && !reached {
            say!("error: no state had a node forget a departed base's watermark: forgetting was not checked (more --ops, or more walks)");
            return Err(Failure::Coverage);
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        match self.model {
            ModelKind::Crdt => "crdt",
            ModelKind::Protocol => "protocol",
        }
    }

    /// The report's file name: the flags, as a slug.
    fn slug(&self) -> String {
        self.flags()
            .replace("--model ", "")
            .replace("--replicas ", "r")
            .replace("--ops ", "o")
            .replace("--faults ", "f")
            .replace(" --", "-")
            .replace(' ', "-")
    }
}

/// How long `presence check` runs unless told otherwise.
const DEFAULT_TIMEOUT_SECS: u64 = 600;

/// Arguments of `presence check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Explore at most this deep (a bound makes the check partial).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Checker threads, 1 to 1,024.
    #[arg(long, default_value_t = 2, value_parser = crate::thread_count)]
    pub threads: usize,
    /// Stop after this many seconds (the check is then partial).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub timeout_secs: u64,
    /// Where the report goes.
    #[arg(long, default_value = "reports/model-check")]
    pub out: PathBuf,
    /// Random walks instead of an exhaustive search, for spaces DFS cannot
    /// finish (`presence_model::walk`): each walk takes uniformly chosen
    /// actions from the initial state until a state with none, a loop, or
    /// --depth (default 200 steps; the models' counterexamples are tens).
    #[arg(long)]
    pub walk: bool,
    /// The walks' seed: walk i of a seed is always the same walk.
    #[arg(long, default_value_t = 0, requires = "walk")]
    pub seed: u64,
    /// Stop after this many walks (else at --timeout-secs). With a seed,
    /// the same walks at any thread count.
    #[arg(long, requires = "walk", value_parser = clap::value_parser!(u64).range(1..))]
    pub walks: Option<u64>,
}

impl CheckArgs {
    /// The command that runs this check again on `threads` threads, with
    /// every bound that shapes the run.
    fn command(&self, threads: usize) -> String {
        let mut command = format!(
            "cargo run --release -- check {} --threads {threads}",
            self.model.flags()
        );
        if let Some(depth) = self.depth {
            let _ = write!(command, " --depth {depth}");
        }
        if self.walk {
            let _ = write!(command, " --walk --seed {}", self.seed);
            if let Some(walks) = self.walks {
                let _ = write!(command, " --walks {walks}");
            }
        }
        if self.timeout_secs != DEFAULT_TIMEOUT_SECS {
            let _ = write!(command, " --timeout-secs {}", self.timeout_secs);
        }
        command
    }
}

/// Arguments of `presence explore`.
#[derive(clap::Args, Debug)]
pub struct ExploreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Port on 127.0.0.1 for the Explorer.
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
}

pub fn run(args: &CheckArgs) -> Result<(), Failure> {
    match args.model.model {
        ModelKind::Crdt => {
            let model = args.model.cfg()?.into_model();
            check_model(args, model.clone(), model, presence_model::crdt::representative)
        }
        ModelKind::Protocol => {
            let cfg = args.model.protocol_cfg()?;
            check_model(
                args,
                cfg.into_model(),
                cfg.into_model(),
                presence_model::protocol::representative,
            )
        }
    }
}

/// A model's symmetry reduction: a state's representative.
type Representative<M> = fn(&<M as Model>::State) -> <M as Model>::State;

/// Runs a check (with `representative` as its symmetry reduction when asked
/// for), prints and writes its report, and prints each counterexample,
/// confirmed and shrunk in `replay` (the same model).
fn check_model<M>(
    args: &CheckArgs,
    model: M,
    replay: M,
    representative: Representative<M>,
) -> Result<(), Failure>
where
    M: Model + Send + Sync + 'static,
    M::State: std::fmt::Debug + std::hash::Hash + Send + Sync + Clone + PartialEq + 'static,
    M::Action: std::fmt::Debug + Clone + PartialEq + Send,
{
    let command = args.command(args.threads);
    say!("presence check: {command}");
    let always = property_names(&model, Expectation::Always);
    let sometimes = property_names(&model, Expectation::Sometimes);
    let mut builder = model.checker().threads(args.threads);
    if let Some(depth) = args.depth {
        builder = builder.target_max_depth(depth);
    }
    if args.model.symmetry {
        builder = builder.symmetry_fn(representative);
    }
    let started = Instant::now();
    let walks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run = Run {
        args,
        command: &command,
        started,
        walks: &walks,
        always: &always,
        sometimes: &sometimes,
    };
    if args.walk {
        run.walk(&replay)
    } else {
        run.conclude(builder.spawn_dfs(), &replay)
    }
}

/// Steps per walk unless --depth says otherwise.
const DEFAULT_WALK_DEPTH: usize = 200;
struct Run<'a> {
    args: &'a CheckArgs,
    command: &'a str,
    started: Instant,
    walks: &'a std::sync::atomic::AtomicUsize,
    always: &'a [&'static str],
    sometimes: &'a [&'static str],
}

impl Run<'_> {
    /// Random walks until the walk count or the time limit; then the
    /// report, and each violation replayed from its walk index, confirmed
    /// and shrunk like a depth-first one.
    fn walk<M>(&self, model: &M) -> Result<(), Failure>
    where
        M: Model + Sync,
        M::State: std::fmt::Debug + std::hash::Hash + Clone + PartialEq,
        M::Action: std::fmt::Debug + Clone + PartialEq + Send,
    {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let args = self.args;
        let bounds = presence_model::walk::WalkBounds {
            seed: args.seed,
            threads: args.threads,
            max_depth: args.depth.unwrap_or(DEFAULT_WALK_DEPTH),
            max_walks: args.walks.unwrap_or(u64::MAX),
        };
        let stop = AtomicBool::new(false);
        let progress = AtomicU64::new(0);
        let deadline = self.started + Duration::from_secs(args.timeout_secs);
        let found = std::thread::scope(|scope| {
            let walking =
                scope.spawn(|| presence_model::walk::random_walks(model, &bounds, &stop, &progress));
            while !walking.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::Relaxed);
            walking.join().expect("the walkers do not panic")
        });
        let wall = self.started.elapsed().as_secs_f64();
        let figures = Figures {
            explored: found.states as usize,
            unique: found.states as usize,
            depth: found.max_depth,
            wall,
            finished: args.walks.is_some_and(|walks| found.walks >= walks),
            walks: Some(found.walks as usize),
        };
        let mut report = report_header(args, self.command, &figures);
        let _ = writeln!(report, "\n| property | kind | result |\n|---|---|---|");
        for &name in self.always {
            let verdict = match found.violations.get(name) {
                Some((walk, _)) => format!("VIOLATED (walk {walk})"),
                None => "not violated by these walks".to_owned(),
            };
            let _ = writeln!(report, "| {name} | always | {verdict} |");
        }
        for &name in self.sometimes {
            let verdict = match found.reached.get(name) {
                Some(steps) => format!("reached in {steps} steps"),
                None => "not reached by these walks".to_owned(),
            };
            let _ = writeln!(report, "| {name} | sometimes | {verdict} |");
        }
        crate::write_stdout(format_args!("{report}"));
        for (name, (walk, actions)) in &found.violations {
            let replayed = presence_model::walk::replay_walk(model, args.seed, *walk, bounds.max_depth, name);
            if replayed.as_ref() != Some(actions) {
                say!("\n{name}: walk {walk} did not replay to the same path; not shown");
                continue;
            }
            print_counterexample(model, name, actions.clone());
            say!(
                "  replay: cargo run --release -- check {} --walk --seed {} --walks {}",
                args.model.flags(),
                args.seed,
                walk + 1
            );
        }
        save_report(args, &report, found.violations.is_empty())?;
        if !found.violations.is_empty() {
            return Err(Failure::Safety);
        }
        args.model.forgetting_reached(found.reached.contains_key(FORGETS))
    }

    /// Waits for the checker (or the time limit), then prints and writes
    /// the report, and each counterexample, replayed and shrunk in `replay`.
    fn conclude<M, C>(&self, mut checker: C, replay: &M) -> Result<(), Failure>
    where
        M: Model,
        M::State: std::fmt::Debug + Clone + PartialEq,
        M::Action: std::fmt::Debug + Clone + PartialEq,
        C: Checker<M>,
    {
        let args = self.args;
        // The clock is watched here, not with stateright's `timeout`: its DFS
        // reads the timeout only when a thread runs out of work, which one
        // thread never does, and at the timeout it reports itself done while
        // its threads run on (0.31.0). On timeout the report is made from the
        // running checker, and its threads end with the process.
        let deadline = self.started + Duration::from_secs(args.timeout_secs);
        while !checker.is_done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let finished = checker.is_done();
        if finished {
            checker = checker.join();
        }
        let wall = self.started.elapsed().as_secs_f64();
        let figures = Figures {
            explored: checker.state_count(),
            unique: checker.unique_state_count(),
            depth: checker.max_depth(),
            wall,
            finished,
            walks: args
                .walk
                .then(|| self.walks.load(std::sync::atomic::Ordering::Relaxed)),
        };
        let mut report = report_header(args, self.command, &figures);
        // "holds" only for a search that covered the whole space.
        let complete = finished && args.depth.is_none();
        let violated = judge_properties(&mut report, &checker, self.always, self.sometimes, complete);
        crate::write_stdout(format_args!("{report}"));
        for (name, actions) in &violated {
            print_counterexample(replay, name, actions.clone());
            say!("  replay (one thread, same order): {}", args.command(1));
        }
        save_report(args, &report, violated.is_empty())?;
        if !violated.is_empty() {
            return Err(Failure::Safety);
        }
        args.model
            .forgetting_reached(self.sometimes.contains(&FORGETS) && checker.discovery(FORGETS).is_some())
    }
}

/// What a check's run came to, read once (a checker that timed out is
/// still counting).
struct Figures {
    explored: usize,
    unique: usize,
    depth: usize,
    wall: f64,
    finished: bool,
    /// Random walks taken, for `--walk`.
    walks: Option<usize>,
}

/// The report's title, provenance and figures table.
fn report_header(args: &CheckArgs, command: &str, figures: &Figures) -> String {
    let Figures {
        explored,
        unique,
        depth,
        wall,
        finished,
        walks,
    } = *figures;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "# Model check: {} model, {}\n",
        args.model.kind(),
        args.model.flags()
    );
    let _ = writeln!(report, "Generated by `presence check`; do not edit.\n");
    let _ = writeln!(report, "- command: `{command}`");
    let _ = writeln!(report, "- commit: `{}`", commit());
    let _ = writeln!(
        report,
        "- toolchain: `{}`",
        command_output("rustc", &["--version"])
    );
    let _ = writeln!(report, "- machine: {} x {}", cores(), cpu_model());
    let _ = writeln!(report, "\n| figure | value |\n|---|---|");
    if walks.is_some() {
        // A walk visits states, and may visit one twice across walks.
        let _ = writeln!(report, "| states visited | {explored} |");
        let _ = writeln!(report, "| maximum depth | {depth} |");
        let _ = writeln!(report, "| wall time | {wall:.2} s |");
        let _ = writeln!(
            report,
            "| states visited per second | {:.0} |",
            explored as f64 / wall.max(1e-9)
        );
    } else {
        let _ = writeln!(report, "| states explored | {explored} |");
        let _ = writeln!(report, "| unique states | {unique} |");
        let _ = writeln!(report, "| maximum depth | {depth} |");
        let _ = writeln!(report, "| wall time | {wall:.2} s |");
        let _ = writeln!(
            report,
            "| unique states per second | {:.0} |",
            unique as f64 / wall.max(1e-9)
        );
        let _ = writeln!(
            report,
            "| states explored per second | {:.0} |",
            explored as f64 / wall.max(1e-9)
        );
    }
    let _ = writeln!(report, "| threads | {} |", args.threads);
    if let Some(walks) = walks {
        let _ = writeln!(report, "| random walks (seed {}) | {walks} |", args.seed);
        let _ = writeln!(
            report,
            "| walks per second | {:.0} |",
            walks as f64 / wall.max(1e-9)
        );
        let stopped = if finished {
            "the walk count"
        } else {
            "the time limit"
        };
        let _ = writeln!(
            report,
            "| exhaustive | no (random walks, stopped at {stopped}: a violation found is real, none found proves nothing) |"
        );
        return report;
    }
    let exhaustive = match (finished, args.depth) {
        (false, _) => format!("no (stopped at the {} s time limit)", args.timeout_secs),
        (true, Some(bound)) => format!("no (bounded at depth {bound})"),
        (true, None) => "yes".to_owned(),
    };
    let _ = writeln!(report, "| exhaustive | {exhaustive} |");
    report
}

/// The properties table: each `always` property holds (only when the
/// search was `complete`), is not violated within the bounds searched, or
/// is violated; each `sometimes` one is reached or not. Returns the
/// violations with their paths.
fn judge_properties<M>(
    report: &mut String,
    checker: &impl Checker<M>,
    always: &[&'static str],
    sometimes: &[&'static str],
    complete: bool,
) -> Vec<(&'static str, Vec<M::Action>)>
where
    M: Model,
    M::State: Clone + PartialEq,
    M::Action: Clone + PartialEq,
{
    let _ = writeln!(report, "\n| property | kind | result |\n|---|---|---|");
    let mut violated = Vec::new();
    for &name in always {
        let found = checker.discovery(name);
        let verdict = match (&found, complete) {
            (Some(_), _) => "VIOLATED",
            (None, true) => "holds",
            (None, false) => "not violated within these bounds (not exhaustive)",
        };
        if let Some(path) = found {
            violated.push((name, path.into_actions()));
        }
        let _ = writeln!(report, "| {name} | always | {verdict} |");
    }
    for &name in sometimes {
        let verdict = match checker.discovery(name) {
            Some(path) => format!("reached in {} steps", path.into_actions().len()),
            None => "not reached within these bounds".to_owned(),
        };
        let _ = writeln!(report, "| {name} | sometimes | {verdict} |");
    }
    violated
}

/// Writes the report under `--out`. A bounded run is named for its bound,
/// so it never replaces the report of an exhaustive one. A check whose
/// report was asked for and not written did not do its job, whatever it
/// found.
fn save_report(args: &CheckArgs, report: &str, clean: bool) -> Result<(), Failure> {
    let mut bound = args.depth.map(|depth| format!("-d{depth}")).unwrap_or_default();
    if args.walk {
        bound.push_str(&format!("-walk-s{}", args.seed));
    }
    let file = args.out.join(format!("{}{bound}.md", args.model.slug()));
    match std::fs::create_dir_all(&args.out).and_then(|()| std::fs::write(&file, report)) {
        Ok(()) => {
            say!("\nreport: {}", file.display());
            Ok(())
        }
        Err(error) => {
            eprintln!("error: cannot write {}: {error}", file.display());
            Err(if clean { Failure::Io } else { Failure::Safety })
        }
    }
}

/// Shows a discovered violation: confirmed by replaying it from the start
/// (a path rebuilt from fingerprints is only as good as they are), then
/// shrunk.
fn print_counterexample<M>(model: &M, name: &str, discovered: Vec<M::Action>)
where
    M: Model,
    M::State: PartialEq,
    M::Action: PartialEq + Clone + std::fmt::Debug,
{
    say!("\nCOUNTEREXAMPLE for {name}:");
    if !presence_model::breaks(model, &discovered, name) {
        say!(
            "  (the discovered path of {} steps does not replay to a violation; not shown)",
            discovered.len()
        );
        return;
    }
    let actions = presence_model::shrink_counterexample(model, discovered.clone(), name, 10_000);
    say!("  ({} steps, shrunk from {})", actions.len(), discovered.len());
    for (step, action) in actions.iter().enumerate() {
        say!("  {:>3}. {}", step + 1, model.format_action(action));
    }
}

pub fn explore(args: &ExploreArgs) -> Result<(), Failure> {
    let address = format!("127.0.0.1:{}", args.port);
    // Check the bounds and the port first: the Explorer's server would panic.
    let crdt = matches!(args.model.model, ModelKind::Crdt)
        .then(|| args.model.cfg())
        .transpose()?;
    let protocol = matches!(args.model.model, ModelKind::Protocol)
        .then(|| args.model.protocol_cfg())
        .transpose()?;
    if let Err(error) = std::net::TcpListener::bind(&address) {
        eprintln!("error: cannot listen on {address}: {error}");
        return Err(Failure::Usage);
    }
    if let Some(cfg) = crdt {
        let _checker = cfg.into_model().checker().serve(address.as_str());
    }
    if let Some(cfg) = protocol {
        let _checker = cfg.into_model().checker().serve(address.as_str());
    }
    say!(
        "Explorer ({}) at http://{address}/ ; Ctrl-C stops it.",
        args.model.flags()
    );
    loop {
        std::thread::sleep(Duration::from_secs(3_600));
    }
}

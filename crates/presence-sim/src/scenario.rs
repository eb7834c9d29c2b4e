//! Scenarios: one named run description per TOML file in `sims/`.
//!
//! ```toml
//! name = "netsplit-heal"
//! description = "Isolate one node past down_period, then heal."
//! seeds = [1, 2, 3]
//! nodes = 3
//! fault_phase_ms = 60000      # faults and workload run this long
//! liveness_bound_ms = 60000   # then everything heals; convergence within this
//!
//! [protocol]                  # overrides of presence_tracker::Config
//! down_period_ms = 10000
//!
//! [workload]
//! clients_per_node = 4
//!
//! [network]
//! loss = 0.01
//!
//! [[faults]]
//! at_ms = 5000
//! action = "isolate"
//! nodes = [0]
//! ```
//!
//! Unknown fields are rejected. Every problem names the file, the field and
//! what is wrong.

use std::fmt;
use std::path::{Path, PathBuf};

use presence_tracker::Config;

use crate::distribution::Distribution;
use serde::{Deserialize, Serialize};

/// A named run description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The scenario's name (the file name without `.toml`, by convention).
    pub name: String,
    /// What it exercises, for people.
    #[serde(default)]
    pub description: String,
    /// Seeds `presence sim` runs it with.
    pub seeds: Vec<u64>,
    /// How many nodes.
    pub nodes: usize,
    /// How long faults and workload run, in virtual milliseconds.
    pub fault_phase_ms: u64,
    /// After the fault phase everything heals; replicas must converge within
    /// this many virtual milliseconds.
    pub liveness_bound_ms: u64,
    /// Protocol timing overrides.
    #[serde(default)]
    pub protocol: Protocol,
    /// What clients do.
    #[serde(default)]
    pub workload: Workload,
    /// Network behaviour during the fault phase.
    #[serde(default)]
    pub network: Network,
    /// Randomly drawn faults during the fault phase.
    #[serde(default)]
    pub random_faults: RandomFaults,
    /// How often the expensive checks run.
    #[serde(default)]
    pub checks: Checks,
    /// How far each node's clock is off (clock faults).
    #[serde(default)]
    pub clock: ClockFaults,
    /// Whether the tracker's BUGGIFY hooks are armed from the run's seed
    /// (see `presence_tracker::buggify`).
    #[serde(default)]
    pub buggify: bool,
    /// Scheduled faults.
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// Overrides of the tracker's configuration; unset fields keep Phoenix's
/// defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    /// `Config::broadcast_period_ms`.
    pub broadcast_period_ms: Option<u64>,
    /// `Config::max_silent_periods`.
    pub max_silent_periods: Option<u32>,
    /// `Config::down_period_ms`.
    pub down_period_ms: Option<u64>,
    /// `Config::permdown_period_ms`.
    pub permdown_period_ms: Option<u64>,
    /// `Config::clock_sample_periods`.
    pub clock_sample_periods: Option<u32>,
    /// `Config::transfer_timeout_ms`.
    pub transfer_timeout_ms: Option<u64>,
    /// `Config::retirement_memory_ms`; unset, the default or three permdown
    /// periods, whichever is longer.
    pub retirement_memory_ms: Option<u64>,
}

/// Clients and what they do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Connections (pids) per node.
    pub clients_per_node: usize,
    /// Distinct topics clients pick from.
    pub topics: usize,
    /// Distinct keys clients pick from.
    pub keys: usize,
    /// Mean virtual time between two operations on one node.
    pub op_interval_ms: u64,
    /// Presences each node tracks at time 0, before any fault.
    pub initial_presences_per_node: usize,
    /// Stop after this many operations in all (used by shrinking).
    pub max_ops: Option<u64>,
    /// How clients pick topics (`kind = "uniform"`, `"zipf"` with an
    /// `exponent`, or `"hot"` with a `share`): room 0 is the busiest.
    pub topic_distribution: Distribution,
    /// How clients pick keys: key 0 is the hottest. With many clients per
    /// node, a hot key has dozens of pids (devices, tabs) on every node.
    pub key_distribution: Distribution,
    /// Whether client `c` has the same pid (`c{c}`) on every node, so one
    /// pid is seen from several replicas; otherwise pids are `n{i}-c{c}`.
    pub shared_pids: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            clients_per_node: 4,
            topics: 3,
            keys: 8,
            op_interval_ms: 1_000,
            initial_presences_per_node: 0,
            max_ops: None,
            topic_distribution: Distribution::Uniform,
            key_distribution: Distribution::Uniform,
            shared_pids: false,
        }
    }
}

/// Link behaviour during the fault phase. Delays always apply; the rest stop
/// when the liveness phase starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Least one-way delay.
    pub delay_min_ms: u64,
    /// Mean extra delay (exponential).
    pub delay_mean_ms: u64,
    /// Probability a message is lost.
    pub loss: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Probability a message is held back (so later ones overtake it).
    pub reorder: f64,
    /// Mean extra delay of a held-back message.
    pub reorder_delay_ms: u64,
    /// Messages in flight on one link beyond which new ones are dropped.
    pub queue_limit: usize,
    /// Send every message through its JSON encoding (slower, tests the wire).
    pub encode_messages: bool,
}

impl Network {
    /// The longest a message can spend on the wire (exponential draws are
    /// capped, see [`crate::rng::EXPONENTIAL_CAP`]).
    pub fn max_delay_ms(&self) -> u64 {
        let cap = crate::rng::EXPONENTIAL_CAP;
        self.delay_min_ms
            .saturating_add(cap.saturating_mul(self.delay_mean_ms))
            .saturating_add(cap.saturating_mul(self.reorder_delay_ms))
    }
}

impl Default for Network {
    fn default() -> Self {
        Self {
            delay_min_ms: 1,
            delay_mean_ms: 5,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay_ms: 200,
            queue_limit: 10_000,
            encode_messages: true,
        }
    }
}

/// Rates of faults drawn at random during the fault phase (swarm testing).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomFaults {
    /// Mean virtual time between two random faults; 0 disables them.
    pub interval_ms: u64,
    /// Weight of partitions (isolate, split, one-way, partial, heal).
    pub partition: u32,
    /// Weight of crash-and-restart.
    pub crash: u32,
    /// Weight of pause-and-resume.
    pub pause: u32,
    /// Weight of clogging a link.
    pub clog: u32,
    /// Weight of an orderly shutdown (and later restart).
    pub shutdown: u32,
    /// Weight of a permanent departure (a crash or shutdown with no
    /// restart); at least two nodes always remain.
    pub depart: u32,
    /// Weight of a step of one node's clock, forward or back, by up to
    /// `clock.max_jump_ms`.
    pub clock_jump: u32,
    /// Weight of the forging nemesis: a frame with a flipped bit, a cut
    /// frame, a replay of an earlier frame (of any incarnation), or a
    /// heartbeat from a stranger, sealed under another secret or under
    /// the cluster's but from a base that is not a member. Needs
    /// `network.encode_messages` (frames are bytes).
    pub forge: u32,
}

/// Clock faults: each node's clock is drawn off the true time by an
/// offset and a drift at start, and random faults may step it forward or
/// back. A node sees only its own clock; the network and the ground truth
/// run on true time. All zero (the default): perfect clocks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockFaults {
    /// Each node's offset is drawn in `-max_offset_ms..=max_offset_ms`.
    pub max_offset_ms: u64,
    /// Each node's rate is off by a drift drawn in
    /// `-max_drift_ppm..=max_drift_ppm` parts per million.
    pub max_drift_ppm: u64,
    /// A random `clock-jump` steps one node's clock by up to this much,
    /// forward or back (its weight is `random_faults.clock_jump`).
    pub max_jump_ms: u64,
}

/// How often the checks that walk whole states run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checks {
    /// Run the detailed checks (the mirror against the view on what the
    /// diffs since named, I3-I7 over the whole state) every this many steps
    /// of a node; I1 by fingerprint runs after every step. Either way a
    /// check whose inputs have not changed since it passed is not repeated.
    pub full_every_steps: u64,
}

impl Default for Checks {
    fn default() -> Self {
        Self { full_every_steps: 1 }
    }
}

/// A scheduled fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// Cut `nodes` off from the others (both ways).
    Isolate {
        /// When.
        at_ms: u64,
        /// Which nodes.
        nodes: Vec<usize>,
    },
    /// Cut the cluster into `groups` (nodes in no group form one more).
    Split {
        /// When.
        at_ms: u64,
        /// The groups.
        groups: Vec<Vec<usize>>,
    },
    /// Cut one direction only: `from` can no longer reach `to`.
    OneWay {
        /// When.
        at_ms: u64,
        /// Sender side.
        from: usize,
        /// Receiver side.
        to: usize,
    },
    /// Cut the link between `a` and `b` both ways, leaving the rest
    /// (partial connectivity).
    Cut {
        /// When.
        at_ms: u64,
        /// One end.
        a: usize,
        /// The other end.
        b: usize,
    },
    /// Repair every link.
    Heal {
        /// When.
        at_ms: u64,
    },
    /// Hold every message on the link `a` -> `b` until unclogged.
    Clog {
        /// When.
        at_ms: u64,
        /// Sender side.
        a: usize,
        /// Receiver side.
        b: usize,
    },
    /// Release a clogged link.
    Unclog {
        /// When.
        at_ms: u64,
        /// Sender side.
        a: usize,
        /// Receiver side.
        b: usize,
    },
    /// The node crashes: memory and connections lost.
    Crash {
        /// When.
        at_ms: u64,
        /// Which node.
        node: usize,
    },
    /// The node (re)starts as a new incarnation (crashing first if running).
    Restart {
        /// When.
        at_ms: u64,
        /// Which node.
        node: usize,
    },
    /// The node freezes: no ticks, messages to it are lost.
    Pause {
        /// When.
        at_ms: u64,
        /// Which node.
        node: usize,
    },
    /// A paused node runs again, same incarnation.
    Resume {
        /// When.
        at_ms: u64,
        /// Which node.
        node: usize,
    },
    /// The node leaves in order (graceful permdown).
    Shutdown {
        /// When.
        at_ms: u64,
        /// Which node.
        node: usize,
    },
    /// The node leaves for good and never returns, not even in the
    /// liveness phase: a crash, or with `graceful` an orderly shutdown.
    Depart {
        /// When.
        at_ms: u64,
        /// Which node.
        node: usize,
        /// Whether it shuts down in order (announcing its permdown) rather
        /// than crashing.
        #[serde(default)]
        graceful: bool,
    },
    /// The node's clock steps by `by_ms` (negative: back).
    ClockJump {
        /// When.
        at_ms: u64,
        /// Which node.
        node: usize,
        /// The step.
        by_ms: i64,
    },
}

impl Fault {
    /// When it happens.
    pub fn at_ms(&self) -> u64 {
        match self {
            Self::Isolate { at_ms, .. }
            | Self::Split { at_ms, .. }
            | Self::OneWay { at_ms, .. }
            | Self::Cut { at_ms, .. }
            | Self::Heal { at_ms }
            | Self::Clog { at_ms, .. }
            | Self::Unclog { at_ms, .. }
            | Self::Crash { at_ms, .. }
            | Self::Restart { at_ms, .. }
            | Self::Pause { at_ms, .. }
            | Self::Resume { at_ms, .. }
            | Self::Shutdown { at_ms, .. }
            | Self::Depart { at_ms, .. }
            | Self::ClockJump { at_ms, .. } => *at_ms,
        }
    }

    /// Every node it names.
    pub fn nodes(&self) -> Vec<usize> {
        match self {
            Self::Isolate { nodes, .. } => nodes.clone(),
            Self::Split { groups, .. } => groups.iter().flatten().copied().collect(),
            Self::OneWay { from, to, .. } => vec![*from, *to],
            Self::Cut { a, b, .. } | Self::Clog { a, b, .. } | Self::Unclog { a, b, .. } => vec![*a, *b],
            Self::Heal { .. } => Vec::new(),
            Self::Crash { node, .. }
            | Self::Restart { node, .. }
            | Self::Pause { node, .. }
            | Self::Resume { node, .. }
            | Self::Shutdown { node, .. }
            | Self::Depart { node, .. }
            | Self::ClockJump { node, .. } => vec![*node],
        }
    }
}

/// Why a scenario could not be used.
#[derive(Debug)]
pub enum ScenarioError {
    /// The file could not be read.
    Read {
        /// The file.
        file: PathBuf,
        /// What the system said.
        problem: String,
    },
    /// Not valid TOML, or not the scenario shape (unknown or missing field,
    /// wrong type): the message names the field and the line.
    Parse {
        /// The file.
        file: PathBuf,
        /// What the parser said.
        problem: String,
    },
    /// Well-formed but not usable.
    Invalid {
        /// The file.
        file: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { file, problem } => write!(f, "{}: cannot read: {problem}", file.display()),
            Self::Parse { file, problem } => write!(f, "{}: {}", file.display(), problem.trim_end()),
            Self::Invalid { file, field, problem } => {
                write!(f, "{}: field `{field}`: {problem}", file.display())
            }
        }
    }
}

impl std::error::Error for ScenarioError {}

impl Scenario {
    /// Reads and validates one scenario file.
    pub fn load(file: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(file).map_err(|error| ScenarioError::Read {
            file: file.to_owned(),
            problem: error.to_string(),
        })?;
        Self::parse(&text, file)
    }

    /// Parses and validates scenario text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ScenarioError> {
        let scenario: Self = toml::from_str(text).map_err(|error| ScenarioError::Parse {
            file: file.to_owned(),
            problem: error.to_string(),
        })?;
        scenario
            .validate()
            .map_err(|(field, problem)| ScenarioError::Invalid {
                file: file.to_owned(),
                field,
                problem,
            })?;
        Ok(scenario)
    }

    /// Every `*.toml` scenario in `dir`, sorted by name.
    pub fn load_dir(dir: &Path) -> Result<Vec<Self>, ScenarioError> {
        let entries = std::fs::read_dir(dir).map_err(|error| ScenarioError::Read {
            file: dir.to_owned(),
            problem: error.to_string(),
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        files.sort();
        let mut scenarios = files
            .iter()
            .map(|file| Self::load(file))
            .collect::<Result<Vec<_>, _>>()?;
        scenarios.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(scenarios)
    }

    /// The scenario as TOML (for saving shrunk runs).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("scenarios always serialize")
    }

    /// The tracker configuration: Phoenix's defaults with the overrides.
    pub fn config(&self) -> Config {
        let defaults = Config::default();
        let protocol = &self.protocol;
        let permdown_period_ms = protocol.permdown_period_ms.unwrap_or(defaults.permdown_period_ms);
        Config {
            broadcast_period_ms: protocol
                .broadcast_period_ms
                .unwrap_or(defaults.broadcast_period_ms),
            max_silent_periods: protocol.max_silent_periods.unwrap_or(defaults.max_silent_periods),
            down_period_ms: protocol.down_period_ms.unwrap_or(defaults.down_period_ms),
            permdown_period_ms,
            clock_sample_periods: protocol
                .clock_sample_periods
                .unwrap_or(defaults.clock_sample_periods),
            transfer_timeout_ms: protocol
                .transfer_timeout_ms
                .unwrap_or(defaults.transfer_timeout_ms),
            retirement_memory_ms: protocol.retirement_memory_ms.unwrap_or(
                defaults
                    .retirement_memory_ms
                    .max(permdown_period_ms.saturating_mul(3)),
            ),
            max_delta_sizes: defaults.max_delta_sizes,
        }
    }

    /// The first numeric field outside its bound (see [`bounds`]), as
    /// (field, problem).
    fn out_of_bounds(&self) -> Option<(&'static str, String)> {
        let config = self.config();
        let (workload, network, faults) = (&self.workload, &self.network, &self.random_faults);
        let count = |value: usize| value as u64;
        let checks: [(&'static str, u64, u64, u64); 25] = [
            ("seeds", count(self.seeds.len()), 1, bounds::MAX_SEEDS),
            ("fault_phase_ms", self.fault_phase_ms, 1, bounds::MAX_TIME_MS),
            (
                "liveness_bound_ms",
                self.liveness_bound_ms,
                1,
                bounds::MAX_TIME_MS,
            ),
            (
                "protocol.broadcast_period_ms",
                config.broadcast_period_ms,
                1,
                bounds::MAX_TIME_MS,
            ),
            (
                "protocol.down_period_ms",
                config.down_period_ms,
                1,
                bounds::MAX_TIME_MS,
            ),
            (
                "protocol.permdown_period_ms",
                config.permdown_period_ms,
                1,
                bounds::MAX_TIME_MS,
            ),
            (
                "protocol.transfer_timeout_ms",
                config.transfer_timeout_ms,
                1,
                bounds::MAX_TIME_MS,
            ),
            (
                "protocol.retirement_memory_ms",
                config.retirement_memory_ms,
                1,
                bounds::MAX_TIME_MS,
            ),
            (
                "workload.clients_per_node",
                count(workload.clients_per_node),
                1,
                bounds::MAX_CLIENTS_PER_NODE,
            ),
            ("workload.topics", count(workload.topics), 1, bounds::MAX_NAMES),
            ("workload.keys", count(workload.keys), 1, bounds::MAX_NAMES),
            (
                "workload.op_interval_ms",
                workload.op_interval_ms,
                1,
                bounds::MAX_TIME_MS,
            ),
            (
                "workload.initial_presences_per_node",
                count(workload.initial_presences_per_node),
                0,
                bounds::MAX_INITIAL_PRESENCES_PER_NODE,
            ),
            (
                "network.delay_min_ms",
                network.delay_min_ms,
                0,
                bounds::MAX_TIME_MS,
            ),
            (
                "network.delay_mean_ms",
                network.delay_mean_ms,
                0,
                bounds::MAX_TIME_MS,
            ),
            (
                "network.reorder_delay_ms",
                network.reorder_delay_ms,
                0,
                bounds::MAX_TIME_MS,
            ),
            (
                "network.queue_limit",
                count(network.queue_limit),
                1,
                bounds::MAX_QUEUE_LIMIT,
            ),
            (
                "random_faults.interval_ms",
                faults.interval_ms,
                0,
                bounds::MAX_TIME_MS,
            ),
            (
                "random_faults (sum of weights)",
                [
                    faults.partition,
                    faults.crash,
                    faults.pause,
                    faults.clog,
                    faults.shutdown,
                    faults.depart,
                    faults.clock_jump,
                    faults.forge,
                ]
                .iter()
                .map(|&weight| u64::from(weight))
                .sum(),
                0,
                bounds::MAX_FAULT_WEIGHTS,
            ),
            (
                "checks.full_every_steps",
                self.checks.full_every_steps,
                1,
                u64::MAX,
            ),
            ("faults", count(self.faults.len()), 0, bounds::MAX_FAULTS),
            (
                "clock.max_offset_ms",
                self.clock.max_offset_ms,
                0,
                bounds::MAX_TIME_MS,
            ),
            (
                "clock.max_drift_ppm",
                self.clock.max_drift_ppm,
                0,
                bounds::MAX_DRIFT_PPM,
            ),
            (
                "clock.max_jump_ms",
                self.clock.max_jump_ms,
                0,
                bounds::MAX_TIME_MS,
            ),
            (
                "faults (a clock-jump's by_ms)",
                self.faults
                    .iter()
                    .map(|fault| match fault {
                        Fault::ClockJump { by_ms, .. } => by_ms.unsigned_abs(),
                        _ => 0,
                    })
                    .max()
                    .unwrap_or(0),
                0,
                bounds::MAX_TIME_MS,
            ),
        ];
        checks
            .into_iter()
            .find(|&(_, value, least, most)| !(least..=most).contains(&value))
            .map(|(field, value, least, most)| (field, format!("{value} is not in {least}..={most}")))
    }

    /// What this world can do to a node that forgets watermarks (see
    /// `presence_tracker::Node`): the oldest a message can be when it is
    /// handled (the longest wire delay, plus a random pause or clog of at
    /// most two down periods, or the whole fault phase if the scenario
    /// pauses or clogs by script), plus the largest forward clock jump.
    pub fn forgetting_tolerates_ms(&self) -> u64 {
        let replays_ms = if self.random_faults.forge > 0 {
            // A replay accepted within the window, judged against clocks
            // up to twice the largest offset apart.
            self.auth_window_ms()
                .saturating_add(self.clock.max_offset_ms.saturating_mul(2))
        } else {
            0
        };
        self.honest_age_ms().saturating_add(replays_ms)
    }

    /// The replay window frames are opened with: a frame may arrive as old
    /// as the network and faults make it, judged by a clock as far off the
    /// sender's as offsets, jumps and drift allow.
    pub fn auth_window_ms(&self) -> u64 {
        let run_ms = self.fault_phase_ms.saturating_add(self.liveness_bound_ms);
        let drift_ms = run_ms.saturating_mul(self.clock.max_drift_ppm) / 500_000;
        self.honest_age_ms()
            .saturating_add(self.clock.max_offset_ms.saturating_mul(2))
            .saturating_add(drift_ms)
            .saturating_add(1_000)
    }

    /// The oldest an honest message can be when it is handled, plus the
    /// largest forward clock jump.
    fn honest_age_ms(&self) -> u64 {
        let config = self.config();
        let scripted_hold = self
            .faults
            .iter()
            .any(|fault| matches!(fault, Fault::Pause { .. } | Fault::Clog { .. }));
        let hold_ms = if scripted_hold {
            self.fault_phase_ms
        } else {
            config.down_period_ms.saturating_mul(2)
        };
        let scripted_jump = self
            .faults
            .iter()
            .map(|fault| match fault {
                Fault::ClockJump { by_ms, .. } => by_ms.unsigned_abs(),
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        self.network
            .max_delay_ms()
            .saturating_add(hold_ms)
            .saturating_add(self.clock.max_jump_ms.max(scripted_jump))
    }

    /// Checks what types cannot: ranges, node numbers, the protocol.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let invalid = |field: &str, problem: String| Err((field.to_owned(), problem));
        if self.name.is_empty() {
            return invalid("name", "must not be empty".into());
        }
        if self.seeds.is_empty() {
            return invalid("seeds", "needs at least one seed".into());
        }
        if !(1..=64).contains(&self.nodes) {
            return invalid("nodes", format!("{} is not in 1..=64", self.nodes));
        }
        // Bounds first: the checks after them add and multiply fields.
        if let Some((field, problem)) = self.out_of_bounds() {
            return invalid(field, problem);
        }
        if let Err(problem) = self.config().validate() {
            return invalid("protocol", problem.to_string());
        }
        let config = self.config();
        if self.liveness_bound_ms < config.broadcast_period_ms * 2 {
            return invalid(
                "liveness_bound_ms",
                "must allow at least two broadcast periods".into(),
            );
        }
        let workload = &self.workload;
        for (field, distribution, names) in [
            (
                "workload.topic_distribution",
                workload.topic_distribution,
                workload.topics,
            ),
            (
                "workload.key_distribution",
                workload.key_distribution,
                workload.keys,
            ),
        ] {
            if let Err(problem) = distribution.check(names) {
                return invalid(field, problem);
            }
        }
        // Each client tracks a (topic, key) at most once; leave room to spare.
        let room = workload
            .clients_per_node
            .saturating_mul(workload.topics)
            .saturating_mul(workload.keys);
        if workload.initial_presences_per_node * 2 > room {
            return invalid(
                "workload.initial_presences_per_node",
                format!(
                    "{} needs at most half of clients x topics x keys ({room})",
                    workload.initial_presences_per_node
                ),
            );
        }
        for (field, rate) in [
            ("network.loss", self.network.loss),
            ("network.duplicate", self.network.duplicate),
            ("network.reorder", self.network.reorder),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return invalid(field, format!("{rate} is not a probability in [0, 1]"));
            }
        }
        let tolerated = self.forgetting_tolerates_ms();
        if config.retirement_memory_ms / 2 <= tolerated {
            return invalid(
                "protocol.retirement_memory_ms",
                format!(
                    "{} must be more than twice the oldest a message can arrive plus the largest clock jump ({tolerated} ms)",
                    config.retirement_memory_ms
                ),
            );
        }
        if self.random_faults.forge > 0 && !self.network.encode_messages {
            return invalid(
                "random_faults.forge",
                "forges bytes, so it needs network.encode_messages = true".into(),
            );
        }
        if self.network.queue_limit == 0 {
            return invalid("network.queue_limit", "must be positive".into());
        }
        if self.checks.full_every_steps == 0 {
            return invalid("checks.full_every_steps", "must be positive".into());
        }
        for (index, fault) in self.faults.iter().enumerate() {
            if let Some(node) = fault.nodes().into_iter().find(|&node| node >= self.nodes) {
                return invalid(
                    &format!("faults[{index}]"),
                    format!("names node {node}, but there are {} nodes", self.nodes),
                );
            }
            if fault.at_ms() > self.fault_phase_ms {
                return invalid(
                    &format!("faults[{index}].at_ms"),
                    format!(
                        "{} is after the fault phase ({} ms)",
                        fault.at_ms(),
                        self.fault_phase_ms
                    ),
                );
            }
        }
        Ok(())
    }
}

/// The bound of every numeric field of a scenario, so that no scenario can
/// allocate without bound or wrap virtual time: sums of any two times stay
/// far below `u64::MAX`, and a node's clients, names and presences fit in
/// memory.
pub mod bounds {
    /// Any time or period: 30 days of virtual time.
    pub const MAX_TIME_MS: u64 = 30 * 24 * 3_600_000;
    /// Seeds one scenario lists.
    pub const MAX_SEEDS: u64 = 100_000;
    /// Clients (pids) per node.
    pub const MAX_CLIENTS_PER_NODE: u64 = 100_000;
    /// Topics, and keys.
    pub const MAX_NAMES: u64 = 1_000_000;
    /// Presences one node tracks at time 0.
    pub const MAX_INITIAL_PRESENCES_PER_NODE: u64 = 1_000_000;
    /// Messages in flight on one link.
    pub const MAX_QUEUE_LIMIT: u64 = 1_000_000;
    /// The random faults' weights together.
    pub const MAX_FAULT_WEIGHTS: u64 = 1_000_000;
    /// Scheduled faults.
    pub const MAX_FAULTS: u64 = 100_000;
    /// A clock's drift: as fast or as slow as twice true time.
    pub const MAX_DRIFT_PPM: u64 = 1_000_000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_a_bound_that_names_it() {
        let base = Scenario::parse(MINIMAL, Path::new("base.toml")).expect("valid");
        type Breaker = fn(&mut Scenario);
        let breakers: [(&str, Breaker); 14] = [
            ("workload.clients_per_node", |s| {
                s.workload.clients_per_node = 4_000_000_000
            }),
            ("fault_phase_ms", |s| s.fault_phase_ms = u64::MAX),
            ("workload.op_interval_ms", |s| s.workload.op_interval_ms = 0),
            ("workload.keys", |s| s.workload.keys = usize::MAX),
            ("network.queue_limit", |s| s.network.queue_limit = usize::MAX),
            ("protocol.permdown_period_ms", |s| {
                s.protocol.permdown_period_ms = Some(u64::MAX)
            }),
            ("protocol.broadcast_period_ms", |s| {
                s.protocol.broadcast_period_ms = Some(u64::MAX)
            }),
            ("random_faults (sum of weights)", |s| {
                s.random_faults.partition = u32::MAX;
                s.random_faults.crash = u32::MAX;
            }),
            ("workload.initial_presences_per_node", |s| {
                s.workload.initial_presences_per_node = usize::MAX;
            }),
            ("seeds", |s| s.seeds.clear()),
            ("protocol.retirement_memory_ms", |s| {
                s.protocol.retirement_memory_ms = Some(u64::MAX)
            }),
            ("clock.max_offset_ms", |s| s.clock.max_offset_ms = u64::MAX),
            ("clock.max_jump_ms", |s| s.clock.max_jump_ms = u64::MAX),
            // Shorter than twice what forgetting must tolerate.
            ("protocol.retirement_memory_ms", |s| {
                s.protocol.permdown_period_ms = Some(40_000);
                s.protocol.retirement_memory_ms = Some(40_001);
            }),
        ];
        for (field, breaker) in breakers {
            let mut scenario = base.clone();
            breaker(&mut scenario);
            let (named, problem) = scenario.validate().expect_err(field);
            assert_eq!(named, field, "{problem}");
        }
        let text = format!("{MINIMAL}\n[workload]\nclients_per_node = 4000000000\n");
        let error = Scenario::parse(&text, Path::new("huge.toml"))
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("huge.toml") && error.contains("clients_per_node"),
            "{error}"
        );
    }

    const MINIMAL: &str = r#"
name = "t"
seeds = [1]
nodes = 2
fault_phase_ms = 1000
liveness_bound_ms = 60000
"#;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, Path::new("sims/t.toml"))
    }

    #[test]
    fn a_minimal_scenario_takes_the_defaults() {
        let scenario = parse(MINIMAL).unwrap();
        assert_eq!(scenario.workload, Workload::default());
        assert_eq!(scenario.config(), Config::default());
    }

    #[test]
    fn faults_parse_by_action() {
        let text = format!("{MINIMAL}\n[[faults]]\nat_ms = 10\naction = \"isolate\"\nnodes = [1]\n\n[[faults]]\nat_ms = 20\naction = \"one-way\"\nfrom = 0\nto = 1\n");
        let scenario = parse(&text).unwrap();
        assert_eq!(
            scenario.faults[0],
            Fault::Isolate {
                at_ms: 10,
                nodes: vec![1]
            }
        );
        assert_eq!(
            scenario.faults[1],
            Fault::OneWay {
                at_ms: 20,
                from: 0,
                to: 1
            }
        );
        assert_eq!(parse(&scenario.to_toml()).unwrap(), scenario, "TOML round trip");
    }

    #[test]
    fn unknown_fields_are_rejected_with_file_and_field() {
        let error = parse(&format!("{MINIMAL}\nnoise = 3\n")).unwrap_err().to_string();
        assert!(error.starts_with("sims/t.toml"), "{error}");
        assert!(error.contains("noise"), "{error}");
        let error = parse(&format!("{MINIMAL}\n[network]\nlos = 0.1\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("los"), "{error}");
        let error = parse(&format!(
            "{MINIMAL}\n[[faults]]\nat_ms = 1\naction = \"crash\"\nnode = 0\nextra = 1\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains("extra"), "{error}");
    }

    #[test]
    fn semantic_problems_name_the_field() {
        let error = parse(&format!("{MINIMAL}\n[network]\nloss = 1.5\n"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`network.loss`") && error.contains("1.5"),
            "{error}"
        );
        let error = parse(&format!(
            "{MINIMAL}\n[[faults]]\nat_ms = 1\naction = \"crash\"\nnode = 5\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("`faults[0]`") && error.contains("node 5"),
            "{error}"
        );
        let error = parse(&format!("{MINIMAL}\n[protocol]\ndown_period_ms = 100\n"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`protocol`") && error.contains("twice the broadcast period"),
            "{error}"
        );
        let error = parse(&MINIMAL.replace("seeds = [1]", "seeds = []"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`seeds`"), "{error}");
    }

    #[test]
    fn missing_fields_and_wrong_types_are_parse_errors() {
        let error = parse(&MINIMAL.replace("nodes = 2\n", ""))
            .unwrap_err()
            .to_string();
        assert!(error.contains("nodes"), "{error}");
        let error = parse(&MINIMAL.replace("nodes = 2", "nodes = \"two\""))
            .unwrap_err()
            .to_string();
        assert!(error.contains("nodes") || error.contains("line"), "{error}");
    }
}

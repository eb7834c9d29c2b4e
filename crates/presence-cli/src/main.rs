//! `presence`: the command line of presence-lab.
//!
//! - `presence sim`: every scenario in `sims/` with its seeds, one summary
//!   row each; `--scenario NAME --seed N` replays one run; `--trace FILE`
//!   writes its events as JSON lines and a timeline picture beside them;
//!   `--check-determinism` runs each twice and compares trace hashes.
//! - `presence swarm --seeds N`: swarm testing, each seed drawing its own
//!   fault mix.
//! - `presence check`: exhaustive model checking of the CRDT or protocol
//!   model with stateright;
//!   writes a report to `reports/model-check/`.
//! - `presence explore`: stateright's Explorer web UI on 127.0.0.1.
//! - `presence node`: one node over UDP on loopback (requests on stdin,
//!   diffs and events on stdout).
//! - `presence serve`: the presence server: Phoenix Channels clients over
//!   WebSocket, nodes replicating over sealed TCP (a TOML configuration).
//! - `presence load`: N WebSocket clients joining one topic over two
//!   `serve` nodes on loopback; joins per second, diff delay, memory.
//! - `presence report`: criterion's estimates as a dated report under
//!   `reports/bench/`, with a table against the targets and anchors, and
//!   SVG charts.
//!
//! Exit codes: 0 all passed; 1 a safety invariant broke; 2 replicas did not
//! converge (liveness); 3 the simulator or the code under test panicked;
//! 4 two runs of one seed differed (determinism); 5 the harness could not
//! judge a run (a message the product encoded failed to decode); 64 bad
//! usage or scenario; 74 a report could not be written;
//! 141 standard output was closed before the command finished (as a shell
//! reports a process ended by SIGPIPE, for `presence check | head`).
#![allow(clippy::disallowed_types)]

/// The command's allocator. The simulator and the model checker allocate
/// and free small objects at a great rate (diffs, rendered metas, model
/// states). With mimalloc instead of the system's allocator, the large
/// scenario ran about a third faster; model checks gained from nothing to
/// a seventh (the figures are in the commit that brought it). The
/// libraries leave the choice of allocator to their users.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Writes a line to standard output, as `println!` does, except that a
/// closed pipe ends the process quietly (see [`write_stdout`]).
macro_rules! say {
    () => {
        $crate::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod check;
mod commit;
mod load;
mod merge;
mod node;
mod provenance;
mod report;
mod runner;
mod serve;
mod sim;
mod swarm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "presence",
    version,
    about = "Presence CRDT simulation and fault-finding harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the seeded scenario suite (or one scenario and seed).
    Sim(sim::SimArgs),
    /// Swarm testing: every seed draws its own cluster and fault mix.
    Swarm(swarm::SwarmArgs),
    /// Exhaustive model checking of the CRDT or protocol model (stateright).
    Check(check::CheckArgs),
    /// Browse a model's state space in stateright's Explorer.
    Explore(check::ExploreArgs),
    /// Run one node over UDP on loopback.
    Node(node::NodeArgs),
    /// Serve Phoenix Channels clients over WebSocket, replicating across nodes.
    Serve(serve::ServeArgs),
    /// N WebSocket clients joining one topic over two serve nodes: joins/s, diff delay, memory.
    Load(load::LoadArgs),
    /// Turn criterion's estimates into a report under reports/bench/.
    Report(report::ReportArgs),
}

/// Writes to standard output. Rust ignores SIGPIPE, so `println!` panics
/// once the reader has gone (`presence check | head`); here a closed pipe
/// ends the process with status 141, as SIGPIPE would, and any other
/// write error ends it with a message and status 74 (EX_IOERR).
pub(crate) fn write_stdout(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(text) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: cannot write to standard output: {error}");
        std::process::exit(74);
    }
}

/// Why the command failed, by exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// A safety invariant broke.
    Safety = 1,
    /// No convergence within the bound.
    Liveness = 2,
    /// A panic.
    Crash = 3,
    /// Two runs of one seed differed.
    Determinism = 4,
    /// The harness could not judge a run (a message failed to decode).
    Harness = 5,
    /// A swarm sweep never reached a coverage mark it must reach.
    Coverage = 6,
    /// A report or file the command had to write could not be written.
    Io = 74,
    /// Bad arguments or scenario files.
    Usage = 64,
}

/// The name-hash secret of the harness commands (see
/// `presence_core::hashing`): fixed, so that even their work counts
/// reproduce. `PRESENCE_HASH_SECRET` overrides it, which is how a test shows
/// that no trace depends on it. `presence node` and `presence serve` keep a random secret.
const HARNESS_HASH_SECRET: u64 = 0x7072_6573_656e_6365;

fn fix_hash_secret(command: &Command) -> Result<(), Failure> {
    let secret = match std::env::var("PRESENCE_HASH_SECRET") {
        Ok(text) => match text.parse::<u64>() {
            Ok(secret) => secret,
            Err(_) => {
                eprintln!("error: PRESENCE_HASH_SECRET={text:?} is not a 64-bit unsigned number");
                return Err(Failure::Usage);
            }
        },
        Err(_) if matches!(command, Command::Node(_) | Command::Serve(_)) => return Ok(()),
        Err(_) => HARNESS_HASH_SECRET,
    };
    presence_core::hashing::set_secret(secret).map_err(|error| {
        eprintln!("error: {error}");
        Failure::Usage
    })
}

/// Worker or checker threads: at least one (a check on no thread checks
/// nothing), at most 1,024.
pub(crate) fn thread_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(threads) if (1..=1_024).contains(&threads) => Ok(threads),
        Ok(threads) => Err(format!("{threads} is not in 1..=1024")),
        Err(error) => Err(error.to_string()),
    }
}

fn main() -> ExitCode {
    // Bad arguments are usage errors (64), as the exit codes above say;
    // clap's own code for them (2) would read as a liveness failure.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() {
                Failure::Usage as u8
            } else {
                0
            };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    if let Err(failure) = fix_hash_secret(&cli.command) {
        return ExitCode::from(failure as u8);
    }
    let outcome = match cli.command {
        Command::Sim(args) => sim::run(&args),
        Command::Swarm(args) => swarm::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Explore(args) => check::explore(&args),
        Command::Node(args) => node::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Load(args) => load::run(&args),
        Command::Report(args) => report::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => ExitCode::from(failure as u8),
    }
}

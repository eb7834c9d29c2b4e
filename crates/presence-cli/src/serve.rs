//! `presence serve`: the presence server (crates/presence-server) from a
//! TOML configuration file: Phoenix Channels over WebSocket for clients,
//! sealed TCP frames for peers, a page at `/`.
//!
//! The cluster's secret comes from `cluster.secret_file` or the
//! `PRESENCE_SECRET` environment variable, never from the command line.
//! SIGINT or SIGTERM shuts down in order: sockets are closed with 1001,
//! and peers are told to drop this node's presences at once.

use std::path::PathBuf;

use presence_server::{Server, ServerConfig};
use presence_tracker::Secret;

use crate::Failure;

/// Arguments of `presence serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The configuration file (TOML); without one, every default.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the configuration in effect, with every default, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Stop by itself after this long (0: run until a signal).
    #[arg(long, default_value_t = 0)]
    pub max_runtime_secs: u64,
}

fn read_secret(config: &ServerConfig) -> Result<Option<Secret>, String> {
    let text = match &config.cluster.secret_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read the secret file {}: {error}", path.display()))?,
        None => match std::env::var("PRESENCE_SECRET") {
            Ok(text) => text,
            Err(_) => return Ok(None),
        },
    };
    Secret::from_text(&text)
        .map(Some)
        .map_err(|error| error.to_string())
}

async fn stopped(max_runtime_secs: u64) {
    let deadline = async {
        if max_runtime_secs == 0 {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(std::time::Duration::from_secs(max_runtime_secs)).await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
        () = terminate => tracing::info!("terminated: shutting down"),
        () = deadline => tracing::info!("--max-runtime-secs reached: shutting down"),
    }
}

pub fn run(args: &ServeArgs) -> Result<(), Failure> {
    let config = match &args.config {
        Some(path) => ServerConfig::from_file(path),
        None => ServerConfig::from_toml(""),
    }
    .map_err(|error| {
        eprintln!("error: {error}");
        Failure::Usage
    })?;
    if args.print_config {
        say!("{}", config.to_toml());
        return Ok(());
    }
    let secret = read_secret(&config).map_err(|error| {
        eprintln!("error: {error}");
        Failure::Usage
    })?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("error: cannot start the runtime: {error}");
            Failure::Io
        })?;
    runtime.block_on(async {
        let server = Server::start(config, secret).await.map_err(|error| {
            eprintln!("error: {error}");
            Failure::Usage
        })?;
        say!(
            "{}",
            serde_json::json!({"type": "started", "http": server.http_address().to_string(), "cluster": server.cluster_address().to_string()})
        );
        stopped(args.max_runtime_secs).await;
        let counts = server.cluster_counts();
        server.shutdown().await;
        say!("{}", serde_json::json!({"type": "stopped", "cluster": counts}));
        Ok(())
    })
}

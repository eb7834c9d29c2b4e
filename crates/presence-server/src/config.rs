//! The server's configuration: a TOML file whose every field has a
//! documented default (Phoenix's timings for the tracker), checked as a
//! whole before anything listens.
//!
//! ```toml
//! node = "n1"                     # this node's name, its replica base
//!
//! [http]
//! listen = "127.0.0.1:4000"       # WebSocket at /socket/websocket, page at /
//! phoenix_js = "interop/node_modules/phoenix/priv/static/phoenix.min.js"
//! flush_interval_ms = 50          # diffs to a topic at most this often
//!
//! [cluster]
//! listen = "127.0.0.1:7001"       # TCP, frames sealed under the secret
//! secret_file = "secret"          # else PRESENCE_SECRET
//! window_ms = 120000
//! peers = { n2 = "127.0.0.1:7002" }
//!
//! [tracker]                       # Phoenix.Tracker's defaults
//! broadcast_period_ms = 1500
//! max_silent_periods = 10
//! down_period_ms = 30000
//! permdown_period_ms = 1200000
//!
//! [limits]                        # what one client may send
//! max_frame_bytes = 65536
//! max_topics_per_socket = 100
//! max_meta_bytes = 4096
//! max_meta_depth = 8
//! joins_per_second = 10
//! join_burst = 20
//! idle_timeout_ms = 60000
//! outbound_queue = 1024
//! max_connections = 50000
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use presence_tracker::Config as TrackerConfig;
use serde::Deserialize;

/// The whole configuration of `presence serve`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// This node's name: its replica base, unique in the cluster.
    pub node: String,
    /// The HTTP side: clients.
    pub http: HttpConfig,
    /// The cluster side: peers.
    pub cluster: ClusterConfig,
    /// The replication protocol's timings.
    pub tracker: TrackerTimings,
    /// Bounds on what a client may send.
    pub limits: Limits,
}

/// Where clients connect.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The address of the WebSocket endpoint and the page (loopback by default).
    pub listen: SocketAddr,
    /// The phoenix.js file the page at `/` loads as `/phoenix.js` (the npm
    /// package's `priv/static/phoenix.min.js`). Unset: `/phoenix.js` is 404
    /// and the page says so.
    pub phoenix_js: Option<PathBuf>,
    /// Diffs go out to a topic's subscribers at most this often: a burst of
    /// joins to one topic is one `presence_diff` per interval, not one per
    /// join. A change after a quiet spell goes out at once. 0: every change
    /// at once.
    pub flush_interval_ms: u64,
}

/// How this node reaches its peers.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The TCP address peers connect to (loopback by default).
    pub listen: SocketAddr,
    /// Peers by name. With this node, they are the members: frames from any
    /// other base are refused.
    pub peers: BTreeMap<String, SocketAddr>,
    /// A file holding the cluster's secret; else `PRESENCE_SECRET`. Needed
    /// only when there are peers.
    pub secret_file: Option<PathBuf>,
    /// Frames sent longer ago (or further ahead) than this are refused as
    /// replays; more than the members' clock skew, under half the
    /// retirement memory.
    pub window_ms: u64,
    /// The largest frame a peer may send, in bytes (a full state transfer
    /// must fit).
    pub max_frame_bytes: usize,
    /// Frames queued for one peer before new ones are dropped (the protocol
    /// repairs losses).
    pub queue_frames: usize,
}

/// The tracker's timings, as in `Phoenix.Tracker`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerTimings {
    /// How often a node sends its changes to its peers.
    pub broadcast_period_ms: u64,
    /// Periods a node with nothing to say stays quiet before a heartbeat.
    pub max_silent_periods: u32,
    /// A peer unheard this long is down: its presences are hidden.
    pub down_period_ms: u64,
    /// A peer unheard this long is gone: its presences are discarded.
    pub permdown_period_ms: u64,
    /// How long a departed node's watermark is remembered.
    pub retirement_memory_ms: u64,
}

/// Bounds on what one client may send. A violation is a typed error to the
/// client (a join or update refused with a reason, or the socket closed
/// with a WebSocket close code), and a log line.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest WebSocket message, in bytes (close code 1009 beyond it).
    pub max_frame_bytes: usize,
    /// Channels one socket may have joined at once.
    pub max_topics_per_socket: usize,
    /// The largest presence meta, as JSON bytes.
    pub max_meta_bytes: usize,
    /// The deepest presence meta, in nested arrays and objects.
    pub max_meta_depth: usize,
    /// Joins per second one socket may make, on average.
    pub joins_per_second: u32,
    /// Joins one socket may make at once.
    pub join_burst: u32,
    /// A socket silent this long is closed (phoenix.js heartbeats every 30 s).
    pub idle_timeout_ms: u64,
    /// Frames waiting for one socket; a client that falls this far behind
    /// is disconnected rather than let the server's memory grow.
    pub outbound_queue: usize,
    /// Sockets open at once; more are refused (HTTP 503).
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            node: "n1".to_owned(),
            http: HttpConfig::default(),
            cluster: ClusterConfig::default(),
            tracker: TrackerTimings::default(),
            limits: Limits::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4000)),
            phoenix_js: None,
            flush_interval_ms: 50,
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7001)),
            peers: BTreeMap::new(),
            secret_file: None,
            window_ms: 120_000,
            max_frame_bytes: 64 << 20,
            queue_frames: 1024,
        }
    }
}

impl Default for TrackerTimings {
    fn default() -> Self {
        let phoenix = TrackerConfig::default();
        Self {
            broadcast_period_ms: phoenix.broadcast_period_ms,
            max_silent_periods: phoenix.max_silent_periods,
            down_period_ms: phoenix.down_period_ms,
            permdown_period_ms: phoenix.permdown_period_ms,
            retirement_memory_ms: phoenix.retirement_memory_ms,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 << 10,
            max_topics_per_socket: 100,
            max_meta_bytes: 4096,
            max_meta_depth: 8,
            joins_per_second: 10,
            join_burst: 20,
            idle_timeout_ms: 60_000,
            outbound_queue: 1024,
            max_connections: 50_000,
        }
    }
}

/// Why a configuration was refused. Nothing listens until it is fixed.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read(PathBuf, std::io::Error),
    /// The file is not valid TOML for this configuration (an unknown field,
    /// a wrong type, a number out of range).
    Parse(String),
    /// A field's value is out of its bounds.
    Invalid {
        /// The field, as `section.name`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The tracker's timings do not fit together.
    Tracker(presence_tracker::ConfigError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(path, error) => write!(f, "cannot read {}: {error}", path.display()),
            Self::Parse(message) => write!(f, "bad configuration: {message}"),
            Self::Invalid { field, problem } => write!(f, "{field}: {problem}"),
            Self::Tracker(error) => write!(f, "tracker: {error}"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn invalid(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// Checks `value` lies in `low..=high`.
fn within<T: PartialOrd + fmt::Display + Copy>(
    field: &'static str,
    value: T,
    low: T,
    high: T,
) -> Result<(), ConfigError> {
    if value < low || value > high {
        return Err(invalid(field, format!("{value} is outside {low}..={high}")));
    }
    Ok(())
}

impl ServerConfig {
    /// Reads and checks a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| ConfigError::Read(path.to_owned(), error))?;
        Self::from_toml(&text)
    }

    /// Parses and checks a configuration.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|error| ConfigError::Parse(error.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every bound; the first field out of bounds is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        presence_core::ReplicaId::checked(&self.node, 1).map_err(|problem| invalid("node", problem))?;
        if self.cluster.peers.contains_key(&self.node) {
            return Err(invalid("cluster.peers", "lists this node itself"));
        }
        for name in self.cluster.peers.keys() {
            presence_core::ReplicaId::checked(name, 1)
                .map_err(|problem| invalid("cluster.peers", problem))?;
        }
        let limits = &self.limits;
        within("limits.max_frame_bytes", limits.max_frame_bytes, 256, 16 << 20)?;
        within(
            "limits.max_topics_per_socket",
            limits.max_topics_per_socket,
            1,
            10_000,
        )?;
        within(
            "limits.max_meta_bytes",
            limits.max_meta_bytes,
            2,
            limits.max_frame_bytes,
        )?;
        within(
            "limits.max_meta_depth",
            limits.max_meta_depth,
            1,
            presence_core::MAX_META_DEPTH,
        )?;
        within("limits.joins_per_second", limits.joins_per_second, 1, 100_000)?;
        within("limits.join_burst", limits.join_burst, 1, 100_000)?;
        within("limits.idle_timeout_ms", limits.idle_timeout_ms, 1_000, 3_600_000)?;
        within("limits.outbound_queue", limits.outbound_queue, 16, 1 << 20)?;
        within("limits.max_connections", limits.max_connections, 1, 1 << 20)?;
        within(
            "cluster.max_frame_bytes",
            self.cluster.max_frame_bytes,
            4096,
            1 << 30,
        )?;
        within("cluster.queue_frames", self.cluster.queue_frames, 1, 1 << 20)?;
        let tracker = self.tracker_config();
        tracker.validate().map_err(ConfigError::Tracker)?;
        if self.cluster.window_ms == 0 || self.cluster.window_ms >= tracker.retirement_memory_ms / 2 {
            return Err(invalid(
                "cluster.window_ms",
                format!(
                    "{} must be positive and under half the retirement memory ({} ms)",
                    self.cluster.window_ms,
                    tracker.retirement_memory_ms / 2
                ),
            ));
        }
        Ok(())
    }

    /// The tracker node's configuration.
    pub fn tracker_config(&self) -> TrackerConfig {
        let timings = &self.tracker;
        TrackerConfig {
            broadcast_period_ms: timings.broadcast_period_ms,
            max_silent_periods: timings.max_silent_periods,
            down_period_ms: timings.down_period_ms,
            permdown_period_ms: timings.permdown_period_ms,
            retirement_memory_ms: timings.retirement_memory_ms,
            transfer_timeout_ms: 2 * timings.broadcast_period_ms,
            ..TrackerConfig::default()
        }
    }

    /// The configuration as TOML (what `presence serve --print-config`
    /// shows).
    pub fn to_toml(&self) -> String {
        let mut peers = String::new();
        for (name, address) in &self.cluster.peers {
            if !peers.is_empty() {
                peers.push_str(", ");
            }
            peers.push_str(&format!("{name} = \"{address}\""));
        }
        let optional = |path: &Option<PathBuf>, name: &str| match path {
            Some(path) => format!("{name} = {:?}\n", path.display().to_string()),
            None => format!("# {name} = \"...\"\n"),
        };
        let (http, cluster, tracker, limits) = (&self.http, &self.cluster, &self.tracker, &self.limits);
        format!(
            "node = {node:?}\n\n[http]\nlisten = \"{http_listen}\"\n{phoenix_js}flush_interval_ms = {flush}\n\n\
             [cluster]\nlisten = \"{cluster_listen}\"\npeers = {{ {peers} }}\n{secret}window_ms = {window}\n\
             max_frame_bytes = {cluster_frame}\nqueue_frames = {queue}\n\n\
             [tracker]\nbroadcast_period_ms = {broadcast}\nmax_silent_periods = {silent}\n\
             down_period_ms = {down}\npermdown_period_ms = {permdown}\nretirement_memory_ms = {memory}\n\n\
             [limits]\nmax_frame_bytes = {frame}\nmax_topics_per_socket = {topics}\nmax_meta_bytes = {meta}\n\
             max_meta_depth = {depth}\njoins_per_second = {rate}\njoin_burst = {burst}\n\
             idle_timeout_ms = {idle}\noutbound_queue = {outbound}\nmax_connections = {connections}\n",
            node = self.node,
            http_listen = http.listen,
            phoenix_js = optional(&http.phoenix_js, "phoenix_js"),
            flush = http.flush_interval_ms,
            cluster_listen = cluster.listen,
            secret = optional(&cluster.secret_file, "secret_file"),
            window = cluster.window_ms,
            cluster_frame = cluster.max_frame_bytes,
            queue = cluster.queue_frames,
            broadcast = tracker.broadcast_period_ms,
            silent = tracker.max_silent_periods,
            down = tracker.down_period_ms,
            permdown = tracker.permdown_period_ms,
            memory = tracker.retirement_memory_ms,
            frame = limits.max_frame_bytes,
            topics = limits.max_topics_per_socket,
            meta = limits.max_meta_bytes,
            depth = limits.max_meta_depth,
            rate = limits.joins_per_second,
            burst = limits.join_burst,
            idle = limits.idle_timeout_ms,
            outbound = limits.outbound_queue,
            connections = limits.max_connections,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(ServerConfig::from_toml("").unwrap(), ServerConfig::default());
    }

    #[test]
    fn the_printed_defaults_read_back_as_the_defaults() {
        let mut config = ServerConfig::default();
        config
            .cluster
            .peers
            .insert("n2".into(), "127.0.0.1:7002".parse().unwrap());
        config.http.phoenix_js = Some("x/phoenix.js".into());
        assert_eq!(ServerConfig::from_toml(&config.to_toml()).unwrap(), config);
    }

    #[test]
    fn bad_values_are_named() {
        let refused = |text: &str| ServerConfig::from_toml(text).unwrap_err().to_string();
        assert!(refused("[limits]\nmax_topics_per_socket = 0").starts_with("limits.max_topics_per_socket"));
        assert!(refused("[limits]\nmax_meta_depth = 65").starts_with("limits.max_meta_depth"));
        assert!(refused("[limits]\nmax_connections = 4000000000").starts_with("limits.max_connections"));
        assert!(refused("[tracker]\ndown_period_ms = 10").starts_with("tracker:"));
        assert!(refused("[cluster]\nwindow_ms = 0").starts_with("cluster.window_ms"));
        assert!(refused("node = \"\"").starts_with("node"));
        assert!(
            refused("node = \"a\"\n[cluster]\npeers = { a = \"127.0.0.1:1\" }").starts_with("cluster.peers")
        );
        // A typo is an error, not a silently ignored field.
        assert!(refused("[limits]\nmax_topic_per_socket = 3").contains("unknown field"));
        // A number beyond the field's type is an error, not a wrap.
        assert!(refused("[tracker]\nmax_silent_periods = 4294967296").starts_with("bad configuration"));
    }
}

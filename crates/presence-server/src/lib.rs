//! presence-server: the runtime around presence-tracker.
//!
//! - **Phoenix Channels over WebSocket** at `/socket/websocket`
//!   ([`phoenix`], [`socket`]): the stock phoenix.js `Socket`, `Channel` and
//!   `Presence` work unchanged (`?vsn=2.0.0`).
//! - **The library API** ([`Presence`]): `track`, `untrack`, `update`,
//!   `list` and a diff [`Subscription`] per topic, for Rust apps that bring
//!   their own sockets.
//! - **Replication** between server nodes ([`cluster`]): the tracker
//!   `Node` the simulator and the models drive, over TCP on loopback by
//!   default, every frame sealed under the cluster's secret.
//! - **A page** at `/` that shows who is online in a room, with phoenix.js.
//!
//! ```text
//!   phoenix.js ──ws──▶ socket task ─┐                 ┌──▶ peers (TCP, sealed)
//!   phoenix.js ──ws──▶ socket task ─┼─▶ hub (Node) ───┤
//!   Rust code ──── Presence handle ─┘      ▲          └──▶ subscribers: presence_diff
//!                                          └── peers' frames, timer ticks
//! ```

// A runtime: it reads the clock to feed the node (`now_ms`) and to seal
// frames, and keeps lookup-only hash maps of topics' subscribers. Nothing
// here reaches a trace, a diff's order or a hash: the hub's diffs come from
// the node, in tag order.
#![allow(clippy::disallowed_types)]

pub mod cluster;
pub mod config;
pub mod phoenix;
pub mod socket;

mod coalesce;
mod hub;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use presence_core::ReplicaId;
use presence_tracker::{Node, Secret};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use cluster::ClusterCounts;
pub use config::{ConfigError, Limits, ServerConfig};
pub use hub::{NodeStatus, Presence, PresenceError, Subscription, TopicDiff};

/// A socket's read buffer, in bytes.
const SOCKET_READ_BUFFER: usize = 4 << 10;
/// A socket's write buffer: writes reach the stream when it holds this much
/// (or at a flush).
const SOCKET_WRITE_BUFFER: usize = 16 << 10;

/// The page at `/`.
const INDEX_HTML: &str = include_str!("../static/index.html");

/// Why a server did not start.
#[derive(Debug)]
pub enum ServeError {
    /// The configuration is refused.
    Config(ConfigError),
    /// The cluster has peers but no secret was given.
    NoSecret,
    /// A listener could not be bound.
    Bind(SocketAddr, std::io::Error),
    /// The phoenix.js file could not be read.
    PhoenixJs(std::path::PathBuf, std::io::Error),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(error) => write!(f, "{error}"),
            Self::NoSecret => {
                f.write_str("the cluster has peers but no secret: set cluster.secret_file or PRESENCE_SECRET")
            }
            Self::Bind(address, error) => write!(f, "cannot listen on {address}: {error}"),
            Self::PhoenixJs(path, error) => {
                write!(f, "http.phoenix_js: cannot read {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for ServeError {}

/// The listeners a server runs on, bound before it starts (tests bind
/// port 0 and give each node the others' addresses).
pub struct Listeners {
    /// Clients.
    pub http: std::net::TcpListener,
    /// Peers.
    pub cluster: std::net::TcpListener,
}

impl Listeners {
    /// Binds the configured addresses.
    pub fn bind(config: &ServerConfig) -> Result<Self, ServeError> {
        let bind = |address: SocketAddr| {
            std::net::TcpListener::bind(address).map_err(|error| ServeError::Bind(address, error))
        };
        Ok(Self {
            http: bind(config.http.listen)?,
            cluster: bind(config.cluster.listen)?,
        })
    }
}

/// A running server.
pub struct Server {
    presence: Presence,
    http_address: SocketAddr,
    cluster_address: SocketAddr,
    counts: Arc<Mutex<ClusterCounts>>,
    stop_sockets: watch::Sender<bool>,
    hub: JoinHandle<()>,
    http: JoinHandle<()>,
}

impl Server {
    /// Checks the configuration, binds its addresses and starts.
    pub async fn start(config: ServerConfig, secret: Option<Secret>) -> Result<Self, ServeError> {
        config.validate().map_err(ServeError::Config)?;
        let listeners = Listeners::bind(&config)?;
        Self::start_on(config, secret, listeners).await
    }

    /// Starts on listeners already bound.
    pub async fn start_on(
        config: ServerConfig,
        secret: Option<Secret>,
        listeners: Listeners,
    ) -> Result<Self, ServeError> {
        config.validate().map_err(ServeError::Config)?;
        if !config.cluster.peers.is_empty() && secret.is_none() {
            return Err(ServeError::NoSecret);
        }
        for address in [config.http.listen, config.cluster.listen]
            .iter()
            .chain(config.cluster.peers.values())
        {
            if !address.ip().is_loopback() {
                tracing::warn!(%address, "not a loopback address: peer frames are authenticated but not encrypted, and clients are not authenticated at all");
            }
        }
        let phoenix_js = match &config.http.phoenix_js {
            Some(path) => {
                Some(std::fs::read(path).map_err(|error| ServeError::PhoenixJs(path.clone(), error))?)
            }
            None => None,
        };
        let http_address = local_address(&listeners.http)?;
        let cluster_address = local_address(&listeners.cluster)?;
        let http_listener = into_tokio(listeners.http, http_address)?;
        let cluster_listener = into_tokio(listeners.cluster, cluster_address)?;

        // A new incarnation at every start: the start time in microseconds.
        let incarnation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |since| since.as_micros() as u64);
        let replica = ReplicaId::new(&config.node, incarnation);
        let node = Node::new(replica.clone(), config.tracker_config(), 0)
            .map_err(|error| ServeError::Config(ConfigError::Tracker(error)))?;
        let (to_hub, incoming) = mpsc::channel(4096);
        let setup = cluster::ClusterSetup {
            node: config.node.clone(),
            peers: config.cluster.peers.clone(),
            secret,
            window_ms: config.cluster.window_ms,
            max_frame_bytes: config.cluster.max_frame_bytes,
            queue_frames: config.cluster.queue_frames,
        };
        let (cluster, counts) = cluster::Cluster::start(setup, cluster_listener, to_hub);
        let (presence, hub) = hub::Hub::new(
            node,
            cluster,
            std::time::Duration::from_millis(config.http.flush_interval_ms),
        )
        .spawn(incoming);

        let (stop_sockets, shutdown) = watch::channel(false);
        let shared = Arc::new(socket::Shared {
            node: config.node.clone(),
            presence: presence.clone(),
            limits: config.limits.clone(),
            sockets: Default::default(),
            shutdown,
        });
        let app = Router::new()
            .route("/", get(|| async { Html(INDEX_HTML) }))
            .route("/phoenix.js", get(move || phoenix_js_file(phoenix_js.clone())))
            .route("/socket/websocket", get(upgrade))
            .with_state(Arc::clone(&shared));
        let mut stopped = stop_sockets.subscribe();
        let http = tokio::spawn(async move {
            let stopping = async move {
                let _ = stopped.changed().await;
            };
            if let Err(error) = axum::serve(http_listener, app)
                .with_graceful_shutdown(stopping)
                .await
            {
                tracing::error!(%error, "http server failed");
            }
        });
        tracing::info!(%replica, http = %http_address, cluster = %cluster_address, peers = config.cluster.peers.len(), "presence server started");
        Ok(Self {
            presence,
            http_address,
            cluster_address,
            counts,
            stop_sockets,
            hub,
            http,
        })
    }

    /// The library API of this node.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    /// Where clients connect.
    pub fn http_address(&self) -> SocketAddr {
        self.http_address
    }

    /// Where peers connect.
    pub fn cluster_address(&self) -> SocketAddr {
        self.cluster_address
    }

    /// What the cluster transport refused or dropped so far.
    pub fn cluster_counts(&self) -> serde_json::Value {
        cluster::refusal_counts(&self.counts.lock().expect("counts"))
    }

    /// Shuts down in order: sockets are closed (1001, "going away"), this
    /// node's presences are untracked, peers are told to drop them at once
    /// (the permdown), and the listeners stop.
    pub async fn shutdown(self) {
        let _ = self.stop_sockets.send(true);
        self.presence.shutdown().await;
        let _ = self.hub.await;
        let _ = self.http.await;
    }
}

impl Server {
    /// Stops at once, as a killed process would: no permdown, no close
    /// frames, nothing more sent. Peers hide this node's presences after
    /// their down period. For fault-injection tests.
    pub fn crash(self) {
        self.hub.abort();
        self.http.abort();
    }
}

fn local_address(listener: &std::net::TcpListener) -> Result<SocketAddr, ServeError> {
    listener
        .local_addr()
        .map_err(|error| ServeError::Bind(SocketAddr::from(([0, 0, 0, 0], 0)), error))
}

fn into_tokio(
    listener: std::net::TcpListener,
    address: SocketAddr,
) -> Result<tokio::net::TcpListener, ServeError> {
    listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
        .map_err(|error| ServeError::Bind(address, error))
}

async fn phoenix_js_file(file: Option<Vec<u8>>) -> Response {
    match file {
        Some(bytes) => ([(header::CONTENT_TYPE, "text/javascript")], bytes).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "phoenix.js is not configured: set http.phoenix_js to the npm package's priv/static/phoenix.min.js",
        )
            .into_response(),
    }
}

async fn upgrade(upgrade: WebSocketUpgrade, State(shared): State<Arc<socket::Shared>>) -> Response {
    let open = shared.sockets.fetch_add(1, Ordering::Relaxed);
    if open >= shared.limits.max_connections as u64 {
        shared.sockets.fetch_sub(1, Ordering::Relaxed);
        tracing::warn!(open, "socket refused: max_connections reached");
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response();
    }
    let max = shared.limits.max_frame_bytes;
    // tungstenite's buffers default to 128 KiB each way, allocated per
    // socket: most of a connection's memory for a client that sends a few
    // small frames. Writes are batched and flushed by the socket task.
    upgrade
        .read_buffer_size(SOCKET_READ_BUFFER)
        .write_buffer_size(SOCKET_WRITE_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
        .on_failed_upgrade({
            let shared = Arc::clone(&shared);
            move |_| {
                shared.sockets.fetch_sub(1, Ordering::Relaxed);
            }
        })
        .on_upgrade(move |socket| socket::serve_socket(socket, shared))
}

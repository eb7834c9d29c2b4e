//! A Phoenix Channels V2 client over tokio-tungstenite, and servers on
//! loopback ports chosen by the system.
#![allow(dead_code, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use presence_server::phoenix::Frame;
use presence_server::{Listeners, Server, ServerConfig};
use presence_tracker::Secret;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);

pub fn loopback() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

/// A configuration with fast timings, for tests.
pub fn fast_config(node: &str) -> ServerConfig {
    let mut config = ServerConfig::from_toml(
        "[tracker]\nbroadcast_period_ms = 50\nmax_silent_periods = 4\ndown_period_ms = 600\npermdown_period_ms = 3000\nretirement_memory_ms = 600000",
    )
    .unwrap();
    config.node = node.to_owned();
    config
}

pub fn secret() -> Secret {
    Secret::from_text("a test secret of enough length").unwrap()
}

/// One server with no peers.
pub async fn single(config: ServerConfig) -> Server {
    let listeners = Listeners {
        http: loopback(),
        cluster: loopback(),
    };
    Server::start_on(config, None, listeners).await.unwrap()
}

/// Nodes that know each other, all started.
pub async fn cluster(names: &[&str], tweak: impl Fn(&mut ServerConfig)) -> Vec<Server> {
    let listeners: Vec<Listeners> = names
        .iter()
        .map(|_| Listeners {
            http: loopback(),
            cluster: loopback(),
        })
        .collect();
    let addresses: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.cluster.local_addr().unwrap())
        .collect();
    let mut servers = Vec::new();
    for (index, listeners) in listeners.into_iter().enumerate() {
        let mut config = fast_config(names[index]);
        for (other, address) in names.iter().zip(&addresses) {
            if *other != names[index] {
                config.cluster.peers.insert((*other).to_owned(), *address);
            }
        }
        tweak(&mut config);
        servers.push(Server::start_on(config, Some(secret()), listeners).await.unwrap());
    }
    servers
}

pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_ref: u64,
}

/// How a socket ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Closed(Option<u16>),
    Dropped,
}

impl Client {
    pub async fn connect(server: SocketAddr) -> Self {
        let url = format!("ws://{server}/socket/websocket?vsn=2.0.0");
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { socket, next_ref: 0 }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        let _ = self.socket.send(message).await;
    }

    /// Sends `[join_ref, ref, topic, event, payload]`; returns the ref.
    pub async fn push(&mut self, join_ref: Option<&str>, topic: &str, event: &str, payload: Value) -> String {
        self.next_ref += 1;
        let msg_ref = self.next_ref.to_string();
        let frame = json!([join_ref, msg_ref, topic, event, payload]);
        self.send_text(&frame.to_string()).await;
        msg_ref
    }

    /// Joins `topic`; the join ref is the message's ref, as phoenix.js does.
    pub async fn join(&mut self, topic: &str, payload: Value) -> String {
        self.next_ref += 1;
        let join_ref = self.next_ref.to_string();
        let frame = json!([join_ref, join_ref, topic, "phx_join", payload]);
        self.send_text(&frame.to_string()).await;
        join_ref
    }

    /// The next frame, within [`WAIT`].
    pub async fn next(&mut self) -> Result<Frame, Ended> {
        loop {
            let received = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a frame within the wait");
            match received {
                Some(Ok(Message::Text(text))) => return Ok(Frame::decode(&text).unwrap()),
                Some(Ok(Message::Close(frame))) => {
                    return Err(Ended::Closed(frame.map(|f| u16::from(f.code))))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Ended::Dropped),
            }
        }
    }

    /// The next frame whose event is `event`, skipping others.
    pub async fn next_event(&mut self, event: &str) -> Frame {
        loop {
            let frame = self
                .next()
                .await
                .unwrap_or_else(|ended| panic!("waiting for {event}: {ended:?}"));
            if frame.event == event {
                return frame;
            }
        }
    }

    /// Nothing arrives within `quiet`.
    pub async fn silent_for(&mut self, quiet: Duration) -> bool {
        tokio::time::timeout(quiet, self.socket.next()).await.is_err()
    }

    /// The close code the server sent, reading past other frames.
    pub async fn closed_with(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                Ok(_) => continue,
                Err(Ended::Closed(code)) => return code,
                Err(Ended::Dropped) => return None,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

pub fn close_code(code: CloseCode) -> u16 {
    u16::from(code)
}

/// The keys of a `presence_state` or of a diff's joins or leaves.
pub fn keys(state: &Value) -> Vec<String> {
    let mut keys: Vec<String> = state.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

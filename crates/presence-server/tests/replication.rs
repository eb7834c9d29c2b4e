//! Server nodes replicating through presence-tracker over sealed TCP on
//! loopback: clients of one node see the others' joins, updates and leaves;
//! a node that shuts down is dropped at once, one that dies after the down
//! period; forged and oversized peer frames are refused.

// Tests of a real server over real sockets wait on the wall clock.
#![allow(clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use common::{cluster, keys, Client};
use presence_server::{Listeners, ServeError, Server};
use presence_tracker::{Message, Sealer, Secret};
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// Waits until every node shows every other as up.
async fn connected(servers: &[Server]) {
    let deadline = Instant::now() + common::WAIT;
    for server in servers {
        loop {
            let status = server.presence().status().await.unwrap();
            if status.up.len() == servers.len() - 1 {
                break;
            }
            assert!(Instant::now() < deadline, "peers never came up: {status:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn clients_of_two_nodes_see_each_other() {
    let servers = cluster(&["n1", "n2"], |_| {}).await;
    connected(&servers).await;
    let mut ann = Client::connect(servers[0].http_address()).await;
    let ann_ref = ann
        .join("room:x", json!({"presence": {"key": "ann", "meta": {"v": 1}}}))
        .await;
    ann.next_event("presence_state").await;
    let mut bob = Client::connect(servers[1].http_address()).await;
    bob.join("room:x", json!({"presence": {"key": "bob"}})).await;
    // Bob's state may or may not hold ann yet; by the diffs he sees her.
    let state = bob.next_event("presence_state").await;
    if !keys(&state.payload).contains(&"ann".to_owned()) {
        let diff = bob.next_event("presence_diff").await;
        assert_eq!(keys(&diff.payload["joins"]), ["ann"]);
    }
    let diff = ann.next_event("presence_diff").await;
    assert_eq!(keys(&diff.payload["joins"]), ["bob"]);

    ann.push(
        Some(&ann_ref),
        "room:x",
        "presence:update",
        json!({"meta": {"v": 2}}),
    )
    .await;
    let diff = bob.next_event("presence_diff").await;
    assert_eq!(diff.payload["joins"]["ann"]["metas"][0]["v"], 2);
    assert_eq!(diff.payload["leaves"]["ann"]["metas"][0]["v"], 1);

    drop(ann);
    let diff = bob.next_event("presence_diff").await;
    assert_eq!(keys(&diff.payload["leaves"]), ["ann"]);
    for server in servers {
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_that_shuts_down_is_dropped_at_once_one_that_dies_after_the_down_period() {
    let down_ms = 1_500;
    let servers = cluster(&["n1", "n2", "n3"], |config| {
        config.tracker.down_period_ms = down_ms;
    })
    .await;
    connected(&servers).await;
    let mut watcher = Client::connect(servers[2].http_address()).await;
    watcher.join("room:y", json!({})).await;
    watcher.next_event("presence_state").await;
    for (server, key) in servers.iter().zip(["gone", "dead"]) {
        server
            .presence()
            .track("p", "room:y", key, json!({}))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.extend(keys(&watcher.next_event("presence_diff").await.payload["joins"]));
    }

    let mut servers = servers.into_iter();
    let (graceful, crashing) = (servers.next().unwrap(), servers.next().unwrap());
    let started = Instant::now();
    graceful.shutdown().await;
    let diff = watcher.next_event("presence_diff").await;
    assert_eq!(keys(&diff.payload["leaves"]), ["gone"]);
    assert!(
        started.elapsed() < Duration::from_millis(down_ms),
        "a graceful shutdown was seen only after {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    crashing.crash();
    let diff = watcher.next_event("presence_diff").await;
    assert_eq!(keys(&diff.payload["leaves"]), ["dead"]);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(down_ms - 200),
        "a crashed node was hidden after {waited:?}, before the down period"
    );
    servers.next().unwrap().shutdown().await;
}

#[tokio::test]
async fn forged_and_oversized_peer_frames_are_refused() {
    let servers = cluster(&["n1", "n2"], |config| config.cluster.max_frame_bytes = 1 << 16).await;
    connected(&servers).await;
    let target = servers[1].cluster_address();
    let heartbeat = Message::TransferRequest {
        from: presence_core::ReplicaId::new("n1", 1),
        clocks: Default::default(),
        full: false,
        uptime_ms: 0,
    };
    let send = |frame: Vec<u8>| async move {
        let mut stream = tokio::net::TcpStream::connect(target).await.unwrap();
        stream.write_u32(frame.len() as u32).await.unwrap();
        let _ = stream.write_all(&frame).await;
    };
    let now = presence_server::cluster::wall_ms();
    let mallory = Sealer::new(
        &Secret::from_text("another secret entirely").unwrap(),
        None,
        60_000,
    );
    send(mallory.seal(&heartbeat, now)).await;
    let mut flipped = Sealer::new(&common::secret(), None, 60_000).seal(&heartbeat, now);
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    send(flipped).await;
    // A length far over the bound: refused before a byte is allocated.
    let mut stream = tokio::net::TcpStream::connect(target).await.unwrap();
    stream.write_u32(u32::MAX).await.unwrap();
    let deadline = Instant::now() + common::WAIT;
    loop {
        let counts = servers[1].cluster_counts();
        if counts["bad-mac"] == 2 && counts["oversized"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "not refused: {counts}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The honest peers still talk.
    servers[0]
        .presence()
        .track("p", "room:z", "k", json!({}))
        .await
        .unwrap();
    let deadline = Instant::now() + common::WAIT;
    while servers[1].presence().list("room:z").await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "replication stopped after the forgeries"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for server in servers {
        server.shutdown().await;
    }
}

#[tokio::test]
async fn peers_without_a_secret_are_refused_at_start() {
    let mut config = common::fast_config("n1");
    config
        .cluster
        .peers
        .insert("n2".into(), "127.0.0.1:9".parse().unwrap());
    let listeners = Listeners {
        http: common::loopback(),
        cluster: common::loopback(),
    };
    let started = Server::start_on(config, None, listeners).await;
    assert!(matches!(started, Err(ServeError::NoSecret)));
}

//! One server, WebSocket clients speaking Phoenix Channels V2: join, state,
//! diff, update, leave, socket drop, and every bound a client can break.

mod common;

use std::time::Duration;

use common::{keys, single, Client};
use presence_server::{socket::close, ServerConfig};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn config() -> ServerConfig {
    common::fast_config("n1")
}

#[tokio::test]
async fn join_state_diff_update_leave_and_drop() {
    let server = single(config()).await;
    let address = server.http_address();

    let mut ann = Client::connect(address).await;
    let join_ref = ann
        .join(
            "room:1",
            json!({"presence": {"key": "ann", "meta": {"mood": "ok"}}}),
        )
        .await;
    let reply = ann.next().await.unwrap();
    assert_eq!(
        (reply.event.as_str(), reply.payload["status"].as_str()),
        ("phx_reply", Some("ok"))
    );
    assert_eq!(reply.join_ref.as_deref(), Some(join_ref.as_str()));
    let state = ann.next().await.unwrap();
    assert_eq!(state.event, "presence_state");
    assert_eq!(keys(&state.payload), ["ann"]);
    let ann_meta = &state.payload["ann"]["metas"][0];
    assert_eq!(ann_meta["mood"], "ok");
    assert!(ann_meta["phx_ref"].is_string());

    // A second client sees ann in its state; ann sees bob join.
    let mut bob = Client::connect(address).await;
    bob.join("room:1", json!({"presence": {"key": "bob"}})).await;
    bob.next_event("phx_reply").await;
    let state = bob.next_event("presence_state").await;
    assert_eq!(keys(&state.payload), ["ann", "bob"]);
    let diff = ann.next_event("presence_diff").await;
    assert_eq!(keys(&diff.payload["joins"]), ["bob"]);
    assert_eq!(keys(&diff.payload["leaves"]), Vec::<String>::new());
    // The joiner does not hear its own join again after its state.
    assert!(bob.silent_for(Duration::from_millis(200)).await);

    // A subscriber without a presence is not listed.
    let mut watcher = Client::connect(address).await;
    watcher.join("room:1", json!({})).await;
    watcher.next_event("phx_reply").await;
    assert_eq!(
        keys(&watcher.next_event("presence_state").await.payload),
        ["ann", "bob"]
    );

    // presence:update replaces the meta: the old meta leaves, the new joins.
    let update = ann
        .push(
            Some(&join_ref),
            "room:1",
            "presence:update",
            json!({"meta": {"mood": "busy"}}),
        )
        .await;
    let reply = ann.next_event("phx_reply").await;
    assert_eq!(reply.msg_ref.as_deref(), Some(update.as_str()));
    assert_eq!(reply.payload["status"], "ok");
    let diff = watcher.next_event("presence_diff").await;
    assert_eq!(diff.payload["joins"]["ann"]["metas"][0]["mood"], "busy");
    assert_eq!(diff.payload["leaves"]["ann"]["metas"][0]["mood"], "ok");

    // Leaving untracks: a reply, then phx_close, and everyone sees the leave.
    ann.push(Some(&join_ref), "room:1", "phx_leave", json!({})).await;
    assert_eq!(ann.next_event("phx_reply").await.payload["status"], "ok");
    assert_eq!(
        ann.next_event("phx_close").await.join_ref.as_deref(),
        Some(join_ref.as_str())
    );
    let diff = watcher.next_event("presence_diff").await;
    assert_eq!(keys(&diff.payload["leaves"]), ["ann"]);

    // Dropping the socket untracks too.
    drop(bob);
    let diff = watcher.next_event("presence_diff").await;
    assert_eq!(keys(&diff.payload["leaves"]), ["bob"]);
    assert!(server.presence().list("room:1").await.unwrap().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeats_are_answered_and_two_tabs_are_two_metas() {
    let server = single(config()).await;
    let mut tab1 = Client::connect(server.http_address()).await;
    let heartbeat = tab1.push(None, "phoenix", "heartbeat", json!({})).await;
    let reply = tab1.next().await.unwrap();
    assert_eq!(
        (reply.topic.as_str(), reply.msg_ref),
        ("phoenix", Some(heartbeat))
    );
    tab1.join("room:t", json!({"presence": {"key": "ann"}})).await;
    tab1.next_event("presence_state").await;
    let mut tab2 = Client::connect(server.http_address()).await;
    tab2.join("room:t", json!({"presence": {"key": "ann"}})).await;
    let state = tab2.next_event("presence_state").await;
    assert_eq!(state.payload["ann"]["metas"].as_array().unwrap().len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_second_join_of_a_topic_closes_the_first_channel() {
    let server = single(config()).await;
    let mut client = Client::connect(server.http_address()).await;
    let first = client.join("room:r", json!({"presence": {"key": "ann"}})).await;
    client.next_event("presence_state").await;
    client.join("room:r", json!({"presence": {"key": "ann"}})).await;
    let close = client.next_event("phx_close").await;
    assert_eq!(close.join_ref, Some(first));
    let state = client.next_event("presence_state").await;
    assert_eq!(
        state.payload["ann"]["metas"].as_array().unwrap().len(),
        1,
        "the first channel's presence left"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn refusals_have_reasons() {
    let mut config = config();
    config.limits.max_topics_per_socket = 2;
    config.limits.max_meta_bytes = 100;
    config.limits.max_meta_depth = 3;
    config.limits.joins_per_second = 1;
    config.limits.join_burst = 3;
    let server = single(config).await;
    let mut client = Client::connect(server.http_address()).await;
    let reason = |frame: presence_server::phoenix::Frame| {
        assert_eq!(frame.payload["status"], "error", "{frame:?}");
        frame.payload["response"]["reason"].as_str().unwrap().to_owned()
    };

    client.push(None, "room:x", "presence:update", json!({})).await;
    assert_eq!(reason(client.next().await.unwrap()), "unmatched topic");
    client.join("room:a", json!({"presence": {"key": 7}})).await;
    assert_eq!(
        reason(client.next().await.unwrap()),
        "presence.key must be a string"
    );
    client
        .join(
            "room:a",
            json!({"presence": {"key": "k", "meta": {"a": [[[1]]]}}}),
        )
        .await;
    assert!(reason(client.next().await.unwrap()).contains("deeper than 3"));
    client
        .join(
            "room:a",
            json!({"presence": {"key": "k", "meta": {"a": "x".repeat(200)}}}),
        )
        .await;
    assert!(reason(client.next().await.unwrap()).contains("more than 100"));
    // Refused joins count: the burst of 3 is spent, and the rate refuses
    // the next join at once.
    client.join("room:a", json!({"presence": {"key": "k"}})).await;
    assert_eq!(reason(client.next().await.unwrap()), "join rate exceeded");

    // Topics per socket, on a fresh socket whose burst is whole.
    let mut client = Client::connect(server.http_address()).await;
    for topic in ["room:1", "room:2"] {
        client.join(topic, json!({})).await;
        client.next_event("presence_state").await;
    }
    client.join("room:3", json!({})).await;
    assert_eq!(reason(client.next().await.unwrap()), "too many topics");
    // A name over the core's limit is the tracker's refusal, passed on.
    let join = client.push(Some("9"), "room:1", "phx_leave", json!({})).await;
    assert_eq!(client.next_event("phx_reply").await.msg_ref, Some(join));
    client.next_event("phx_close").await;
    client
        .join("room:1", json!({"presence": {"key": "k".repeat(2000)}}))
        .await;
    assert!(reason(client.next().await.unwrap()).contains("key is 2000 bytes"));
    // An update on a channel that tracks nothing.
    let watch = client
        .push(Some("x"), "room:2", "presence:update", json!({"meta": {}}))
        .await;
    let reply = client.next().await.unwrap();
    assert_eq!(reply.msg_ref, Some(watch));
    assert_eq!(reason(reply), "this channel tracks no presence");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_frames_close_the_socket_with_a_typed_code() {
    let mut config = config();
    config.limits.max_frame_bytes = 1024;
    config.limits.max_meta_bytes = 512;
    let server = single(config).await;
    let address = server.http_address();

    let mut client = Client::connect(address).await;
    client.send_text("this is not json").await;
    assert_eq!(client.closed_with().await, Some(close::INVALID));

    let mut client = Client::connect(address).await;
    client.send_text(r#"{"topic": "room:1"}"#).await;
    assert_eq!(client.closed_with().await, Some(close::INVALID));

    let mut client = Client::connect(address).await;
    client.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(client.closed_with().await, Some(close::UNSUPPORTED));

    let mut client = Client::connect(address).await;
    client.send_raw(Message::text("x".repeat(5000))).await;
    let code = client.closed_with().await;
    assert!(
        code == Some(close::TOO_BIG) || code.is_none(),
        "closed with {code:?}"
    );

    // The server still serves, and no presence leaked from the bad sockets.
    let mut client = Client::connect(address).await;
    client.join("room:1", json!({"presence": {"key": "ok"}})).await;
    assert_eq!(keys(&client.next_event("presence_state").await.payload), ["ok"]);
    server.shutdown().await;
}

#[tokio::test]
async fn an_idle_socket_is_closed() {
    let mut config = config();
    config.limits.idle_timeout_ms = 1_000;
    let server = single(config).await;
    let mut client = Client::connect(server.http_address()).await;
    client.join("room:1", json!({"presence": {"key": "idle"}})).await;
    client.next_event("presence_state").await;
    assert_eq!(client.closed_with().await, Some(close::NORMAL));
    // Its presence went with it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.presence().list("room:1").await.unwrap().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_not_buffered() {
    let mut config = config();
    config.limits.outbound_queue = 16;
    config.limits.max_meta_bytes = 8000;
    let server = single(config).await;
    let mut sleeper = Client::connect(server.http_address()).await;
    sleeper
        .join("room:hot", json!({"presence": {"key": "sleeper"}}))
        .await;
    // It never reads again, while the topic gets thousands of large diffs.
    let presence = server.presence();
    let meta = json!({"blob": "x".repeat(7000)});
    let mut dropped = false;
    for n in 0..4000 {
        presence
            .track("app", "room:hot", &format!("user{n}"), meta.clone())
            .await
            .unwrap();
        if n % 100 == 99 && !presence.list("room:hot").await.unwrap().contains_key("sleeper") {
            dropped = true;
            break;
        }
    }
    assert!(
        dropped,
        "the sleeper's presence stayed: its socket was never dropped"
    );
    // The way to it was full, so no close frame could be sent: it is dropped
    // once it reads what was already on its way.
    let code = sleeper.closed_with().await;
    assert!(
        code.is_none() || code == Some(close::POLICY),
        "closed with {code:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn max_connections_refuses_the_next_socket() {
    let mut config = config();
    config.limits.max_connections = 2;
    let server = single(config).await;
    let url = format!("ws://{}/socket/websocket?vsn=2.0.0", server.http_address());
    let _one = Client::connect(server.http_address()).await;
    let _two = Client::connect(server.http_address()).await;
    let third = tokio_tungstenite::connect_async(url).await;
    let error = third.expect_err("a third socket is refused").to_string();
    assert!(error.contains("503"), "{error}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_library_api_tracks_lists_and_streams_diffs() {
    let server = single(config()).await;
    let presence = server.presence().clone();
    let mut subscription = presence.subscribe("room:api", 64).await.unwrap();
    assert!(subscription.initial.is_empty());
    presence
        .track("pid1", "room:api", "ann", json!({"n": 1}))
        .await
        .unwrap();
    let diff = subscription.next().await.unwrap();
    assert_eq!(&*diff.topic, "room:api");
    assert_eq!(diff.diff.joins.keys().collect::<Vec<_>>(), ["ann"]);
    // Tracking the same presence twice is the tracker's typed refusal.
    let again = presence.track("pid1", "room:api", "ann", json!({})).await;
    assert!(matches!(again, Err(presence_server::PresenceError::Refused(_))));
    presence
        .update("pid1", "room:api", "ann", json!({"n": 2}))
        .await
        .unwrap();
    let diff = subscription.next().await.unwrap();
    assert_eq!(diff.diff.joins["ann"].metas[0]["n"], 2);
    // A WebSocket client sees what the library tracked.
    let mut client = Client::connect(server.http_address()).await;
    client.join("room:api", json!({})).await;
    assert_eq!(keys(&client.next_event("presence_state").await.payload), ["ann"]);
    presence.untrack("pid1", "room:api", "ann").await.unwrap();
    assert_eq!(
        subscription
            .next()
            .await
            .unwrap()
            .diff
            .leaves
            .keys()
            .collect::<Vec<_>>(),
        ["ann"]
    );
    assert_eq!(
        keys(&client.next_event("presence_diff").await.payload["leaves"]),
        ["ann"]
    );
    presence
        .track("pid2", "room:api", "bob", json!({}))
        .await
        .unwrap();
    presence
        .track("pid2", "room:other", "bob", json!({}))
        .await
        .unwrap();
    presence.untrack_all("pid2").await.unwrap();
    assert!(presence.list("room:other").await.unwrap().is_empty());
    server.shutdown().await;
    // After shutdown the handle says so.
    assert_eq!(
        presence.list("room:api").await,
        Err(presence_server::PresenceError::Stopped)
    );
    // The stream ends with the hub, after the diffs it already holds.
    let ended = tokio::time::timeout(common::WAIT, async {
        while subscription.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the subscription outlived the hub");
}

#[tokio::test]
async fn the_page_and_phoenix_js_are_served() {
    let dir = std::env::temp_dir().join(format!("presence-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("phoenix.min.js");
    std::fs::write(&file, "var Phoenix = {};").unwrap();
    let mut config = config();
    config.http.phoenix_js = Some(file);
    let server = single(config).await;
    let get = |path: &'static str| {
        let address = server.http_address();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        }
    };
    let page = get("/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("new Phoenix.Presence(channel)"));
    let script = get("/phoenix.js").await;
    assert!(script.starts_with("HTTP/1.1 200") && script.ends_with("var Phoenix = {};"));
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_burst_of_joins_is_coalesced_into_few_diffs_that_sum_exactly() {
    let mut config = config();
    config.http.flush_interval_ms = 300;
    let server = single(config).await;
    let mut watcher = Client::connect(server.http_address()).await;
    watcher.join("room:burst", json!({})).await;
    watcher.next_event("presence_state").await;
    let presence = server.presence();
    for n in 0..100 {
        presence
            .track(&format!("p{n}"), "room:burst", &format!("k{n:03}"), json!({}))
            .await
            .unwrap();
    }
    // Two of the hundred leave within the burst: the net has neither.
    presence.untrack("p7", "room:burst", "k007").await.unwrap();
    presence.untrack("p8", "room:burst", "k008").await.unwrap();
    let mut joined = Vec::new();
    let mut diffs = 0;
    while joined.len() < 98 {
        let diff = watcher.next_event("presence_diff").await;
        assert!(
            keys(&diff.payload["leaves"]).is_empty(),
            "a leave of a presence never sent: {diff:?}"
        );
        joined.extend(keys(&diff.payload["joins"]));
        diffs += 1;
    }
    joined.sort();
    let expected: Vec<String> = (0..100)
        .filter(|n| ![7, 8].contains(n))
        .map(|n| format!("k{n:03}"))
        .collect();
    assert_eq!(joined, expected);
    assert!(diffs <= 3, "{diffs} diffs for one burst");
    assert!(watcher.silent_for(Duration::from_millis(400)).await);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_sockets_as_going_away() {
    let server = single(config()).await;
    let mut client = Client::connect(server.http_address()).await;
    client.join("room:1", json!({"presence": {"key": "ann"}})).await;
    client.next_event("presence_state").await;
    server.shutdown().await;
    assert_eq!(client.closed_with().await, Some(close::GOING_AWAY));
}

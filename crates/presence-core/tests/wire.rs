//! The JSON wire format: round trips, and a typed error (never a panic, never
//! a stack overflow) for every kind of bad input.

use presence_core::invariants::{replicated_data, view};
use presence_core::{DecodeError, DecodeLimits, Delta, ReplicaId, Snapshot, State};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

fn sample() -> State {
    let mut peer = State::new(ReplicaId::new("node-b", 2));
    peer.join(
        "pb",
        "room:lobby",
        "bob",
        json!({"nested": {"list": [1, 2.5, null, "x"]}}),
    )
    .unwrap();
    let mut state = State::new(ReplicaId::new("node-a", 1));
    state
        .join("p1", "room:lobby", "alice", json!({"device": "phone"}))
        .unwrap();
    state
        .join("p2", "room:\"quoted\"\n", "ключ", json!("not an object"))
        .unwrap();
    state
        .update("p1", "room:lobby", "alice", json!({"device": "laptop"}))
        .unwrap();
    state.merge(&peer);
    state
}

fn decode_into_fresh(bytes: &[u8]) -> State {
    let mut fresh = State::new(ReplicaId::new("reader", 1));
    fresh.merge_snapshot(&Snapshot::from_json(bytes).unwrap());
    fresh
}

#[test]
fn state_round_trips_through_json() {
    let state = sample();
    let bytes = state.to_json();
    let snapshot = Snapshot::from_json(&bytes).unwrap();
    assert_eq!(snapshot, state.snapshot());
    assert_eq!(snapshot.to_json(), bytes, "encoding is deterministic");
    let mut direct = State::new(ReplicaId::new("reader", 1));
    direct.merge(&state);
    let decoded = decode_into_fresh(&bytes);
    assert_eq!(view(&decoded), view(&direct));
    assert_eq!(replicated_data(&decoded), replicated_data(&direct));
}

#[test]
fn wire_uses_the_seed_field_names_and_embeds_meta() {
    let value: Value = serde_json::from_slice(&sample().to_json()).unwrap();
    assert_eq!(value["replica"], "node-a@1");
    assert_eq!(
        value["context"]["node-a@1"], 3,
        "two joins and an update, one clock each"
    );
    assert!(value["clouds"].as_object().unwrap().is_empty());
    let first = &value["values"][0];
    assert_eq!(first["tag"], json!({"replica": "node-a@1", "clock": 2}));
    assert_eq!(first["entry"]["meta"], "not an object");
    assert_eq!(value["values"][1]["entry"]["meta"], json!({"device": "laptop"}));
    assert_eq!(value["values"][1]["entry"]["replaces"], 1);
    assert_eq!(value["retired"], json!({"node-a": 0, "node-b": 1}));
    assert!(
        value.get("status").is_none() && value.get("replicas").is_none(),
        "liveness is local"
    );
}

#[test]
fn seed_format_without_retired_or_incarnations_decodes() {
    let payload = br#"{"replica":"node-a","context":{"node-a":1},"clouds":{},
        "values":[{"tag":{"replica":"node-a","clock":1},
                   "entry":{"topic":"room:lobby","key":"alice","pid":"pid-1","meta":{}}}]}"#;
    let snapshot = Snapshot::from_json(payload).unwrap();
    assert_eq!(snapshot.replica(), &ReplicaId::new("node-a", 0));
    assert_eq!(snapshot.len(), 1);
}

/// A snapshot counts the entries of every replica it carries.
#[test]
fn a_snapshot_counts_every_entry_it_carries() {
    let mut a = State::new(ReplicaId::new("a", 1));
    let mut b = State::new(ReplicaId::new("b", 1));
    for (pid, key) in [("p1", "alice"), ("p2", "bob")] {
        a.join(pid, "t", key, json!({})).unwrap();
    }
    b.join("p3", "t", "carol", json!({})).unwrap();
    assert!(State::new(ReplicaId::new("c", 1)).snapshot().is_empty());
    a.merge(&b);
    let snapshot = a.snapshot();
    assert_eq!((snapshot.len(), snapshot.is_empty()), (3, false));
    assert_eq!(Snapshot::from_json(&snapshot.to_json()).unwrap().len(), 3);
}

#[test]
fn delta_round_trips_through_json() {
    let mut state = State::new(ReplicaId::new("node-a", 1));
    state.join("p1", "t", "alice", json!({})).unwrap();
    state.take_delta();
    state.join("p2", "t", "bob", json!({"x": 1})).unwrap();
    state.leave("p1", "t", "alice");
    let delta = state.take_delta();
    let bytes = delta.to_json();
    assert_eq!(Delta::from_json(&bytes).unwrap(), delta);
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        value,
        json!({"replica": "node-a@1", "from": 1, "to": 3,
        "joins": [{"clock": 2, "entry": {"topic": "t", "key": "bob", "pid": "p2", "meta": {"x": 1}}}],
        "leaves": [1]})
    );
}

fn state_error(payload: &str) -> DecodeError {
    Snapshot::from_json(payload.as_bytes()).expect_err("payload must be refused")
}

fn with_value(tag_clock: &str, entry: &str) -> String {
    format!(
        r#"{{"replica":"a@1","context":{{"a@1":2}},"clouds":{{}},
        "values":[{{"tag":{{"replica":"a@1","clock":{tag_clock}}},"entry":{entry}}}]}}"#
    )
}

const ENTRY: &str = r#"{"topic":"t","key":"k","pid":"p","meta":{}}"#;

/// Asserts that `payload` is refused as malformed JSON whose message holds
/// `words` (what serde expected of the field).
fn refused_saying(payload: &str, words: &str) {
    let refused = state_error(payload);
    assert!(
        matches!(&refused, DecodeError::Json { message, .. } if message.contains(words)),
        "{refused:?}"
    );
}

#[test]
fn malformed_json_is_a_typed_error() {
    assert!(matches!(state_error("{"), DecodeError::Json { .. }));
    assert!(matches!(state_error(""), DecodeError::Json { .. }));
    assert!(matches!(state_error("[]"), DecodeError::Json { .. }));
}

/// A field of the wrong type is named in the error by what was expected.
#[test]
fn values_that_are_not_an_array_say_so() {
    refused_saying(
        r#"{"replica":"a@1","context":{},"clouds":{},"values":5}"#,
        "an array of values",
    );
}

/// Clouds that are not an object say what was expected.
#[test]
fn clouds_that_are_not_an_object_say_so() {
    refused_saying(
        r#"{"replica":"a@1","context":{},"clouds":5,"values":[]}"#,
        "an object with distinct keys",
    );
}

/// A refused payload reads as what was wrong with it, for the log line a
/// node writes when it drops a peer's message.
#[test]
fn decode_errors_read_as_what_was_wrong() {
    let too_large =
        Snapshot::from_json_with(with_value("1", ENTRY).as_bytes(), DecodeLimits { max_bytes: 16 })
            .unwrap_err();
    let len = with_value("1", ENTRY).len();
    assert_eq!(
        too_large.to_string(),
        format!("payload of {len} bytes exceeds the limit of 16")
    );
    assert_eq!(
        state_error("[").to_string(),
        "malformed payload at line 1 column 1: EOF while parsing a list at line 1 column 1"
    );
    let empty = r#"{"topic":"","key":"k","pid":"p","meta":{}}"#;
    assert_eq!(
        state_error(&with_value("1", empty)).to_string(),
        "invalid entry a@1:1: topic is empty"
    );
}

/// A clock that is not a number says what was expected.
#[test]
fn a_clock_that_is_not_a_number_says_so() {
    refused_saying(
        r#"{"replica":"a@1","context":{"a@1":"2"},"clouds":{},"values":[]}"#,
        "expected an integer",
    );
}

/// A context that is not an object says what was expected.
#[test]
fn a_context_that_is_not_a_map_says_so() {
    refused_saying(
        r#"{"replica":"a@1","context":5,"clouds":{},"values":[]}"#,
        "expected a map",
    );
}

/// The same for a delta's joins.
#[test]
fn joins_that_are_not_an_array_say_so() {
    let text = br#"{"replica":"a@1","from":0,"to":1,"joins":5,"leaves":[]}"#;
    let refused = Delta::from_json(text).expect_err("joins must be an array");
    assert!(
        matches!(&refused, DecodeError::Json { message, .. } if message.contains("an array of joins")),
        "{refused:?}"
    );
}

#[test]
fn missing_and_unknown_fields_are_refused() {
    let missing = state_error(r#"{"replica":"a@1","context":{},"values":[]}"#);
    assert!(matches!(&missing, DecodeError::Json { message, .. } if message.contains("clouds")));
    let unknown = state_error(r#"{"replica":"a@1","context":{},"clouds":{},"values":[],"extra":1}"#);
    assert!(matches!(&unknown, DecodeError::Json { message, .. } if message.contains("extra")));
}

#[test]
fn negative_and_zero_clocks_are_refused_where_forbidden() {
    let negative_context = state_error(r#"{"replica":"a@1","context":{"a@1":-1},"clouds":{},"values":[]}"#);
    assert_eq!(
        negative_context,
        DecodeError::InvalidClock {
            field: "context",
            clock: -1
        }
    );
    let zero_cloud = state_error(r#"{"replica":"a@1","context":{},"clouds":{"a@1":[0]},"values":[]}"#);
    assert_eq!(
        zero_cloud,
        DecodeError::InvalidClock {
            field: "clouds",
            clock: 0
        }
    );
    let zero_tag = state_error(&with_value("0", ENTRY));
    assert_eq!(
        zero_tag,
        DecodeError::InvalidClock {
            field: "tag",
            clock: 0
        }
    );
    let zero_context = r#"{"replica":"a@1","context":{"a@1":0},"clouds":{},"values":[]}"#;
    assert!(
        Snapshot::from_json(zero_context.as_bytes()).is_ok(),
        "a zero context is allowed"
    );
}

#[test]
fn duplicate_tags_and_keys_are_refused() {
    let duplicate = format!(
        r#"{{"replica":"a@1","context":{{"a@1":2}},"clouds":{{}},"values":[
        {{"tag":{{"replica":"a@1","clock":1}},"entry":{ENTRY}}},
        {{"tag":{{"replica":"a@1","clock":1}},"entry":{ENTRY}}}]}}"#
    );
    assert_eq!(
        state_error(&duplicate),
        DecodeError::DuplicateTag { tag: "a@1:1".into() }
    );
    let duplicate_key =
        state_error(r#"{"replica":"a@1","context":{"a@1":1,"a@1":2},"clouds":{},"values":[]}"#);
    assert!(matches!(&duplicate_key, DecodeError::Json { message, .. } if message.contains("duplicate key")));
}

#[test]
fn unobserved_tags_and_bad_replaces_are_refused() {
    assert_eq!(
        state_error(&with_value("3", ENTRY)),
        DecodeError::UnobservedTag { tag: "a@1:3".into() }
    );
    let replaces_self = r#"{"topic":"t","key":"k","pid":"p","meta":{},"replaces":2}"#;
    assert_eq!(
        state_error(&with_value("2", replaces_self)),
        DecodeError::InvalidReplaces { tag: "a@1:2".into() }
    );
}

#[test]
fn bad_replica_names_are_refused() {
    let bad = state_error(r#"{"replica":"a@x","context":{},"clouds":{},"values":[]}"#);
    assert!(matches!(bad, DecodeError::InvalidReplica { .. }));
    let retired_key =
        state_error(r#"{"replica":"a@1","context":{},"clouds":{},"values":[],"retired":{"b@1":0}}"#);
    assert!(matches!(retired_key, DecodeError::InvalidReplica { .. }));
}

#[test]
fn payload_holding_its_own_retired_replica_is_refused() {
    let payload = r#"{"replica":"a@2","context":{"a@1":1},"clouds":{},"values":[],"retired":{"a":1}}"#;
    assert_eq!(
        state_error(payload),
        DecodeError::RetiredReplica {
            replica: "a@1".into()
        }
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let depth = 100_000;
    let meta = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let entry = format!(r#"{{"topic":"t","key":"k","pid":"p","meta":{meta}}}"#);
    assert!(matches!(
        state_error(&with_value("1", &entry)),
        DecodeError::Json { .. }
    ));

    // Within serde_json's limit but over ours: refused by the depth check.
    let meta = format!("{}{}", "[".repeat(65), "]".repeat(65));
    let entry = format!(r#"{{"topic":"t","key":"k","pid":"p","meta":{meta}}}"#);
    assert!(matches!(
        state_error(&with_value("1", &entry)),
        DecodeError::InvalidEntry {
            problem: presence_core::EntryError::MetaTooDeep,
            ..
        }
    ));
    let meta = format!("{}{}", "[".repeat(64), "]".repeat(64));
    let entry = format!(r#"{{"topic":"t","key":"k","pid":"p","meta":{meta}}}"#);
    assert!(
        Snapshot::from_json(with_value("1", &entry).as_bytes()).is_ok(),
        "64 levels are allowed"
    );

    // Objects count as arrays do, and so does an empty innermost one.
    let objects = |levels: usize| {
        format!(
            "{}{}",
            r#"{"x":"#.repeat(levels - 1) + "{}",
            "}".repeat(levels - 1)
        )
    };
    let entry = |meta: String| format!(r#"{{"topic":"t","key":"k","pid":"p","meta":{meta}}}"#);
    assert!(Snapshot::from_json(with_value("1", &entry(objects(64))).as_bytes()).is_ok());
    assert!(matches!(
        state_error(&with_value("1", &entry(objects(65)))),
        DecodeError::InvalidEntry {
            problem: presence_core::EntryError::MetaTooDeep,
            ..
        }
    ));
    // A meta too deep is an entry problem: malformed JSON after it wins.
    let deep = with_value("1", &entry(objects(65)));
    assert!(matches!(
        state_error(&deep[..deep.len() - 1]),
        DecodeError::Json { .. }
    ));
}

/// Metas are built while parsing, noting their depth on the way: every kind
/// of JSON value must come out as serde_json's own `Value` reads it.
#[test]
fn a_decoded_meta_is_the_value_serde_json_reads() {
    let meta = r#"{"n": -3, "u": 18446744073709551615, "f": 1.5e-7, "e": 2E3, "t": true,
        "z": null, "s": "caf\u00e9 \"q\"", "a": [1, [], {}, [null, false]],
        "o": {"k": {"k": "v"}}, "dup": 1, "dup": 2, "": ""}"#;
    let entry = format!(r#"{{"topic":"t","key":"k","pid":"p","meta":{meta}}}"#);
    let snapshot = Snapshot::from_json(with_value("1", &entry).as_bytes()).expect("decodes");
    let (_, log) = snapshot.logs().iter().next().expect("one log");
    let decoded = &log.values()[&1].meta;
    let expected: serde_json::Value = serde_json::from_str(meta).expect("valid JSON");
    assert_eq!(decoded.to_value(), expected);
    assert_eq!(
        decoded.to_value()["dup"],
        2,
        "a repeated name keeps its last value"
    );
    // Held as canonical text: fields in name order, no spaces, the same
    // text a meta made from the value has, whatever the payload's spelling.
    assert_eq!(*decoded, presence_core::Meta::new(&expected).unwrap());
    assert!(decoded
        .as_str()
        .starts_with(r#"{"":"","a":[1,[],{},[null,false]],"dup":2,"e":2000.0,"#));
}

#[test]
fn non_utf8_bytes_are_refused() {
    let mut bytes = with_value("1", ENTRY).into_bytes();
    let at = bytes.windows(3).position(|window| window == b"\"k\"").unwrap() + 1;
    bytes[at] = 0xff;
    assert!(matches!(
        Snapshot::from_json(&bytes),
        Err(DecodeError::Json { .. })
    ));
}

#[test]
fn oversized_payloads_are_refused_before_parsing() {
    let limits = DecodeLimits { max_bytes: 16 };
    let refused = Snapshot::from_json_with(with_value("1", ENTRY).as_bytes(), limits);
    assert!(matches!(refused, Err(DecodeError::TooLarge { max: 16, .. })));
    // The limit is inclusive: a payload of exactly the limit is read.
    let payload = with_value("1", ENTRY);
    let exact = DecodeLimits {
        max_bytes: payload.len(),
    };
    assert!(Snapshot::from_json_with(payload.as_bytes(), exact).is_ok());
    let short = DecodeLimits {
        max_bytes: payload.len() - 1,
    };
    assert!(matches!(
        Snapshot::from_json_with(payload.as_bytes(), short),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn empty_names_are_refused() {
    let entry = r#"{"topic":"","key":"k","pid":"p","meta":{}}"#;
    assert!(matches!(
        state_error(&with_value("1", entry)),
        DecodeError::InvalidEntry { .. }
    ));
}

#[test]
fn malformed_deltas_are_refused() {
    let delta = |text: &str| Delta::from_json(text.as_bytes()).expect_err("delta must be refused");
    assert!(matches!(
        delta(r#"{"replica":"a@1","from":3,"to":2,"joins":[],"leaves":[]}"#),
        DecodeError::InvalidDelta { .. }
    ));
    assert!(matches!(
        delta(&format!(
            r#"{{"replica":"a@1","from":0,"to":1,"joins":[{{"clock":2,"entry":{ENTRY}}}],"leaves":[]}}"#
        )),
        DecodeError::InvalidDelta { .. }
    ));
    assert!(matches!(
        delta(r#"{"replica":"a@1","from":1,"to":2,"joins":[],"leaves":[2]}"#),
        DecodeError::InvalidDelta { .. }
    ));
    assert_eq!(
        delta(r#"{"replica":"a@1","from":-1,"to":2,"joins":[],"leaves":[]}"#),
        DecodeError::InvalidClock {
            field: "from",
            clock: -1
        }
    );
}

#[test]
fn an_empty_range_delta_merges_without_panicking() {
    let empty = Delta::from_json(br#"{"replica":"a@1","from":0,"to":0,"joins":[],"leaves":[]}"#).unwrap();
    let mut state = State::new(ReplicaId::new("r", 1));
    assert!(state.merge_delta(&empty).unwrap().is_empty());
}

/// Arbitrary JSON values up to a small depth.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z@:0-9]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("replica".to_owned()),
                    Just("context".to_owned()),
                    Just("clouds".to_owned()),
                    Just("values".to_owned()),
                    Just("tag".to_owned()),
                    Just("entry".to_owned()),
                    Just("clock".to_owned()),
                    "[a-z]{1,5}"
                ],
                inner,
                0..5
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn prop_arbitrary_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Snapshot::from_json(&bytes);
        let _ = Delta::from_json(&bytes);
    }

    #[test]
    fn prop_arbitrary_json_never_panics_the_decoders(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = Snapshot::from_json(&bytes);
        let _ = Delta::from_json(&bytes);
    }

    #[test]
    fn prop_mutated_valid_payloads_never_panic(position in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = sample().to_json();
        let at = position.index(bytes.len());
        bytes[at] = byte;
        if let Ok(snapshot) = Snapshot::from_json(&bytes) {
            let mut state = State::new(ReplicaId::new("reader", 1));
            state.merge_snapshot(&snapshot);
        }
    }
}

#[test]
fn escaped_names_decode_to_their_text() {
    // Names borrow from the payload unless they hold escapes: both paths.
    let entry = r#"{"topic":"room:\"lobby\"","key":"caf\u00e9","pid":"p\\1","meta":{}}"#;
    let payload =
        with_value("1", entry).replace(r#""replica":"a@1","clock""#, r#""replica":"\u0061@1","clock""#);
    let snapshot = Snapshot::from_json(payload.as_bytes()).expect("escapes are valid JSON");
    let (replica, log) = snapshot.logs().iter().next().expect("one log");
    assert_eq!(replica.to_string(), "a@1");
    let entry = &log.values()[&1];
    assert_eq!(
        (&*entry.topic, &*entry.key, &*entry.pid),
        ("room:\"lobby\"", "café", "p\\1")
    );
}

#[test]
fn values_are_checked_as_they_are_parsed_and_syntax_still_wins() {
    // A bad entry first, then more values: the typed error is reported.
    let bad = r#"{"topic":"","key":"k","pid":"p","meta":{}}"#;
    let payload = format!(
        r#"{{"replica":"a@1","context":{{"a@1":2}},"clouds":{{}},
        "values":[{{"tag":{{"replica":"a@1","clock":1}},"entry":{bad}}},
                  {{"tag":{{"replica":"a@1","clock":2}},"entry":{ENTRY}}}]}}"#
    );
    assert!(matches!(state_error(&payload), DecodeError::InvalidEntry { .. }));
    // The same payload cut short after the bad entry: malformed JSON wins,
    // as it did when the whole array was parsed before any check.
    let cut = &payload[..payload.len() - 10];
    assert!(matches!(state_error(cut), DecodeError::Json { .. }));
    // A duplicate tag two values apart.
    let payload = format!(
        r#"{{"replica":"a@1","context":{{"a@1":2}},"clouds":{{}},
        "values":[{{"tag":{{"replica":"a@1","clock":1}},"entry":{ENTRY}}},
                  {{"tag":{{"replica":"a@1","clock":2}},"entry":{ENTRY}}},
                  {{"tag":{{"replica":"a@1","clock":1}},"entry":{ENTRY}}}]}}"#
    );
    assert!(matches!(state_error(&payload), DecodeError::DuplicateTag { .. }));
}

/// A state whose values are `(clock, entry)` of replica `a@1`, which has
/// observed clocks up to 9.
fn with_values(values: &[(i64, &str)]) -> String {
    let values: Vec<String> = values
        .iter()
        .map(|(clock, entry)| format!(r#"{{"tag":{{"replica":"a@1","clock":{clock}}},"entry":{entry}}}"#))
        .collect();
    format!(
        r#"{{"replica":"a@1","context":{{"a@1":9}},"clouds":{{}},"values":[{}]}}"#,
        values.join(",")
    )
}

#[test]
fn values_in_any_clock_order_decode_alike_and_a_repeat_among_them_is_refused() {
    let entry = |pid: &str| format!(r#"{{"topic":"t","key":"k","pid":"{pid}","meta":{{}}}}"#);
    let entries = [entry("p1"), entry("p3"), entry("p5"), entry("p7")];
    let [e1, e3, e5, e7] = entries.each_ref().map(String::as_str);
    let sorted =
        Snapshot::from_json(with_values(&[(1, e1), (3, e3), (5, e5), (7, e7)]).as_bytes()).expect("decodes");
    for order in [
        [(7, e7), (5, e5), (3, e3), (1, e1)],
        [(3, e3), (1, e1), (7, e7), (5, e5)],
        [(1, e1), (7, e7), (3, e3), (5, e5)],
    ] {
        let decoded = Snapshot::from_json(with_values(&order).as_bytes()).expect("decodes");
        assert_eq!(decoded.to_json(), sorted.to_json(), "order {order:?}");
    }
    // A repeat of a clock held in order, and of one that came out of order.
    for repeat in [
        [(1, e1), (7, e7), (3, e3), (7, e7)],
        [(1, e1), (7, e7), (3, e3), (3, e3)],
        [(7, e7), (1, e1), (5, e5), (1, e1)],
    ] {
        let refused = state_error(&with_values(&repeat));
        assert!(
            matches!(&refused, DecodeError::DuplicateTag { tag } if *tag == format!("a@1:{}", repeat[3].0)),
            "{repeat:?}: {refused:?}"
        );
    }
}

#[test]
fn the_first_value_in_order_with_a_problem_is_the_one_reported() {
    let bad_name = r#"{"topic":"","key":"k","pid":"p","meta":{}}"#;
    let bad_replaces = r#"{"topic":"t","key":"k","pid":"p","meta":{},"replaces":-1}"#;
    let replaces_later = r#"{"topic":"t","key":"k","pid":"p","meta":{},"replaces":8}"#;
    let cases: [(&[(i64, &str)], DecodeError); 5] = [
        // A tag clock out of range comes before its entry's problem.
        (
            &[(2, ENTRY), (0, bad_name)],
            DecodeError::InvalidClock {
                field: "tag",
                clock: 0,
            },
        ),
        // An unobserved tag comes before its entry's problem, and a later
        // value's problem does not jump ahead of an earlier one's.
        (
            &[(12, bad_name), (1, bad_name)],
            DecodeError::UnobservedTag { tag: "a@1:12".into() },
        ),
        (
            &[(1, bad_replaces), (2, bad_name)],
            DecodeError::InvalidClock {
                field: "replaces",
                clock: -1,
            },
        ),
        (
            &[(2, ENTRY), (3, replaces_later)],
            DecodeError::InvalidReplaces { tag: "a@1:3".into() },
        ),
        (
            &[(2, ENTRY), (2, bad_name)],
            DecodeError::InvalidEntry {
                tag: "a@1:2".into(),
                problem: presence_core::EntryError::EmptyName { field: "topic" },
            },
        ),
    ];
    for (values, expected) in cases {
        assert_eq!(state_error(&with_values(values)), expected, "{values:?}");
    }
}

#[test]
fn two_spellings_of_one_replica_fill_one_log() {
    // `a@01` reads as `a@1`: its values belong with those spelled `a@1`.
    let payload = format!(
        r#"{{"replica":"a@1","context":{{"a@1":3}},"clouds":{{}},
        "values":[{{"tag":{{"replica":"a@1","clock":1}},"entry":{ENTRY}}},
                  {{"tag":{{"replica":"a@01","clock":2}},"entry":{ENTRY}}},
                  {{"tag":{{"replica":"a@1","clock":3}},"entry":{ENTRY}}}]}}"#
    );
    let snapshot = Snapshot::from_json(payload.as_bytes()).expect("one replica, three values");
    assert_eq!(snapshot.logs().len(), 1);
    let (replica, log) = snapshot.logs().iter().next().expect("one log");
    assert_eq!(replica.to_string(), "a@1");
    assert_eq!(log.values().keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    // And a clock repeated under the other spelling is a duplicate.
    let repeated = payload.replace(r#""a@1","clock":3"#, r#""a@1","clock":2"#);
    assert_eq!(
        state_error(&repeated),
        DecodeError::DuplicateTag { tag: "a@1:2".into() }
    );
}

#[test]
fn two_keys_naming_one_replica_are_refused() {
    // Context, clouds: `a@1` and `a@01` (or `a` and `a@0`) are one replica,
    // and one key's value would otherwise overwrite the other's silently.
    let same = |problem_text: &str| DecodeError::InvalidReplica {
        text: problem_text.into(),
        problem: "another key names the same replica",
    };
    for (payload, second) in [
        (
            r#"{"replica":"a@1","context":{"a@1":2,"a@01":1},"clouds":{},"values":[]}"#,
            "a@1",
        ),
        (
            r#"{"replica":"a@1","context":{"a":2,"a@0":1},"clouds":{},"values":[]}"#,
            "a@0",
        ),
        (
            r#"{"replica":"a@1","context":{},"clouds":{"a@1":[3],"a@01":[5]},"values":[]}"#,
            "a@1",
        ),
    ] {
        assert_eq!(state_error(payload), same(second), "{payload}");
    }
    let distinct = r#"{"replica":"a@1","context":{"a@1":2,"a@2":1},"clouds":{"a@1":[4]},"values":[]}"#;
    assert!(Snapshot::from_json(distinct.as_bytes()).is_ok());
}

/// A payload's clouds arrive whole, on replicas the context names and on
/// replicas only a cloud names, and are written back as they came.
#[test]
fn clouds_read_back_whole() {
    let text =
        r#"{"replica":"a@1","context":{"a@1":2,"b@1":1},"clouds":{"b@1":[3,5],"c@1":[4]},"values":[]}"#;
    let snapshot = Snapshot::from_json(text.as_bytes()).unwrap();
    let cloud = |id: &str| -> Vec<u64> {
        let log = snapshot.logs().get(&ReplicaId::parse(id).unwrap()).expect(id);
        log.cloud().iter().copied().collect()
    };
    assert_eq!(cloud("b@1"), [3, 5]);
    assert_eq!(cloud("c@1"), [4]);
    assert!(cloud("a@1").is_empty());
    assert_eq!(Snapshot::from_json(&snapshot.to_json()), Ok(snapshot));
}

/// A decoded payload holds one name per topic, shared by every entry on
/// it, and never another topic's: many topics, so that some share a
/// table slot's hash bits.
#[test]
fn decoded_entries_share_their_topics_name_and_only_theirs() {
    let mut state = State::new(ReplicaId::new("a", 1));
    for topic in 0..300 {
        for key in ["k1", "k2"] {
            state
                .join(
                    &format!("p{topic}-{key}"),
                    &format!("room:{topic}"),
                    key,
                    json!({}),
                )
                .unwrap();
        }
    }
    let snapshot = Snapshot::from_json(&state.to_json()).unwrap();
    assert_eq!(snapshot, state.snapshot());
    let mut names: BTreeMap<&str, &Arc<str>> = BTreeMap::new();
    for log in snapshot.logs().values() {
        for entry in log.values().values() {
            let name = names.entry(&*entry.topic).or_insert(&entry.topic);
            assert!(Arc::ptr_eq(name, &entry.topic), "{}", entry.topic);
        }
    }
    assert_eq!(names.len(), 300);
}

/// Another writer may list values in any order; a tag given twice is
/// refused wherever its second place is.
#[test]
fn a_tag_given_twice_out_of_order_is_refused() {
    let value = |clock: u64| {
        format!(
            r#"{{"tag":{{"replica":"a@1","clock":{clock}}},"entry":{{"topic":"t","key":"k{clock}","pid":"p{clock}","meta":{{}}}}}}"#
        )
    };
    let payload = |clocks: &[u64]| {
        let values: Vec<String> = clocks.iter().map(|&clock| value(clock)).collect();
        format!(
            r#"{{"replica":"a@1","context":{{"a@1":4}},"clouds":{{}},"values":[{}]}}"#,
            values.join(",")
        )
    };
    let read = Snapshot::from_json(payload(&[4, 3, 2, 1]).as_bytes()).unwrap();
    assert_eq!(
        read,
        Snapshot::from_json(payload(&[1, 2, 3, 4]).as_bytes()).unwrap()
    );
    assert!(matches!(
        state_error(&payload(&[4, 3, 2, 1, 3])),
        DecodeError::DuplicateTag { .. }
    ));
}

/// Another writer may list a context's replicas in any order: they read
/// back as if listed in replica order.
#[test]
fn a_context_in_any_order_reads_as_one_in_replica_order() {
    let read = |context: &str| {
        let text = format!(r#"{{"replica":"a@1","context":{context},"clouds":{{}},"values":[]}}"#);
        Snapshot::from_json(text.as_bytes()).unwrap()
    };
    let ordered = read(r#"{"a@1":3,"b@1":2,"c@1":1}"#);
    assert_eq!(read(r#"{"c@1":1,"b@1":2,"a@1":3}"#), ordered);
    assert_eq!(read(r#"{"b@1":2,"c@1":1,"a@1":3}"#), ordered);
    let b = ordered.logs().get(&ReplicaId::new("b", 1)).expect("b is found");
    assert_eq!(b.context(), 2);
}

/// A payload may say that a replica's clock above a gap was observed and is
/// gone: a cloud clock with no value. A receiver that never held it has
/// nothing to remove; it only notes the clock as observed.
#[test]
fn a_cloud_clock_the_receiver_never_held_removes_nothing() {
    let text = r#"{"replica":"a@1","context":{"a@1":1,"b@1":1},"clouds":{"b@1":[3]},"values":[]}"#;
    let snapshot = Snapshot::from_json(text.as_bytes()).unwrap();
    let mut receiver = State::new(ReplicaId::new("c", 1));
    assert!(receiver.merge_snapshot(&snapshot).is_empty());
    let log = receiver.log(&ReplicaId::new("b", 1)).expect("b is known now");
    assert_eq!(
        (log.context(), log.cloud().iter().copied().collect::<Vec<_>>()),
        (1, vec![3])
    );
}

/// The retirement watermark a forged heartbeat once left (u64::MAX - 1):
/// the encoder wrote it and the decoder refused it ("expected i64"), so
/// every state the node sent from then on failed to decode at its peers.
#[test]
fn a_watermark_near_the_top_of_u64_reads_back() {
    let mut state = sample();
    state
        .remove_down_replica(&ReplicaId::new("n2", u64::MAX - 1))
        .unwrap();
    let snapshot = state.snapshot();
    assert_eq!(Snapshot::from_json(&state.to_json()), Ok(snapshot));
}

/// A negative clock is still a typed error that names it.
#[test]
fn a_negative_clock_is_named() {
    let text = br#"{"replica":"a@1","context":{"a@1":-3},"clouds":{},"values":[]}"#;
    assert_eq!(
        Snapshot::from_json(text),
        Err(DecodeError::InvalidClock {
            field: "context",
            clock: -3
        })
    );
}

proptest! {
    /// Codec symmetry over the full range of every numeric field a state
    /// or delta carries: incarnations, watermarks, and a delta's range.
    #[test]
    fn every_u64_the_encoder_writes_reads_back(
        own in 0u64..=u64::MAX,
        other in 0u64..=u64::MAX,
        watermark in 0u64..=u64::MAX,
        at in 0u64..=u64::MAX,
    ) {
        let mut state = State::new(ReplicaId::new("a", own));
        state.join("p", "t", "k", json!({})).unwrap();
        let mut peer = State::new(ReplicaId::new("b", other));
        peer.join("q", "t", "k", json!({})).unwrap();
        state.merge(&peer);
        state.remove_down_replica(&ReplicaId::new("c", watermark)).unwrap();
        prop_assert_eq!(Snapshot::from_json(&state.to_json()), Ok(state.snapshot()));
        let text = format!(r#"{{"replica":"a@{own}","from":{at},"to":{at},"joins":[],"leaves":[]}}"#);
        let delta = Delta::from_json(text.as_bytes()).expect("an empty delta at any clock");
        prop_assert_eq!(delta.range(), (at, at));
        prop_assert_eq!(Delta::from_json(&delta.to_json()), Ok(delta));
    }
}

#[test]
fn metas_with_escaped_strings_round_trip() {
    // Every meta string in the tests was plain. (Mutation testing flagged
    // `visit_string` of the meta decoder, which turned out unreachable:
    // serde_json's slice and str readers hand even escaped strings over
    // borrowed, through `visit_str`, and no decoder here reads from an owned
    // `Value`. This pins the escaped path that is reached.)
    let meta = json!({
        "quote": "say \"hi\"",
        "lines": "one\ntwo\ttab",
        "unicode": "caf\u{e9} \u{1f600}",
        "slash": "a\\b",
        "list": ["\"", "plain"]
    });
    let mut state = State::new(ReplicaId::new("node-a", 1));
    state.join("p1", "t", "alice", meta.clone()).unwrap();
    let bytes = state.to_json();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains(r#"say \"hi\""#), "escapes are on the wire: {text}");
    let snapshot = Snapshot::from_json(&bytes).unwrap();
    assert_eq!(snapshot, state.snapshot());
    let delta = state.take_delta();
    let decoded = Delta::from_json(&delta.to_json()).unwrap();
    assert_eq!(decoded, delta);
    let entry = decoded.joins().values().next().expect("one join");
    assert_eq!(entry.meta.to_value(), meta);
}

#[test]
fn retired_keys_are_bare_base_names() {
    // Mutation testing found the check's `||` replaceable by `&&`
    // unnoticed: `a@0` names incarnation 0, so it would pass as a second
    // spelling of base `a`, and one key would overwrite the other.
    let with_retired = |key: &str| {
        format!(r#"{{"replica":"b@1","context":{{}},"clouds":{{}},"values":[],"retired":{{"{key}":3}}}}"#)
    };
    assert!(Snapshot::from_json(with_retired("a").as_bytes()).is_ok());
    for key in ["a@0", "a@1", "a@7"] {
        assert!(
            matches!(
                state_error(&with_retired(key)),
                DecodeError::InvalidReplica { problem, .. } if problem.contains("base names")
            ),
            "{key} is refused as a retired key"
        );
    }
}

/// The context is read apart from the rest of the payload (counted, then
/// read), yet its JSON errors name their place in the whole payload, as
/// every other part's do.
#[test]
fn a_json_error_in_the_context_names_its_place_in_the_payload() {
    let payload = "{\"replica\":\"a@1\",\n  \"clouds\":{},\n  \"context\":{\"a@1\":2,\n    \"b@1\":\"x\"},\n  \"values\":[]}";
    let DecodeError::Json {
        line,
        column,
        message,
    } = state_error(payload)
    else {
        panic!("a JSON error");
    };
    // Line 4 is `    "b@1":"x"},`: the string value ends at column 13.
    assert_eq!((line, column), (4, 13), "{message}");
    assert!(message.ends_with("at line 4 column 13"), "{message}");
    // And on the first line of the context.
    let one_line = r#"{"replica":"a@1","clouds":{},"context":{"a@1":-1.5},"values":[]}"#;
    let DecodeError::Json { line, column, .. } = state_error(one_line) else {
        panic!("a JSON error");
    };
    assert_eq!(line, 1);
    assert_eq!(&one_line[column - 4..column], "-1.5", "column {column}");
}

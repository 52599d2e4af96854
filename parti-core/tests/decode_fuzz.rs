//! Fuzz-style tests of the KV value decoders: arbitrary bytes and arbitrary JSON
//! shaped like the records (huge numbers, `u64::MAX` versions and terms, deep
//! nesting, long strings and arrays) never panic, and oversized values are
//! refused before parsing.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_core::records::{
    AssignmentMeta, DecodeError, LeaderRecord, MAX_VALUE_BYTES, MemberRecord, WorkerAssignment,
    decode, encode,
};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Decodes `bytes` as `T`; a success must survive a round trip.
fn decode_one<T>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = decode::<T>(bytes) {
        prop_assert_eq!(decode::<T>(&encode(&value)).ok(), Some(value));
    }
    Ok(())
}

fn decode_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    decode_one::<MemberRecord>(bytes)?;
    decode_one::<LeaderRecord>(bytes)?;
    decode_one::<AssignmentMeta>(bytes)?;
    decode_one::<WorkerAssignment>(bytes)
}

/// Leaves biased towards the extremes.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(u64::MAX),
            Just(u64::from(u32::MAX) + 1),
            any::<u64>()
        ]
        .prop_map(|n| json!(n)),
        prop_oneof![Just(i64::MIN), Just(-1i64), any::<i64>()].prop_map(|n| json!(n)),
        prop_oneof![Just(1e308f64), Just(-1e308), Just(0.5), any::<f64>()]
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "active",
            "stopping",
            "leaving",
            "evicted",
            "cold_start",
            "takeover",
            "planned_scale",
            "emergency",
            "refresh",
            "handoff",
            "worker-0",
            "worker-4294967295",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        (0usize..200_000).prop_map(|n| Value::String("x".repeat(n))),
    ]
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(record_key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys the records use (and a few others).
fn record_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "v", "instance", "status", "applied", "held", "capacity", "worker", "term",
            "version", "lifecycle", "records", "partitions", "keys", "weight", "epoch",
        ])
        .prop_map(str::to_string),
        1 => "[a-z]{1,6}",
    ]
}

/// An object with the record fields, each filled with an arbitrary value
/// (often a plausible one), `"v": 1` most of the time.
fn record_shaped() -> impl Strategy<Value = Value> {
    let partition = (any_json(), leaf(), leaf()).prop_map(
        |(keys, weight, epoch)| json!({ "keys": keys, "weight": weight, "epoch": epoch }),
    );
    let partitions = prop_oneof![
        prop::collection::vec(partition, 0..16).prop_map(Value::Array),
        (0usize..50_000).prop_map(|n| {
            Value::Array(
                (0..n)
                    .map(|i| json!({ "keys": [format!("p{i}")], "weight": 1, "epoch": u64::MAX }))
                    .collect(),
            )
        }),
        any_json(),
    ];
    (
        prop_oneof![4 => Just(json!(1)), 1 => leaf()],
        prop::collection::vec((record_key(), any_json()), 0..10),
        partitions,
        prop_oneof![Just(json!(u64::MAX)), leaf()],
    )
        .prop_map(|(v, fields, partitions, big)| {
            let mut m = serde_json::Map::new();
            m.insert("v".into(), v);
            for (k, value) in fields {
                m.insert(k, value);
            }
            m.insert("partitions".into(), partitions);
            for k in ["version", "term", "instance", "applied", "epoch"] {
                m.entry(k).or_insert_with(|| big.clone());
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes)?;
    }

    #[test]
    fn arbitrary_json_never_panics(value in any_json()) {
        decode_all(&serde_json::to_vec(&value).unwrap())?;
    }

    #[test]
    fn record_shaped_json_never_panics(value in record_shaped()) {
        decode_all(&serde_json::to_vec(&value).unwrap())?;
    }

    /// Valid records with extreme numbers round-trip exactly.
    #[test]
    fn extreme_numbers_round_trip(version in any::<u64>(), term in any::<u64>(), instance in any::<u64>()) {
        let text = format!(
            r#"{{"v":1,"worker":"worker-7","instance":{instance},"version":{version},"term":{term},"partitions":[{{"keys":["a"],"weight":1,"epoch":{version}}}]}}"#
        );
        let rec = decode::<WorkerAssignment>(text.as_bytes()).unwrap();
        prop_assert_eq!(rec.version, version);
        prop_assert_eq!(rec.term, term);
        prop_assert_eq!(rec.partitions[0].epoch, version);
    }
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    for depth in [200usize, 100_000] {
        let text = format!(
            r#"{{"v":1,"x":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        for bytes in [text.as_bytes(), &text.as_bytes()[..text.len() / 2]] {
            assert!(matches!(
                decode::<MemberRecord>(bytes),
                Err(DecodeError::Malformed(_))
            ));
        }
        let text = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert!(decode::<AssignmentMeta>(text.as_bytes()).is_err());
    }
}

#[test]
fn numbers_beyond_their_types_are_malformed() {
    for text in [
        r#"{"v":4294967296,"instance":1,"status":"active","applied":null,"held":0,"capacity":1}"#,
        r#"{"v":1,"instance":18446744073709551616,"status":"active","applied":null,"held":0,"capacity":1}"#,
        r#"{"v":1,"instance":-1,"status":"active","applied":null,"held":0,"capacity":1}"#,
        r#"{"v":1,"instance":1e400,"status":"active","applied":null,"held":0,"capacity":1}"#,
        r#"{"v":1,"instance":1,"status":"active","applied":null,"held":4294967296,"capacity":1}"#,
    ] {
        assert!(
            matches!(
                decode::<MemberRecord>(text.as_bytes()),
                Err(DecodeError::Malformed(_))
            ),
            "{text}"
        );
    }
}

#[test]
fn oversized_values_are_refused_before_parsing() {
    // Valid JSON, only too large: refused on size alone.
    let mut big = br#"{"v":1,"worker":"worker-1","pad":""#.to_vec();
    big.resize(MAX_VALUE_BYTES + 1, b'x');
    big.extend_from_slice(br#""}"#);
    let started = std::time::Instant::now();
    assert_eq!(
        decode::<WorkerAssignment>(&big),
        Err(DecodeError::TooLarge {
            size: MAX_VALUE_BYTES + 3,
            max: MAX_VALUE_BYTES
        })
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    // Long strings and arrays below the limit decode (or fail) normally.
    let long = format!(
        r#"{{"v":1,"worker":"{}","instance":1,"term":null}}"#,
        "w".repeat(1 << 20)
    );
    assert!(decode::<LeaderRecord>(long.as_bytes()).is_ok());
}

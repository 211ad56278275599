use super::*;
use crate::api::error::ApiError;
use crate::api::wire::{decode_json, Blob};
use serde::Deserialize;

/// A PutRecord body as the Java SDK writes it: indefinite map, byte string data.
fn java_put_record() -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    e.begin_map().unwrap();
    e.str("StreamName").unwrap().str("s").unwrap();
    e.str("Data").unwrap().bytes(&[0, 1, 255]).unwrap();
    e.str("PartitionKey").unwrap().str("k").unwrap();
    e.end().unwrap();
    out
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct Put {
    stream_name: Option<String>,
    data: Option<Blob>,
    partition_key: Option<String>,
    shard_count: Option<i32>,
    limit: Option<i64>,
    timestamp: Option<f64>,
}

fn message(e: ApiError) -> Option<String> {
    match e {
        ApiError::Wire { kind, message, .. } => {
            assert_eq!(kind, "SerializationException");
            message
        }
        other => panic!("not a wire error: {other:?}"),
    }
}

#[test]
fn java_style_request_decodes_into_the_input_type() {
    let v: Put = decode(&java_put_record()).unwrap();
    assert_eq!(v.stream_name.as_deref(), Some("s"));
    assert_eq!(&v.data.unwrap().0[..], &[0, 1, 255]);
    assert_eq!(v.partition_key.as_deref(), Some("k"));
}

#[test]
fn tag_one_integer_is_milliseconds_and_float_is_seconds() {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    e.map(1).unwrap();
    e.str("Timestamp")
        .unwrap()
        .tag(Tag::new(1))
        .unwrap()
        .i64(1_700_000_000_123)
        .unwrap();
    let v: Put = decode(&out).unwrap();
    assert_eq!(v.timestamp, Some(1_700_000_000.123));

    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    e.map(1).unwrap();
    e.str("Timestamp")
        .unwrap()
        .tag(Tag::new(1))
        .unwrap()
        .f64(1.5)
        .unwrap();
    let v: Put = decode(&out).unwrap();
    assert_eq!(v.timestamp, Some(1.5));

    // Untagged integers in a timestamp member are milliseconds too.
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    e.map(1).unwrap();
    e.str("Timestamp").unwrap().u64(2_000).unwrap();
    let v: Put = decode(&out).unwrap();
    assert_eq!(v.timestamp, Some(2.0));
}

#[test]
fn responses_encode_blobs_and_timestamps_typed_and_read_back() {
    let v = serde_json::json!({"Records":[{"Data": STANDARD.encode(b"hi"), "ApproximateArrivalTimestamp": 1.5, "PartitionKey":"k"}], "MillisBehindLatest": 0});
    let bytes = encode(&v);
    let mut d = Decoder::new(&bytes);
    assert_eq!(d.map().unwrap(), Some(2));
    // Reading our own output gives the same tree back, blobs as bytes (base64 in JSON's tree).
    let AsJson(back) = from_slice(&bytes).unwrap();
    assert_eq!(back, v);
}

#[test]
fn garbage_and_non_maps_are_bare_serialization_errors() {
    for body in [
        &b""[..],
        &b"\xff"[..],
        &b"\x01"[..],
        &b"\xa1\x01\x02"[..],
        &[0x9f; 100][..],
        &b"\xa0\x00"[..],                // a map followed by trailing bytes
        &b"\xa1\x63Foo\x62\xff\xfe"[..], // invalid UTF-8 in an unknown member
    ] {
        assert_eq!(message(decode::<Put>(body).unwrap_err()), None, "{body:?}");
    }
}

#[test]
fn nesting_is_bounded() {
    let mut deep = vec![0xa1, 0x61, b'X'];
    deep.extend(std::iter::repeat_n(0x81, 10_000));
    deep.push(0x00);
    assert_eq!(message(decode::<Put>(&deep).unwrap_err()), None);
}

/// The same body, written as JSON and as CBOR, decodes the same or fails with the same text.
fn same_outcome(json: &str, cbor: &[u8]) {
    let a = decode_json::<Put>(json.as_bytes());
    let b = decode::<Put>(cbor);
    match (a, b) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(message(a), message(b), "{json}"),
        (a, b) => panic!("{json}: JSON gave {a:?}, CBOR gave {b:?}"),
    }
}

#[test]
fn one_rule_for_both_encodings() {
    let cbor = |f: &dyn Fn(&mut Encoder<&mut Vec<u8>>)| {
        let mut out = Vec::new();
        f(&mut Encoder::new(&mut out));
        out
    };
    // A member given twice.
    same_outcome(
        r#"{"StreamName":"a","StreamName":"b"}"#,
        &cbor(&|e| {
            e.map(2).unwrap();
            e.str("StreamName").unwrap().str("a").unwrap();
            e.str("StreamName").unwrap().str("b").unwrap();
        }),
    );
    let dup = message(decode_json::<Put>(br#"{"StreamName":"a","StreamName":"b"}"#).unwrap_err());
    assert_eq!(dup.as_deref(), Some("Duplicate field 'StreamName'"));
    // Integers beyond the member's type, beyond i64 and beyond 64 bits.
    for (json, n) in [
        (r#"{"ShardCount":3000000000}"#, 3_000_000_000i128),
        (
            r#"{"Limit":10000000000000000000}"#,
            10_000_000_000_000_000_000,
        ),
        (
            r#"{"Limit":-10000000000000000000}"#,
            -10_000_000_000_000_000_000,
        ),
    ] {
        let key = if json.contains("ShardCount") {
            "ShardCount"
        } else {
            "Limit"
        };
        same_outcome(
            json,
            &cbor(&|e| {
                e.map(1).unwrap();
                e.str(key).unwrap();
                e.int(minicbor::data::Int::try_from(n).unwrap()).unwrap();
            }),
        );
        let m = message(decode_json::<Put>(json.as_bytes()).unwrap_err()).unwrap();
        assert!(
            m.starts_with("class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an "),
            "{json}: {m}"
        );
    }
    // Wrong types.
    same_outcome(
        r#"{"ShardCount":"3"}"#,
        &cbor(&|e| {
            e.map(1).unwrap();
            e.str("ShardCount").unwrap().str("3").unwrap();
        }),
    );
    same_outcome(
        r#"{"StreamName":[]}"#,
        &cbor(&|e| {
            e.map(1).unwrap();
            e.str("StreamName").unwrap().array(0).unwrap();
        }),
    );
    same_outcome(
        r#"{"StreamName":true}"#,
        &cbor(&|e| {
            e.map(1).unwrap();
            e.str("StreamName").unwrap().bool(true).unwrap();
        }),
    );
}

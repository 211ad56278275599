//! CBOR (`application/x-amz-cbor-1.1`), as the Java SDK v1/v2 sends it by default.
//!
//! Requests are decoded into the same JSON value tree the JSON protocol produces, so every
//! operation has one input type and one validation path:
//! - byte strings become base64 text (what a JSON `Blob` member holds); text is accepted
//!   for blobs too, as Jackson does;
//! - tag 1 (epoch time) with an integer is **milliseconds**, as the Java SDK writes it; with
//!   a float it is seconds (RFC 8949); an untagged integer in a timestamp member is read as
//!   milliseconds, as some clients send it; all become JSON epoch seconds;
//! - definite and indefinite strings, arrays and maps are accepted; nesting is bounded.
//!
//! Responses go the other way: `Data` members become byte strings and timestamp members
//! become tag 1 + integer milliseconds.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};
use serde_json::{Map, Number, Value};

use super::error::ApiError;

/// Deepest nesting accepted in a request.
const MAX_DEPTH: usize = 32;

/// Members that hold timestamps, in requests and responses.
const TIMESTAMP_MEMBERS: &[&str] = &[
    "Timestamp",
    "StreamCreationTimestamp",
    "ApproximateArrivalTimestamp",
    "ConsumerCreationTimestamp",
    "StartedAt",
    "EndedAt",
    "EarliestAllowedEndAt",
];

/// Members that hold blobs.
const BLOB_MEMBERS: &[&str] = &["Data"];

type DecodeResult<T> = Result<T, minicbor::decode::Error>;

fn bad(msg: &'static str) -> minicbor::decode::Error {
    minicbor::decode::Error::message(msg)
}

fn ms_to_seconds(ms: i128) -> Value {
    Number::from_f64(ms as f64 / 1000.0).map_or(Value::Null, Value::Number)
}

fn item(d: &mut Decoder<'_>, key: Option<&str>, depth: usize) -> DecodeResult<Value> {
    if depth > MAX_DEPTH {
        return Err(bad("nesting too deep"));
    }
    let is_ts = key.is_some_and(|k| TIMESTAMP_MEMBERS.contains(&k));
    Ok(match d.datatype()? {
        Type::Bool => Value::Bool(d.bool()?),
        Type::Null => {
            d.null()?;
            Value::Null
        }
        Type::Undefined => {
            d.undefined()?;
            Value::Null
        }
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => {
            let n = i128::from(d.int()?);
            if is_ts {
                ms_to_seconds(n)
            } else if let Ok(v) = i64::try_from(n) {
                Value::Number(v.into())
            } else if let Ok(v) = u64::try_from(n) {
                Value::Number(v.into())
            } else {
                Number::from_f64(n as f64).map_or(Value::Null, Value::Number)
            }
        }
        Type::F16 | Type::F32 | Type::F64 => {
            let f = match d.datatype()? {
                Type::F16 => f64::from(d.f16()?),
                Type::F32 => f64::from(d.f32()?),
                _ => d.f64()?,
            };
            Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        Type::Bytes => Value::String(STANDARD.encode(d.bytes()?)),
        Type::BytesIndef => {
            let mut all = Vec::new();
            for chunk in d.bytes_iter()? {
                all.extend_from_slice(chunk?);
            }
            Value::String(STANDARD.encode(all))
        }
        Type::String => Value::String(d.str()?.to_owned()),
        Type::StringIndef => {
            let mut all = String::new();
            for chunk in d.str_iter()? {
                all.push_str(chunk?);
            }
            Value::String(all)
        }
        Type::Array | Type::ArrayIndef => {
            let len = d.array()?;
            let mut out = Vec::new();
            match len {
                Some(n) => {
                    for _ in 0..n {
                        out.push(item(d, None, depth + 1)?);
                    }
                }
                None => loop {
                    if d.datatype()? == Type::Break {
                        d.skip()?;
                        break;
                    }
                    out.push(item(d, None, depth + 1)?);
                },
            }
            Value::Array(out)
        }
        Type::Map | Type::MapIndef => {
            let len = d.map()?;
            let mut out = Map::new();
            let mut entry = |d: &mut Decoder<'_>| -> DecodeResult<()> {
                let k = match d.datatype()? {
                    Type::String | Type::StringIndef => match item(d, None, depth + 1)? {
                        Value::String(s) => s,
                        _ => return Err(bad("map key is not text")),
                    },
                    _ => return Err(bad("map key is not text")),
                };
                let v = item(d, Some(&k), depth + 1)?;
                out.insert(k, v);
                Ok(())
            };
            match len {
                Some(n) => {
                    for _ in 0..n {
                        entry(d)?;
                    }
                }
                None => loop {
                    if d.datatype()? == Type::Break {
                        d.skip()?;
                        break;
                    }
                    entry(d)?;
                },
            }
            Value::Object(out)
        }
        Type::Tag => {
            let tag = d.tag()?;
            if tag.as_u64() == 1 {
                match d.datatype()? {
                    Type::F16 | Type::F32 | Type::F64 => item(d, None, depth + 1)?,
                    _ => match item(d, None, depth + 1)? {
                        Value::Number(n) => ms_to_seconds(n.as_i64().map_or(0, i128::from)),
                        other => other,
                    },
                }
            } else {
                item(d, key, depth + 1)?
            }
        }
        Type::Simple => {
            d.simple()?;
            Value::Null
        }
        Type::Break | Type::Unknown(_) => return Err(bad("unexpected item")),
    })
}

/// Decodes a CBOR request body into the JSON value tree the operations read.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let mut d = Decoder::new(body);
    let v = item(&mut d, None, 0).map_err(|_| ApiError::serialization())?;
    if d.position() != body.len() || !v.is_object() {
        return Err(ApiError::serialization());
    }
    Ok(v)
}

fn put(e: &mut Encoder<&mut Vec<u8>>, v: &Value, key: Option<&str>) {
    // Writing to a Vec cannot fail.
    let _ = put_inner(e, v, key);
}

fn put_inner(
    e: &mut Encoder<&mut Vec<u8>>,
    v: &Value,
    key: Option<&str>,
) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
    let is_ts = key.is_some_and(|k| TIMESTAMP_MEMBERS.contains(&k));
    let is_blob = key.is_some_and(|k| BLOB_MEMBERS.contains(&k));
    match v {
        Value::Null => {
            e.null()?;
        }
        Value::Bool(b) => {
            e.bool(*b)?;
        }
        Value::Number(n) if is_ts => {
            let ms = (n.as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            e.tag(Tag::new(1))?.i64(ms)?;
        }
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                e.i64(i)?;
            } else if let Some(u) = n.as_u64() {
                e.u64(u)?;
            } else {
                e.f64(n.as_f64().unwrap_or(0.0))?;
            }
        }
        Value::String(s) if is_blob => match STANDARD.decode(s) {
            Ok(b) => {
                e.bytes(&b)?;
            }
            Err(_) => {
                e.str(s)?;
            }
        },
        Value::String(s) => {
            e.str(s)?;
        }
        Value::Array(items) => {
            e.array(items.len() as u64)?;
            for i in items {
                // Members of a list inherit the list's kind (e.g. a list of timestamps).
                put_inner(e, i, None)?;
            }
        }
        Value::Object(m) => {
            e.map(m.len() as u64)?;
            for (k, v) in m {
                e.str(k)?;
                put_inner(e, v, Some(k))?;
            }
        }
    }
    Ok(())
}

/// Encodes a response (or error) value as CBOR.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put(&mut Encoder::new(&mut out), v, None);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn java_style_request_decodes_to_json_shape() {
        let v = decode(&java_put_record()).unwrap();
        assert_eq!(v["StreamName"], "s");
        assert_eq!(v["Data"], STANDARD.encode([0u8, 1, 255]));
    }

    #[test]
    fn tag_one_integer_is_milliseconds_and_float_is_seconds() {
        let mut out = Vec::new();
        let mut e = Encoder::new(&mut out);
        e.map(2).unwrap();
        e.str("Timestamp")
            .unwrap()
            .tag(Tag::new(1))
            .unwrap()
            .i64(1_700_000_000_123)
            .unwrap();
        e.str("Other")
            .unwrap()
            .tag(Tag::new(1))
            .unwrap()
            .f64(1.5)
            .unwrap();
        let v = decode(&out).unwrap();
        assert_eq!(v["Timestamp"].as_f64().unwrap(), 1_700_000_000.123);
        assert_eq!(v["Other"].as_f64().unwrap(), 1.5);
    }

    #[test]
    fn response_blobs_and_timestamps_are_typed() {
        let v = serde_json::json!({"Records":[{"Data": STANDARD.encode(b"hi"), "ApproximateArrivalTimestamp": 1.5, "PartitionKey":"k"}], "MillisBehindLatest": 0});
        let bytes = encode(&v);
        let mut d = Decoder::new(&bytes);
        assert_eq!(d.map().unwrap(), Some(2));
        // Decoding our own output gives the same JSON tree back.
        assert_eq!(decode(&bytes).unwrap(), v);
    }

    #[test]
    fn garbage_and_non_maps_are_serialization_errors() {
        for body in [
            &b""[..],
            &b"\xff"[..],
            &b"\x01"[..],
            &b"\xa1\x01\x02"[..],
            &[0x9f; 100][..],
        ] {
            assert!(decode(body).is_err(), "{body:?}");
        }
    }
}

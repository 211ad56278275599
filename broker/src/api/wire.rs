//! Wire types shared by the operations: blobs, timestamps, and decoding a JSON body into an
//! operation's input with AWS's SerializationException texts.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::error::ApiError;

/// A binary member: base64 text in JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blob(pub Bytes);

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Blob")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Blob, E> {
                if s.len() % 4 != 0 {
                    return Err(E::custom(format!(
                        "'{s}' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: {}",
                        s.len()
                    )));
                }
                STANDARD
                    .decode(s)
                    .map(|b| Blob(Bytes::from(b)))
                    .map_err(|_| {
                        E::custom(format!(
                            "'{s}' can not be converted to a Blob: Invalid Base64 character"
                        ))
                    })
            }
            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Blob, E> {
                Ok(Blob(Bytes::copy_from_slice(b)))
            }
            fn visit_byte_buf<E: de::Error>(self, b: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(Bytes::from(b)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Blob, E> {
                Err(E::custom(
                    "class java.lang.Boolean can not be converted to a Blob",
                ))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Blob, E> {
                Err(E::custom(NUMBER_TO_BLOB))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Blob, E> {
                Err(E::custom(NUMBER_TO_BLOB))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Blob, E> {
                Err(E::custom(NUMBER_TO_BLOB))
            }
        }
        d.deserialize_any(V)
    }
}

const NUMBER_TO_BLOB: &str =
    "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to a Blob";

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

/// Seconds since the epoch, as JSON timestamps are written.
pub fn epoch_seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Decodes a JSON request body into an operation's input.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // AWS answers a body that is not a JSON object with a bare SerializationException.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::serialization());
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() || e.is_io() {
            ApiError::serialization()
        } else {
            ApiError::serialization_msg(aws_type_message(&e.to_string()))
        }
    })
}

/// Decodes an already-parsed value tree (from CBOR) into an operation's input.
pub fn decode_value<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(v)
        .map_err(|e| ApiError::serialization_msg(aws_type_message(&e.to_string())))
}

/// Turns a serde type error into the message AWS's Java front end writes.
fn aws_type_message(serde: &str) -> String {
    let msg = match serde.rfind(" at line ") {
        Some(i) => &serde[..i],
        None => serde,
    };
    let Some(rest) = msg.strip_prefix("invalid type: ") else {
        return msg.to_owned();
    };
    let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
    let target = if expected.contains("i32") || expected.contains("u32") {
        "an Integer"
    } else if expected.contains("i64") || expected.contains("u64") {
        "an Long"
    } else if expected.contains("bool") {
        "an Boolean"
    } else if expected.contains("f64") {
        "milliseconds since epoch"
    } else if expected.contains("sequence") {
        return "Expected list or null".to_owned();
    } else if expected.contains("map") && !expected.contains("struct") {
        return "Expected map or null".to_owned();
    } else if expected.contains("struct") {
        return "Expected null".to_owned();
    } else {
        "an String"
    };
    let class = if found.starts_with("sequence") {
        return "Start of list found where not expected".to_owned();
    } else if found.starts_with("map") {
        return "Start of structure or map found where not expected.".to_owned();
    } else if found.starts_with("boolean") {
        "java.lang.Boolean"
    } else if found.starts_with("string") {
        "java.lang.String"
    } else {
        "com.amazon.coral.value.json.numbers.TruncatingBigNumber"
    };
    format!("class {class} can not be converted to {target}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    #[allow(dead_code)]
    struct In {
        shard_count: Option<i32>,
        stream_name: Option<String>,
        data: Option<Blob>,
    }

    fn message(body: &str) -> Option<String> {
        match decode_json::<In>(body.as_bytes()).unwrap_err() {
            ApiError::Wire { message, .. } => message,
            _ => panic!(),
        }
    }

    #[test]
    fn type_errors_read_like_aws() {
        assert_eq!(
            message(r#"{"ShardCount":"3"}"#).unwrap(),
            "class java.lang.String can not be converted to an Integer"
        );
        assert_eq!(
            message(r#"{"StreamName":true}"#).unwrap(),
            "class java.lang.Boolean can not be converted to an String"
        );
        assert_eq!(
            message(r#"{"StreamName":12}"#).unwrap(),
            "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"
        );
        assert_eq!(
            message(r#"{"StreamName":[]}"#).unwrap(),
            "Start of list found where not expected"
        );
        assert!(message(r#"{"Data":"abc"}"#)
            .unwrap()
            .contains("multiple of 4"));
    }

    #[test]
    fn garbage_is_a_bare_serialization_exception() {
        assert_eq!(message("hello"), None);
        assert_eq!(message("{"), None);
        assert_eq!(message("null"), None);
    }

    #[test]
    fn nulls_and_unknown_fields_are_ignored() {
        let v: In = decode_json(br#"{"StreamName":null,"Other":1}"#).unwrap();
        assert!(v.stream_name.is_none());
    }
}

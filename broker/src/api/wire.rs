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

/// Items a list or map member keeps while decoding when no cap was set for the call.
const DEFAULT_ITEM_CAP: usize = 1_001;

thread_local! {
    static ITEM_CAP: std::cell::Cell<usize> = const { std::cell::Cell::new(DEFAULT_ITEM_CAP) };
}

/// Runs `f` (a decode) with list and map members keeping at most `cap` items each.
pub fn with_item_cap<R>(cap: usize, f: impl FnOnce() -> R) -> R {
    let before = ITEM_CAP.with(|c| c.replace(cap.max(1)));
    let out = f();
    ITEM_CAP.with(|c| c.set(before));
    out
}

fn item_cap() -> usize {
    ITEM_CAP.with(std::cell::Cell::get)
}

/// A list member read with a cap: the first items up to the cap (see [`with_item_cap`]) are
/// kept, the rest are only counted, so a body listing millions of (empty) entries costs no
/// more memory than its bytes. The caller validates [`List::total`] against the member's
/// limit, which is below the cap.
#[derive(Debug, Clone, PartialEq)]
pub struct List<T> {
    items: Vec<T>,
    total: usize,
}

impl<T> List<T> {
    /// How many items the request listed.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Whether items were dropped past the cap.
    pub fn truncated(&self) -> bool {
        self.total > self.items.len()
    }

    /// The kept items.
    pub fn into_vec(self) -> Vec<T> {
        self.items
    }
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            items: Vec::new(),
            total: 0,
        }
    }
}

impl<T> std::ops::Deref for List<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<'a, T> IntoIterator for &'a List<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let cap = item_cap();
                let mut list = List::default();
                loop {
                    if list.items.len() < cap {
                        match seq.next_element()? {
                            Some(item) => list.items.push(item),
                            None => break,
                        }
                    } else if seq.next_element::<de::IgnoredAny>()?.is_none() {
                        break;
                    }
                    list.total += 1;
                }
                Ok(list)
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// A tag map read with a cap, like [`List`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagMap {
    tags: std::collections::BTreeMap<String, String>,
    skipped: usize,
}

impl TagMap {
    /// How many tags the request listed (repeated keys count once while under the cap).
    pub fn total(&self) -> usize {
        self.tags.len() + self.skipped
    }

    /// Whether tags were dropped past the cap.
    pub fn truncated(&self) -> bool {
        self.skipped > 0
    }

    /// The kept tags.
    pub fn into_map(self) -> std::collections::BTreeMap<String, String> {
        self.tags
    }
}

impl std::ops::Deref for TagMap {
    type Target = std::collections::BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.tags
    }
}

impl<'de> Deserialize<'de> for TagMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TagMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<TagMap, A::Error> {
                let cap = item_cap();
                let mut out = TagMap::default();
                loop {
                    if out.tags.len() < cap {
                        match map.next_entry::<String, String>()? {
                            Some((k, v)) => {
                                out.tags.insert(k, v);
                            }
                            None => break,
                        }
                    } else if map
                        .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                        .is_none()
                    {
                        break;
                    } else {
                        out.skipped += 1;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// Seconds since the epoch, as JSON timestamps are written.
pub fn epoch_seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Decodes a JSON request body into an operation's input.
///
/// The body must be one JSON object in UTF-8 (all of it: invalid UTF-8 anywhere, even in a
/// member the operation does not know, is a SerializationException). Members are read into
/// the input type directly, with no value tree in between; unknown members are skipped.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // AWS answers a body that is not a JSON object with a bare SerializationException.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') || std::str::from_utf8(body).is_err() {
        return Err(ApiError::serialization());
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() || e.is_io() {
            ApiError::serialization()
        } else {
            serialization_error(&e.to_string())
        }
    })
}

/// The SerializationException for a member that does not fit its type, in the words AWS's
/// Java front end writes (whatever the encoding the member came in). A message this module
/// does not recognise becomes a bare SerializationException: serde's own wording never
/// reaches a client.
pub fn serialization_error(serde: &str) -> ApiError {
    match aws_type_message(serde) {
        Some(m) => ApiError::serialization_msg(m),
        None => ApiError::serialization(),
    }
}

/// Reads an input member that Kinesis models as a Java `Integer` (ShardCount, Limit,
/// RetentionPeriodHours, …) into an `i64`, so that values beyond an Integer's range still
/// reach the handler's own range check, while a value of the wrong type is refused with
/// AWS's words for an Integer ("… can not be converted to an Integer"), not a Long's.
pub fn java_integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            // `java_target` reads "i32" as "an Integer".
            f.write_str("i32 (a Java Integer)")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

/// The Java class AWS names for a JSON value that serde describes as `found`.
fn java_class(found: &str) -> &'static str {
    if found.starts_with("boolean") {
        "java.lang.Boolean"
    } else if found.starts_with("string") {
        "java.lang.String"
    } else {
        "com.amazon.coral.value.json.numbers.TruncatingBigNumber"
    }
}

/// The type AWS names for the input type serde `expected`.
fn java_target(expected: &str) -> &'static str {
    if expected.contains("i32") || expected.contains("u32") {
        "an Integer"
    } else if expected.contains("i64") || expected.contains("u64") {
        "an Long"
    } else if expected.contains("bool") {
        "an Boolean"
    } else if expected.contains("f64") {
        "milliseconds since epoch"
    } else {
        "an String"
    }
}

/// Turns a serde error into the message AWS's Java front end writes, if it is one serde
/// produces for a mistyped member (or one of the Blob decoder's own AWS texts).
fn aws_type_message(serde: &str) -> Option<String> {
    let msg = match serde.rfind(" at line ") {
        Some(i) => &serde[..i],
        None => serde,
    };
    if let Some(field) = msg.strip_prefix("duplicate field `") {
        // Jackson's words with strict duplicate detection: a member may appear once.
        return Some(format!("Duplicate field '{}'", field.trim_end_matches('`')));
    }
    if let Some(rest) = msg.strip_prefix("invalid value: integer ") {
        // An integer out of the member's range (beyond 64 bits it arrives as a float, below).
        let (_, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        return Some(format!(
            "class {} can not be converted to {}",
            java_class("number"),
            java_target(expected)
        ));
    }
    let Some(rest) = msg.strip_prefix("invalid type: ") else {
        // The Blob decoder's own messages are AWS's already; anything else is serde's.
        return msg
            .contains("can not be converted to")
            .then(|| msg.to_owned());
    };
    let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
    if expected.contains("sequence") {
        return Some("Expected list or null".to_owned());
    } else if expected.contains("map") && !expected.contains("struct") {
        return Some("Expected map or null".to_owned());
    } else if expected.contains("struct") {
        return Some("Expected null".to_owned());
    }
    if found.starts_with("sequence") {
        return Some("Start of list found where not expected".to_owned());
    } else if found.starts_with("map") {
        return Some("Start of structure or map found where not expected.".to_owned());
    }
    Some(format!(
        "class {} can not be converted to {}",
        java_class(found),
        java_target(expected)
    ))
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

//! CBOR (`application/x-amz-cbor-1.1`), as the Java SDK v1/v2 sends it by default.
//!
//! Requests are read by a serde [`Deserializer`](serde::Deserializer) straight into the
//! operation's input type, the same type and the same validation the JSON protocol uses, so
//! both encodings follow one rule for every member (a member given twice, a number out of
//! range, a wrong type: the same SerializationException text). No value tree is built, so a
//! request takes memory in proportion to what its members hold, not to how many items the
//! body lists.
//! - byte strings are blobs; text is accepted for blobs too (base64), as Jackson does;
//! - tag 1 (epoch time) with an integer is **milliseconds**, as the Java SDK writes it; with
//!   a float it is seconds (RFC 8949); an untagged integer in a timestamp member is read as
//!   milliseconds, as some clients send it; all reach the input as epoch seconds;
//! - definite and indefinite strings, arrays and maps are accepted; nesting is bounded as
//!   JSON's is; map keys must be text.
//!
//! Responses go the other way: `Data` members become byte strings and timestamp members
//! become tag 1 + integer milliseconds.

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde_json::Value;

use super::error::ApiError;

/// Deepest nesting accepted in a request (serde_json's limit for JSON bodies).
const MAX_DEPTH: usize = 128;

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

/// Why a CBOR body could not be read.
#[derive(Debug)]
pub enum DecodeError {
    /// Not well-formed CBOR, or not a request's shape (a bare SerializationException).
    Syntax,
    /// A member of the wrong type or out of range (serde's words, turned into AWS's).
    Type(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Syntax => f.write_str("malformed CBOR"),
            DecodeError::Type(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError::Type(msg.to_string())
    }
}

impl From<minicbor::decode::Error> for DecodeError {
    fn from(_: minicbor::decode::Error) -> Self {
        DecodeError::Syntax
    }
}

type DeResult<T> = std::result::Result<T, DecodeError>;

/// Reads one CBOR item at a time into serde visitors.
struct Deserializer<'de> {
    d: Decoder<'de>,
    depth: usize,
    /// The next value belongs to a timestamp member (integers are milliseconds).
    timestamp: bool,
}

impl<'de> Deserializer<'de> {
    fn enter(&mut self) -> DeResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(DecodeError::Syntax);
        }
        Ok(())
    }

    fn at_break(&self) -> DeResult<bool> {
        Ok(self.d.datatype()? == Type::Break)
    }

    /// A map key: text, definite (borrowed) or indefinite (joined).
    fn key(&mut self) -> DeResult<Cow<'de, str>> {
        match self.d.datatype()? {
            Type::String => Ok(Cow::Borrowed(self.d.str()?)),
            Type::StringIndef => {
                let mut all = String::new();
                for chunk in self.d.str_iter()? {
                    all.push_str(chunk?);
                }
                Ok(Cow::Owned(all))
            }
            _ => Err(DecodeError::Syntax),
        }
    }
}

fn seconds(ms: i128) -> f64 {
    ms as f64 / 1000.0
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> DeResult<V::Value> {
        let timestamp = std::mem::take(&mut self.timestamp);
        match self.d.datatype()? {
            Type::Bool => visitor.visit_bool(self.d.bool()?),
            Type::Null => {
                self.d.null()?;
                visitor.visit_unit()
            }
            Type::Undefined => {
                self.d.undefined()?;
                visitor.visit_unit()
            }
            // An unassigned simple value reads as its number, as Jackson's CBOR parser
            // reports it (so a text member given one gets the same error as a number).
            Type::Simple => visitor.visit_u64(u64::from(self.d.simple()?)),
            Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64
            | Type::Int => {
                let n = i128::from(self.d.int()?);
                if timestamp {
                    visitor.visit_f64(seconds(n))
                } else if let Ok(v) = i64::try_from(n) {
                    visitor.visit_i64(v)
                } else if let Ok(v) = u64::try_from(n) {
                    visitor.visit_u64(v)
                } else {
                    // Beyond 64 bits, as serde_json reads such a JSON number: a float.
                    visitor.visit_f64(n as f64)
                }
            }
            Type::F16 => visitor.visit_f64(f64::from(self.d.f16()?)),
            Type::F32 => visitor.visit_f64(f64::from(self.d.f32()?)),
            Type::F64 => visitor.visit_f64(self.d.f64()?),
            Type::Bytes => visitor.visit_borrowed_bytes(self.d.bytes()?),
            Type::BytesIndef => {
                let mut all = Vec::new();
                for chunk in self.d.bytes_iter()? {
                    all.extend_from_slice(chunk?);
                }
                visitor.visit_byte_buf(all)
            }
            Type::String => visitor.visit_borrowed_str(self.d.str()?),
            Type::StringIndef => {
                let mut all = String::new();
                for chunk in self.d.str_iter()? {
                    all.push_str(chunk?);
                }
                visitor.visit_string(all)
            }
            Type::Array | Type::ArrayIndef => {
                let left = self.d.array()?;
                self.enter()?;
                let mut seq = Items { de: self, left };
                let v = visitor.visit_seq(&mut seq)?;
                seq.finish()?;
                self.depth -= 1;
                Ok(v)
            }
            Type::Map | Type::MapIndef => {
                let left = self.d.map()?;
                self.enter()?;
                let mut map = Items { de: self, left };
                let v = visitor.visit_map(&mut map)?;
                map.finish()?;
                self.depth -= 1;
                Ok(v)
            }
            Type::Tag => {
                let tag = self.d.tag()?;
                self.enter()?;
                let v = if tag.as_u64() == 1 {
                    match self.d.datatype()? {
                        Type::F16 | Type::F32 | Type::F64 => self.deserialize_any(visitor),
                        Type::U8
                        | Type::U16
                        | Type::U32
                        | Type::U64
                        | Type::I8
                        | Type::I16
                        | Type::I32
                        | Type::I64
                        | Type::Int => visitor.visit_f64(seconds(i128::from(self.d.int()?))),
                        _ => self.deserialize_any(visitor),
                    }
                } else {
                    self.timestamp = timestamp;
                    self.deserialize_any(visitor)
                };
                self.depth -= 1;
                v
            }
            Type::Break | Type::Unknown(_) => Err(DecodeError::Syntax),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> DeResult<V::Value> {
        // A tagged null is a null (tags in front of a value never make it present).
        let tagged_null = {
            let mut p = self.d.probe();
            let mut tagged = false;
            while p.datatype()? == Type::Tag {
                p.tag()?;
                tagged = true;
            }
            tagged && matches!(p.datatype()?, Type::Null | Type::Undefined)
        };
        if tagged_null {
            while self.d.datatype()? == Type::Tag {
                self.d.tag()?;
            }
        }
        match self.d.datatype()? {
            Type::Null => {
                self.d.null()?;
                self.timestamp = false;
                visitor.visit_none()
            }
            Type::Undefined => {
                self.d.undefined()?;
                self.timestamp = false;
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> DeResult<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    /// A text member may come as a byte string: it reads as its base64 text, as Jackson
    /// reads it (and as the JSON form of the same body would carry it).
    /// Tags in front of a text member's value are skipped first, so a tagged byte string
    /// reads as base64 too (and not as raw bytes through `deserialize_any`).
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> DeResult<V::Value> {
        while self.d.datatype()? == Type::Tag {
            self.d.tag()?;
        }
        match self.d.datatype()? {
            Type::Bytes | Type::BytesIndef => {
                let mut all = Vec::new();
                if self.d.datatype()? == Type::Bytes {
                    all.extend_from_slice(self.d.bytes()?);
                } else {
                    for chunk in self.d.bytes_iter()? {
                        all.extend_from_slice(chunk?);
                    }
                }
                self.timestamp = false;
                visitor.visit_string(STANDARD.encode(all))
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> DeResult<V::Value> {
        self.deserialize_str(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// The items of an array, or the entries of a map.
struct Items<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    /// Items left in a definite array or map; `None` for an indefinite one.
    left: Option<u64>,
}

impl Items<'_, '_> {
    /// Whether another item follows (and counts it).
    fn advance(&mut self) -> DeResult<bool> {
        Ok(match &mut self.left {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => !self.de.at_break()?,
        })
    }

    /// After the visitor: the container must hold no further items.
    fn finish(&mut self) -> DeResult<()> {
        match self.left {
            Some(0) => Ok(()),
            None if self.de.at_break()? => {
                self.de.d.skip()?;
                Ok(())
            }
            _ => Err(de::Error::custom("invalid length: trailing items")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        // Never trust a length from the wire for preallocation.
        self.left.map(|n| n.min(16) as usize)
    }
}

impl<'de> de::SeqAccess<'de> for Items<'_, 'de> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> DeResult<Option<T::Value>> {
        if !self.advance()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Items::size_hint(self)
    }
}

impl<'de> de::MapAccess<'de> for Items<'_, 'de> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> DeResult<Option<K::Value>> {
        if !self.advance()? {
            return Ok(None);
        }
        let key = self.de.key()?;
        self.de.timestamp = TIMESTAMP_MEMBERS.contains(&key.as_ref());
        match key {
            Cow::Borrowed(k) => seed
                .deserialize(de::value::BorrowedStrDeserializer::new(k))
                .map(Some),
            Cow::Owned(k) => seed.deserialize(k.into_deserializer()).map(Some),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> DeResult<V::Value> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Items::size_hint(self)
    }
}

/// Reads a CBOR request body (a map) into `T`.
pub fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let mut de = Deserializer {
        d: Decoder::new(body),
        depth: 0,
        timestamp: false,
    };
    if !matches!(de.d.datatype()?, Type::Map | Type::MapIndef) {
        return Err(DecodeError::Syntax);
    }
    let v = T::deserialize(&mut de)?;
    if de.d.position() != body.len() {
        return Err(DecodeError::Syntax);
    }
    Ok(v)
}

/// A CBOR body read as the JSON value tree it stands for (byte strings as base64 text,
/// timestamps as epoch seconds): what a JSON client would have sent. For tests and fuzzing,
/// which check that both encodings decode every input the same. A body holding a NaN or an
/// infinity is refused: JSON has no way to write one, so there is no JSON body to compare.
#[derive(Debug, Clone, PartialEq)]
pub struct AsJson(pub Value);

impl<'de> de::Deserialize<'de> for AsJson {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<AsJson, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AsJson;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<AsJson, E> {
                Ok(AsJson(Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<AsJson, E> {
                Ok(AsJson(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<AsJson, E> {
                Ok(AsJson(n.into()))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<AsJson, E> {
                serde_json::Number::from_f64(f)
                    .map(|n| AsJson(Value::Number(n)))
                    .ok_or_else(|| E::custom("a NaN or an infinity has no JSON form"))
            }
            fn visit_str<E>(self, s: &str) -> Result<AsJson, E> {
                Ok(AsJson(Value::String(s.to_owned())))
            }
            fn visit_bytes<E>(self, b: &[u8]) -> Result<AsJson, E> {
                Ok(AsJson(Value::String(STANDARD.encode(b))))
            }
            fn visit_unit<E>(self) -> Result<AsJson, E> {
                Ok(AsJson(Value::Null))
            }
            fn visit_none<E>(self) -> Result<AsJson, E> {
                Ok(AsJson(Value::Null))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<AsJson, A::Error> {
                let mut out = Vec::new();
                while let Some(AsJson(v)) = a.next_element()? {
                    out.push(v);
                }
                Ok(AsJson(Value::Array(out)))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<AsJson, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some((k, AsJson(v))) = a.next_entry::<String, AsJson>()? {
                    if out.contains_key(&k) {
                        return Err(de::Error::custom(format!("duplicate field `{k}`")));
                    }
                    out.insert(k, v);
                }
                Ok(AsJson(Value::Object(out)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Decodes a CBOR request body into an operation's input, with AWS's SerializationException
/// texts (the same ones JSON bodies get).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    from_slice(body).map_err(|e| match e {
        DecodeError::Syntax => ApiError::serialization(),
        DecodeError::Type(m) => super::wire::serialization_error(&m),
    })
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
mod tests;

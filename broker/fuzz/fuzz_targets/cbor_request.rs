//! CBOR request bodies (`application/x-amz-cbor-1.1`): `api::cbor::decode` into every
//! operation's input type, compared with the same body written as JSON.
//!
//! Input: the first byte picks the operation from `Operation::ALL` (see `common/ops.rs`), the
//! rest is the body.
//!
//! Checks: nothing panics; errors are SerializationExceptions; a body that reads as a value
//! tree (`cbor::AsJson`) is a map, the broker's own CBOR encoding of that tree reads back, and
//! the operation's input decodes the same from the CBOR body as from the tree written as JSON
//! (one input type, one rule, whatever the encoding).
#![no_main]

#[path = "common/ops.rs"]
mod ops;

use libfuzzer_sys::fuzz_target;
use riffle_broker::api::cbor;
use riffle_broker::api::error::ApiError;
use riffle_broker::api::wire::decode_json;
use serde::de::DeserializeOwned;

fn serialization_error(e: &ApiError) {
    assert!(matches!(e, ApiError::Wire { .. }), "non-wire error: {e:?}");
    assert_eq!(e.render("000000000000").kind, "SerializationException");
}

/// Whether two value trees are equal up to float rounding. serde_json's default float parser
/// is not correctly rounded (that is its `float_roundtrip` feature, off in the broker), so a
/// float written as JSON and read back can come back a few ULPs away (more, relatively, for
/// subnormals).
fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            let d = (x - y).abs();
            d <= x.abs().max(y.abs()) * 1e-12 || d < 1e-300
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
        (Object(x), Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, x), (ky, y))| kx == ky && close(x, y))
        }
        _ => a == b,
    }
}

struct SameAsJson<'a> {
    body: &'a [u8],
    tree: serde_json::Value,
}

impl ops::WithInput for SameAsJson<'_> {
    fn run<T: DeserializeOwned + std::fmt::Debug>(&mut self) {
        let via_cbor = cbor::decode::<T>(self.body);
        let json = serde_json::to_vec(&self.tree).expect("a value tree serializes");
        let via_json = decode_json::<T>(&json);
        let reread: serde_json::Value = serde_json::from_slice(&json).expect("own JSON parses");
        assert!(
            close(&self.tree, &reread),
            "JSON changed the tree: {} vs {reread}",
            self.tree
        );
        match (&via_cbor, &via_json) {
            (Ok(a), Ok(b)) => {
                if self.tree == reread {
                    assert_eq!(format!("{a:?}"), format!("{b:?}"));
                }
            }
            (Err(a), Err(b)) => {
                serialization_error(a);
                serialization_error(b);
            }
            _ => panic!(
                "CBOR and JSON disagree on {}: cbor {via_cbor:?}, json {via_json:?}",
                String::from_utf8_lossy(&json)
            ),
        }
    }
}

/// Decoding straight into the input type: a value or a SerializationException.
struct Direct<'a>(&'a [u8]);

impl ops::WithInput for Direct<'_> {
    fn run<T: DeserializeOwned + std::fmt::Debug>(&mut self) {
        if let Err(e) = cbor::decode::<T>(self.0) {
            serialization_error(&e);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let op = ops::pick(pick);
    ops::check_target(op);
    ops::with_input(op, &mut Direct(body));
    if let Ok(cbor::AsJson(tree)) = cbor::from_slice::<cbor::AsJson>(body) {
        assert!(tree.is_object(), "accepted a non-map: {tree}");
        let cbor::AsJson(again) = cbor::from_slice(&cbor::encode(&tree))
            .unwrap_or_else(|e| panic!("own encoding of {tree} does not decode: {e:?}"));
        assert!(again.is_object());
        ops::with_input(op, &mut SameAsJson { body, tree });
    }
});

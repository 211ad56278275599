//! CBOR request bodies (`application/x-amz-cbor-1.1`): `api::cbor::decode` into the JSON value
//! tree, then `api::wire::decode_value` into every operation's input type.
//!
//! Input: the first byte picks the operation from `Operation::ALL` (see `common/ops.rs`), the
//! rest is the body.
//!
//! Checks: nothing panics; errors are SerializationExceptions; an accepted body is a map; the
//! broker's own CBOR encoding of the tree decodes again; and the operation's input decodes
//! the same from the tree as from the tree written as JSON (one input type, one validation
//! path, whatever the protocol).
#![no_main]

#[path = "common/ops.rs"]
mod ops;

use libfuzzer_sys::fuzz_target;
use riffle_broker::api::cbor;
use riffle_broker::api::error::ApiError;
use riffle_broker::api::wire::{decode_json, decode_value};
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

struct SameAsJson(serde_json::Value);

impl ops::WithInput for SameAsJson {
    fn run<T: DeserializeOwned + std::fmt::Debug>(&mut self) {
        let via_cbor = decode_value::<T>(self.0.clone());
        let json = serde_json::to_vec(&self.0).expect("a value tree serializes");
        let via_json = decode_json::<T>(&json);
        let reread: serde_json::Value = serde_json::from_slice(&json).expect("own JSON parses");
        assert!(
            close(&self.0, &reread),
            "JSON changed the tree: {} vs {reread}",
            self.0
        );
        match (&via_cbor, &via_json) {
            (Ok(a), Ok(b)) => {
                if self.0 == reread {
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

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let op = ops::pick(pick);
    ops::check_target(op);
    match cbor::decode(body) {
        Err(e) => serialization_error(&e),
        Ok(tree) => {
            assert!(tree.is_object(), "accepted a non-map: {tree}");
            let again = cbor::decode(&cbor::encode(&tree))
                .unwrap_or_else(|e| panic!("own encoding of {tree} does not decode: {e:?}"));
            assert!(again.is_object());
            ops::with_input(op, &mut SameAsJson(tree));
        }
    }
});

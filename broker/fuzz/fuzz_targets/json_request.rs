//! JSON request bodies: `api::wire::decode_json` into every operation's input type.
//!
//! Input: the first byte picks the operation from `Operation::ALL` (see `common/ops.rs`), the
//! rest is the body.
//!
//! Checks: decoding never panics; a body that decodes is a JSON object; an error is a
//! SerializationException and renders.
#![no_main]

#[path = "common/ops.rs"]
mod ops;

use libfuzzer_sys::fuzz_target;
use riffle_broker::api::error::ApiError;
use riffle_broker::api::wire::decode_json;
use serde::de::{DeserializeOwned, IgnoredAny};
use std::collections::BTreeMap;

struct Decode<'a>(&'a [u8]);

impl ops::WithInput for Decode<'_> {
    fn run<T: DeserializeOwned + std::fmt::Debug>(&mut self) {
        let body = self.0;
        match decode_json::<T>(body) {
            Ok(input) => {
                // Accepted bodies are JSON objects (AWS rejects anything else). serde_json
                // skips unknown members without checking UTF-8, lone surrogates, number range
                // or depth, so compare with an object of skipped members, not with `Value`.
                serde_json::from_slice::<BTreeMap<String, IgnoredAny>>(body)
                    .expect("decode_json accepted a body that is not a JSON object");
                let _ = format!("{input:?}");
            }
            Err(e) => {
                assert!(
                    matches!(e, ApiError::Wire { .. }),
                    "decoding failed with a non-wire error: {e:?}"
                );
                assert_eq!(e.render("000000000000").kind, "SerializationException");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let op = ops::pick(pick);
    ops::check_target(op);
    ops::with_input(op, &mut Decode(body));
});

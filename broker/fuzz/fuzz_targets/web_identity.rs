//! The web identity path as an attacker reaches it: arbitrary bytes as the JWT given to
//! AssumeRoleWithWebIdentity, and as the session token of a request signed with temporary
//! credentials. Neither may panic, and neither may accept what its key did not sign.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use riffle_broker::auth::oidc::{Validator, WebIdentityConfig};
use riffle_broker::auth::session::Sealer;

/// An EC P-256 JWK (public only: nothing the fuzzer makes can be signed by it).
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

fn validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("riffle-fuzz-jwks-{}.json", std::process::id()));
        std::fs::write(&path, JWKS).expect("write JWKS");
        Validator::open(WebIdentityConfig::with_jwks_file("https://issuer", &["riffle"], path))
        .expect("JWKS loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    assert!(validator().validate(&text).is_err(), "an unsigned token was accepted");
    static SEALER: OnceLock<Sealer> = OnceLock::new();
    let sealer = SEALER.get_or_init(|| Sealer::new([9; 32]));
    assert!(sealer.open(&text).is_none(), "a forged session token opened");
});

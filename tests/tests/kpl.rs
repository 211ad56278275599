//! riffle-kpl against the real `riffle-broker` binary: delivery, faults (throttling, a
//! killed or hung broker, back-pressure), resharding during production, ordered mode.
//!
//! Every test starts its own broker through [`riffle_tests::TestBroker`] (build it first:
//! `cargo build -p riffle-broker`). Bounds like "every future resolves within 60 s" are
//! hang guards, not speed assertions.

#[path = "kpl/auth.rs"]
mod auth;
#[path = "kpl/delivery.rs"]
mod delivery;
#[path = "kpl/faults.rs"]
mod faults;
#[path = "kpl/ordering.rs"]
mod ordering;
#[path = "kpl/resharding.rs"]
mod resharding;
#[path = "kpl/support.rs"]
mod support;

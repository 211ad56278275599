//! End-to-end tests of the `riffle` command-line tool: the real binary against the real
//! broker binary. Both must be built first (`cargo build` at the workspace root).

#[path = "cli/auth.rs"]
mod auth;
#[path = "cli/common.rs"]
mod common;
#[path = "cli/data.rs"]
mod data;
#[path = "cli/stream.rs"]
mod stream;

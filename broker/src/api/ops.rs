//! Operation handlers, grouped by the resource they act on.

pub mod account;
pub mod consumers;
pub mod policies;
pub mod records;
pub mod reshard;
pub mod streams;
pub mod subscribe;
pub mod tags;

//! Holds: parked sensitive requests. [`state`] is the pure state machine
//! that decides; [`engine`] keeps the holds, enforces limits, and carries
//! out what the state machine decided (release, wake a waiter, expire).
//! [`budget`] counts the request bodies buffered before and while a hold
//! exists.

pub mod budget;
pub mod engine;
pub mod parked;
pub mod state;
pub mod wire;

pub use engine::{HoldEngine, HoldMeta};
pub use parked::{Packed, Parked};
pub use state::{Event, HoldError, HoldState, Phase, Proof, Reloaded, Transition};

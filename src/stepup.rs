//! Step-up proof verification. Each proof method lives in its own module and
//! is pure: time arrives as an argument and single-use bookkeeping (replay
//! stores) belongs to the caller.

pub mod oidc;
pub mod token;
pub mod totp;
pub mod webauthn;

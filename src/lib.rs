//! stepgate: a TLS-terminating reverse proxy that holds sensitive requests
//! until the caller steps up, then forwards them exactly once with a signed
//! `X-StepUp-Assertion`.
//!
//! Module map (dependencies point down only):
//!
//! | layer         | modules                                                        |
//! |---------------|----------------------------------------------------------------|
//! | network shell | [`proxy`] (listener, TLS, handler, forward), [`api`]           |
//! | ports         | [`hold::engine`], [`store`]                                     |
//! | pure core     | [`config`], [`route`], [`session`], [`hold::state`], [`stepup`], [`assertion`], [`jose`] |
//! | foundation    | [`clock`], [`ids`]                                             |
//!
//! The core never reads the clock or touches sockets or files: time arrives
//! as an argument, which is what lets expiry and freshness be tested without
//! sleeping.
#![forbid(unsafe_code)]

pub mod assertion;
pub mod audit;
pub mod body;
pub mod clock;
pub mod config;
pub mod demo;
pub mod escape;
pub mod fuzzing;
pub mod hold;
pub mod identity;
pub mod ids;
pub mod jose;
pub mod keys;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod proxy;
pub mod route;
pub mod session;
pub mod sparse;
pub mod stepup;
pub mod store;
pub mod users;

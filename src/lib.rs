//! stepgate: a TLS-terminating reverse proxy that holds sensitive requests
//! until the caller steps up, then forwards them exactly once with a signed
//! `X-StepUp-Assertion`.
//!
//! Module map (dependencies point down only; `tests/import_cycles.rs`
//! keeps the files of `src/` free of cycles):
//!
//! | layer         | modules                                                        |
//! |---------------|----------------------------------------------------------------|
//! | network shell | [`proxy`] (listener, TLS, `plan` executed, holds released)      |
//! | ports and I/O | [`hold::engine`], [`store`], [`audit`], [`users`], [`keys`], [`notify`], [`metrics`] |
//! | pure core     | [`config`], [`route`], [`policy`], [`session`], [`identity`], [`hold::state`], [`stepup`], [`assertion`], [`jose`] |
//! | foundation    | [`body`], [`clock`], [`ids`], [`escape`], [`sparse`], [`group_commit`] |
//!
//! [`fuzzing`] exposes the fuzz targets' entry points. The command line
//! and the demo's console live in the binary (`src/cli`), not here.
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
pub mod escape;
pub mod fuzzing;
pub mod group_commit;
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

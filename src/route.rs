//! Which route a request is on. [`canonical`] turns the raw path into the
//! one form both the matcher and the upstream see; [`matcher`] finds the
//! first route (in file order) that the request satisfies.

pub mod authority;
pub mod canonical;
pub mod matcher;
pub mod methods;
pub mod query;

pub use matcher::{Lookup, MatchRequest, Route, RouteTable};

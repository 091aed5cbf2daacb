//! Which route a request is on. [`canonical`] turns the raw path into the
//! one form both the matcher and the upstream see; [`matcher`] finds the
//! first route (in file order) that the request satisfies.

pub mod authority;
pub mod canonical;
pub mod matcher;
pub mod methods;
pub mod query;

pub use matcher::{Lookup, MatchRequest, Route, RouteTable};

use canonical::CanonicalPath;

/// Whether a path is under the gateway's own prefix, and so never the
/// upstream's. Checked on the form without `;params` too (a servlet
/// upstream reads `/.stepup;x/holds` as `/.stepup/holds`), and in any case
/// (an upstream that routes without regard to case reads `/.STEPUP/` as
/// `/.stepup/`).
pub fn gateway_owns(prefix: &str, path: &CanonicalPath) -> bool {
    let bare = prefix.trim_end_matches('/');
    let under = |p: &str| {
        p.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
            || p.eq_ignore_ascii_case(bare)
    };
    under(path.as_str()) || under(path.match_form()) || path.without_params().is_some_and(under)
}

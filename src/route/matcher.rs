//! First-match route lookup. All path patterns go into one `RegexSet`, so
//! a request costs one automaton pass however many routes there are; the
//! per-route predicates (host, method, query, headers) are then checked in
//! file order over only the routes whose path matched.

use super::canonical::CanonicalPath;
use crate::policy::conditions::Condition;
use crate::policy::{Caller, DisplayField, HoldMode, HoldSpec, Requirements};
use http::{HeaderMap, HeaderName, Method};
use regex::{Regex, RegexSet};
use std::sync::Arc;

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub action: String,
    /// The action in words for the pages (`label:`, or the action id).
    pub label: String,
    /// Lower-case host names without port; empty means any host.
    pub hosts: Vec<String>,
    /// Empty means any method.
    pub methods: Vec<Method>,
    pub path: PathPattern,
    pub query: Vec<(String, Regex)>,
    pub headers: Vec<(HeaderName, Regex)>,
    pub deny: bool,
    pub require: Requirements,
    pub hold: HoldSpec,
    pub display: Vec<DisplayField>,
    /// `when:`: step up only if one of these fires; empty means always.
    pub when: Vec<Condition>,
    /// `match.caller`: only people, or only workloads.
    pub caller: Option<Caller>,
    /// How the route reads its body (display fields, `json`/`form`
    /// conditions); `None` when it reads none.
    pub body_reader: Option<crate::policy::body::Reader>,
}

#[derive(Debug)]
pub struct PathPattern {
    /// As written in the file, for messages and shadow analysis.
    pub source: String,
    pub is_prefix: bool,
    pub case_insensitive: bool,
    /// The anchored regex actually used (also holds capture groups).
    pub regex: Regex,
}

impl PathPattern {
    /// The anchored regex text for a `path:` regex or a `prefix:`.
    /// Prefixes end at a segment boundary: `/admin` covers `/admin` and
    /// `/admin/x` but not `/administrator`.
    pub fn anchored(source: &str, is_prefix: bool, case_insensitive: bool) -> String {
        let flags = if case_insensitive { "(?i)" } else { "" };
        if is_prefix {
            let trimmed = source.trim_end_matches('/');
            format!("{flags}^(?:{})(?:/.*)?$", regex::escape(trimmed))
        } else {
            format!("{flags}^(?:{source})$")
        }
    }
}

/// The facts about a request the matcher looks at.
pub struct MatchRequest<'a> {
    /// Lower-case host without port.
    pub host: &'a str,
    /// The method as received plus every override the request carries: a
    /// route matches if any of them is listed (a listed GET also takes HEAD).
    pub methods: &'a [Method],
    pub path: &'a CanonicalPath,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The caller presented a verified client certificate.
    pub workload: bool,
}

#[derive(Debug, Default)]
pub struct Lookup {
    pub route: Option<Arc<Route>>,
    /// A route that matched on everything but its methods would have been
    /// stricter than this outcome. A form body may still carry a `_method`
    /// override that would select it.
    pub method_miss: bool,
    /// The first route that matched on everything but `match.caller`. The
    /// caller kind is the client's choice (a certificate is optional), so
    /// when no route is for its kind this one applies: dropping or adding a
    /// certificate must not turn a covered path into an open one.
    pub other_kind: Option<Arc<Route>>,
    /// The method under which the governing route was found: the one sent,
    /// or an override when that reading was the stricter one.
    pub method: Option<Method>,
}

impl Lookup {
    /// The route that governs the request: one for its caller kind, else
    /// one for the other kind. Taken after any `_method` re-lookup, so an
    /// override can still select a route for the caller's own kind.
    pub fn governing(self) -> Option<Arc<Route>> {
        self.route.or(self.other_kind)
    }

    fn strictness(&self) -> u8 {
        self.route
            .as_ref()
            .or(self.other_kind.as_ref())
            .map_or(0, |r| r.strictness())
    }

    fn approvals(&self) -> u32 {
        self.route
            .as_ref()
            .or(self.other_kind.as_ref())
            .map_or(0, |r| r.require.approvals)
    }
}

#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    set: RegexSet,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Result<Self, regex::Error> {
        let set = RegexSet::new(routes.iter().map(|r| r.path.regex.as_str()))?;
        Ok(RouteTable {
            routes: routes.into_iter().map(Arc::new).collect(),
            set,
        })
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The route governing `req`. With more than one method (an override,
    /// a lower-case method) the request is matched under each, and the
    /// strictest outcome wins (SPEC §2): the upstream executes the
    /// override, so an earlier, weaker route for the method on the wire
    /// must not catch it.
    pub fn find(&self, req: &MatchRequest<'_>) -> Lookup {
        // Most requests match no route: a yes/no search answers that
        // without collecting the set of matches (an allocation and a
        // search for every pattern).
        let any = self.set.is_match(req.path.match_form())
            || req.path.without_params().is_some_and(|bare| self.set.is_match(bare));
        if !any {
            return Lookup::default();
        }
        let mut candidates: Vec<usize> = self.set.matches(req.path.match_form()).into_iter().collect();
        if let Some(bare) = req.path.without_params() {
            candidates.extend(self.set.matches(bare).iter());
            candidates.sort_unstable();
            candidates.dedup();
        }
        let mut best = Lookup::default();
        let mut best_rank = 0;
        for (i, method) in req.methods.iter().enumerate() {
            if req.methods.get(..i).is_some_and(|seen| seen.contains(method)) {
                continue;
            }
            let lookup = self.first(&candidates, req, method);
            let rank = lookup.strictness();
            // Between equally strict outcomes, more approvals is stricter;
            // then the later reading, an override, which is what the
            // upstream executes when it honours one.
            let stricter =
                rank > best_rank || (rank == best_rank && rank > 0 && lookup.approvals() >= best.approvals());
            if stricter || best.method.is_none() {
                best_rank = rank;
                best = lookup;
            }
        }
        let missed = candidates
            .iter()
            .filter_map(|&i| self.routes.get(i))
            .filter(|r| r.predicates_hold(req) && !r.method_ok(req.methods))
            .map(|r| r.strictness())
            .max();
        best.method_miss = missed.is_some_and(|m| m > best_rank);
        best
    }

    /// The first route in file order for one reading of the method.
    fn first(&self, candidates: &[usize], req: &MatchRequest<'_>, method: &Method) -> Lookup {
        let mut other_kind = None;
        let methods = std::slice::from_ref(method);
        for &i in candidates {
            let Some(route) = self.routes.get(i) else {
                continue;
            };
            if !route.predicates_hold(req) || !route.method_ok(methods) {
                continue;
            }
            if !route.caller_ok(req.workload) {
                other_kind.get_or_insert_with(|| route.clone());
                continue;
            }
            return Lookup {
                route: Some(route.clone()),
                method_miss: false,
                other_kind,
                method: Some(method.clone()),
            };
        }
        Lookup {
            route: None,
            method_miss: false,
            other_kind,
            method: Some(method.clone()),
        }
    }

    /// Pairs `(later, earlier)` where the later route can never match
    /// because the earlier one always wins. Conservative: only reports
    /// cases it can prove, so a silent result is not a guarantee.
    pub fn shadowed(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (j, later) in self.routes.iter().enumerate() {
            for (i, earlier) in self.routes.iter().enumerate().take(j) {
                if earlier.covers(later) {
                    out.push((j, i));
                    break;
                }
            }
        }
        out
    }
}

impl Route {
    /// How strict this route's outcome is, to choose between readings of
    /// one request: deny > hold > a hold only when a `when:` condition
    /// fires > shadow. No route at all is 0.
    pub fn strictness(&self) -> u8 {
        if self.deny {
            4
        } else if self.hold.mode == HoldMode::Shadow {
            1
        } else if self.when.is_empty() {
            3
        } else {
            2
        }
    }

    fn method_ok(&self, methods: &[Method]) -> bool {
        // Frameworks run the GET handler for a HEAD, however HEAD was asked
        // for (request line or override), and only drop the body.
        let head_as_get = |m: &Method| *m == Method::HEAD && self.methods.contains(&Method::GET);
        self.methods.is_empty() || methods.iter().any(|m| self.methods.contains(m) || head_as_get(m))
    }

    fn caller_ok(&self, workload: bool) -> bool {
        match self.caller {
            Some(Caller::Workload) => workload,
            Some(Caller::Person) => !workload,
            None => true,
        }
    }

    fn predicates_hold(&self, req: &MatchRequest<'_>) -> bool {
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| h == req.host) {
            return false;
        }
        for (name, re) in &self.query {
            // Any value under any reading counts: the upstream may split on
            // `;`, fold the name's case, or read the first or the last
            // duplicate, so the gateway errs towards matching.
            let query = req.query.unwrap_or("");
            let fold = self.path.case_insensitive;
            let hit = super::query::pairs(query).any(|(k, v)| super::query::name_is(&k, name, fold) && re.is_match(&v));
            if !hit {
                return false;
            }
        }
        for (name, re) in &self.headers {
            let hit = req
                .headers
                .get_all(name)
                .iter()
                .any(|v| re.is_match(&String::from_utf8_lossy(v.as_bytes())));
            if !hit {
                return false;
            }
        }
        true
    }

    /// True when every request `other` matches is also matched by `self`.
    fn covers(&self, other: &Route) -> bool {
        let methods = self.methods.is_empty()
            || (!other.methods.is_empty() && other.methods.iter().all(|m| self.methods.contains(m)));
        let hosts =
            self.hosts.is_empty() || (!other.hosts.is_empty() && other.hosts.iter().all(|h| self.hosts.contains(h)));
        let preds = self.query.iter().all(|(n, r)| {
            other
                .query
                .iter()
                .any(|(on, or)| super::query::name_is(on, n, self.path.case_insensitive) && or.as_str() == r.as_str())
        }) && self.headers.iter().all(|(n, r)| {
            other
                .headers
                .iter()
                .any(|(on, or)| on == n && or.as_str() == r.as_str())
        });
        let caller = self.caller.is_none() || self.caller == other.caller;
        methods && hosts && preds && caller && self.path.covers(&other.path)
    }
}

impl PathPattern {
    fn covers(&self, other: &PathPattern) -> bool {
        if self.regex.as_str() == other.regex.as_str() {
            return true;
        }
        // A folding pattern covers a case-sensitive one, never the reverse:
        // the folding one also matches every other case of the same path.
        if self.case_insensitive == other.case_insensitive || self.case_insensitive {
            if other.is_prefix && self.is_prefix {
                let fold = |s: &str| {
                    let s = s.trim_end_matches('/');
                    if self.case_insensitive {
                        s.to_lowercase()
                    } else {
                        s.to_owned()
                    }
                };
                let (mine, theirs) = (fold(&self.source), fold(&other.source));
                return theirs == mine || theirs.starts_with(&format!("{mine}/")) || mine.is_empty();
            }
            // A literal pattern denotes exactly one path: test it directly.
            if !other.is_prefix && is_literal(&other.source) {
                return self.regex.is_match(&other.source);
            }
        }
        false
    }
}

fn is_literal(pattern: &str) -> bool {
    !pattern.chars().any(|c| "\\.+*?()|[]{}^$".contains(c))
}

#[cfg(test)]
mod tests;

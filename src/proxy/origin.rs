//! Where a state-changing request to the gateway's own endpoints came from
//! (SPEC §7). A browser attaches the victim's cookies to a form another
//! site posts, so a cookie proves nothing about who wanted the request; the
//! browser's `Origin` and `Sec-Fetch-Site` do. Every unsafe request under
//! the prefix is judged here, once, before any handler runs.

use super::{hygiene, page, Gateway};
use crate::body::Body;
use http::request::Parts;
use http::{header, HeaderName, Response, StatusCode};

static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The browser says the request came from the gateway's own origin.
    SameOrigin,
    /// A browser says it came from elsewhere, or says something that does
    /// not add up (two values, `Origin: null`, an unreadable value).
    CrossSite,
    /// Neither header: not a browser (curl, an API client). Such a request
    /// is judged by what it authenticates with, as before.
    Unstated,
}

/// Judges a request by its `Origin` and `Sec-Fetch-Site`. When both are
/// present both must say same-origin: a browser never sends a matching
/// `Origin` with `Sec-Fetch-Site: same-site`, so a disagreement is forged
/// or proxied oddly, and either way it is refused.
pub(super) fn judge(gw: &Gateway, parts: &Parts) -> Verdict {
    judge_with(parts, &gw.webauthn_origins())
}

fn judge_with(parts: &Parts, also_own: &[String]) -> Verdict {
    let origin = single(parts, &header::ORIGIN);
    let site = single(parts, &SEC_FETCH_SITE);
    if origin.is_none() && site.is_none() {
        return Verdict::Unstated;
    }
    let origin_ok = match origin {
        None => true,
        Some(None) => false,
        Some(Some(o)) => is_own_origin(parts, also_own, o),
    };
    // `same-site` covers other ports and sibling subdomains, which are
    // other origins; `none` (a typed URL) never posts a form.
    let site_ok = match site {
        None => true,
        Some(None) => false,
        Some(Some(s)) => s.eq_ignore_ascii_case("same-origin"),
    };
    if origin_ok && site_ok {
        Verdict::SameOrigin
    } else {
        Verdict::CrossSite
    }
}

/// `None`: the header is absent. `Some(None)`: present but unusable (not
/// text, or more than one copy, which no browser sends).
fn single<'a>(parts: &'a Parts, name: &HeaderName) -> Option<Option<&'a str>> {
    let mut all = parts.headers.get_all(name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return Some(None);
    }
    Some(first.to_str().ok().map(str::trim))
}

/// The host the request was sent to, over HTTPS, or one of the configured
/// WebAuthn origins (a gateway behind a front door that renames the host).
fn is_own_origin(parts: &Parts, also_own: &[String], origin: &str) -> bool {
    let Ok(target) = hygiene::target(parts) else {
        return false;
    };
    if origin.eq_ignore_ascii_case(&format!("https://{}", target.host)) {
        return true;
    }
    also_own.iter().any(|o| o == origin)
}

/// The answer to a cross-site request: 403 `forbidden`, as the sign-in page
/// with the reason where a browser posted the sign-in form, as a short page
/// for other pages' forms.
pub(super) fn refused(gw: &Gateway, parts: &Parts, signin_form: bool) -> Response<Body> {
    const WHY: &str = "This form did not come from this site's own page, so it was refused.";
    if !page::from_page(&parts.headers) {
        return super::respond::Reject::Forbidden.into_response();
    }
    let prefix = gw.config().stepup.prefix.clone();
    if signin_form {
        return page::approvals::signin(&prefix, gw.webauthn_enabled(), "", Some(WHY), StatusCode::FORBIDDEN);
    }
    page::message(StatusCode::FORBIDDEN, "Request refused", WHY, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder()
            .method("POST")
            .uri("/.stepup/holds/x/complete")
            .header("host", "gw.example");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).map(|r| r.into_parts().0).unwrap_or_else(|_| unreachable!())
    }

    fn judged(headers: &[(&str, &str)]) -> Verdict {
        judge_with(&parts(headers), &["https://front.example".to_owned()])
    }

    #[test]
    fn browsers_are_judged_by_both_headers_and_api_clients_by_neither() {
        use Verdict::*;
        let own = ("origin", "https://gw.example");
        let same = ("sec-fetch-site", "same-origin");
        assert_eq!(judged(&[]), Unstated);
        assert_eq!(judged(&[own]), SameOrigin);
        assert_eq!(judged(&[same]), SameOrigin);
        assert_eq!(judged(&[own, same]), SameOrigin);
        assert_eq!(judged(&[("origin", "https://GW.example")]), SameOrigin);
        assert_eq!(judged(&[("origin", "https://front.example")]), SameOrigin);
        for bad in [
            vec![("origin", "https://evil.example")],
            vec![("origin", "null")],
            vec![("origin", "http://gw.example")],
            vec![("origin", "https://gw.example:444")],
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
            vec![("sec-fetch-site", "none")],
            vec![own, ("sec-fetch-site", "same-site")],
            vec![("origin", "https://evil.example"), same],
            vec![own, own],
            vec![same, same],
        ] {
            assert_eq!(judged(&bad), CrossSite, "{bad:?}");
        }
    }
}

//! `stepup.webauthn`: the relying party. Browsers only hand a passkey to a
//! page whose origin's host is the RP id or a subdomain of it, and only
//! over a secure context, so a config that breaks either rule could never
//! work and is refused here rather than failing in front of a user.

use super::{problem, Problem, Res};
use crate::config::raw::RawWebauthn;
use crate::config::WebauthnConfig;
use crate::policy::{ProofMethod, Requirements};
use webauthn_rs::prelude::Url;

pub(super) fn relying_party(raw: RawWebauthn) -> Res<WebauthnConfig> {
    let rp_id = raw.rp_id.trim().to_owned();
    if !valid_rp_id(&rp_id) {
        return problem(
            "stepup.webauthn.rp_id",
            format!("`{rp_id}` must be a lower-case domain name such as example.com or localhost (not an IP address, not a bare top-level domain)"),
        );
    }
    if raw.origins.is_empty() {
        return problem(
            "stepup.webauthn.origins",
            "list at least one origin, e.g. https://admin.example.com",
        );
    }
    let origins = raw
        .origins
        .iter()
        .enumerate()
        .map(|(i, o)| origin(o, &rp_id).map_err(|m| Problem(format!("stepup.webauthn.origins[{i}]"), m)))
        .collect::<Res<Vec<_>>>()?;
    let rp_name = match raw.rp_name {
        None => "stepgate".to_owned(),
        Some(n) if n.trim().is_empty() => return problem("stepup.webauthn.rp_name", "must not be empty"),
        Some(n) => n,
    };
    Ok(WebauthnConfig {
        rp_id,
        origins,
        rp_name,
    })
}

/// Without `stepup.webauthn` the method cannot be offered: it is taken out
/// of the route's methods. A route left with no method at all (webauthn
/// was its only one) is an error, since withdrawing it would change what
/// the route demands; an explicit listing that is dropped is a warning.
pub(super) fn withdraw(require: &mut Requirements, at: &str, listed: bool) -> Res<Option<Problem>> {
    if !require.accepts(ProofMethod::Webauthn) {
        return Ok(None);
    }
    require.methods.retain(|m| *m != ProofMethod::Webauthn);
    let path = format!("{at}.require.methods");
    if require.methods.is_empty() {
        return problem(path, "requires `webauthn` but stepup.webauthn is not configured");
    }
    Ok(listed.then(|| {
        Problem(
            path,
            "`webauthn` is not offered because stepup.webauthn is not configured".into(),
        )
    }))
}

/// A domain of at least two labels (or `localhost`). Without the public
/// suffix list, `co.uk` would pass; browsers refuse such an RP id at
/// registration, so nothing could be enrolled under it.
fn valid_rp_id(id: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let labels: Vec<&str> = id.split('.').collect();
    let is_ip =
        id.parse::<std::net::IpAddr>().is_ok() || labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    !is_ip && id.len() <= 253 && labels.iter().all(|l| label_ok(l)) && (labels.len() >= 2 || id == "localhost")
}

/// One origin: `https://host[:port]` whose host is the RP id or under it
/// (`http://localhost` is a secure context too). Returned as browsers
/// serialise it in clientDataJSON.
fn origin(text: &str, rp_id: &str) -> Result<String, String> {
    let url = Url::parse(text.trim()).map_err(|_| format!("`{text}` is not a URL"))?;
    let Some(host) = url.domain() else {
        return Err(format!("`{text}` needs a domain name as its host"));
    };
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && host == "localhost");
    if !scheme_ok {
        return Err(format!(
            "`{text}` must use https:// (only http://localhost is allowed without TLS)"
        ));
    }
    if !matches!(url.path(), "" | "/")
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(format!(
            "`{text}` must be an origin (scheme://host[:port]) without path, query or user"
        ));
    }
    let under = host == rp_id || host.strip_suffix(rp_id).is_some_and(|rest| rest.ends_with('.'));
    if !under {
        return Err(format!(
            "the host of `{text}` is not {rp_id} or a subdomain of it (stepup.webauthn.rp_id)"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use crate::config::from_str;
    use crate::policy::ProofMethod;

    use crate::config::build::tests::BASE;

    fn config(stepup: &str, routes: &str) -> Result<crate::config::Config, String> {
        from_str(&format!("{BASE}stepup:\n{stepup}routes:\n{routes}"), "routes.yaml").map_err(|e| e.to_string())
    }

    const ROUTE: &str = "  - name: a\n    match: { path: /a }\n";

    #[test]
    fn relying_party_is_typed_and_origins_normalised() {
        let c = config(
            "  webauthn:\n    rp_id: example.com\n    origins: [https://admin.example.com, 'https://Example.com:8443/', http://localhost:8080]\n",
            ROUTE,
        );
        // http://localhost is only for an rp_id of localhost.
        assert!(c.expect_err("http origin for a domain").contains("origins[2]"));
        let c = config(
            "  webauthn:\n    rp_id: example.com\n    origins: [https://admin.example.com, 'https://Example.com:8443/']\n    rp_name: Acme Admin\n",
            ROUTE,
        )
        .expect("valid");
        let w = c.stepup.webauthn.expect("webauthn");
        assert_eq!(w.rp_id, "example.com");
        assert_eq!(w.origins, ["https://admin.example.com", "https://example.com:8443"]);
        assert_eq!(w.rp_name, "Acme Admin");
        let routes = c.routes.routes();
        assert_eq!(routes[0].require.methods, [ProofMethod::Webauthn, ProofMethod::Totp]);
        let c = config(
            "  webauthn: { rp_id: localhost, origins: ['http://localhost:8443'] }\n",
            ROUTE,
        )
        .expect("localhost over http");
        assert_eq!(c.stepup.webauthn.expect("w").rp_name, "stepgate");
    }

    #[test]
    fn bad_relying_parties_are_located() {
        let cases = [
            (
                "rp_id: 10.0.0.1, origins: [https://10.0.0.1]",
                "routes.yaml:7:22: stepup.webauthn.rp_id",
            ),
            ("rp_id: com, origins: [https://com]", "stepup.webauthn.rp_id"),
            (
                "rp_id: Example.com, origins: [https://example.com]",
                "stepup.webauthn.rp_id",
            ),
            (
                "rp_id: example.com, origins: []",
                "stepup.webauthn.origins: list at least one",
            ),
            (
                "rp_id: example.com, origins: [http://example.com]",
                "origins[0]: `http://example.com` must use https://",
            ),
            (
                "rp_id: example.com, origins: [https://evilexample.com]",
                "is not example.com or a subdomain",
            ),
            (
                "rp_id: example.com, origins: [https://example.org]",
                "is not example.com or a subdomain",
            ),
            (
                "rp_id: example.com, origins: [https://example.com/admin]",
                "must be an origin",
            ),
            (
                "rp_id: example.com, origins: ['https://example.com?x=1']",
                "must be an origin",
            ),
            ("rp_id: example.com, origins: [not a url]", "is not a URL"),
            (
                "rp_id: example.com, origins: [https://example.com], rp_name: ' '",
                "rp_name: must not be empty",
            ),
            (
                "rp_id: example.com, origins: [https://example.com], rpid: x",
                "unknown field `rpid`",
            ),
        ];
        for (w, want) in cases {
            let e = config(&format!("  webauthn: {{ {w} }}\n"), ROUTE).expect_err(w);
            assert!(e.contains(want), "{w}: {e}");
        }
    }

    #[test]
    fn without_relying_party_webauthn_is_withdrawn_from_routes() {
        // The default methods quietly lose webauthn; an explicit listing
        // gets a warning; a route with nothing else is an error.
        let c = config(
            "  users: u.yaml\n",
            "  - name: a\n    match: { path: /a }\n  - name: b\n    match: { path: /b }\n    require: { methods: [webauthn, totp] }\n",
        )
        .expect("valid");
        let routes = c.routes.routes();
        assert_eq!(routes[0].require.methods, [ProofMethod::Totp]);
        assert_eq!(routes[1].require.methods, [ProofMethod::Totp]);
        assert_eq!(
            crate::config::build::tests::other_warnings(&c).len(),
            1,
            "{:?}",
            crate::config::build::tests::other_warnings(&c)
        );
        assert!(
            crate::config::build::tests::other_warnings(&c)[0].starts_with("routes.yaml:13:")
                && crate::config::build::tests::other_warnings(&c)[0].contains("routes[1].require.methods"),
            "{}",
            crate::config::build::tests::other_warnings(&c)[0]
        );
        let e = config(
            "  users: u.yaml\n",
            "  - name: a\n    match: { path: /a }\n    require: { methods: [webauthn], approvals: 1 }\n",
        )
        .expect_err("webauthn only");
        assert!(
            e.starts_with("routes.yaml:11:") && e.contains("requires `webauthn` but stepup.webauthn is not configured"),
            "{e}"
        );
    }
}

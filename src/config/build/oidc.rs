//! `stepup.oidc` and `require.acr`. The issuer and redirect URI must be
//! https: the authorization code and the ID token travel through them, and
//! an issuer compared byte for byte with `iss` leaves no room for a
//! scheme downgrade. Secrets are named by file; whether the file exists and
//! is private is checked with the other files (`config::files`).

use super::{problem, Res};
use crate::config::raw::RawOidc;
use crate::config::{OidcClientAuth, OidcConfig};
use crate::policy::{ProofMethod, Requirements};

pub(super) fn provider(raw: RawOidc) -> Res<OidcConfig> {
    let issuer = raw.issuer.trim().to_owned();
    if !https_url(&issuer) {
        return problem(
            "stepup.oidc.issuer",
            format!("`{issuer}` must be an https:// URL such as https://idp.example/realms/corp"),
        );
    }
    if raw.client_id.trim().is_empty() {
        return problem("stepup.oidc.client_id", "must not be empty");
    }
    let client_auth = match (raw.client_secret_file, raw.private_key_jwt) {
        (Some(file), None) => OidcClientAuth::SecretFile(file),
        (None, Some(pk)) => OidcClientAuth::PrivateKeyJwt(pk.key),
        (Some(_), Some(_)) => {
            return problem(
                "stepup.oidc.private_key_jwt",
                "set either client_secret_file or private_key_jwt, not both",
            )
        }
        (None, None) => {
            return problem(
                "stepup.oidc.client_id",
                "the client needs credentials: client_secret_file or private_key_jwt: { key: FILE }",
            )
        }
    };
    let redirect_uri: http::Uri = match raw.redirect_uri.trim().parse() {
        Ok(u) if https_url(&raw.redirect_uri) => u,
        _ => {
            return problem(
                "stepup.oidc.redirect_uri",
                format!(
                    "`{}` must be an https:// URL ending in /oidc/callback under stepup.prefix",
                    raw.redirect_uri
                ),
            )
        }
    };
    let mut scopes = vec!["openid".to_owned()];
    for (i, s) in raw.scopes.into_iter().enumerate() {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
            return problem(
                format!("stepup.oidc.scopes[{i}]"),
                format!("`{s}` is not a scope token"),
            );
        }
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    Ok(OidcConfig {
        issuer,
        client_id: raw.client_id,
        client_auth,
        redirect_uri,
        scopes,
        ca: raw.ca,
    })
}

/// `require.acr`: each value goes into `acr_values` (space-separated) and
/// into the quoted RFC 9470 challenge, so it may hold neither spaces nor
/// quotes.
pub(super) fn acr(values: Vec<String>, at: &str) -> Res<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
            return problem(
                format!("{at}.require.acr[{i}]"),
                format!("`{v}` is not an acr value (printable ASCII, no spaces or quotes)"),
            );
        }
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

/// A route that names `oidc` or `acr` needs a provider, and `acr` only
/// means something to a route that accepts `oidc`.
pub(super) fn route_fits(require: &Requirements, oidc: Option<&OidcConfig>, at: &str) -> Res<()> {
    if !require.acr.is_empty() && !require.accepts(ProofMethod::Oidc) {
        return problem(
            format!("{at}.require.acr"),
            "acr is checked on OIDC re-authentication only; add oidc to require.methods",
        );
    }
    if require.accepts(ProofMethod::Oidc) && oidc.is_none() {
        return problem(
            format!("{at}.require.methods"),
            "requires `oidc` but stepup.oidc is not configured",
        );
    }
    Ok(())
}

fn https_url(s: &str) -> bool {
    match s.parse::<http::Uri>() {
        Ok(u) => u.scheme_str() == Some("https") && u.authority().is_some() && u.query().is_none(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{from_str, OidcClientAuth};

    use crate::config::build::tests::BASE;

    const OIDC: &str = "stepup:
  oidc:
    issuer: https://idp.example/realms/corp
    client_id: stepgate
    client_secret_file: certs/oidc-secret
    redirect_uri: https://gw.example/.stepup/oidc/callback
    scopes: [openid, profile]
    ca: certs/idp-ca.pem
";

    const ROUTE: &str = "routes:
  - name: wire
    match: { path: /wire }
    require: { methods: [oidc], acr: [phr, \"urn:example:acr:mfa\"], max_age: 5m }
";

    fn err(text: &str) -> String {
        match from_str(text, "routes.yaml") {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn spec_example_builds() {
        let c = from_str(&format!("{BASE}{OIDC}{ROUTE}"), "routes.yaml").expect("valid");
        let o = c.stepup.oidc.expect("oidc");
        assert_eq!(o.issuer, "https://idp.example/realms/corp");
        assert_eq!(o.scopes, ["openid", "profile"]);
        assert_eq!(o.client_auth, OidcClientAuth::SecretFile("certs/oidc-secret".into()));
        assert_eq!(o.redirect_uri.path(), "/.stepup/oidc/callback");
        let route = &c.routes.routes()[0];
        assert_eq!(route.require.acr, ["phr", "urn:example:acr:mfa"]);
        assert_eq!(route.require.max_age.as_secs(), 300);
    }

    #[test]
    fn private_key_jwt_and_openid_first() {
        let oidc = OIDC
            .replace(
                "client_secret_file: certs/oidc-secret",
                "private_key_jwt: { key: k.pem }",
            )
            .replace("[openid, profile]", "[email, openid]");
        let c = from_str(&format!("{BASE}{oidc}{ROUTE}"), "routes.yaml").expect("valid");
        let o = c.stepup.oidc.expect("oidc");
        assert_eq!(o.client_auth, OidcClientAuth::PrivateKeyJwt("k.pem".into()));
        assert_eq!(o.scopes, ["openid", "email"]);
    }

    #[test]
    fn bad_provider_settings_are_refused_with_their_path() {
        let cases = [
            (
                "issuer: https://idp.example/realms/corp",
                "issuer: http://idp.example",
                "stepup.oidc.issuer",
            ),
            (
                "    client_secret_file: certs/oidc-secret\n",
                "",
                "client_secret_file or private_key_jwt",
            ),
            (
                "client_secret_file: certs/oidc-secret",
                "client_secret_file: s\n    private_key_jwt: { key: k.pem }",
                "not both",
            ),
            (
                "redirect_uri: https://gw.example/.stepup/oidc/callback",
                "redirect_uri: /.stepup/oidc/callback",
                "stepup.oidc.redirect_uri",
            ),
            ("[openid, profile]", "[\"a b\"]", "stepup.oidc.scopes[0]"),
            (
                "client_id: stepgate",
                "client_id: stepgate\n    secret: x",
                "unknown field",
            ),
        ];
        for (from, to, want) in cases {
            let e = err(&format!("{BASE}{}{ROUTE}", OIDC.replace(from, to)));
            assert!(e.contains(want), "{to}: {e}");
        }
    }

    #[test]
    fn routes_need_a_provider_and_clean_acr_values() {
        let e = err(&format!("{BASE}{ROUTE}"));
        assert!(
            e.contains("routes[0].require.methods") && e.contains("stepup.oidc"),
            "{e}"
        );
        let e = err(&format!(
            "{BASE}{OIDC}{}",
            ROUTE.replace("methods: [oidc]", "methods: [totp]")
        ));
        assert!(e.contains("routes[0].require.acr") && e.contains("add oidc"), "{e}");
        let e = err(&format!("{BASE}{OIDC}{}", ROUTE.replace("phr,", "\"a b\",")));
        assert!(e.contains("routes[0].require.acr[0]"), "{e}");
        let e = err(&format!("{BASE}{OIDC}{}", ROUTE.replace("phr,", "'a\"b',")));
        assert!(e.contains("routes[0].require.acr[0]"), "{e}");
    }
}

use super::super::from_str;
use crate::config::Config;

/// The smallest valid top of a config, shared by the build tests.
pub(in crate::config::build) const BASE: &str = "listen: 127.0.0.1:8443
tls: { cert: c.pem, key: k.pem }
upstream: http://127.0.0.1:8080
session: { cookie: SESSIONID }
assertion: { key: a.pem, issuer: stepgate, audience: legacy }
";

fn with_routes(routes: &str) -> String {
    format!("{BASE}routes:\n{routes}")
}

fn err(text: &str) -> String {
    match from_str(text, "routes.yaml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn valid_file_builds_typed_config() {
    let text = with_routes(
        "  - name: delete-user
    action: user.delete
    match: { methods: [post, DELETE], path: '^/admin/users/([^/]+)$' }
    require: { methods: [totp], max_age: 2m }
    hold: { mode: challenge, timeout: 90s }
  - name: sql
    match: { prefix: /admin/sql }
    deny: true
",
    );
    let c = from_str(&text, "routes.yaml").expect("valid");
    let routes = c.routes.routes();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0].action, "user.delete");
    assert_eq!(routes[0].methods, vec![http::Method::POST, http::Method::DELETE]);
    assert_eq!(routes[0].require.max_age.as_secs(), 120);
    assert_eq!(routes[0].hold.timeout.as_secs(), 90);
    assert_eq!(routes[1].action, "sql", "action defaults to the name");
    assert!(routes[1].deny);
    assert_eq!(c.stepup.prefix, "/.stepup/");
    assert_eq!(c.limits.max_body, 1 << 20);
    assert!(other_warnings(&c).is_empty());
}

#[test]
fn yaml_syntax_error_is_located() {
    let text = with_routes("  - name: [broken\n");
    let e = err(&text);
    assert!(e.starts_with("routes.yaml:7:"), "{e}");
}

#[test]
fn unknown_key_is_located() {
    let text = with_routes("  - name: a\n    match: { path: '/a', methd: [GET] }\n");
    let e = err(&text);
    assert!(
        e.starts_with("routes.yaml:8:26: routes[0].match: unknown field `methd`"),
        "{e}"
    );
}

#[test]
fn bad_regex_points_at_the_pattern() {
    let text = with_routes("  - name: a\n    match:\n      path: '^/a/(['\n");
    let e = err(&text);
    assert!(
        e.starts_with("routes.yaml:9:13: routes[0].match.path: invalid regex"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1);
}

#[test]
fn top_level_values_are_checked() {
    let text = BASE.replace("127.0.0.1:8443", "nowhere") + "routes: []\n";
    assert!(err(&text).starts_with("routes.yaml:1:9: listen:"));
    let text = BASE.replace("http://127.0.0.1:8080", "https://x/y") + "routes: []\n";
    assert!(err(&text).contains("upstream"));
    let text = BASE.replace("audience: legacy", "audience: legacy, ttl: 10m") + "routes: []\n";
    assert!(err(&text).contains("assertion.ttl: must be between 1s and 300s"));
}

#[test]
fn token_routes_need_an_issuer() {
    let text = with_routes("  - name: a\n    match: { path: /a }\n    require: { methods: [token] }\n");
    assert!(err(&text).contains("stepup.token_issuers is empty"));
}

#[test]
fn shadowed_route_is_a_warning() {
    let text = with_routes(
        "  - name: all-admin
    match: { prefix: /admin }
  - name: delete
    match: { methods: [POST], path: /admin/delete }
  - name: other
    match: { path: /other }
",
    );
    let c = from_str(&text, "routes.yaml").expect("valid");
    assert_eq!(other_warnings(&c).len(), 1, "{:?}", other_warnings(&c));
    assert!(
        other_warnings(&c)[0].starts_with("routes.yaml:9:"),
        "{}",
        other_warnings(&c)[0]
    );
    assert!(other_warnings(&c)[0].contains("routes[1] `delete` is shadowed by routes[0] `all-admin`"));
}

#[test]
fn duplicate_names_and_bad_methods_fail() {
    let text = with_routes("  - name: a\n    match: { path: /a }\n  - name: a\n    match: { path: /b }\n");
    assert!(err(&text).contains("duplicate route name"));
    let text = with_routes("  - name: a\n    match: { path: /a, methods: ['PO ST'] }\n");
    assert!(err(&text).contains("routes[0].match.methods[0]"));
    let text = with_routes("  - name: a\n    match: { path: /a }\n    require: { methods: [sms] }\n");
    assert!(err(&text).contains("unknown proof method `sms`"));
}

#[test]
fn routes_fold_case_unless_they_opt_out_and_check_says_so() {
    let text = with_routes(
        "  - name: folded
    match: { prefix: /Admin/SQL }
  - name: old-spelling
    match: { path: /a, case_insensitive: true }
  - name: exact
    match: { path: /b, case_sensitive: true }
  - name: exact-old
    match: { path: /c, case_insensitive: false }
",
    );
    let c = from_str(&text, "routes.yaml").expect("valid");
    let folds: Vec<bool> = c.routes.routes().iter().map(|r| r.path.case_insensitive).collect();
    assert_eq!(folds, [true, true, false, false]);
    assert_eq!(other_warnings(&c).len(), 2, "{:?}", other_warnings(&c));
    assert!(
        other_warnings(&c)[0].starts_with("routes.yaml:12:40:"),
        "{}",
        other_warnings(&c)[0]
    );
    assert!(
        other_warnings(&c)[0].contains("routes[2].match.case_sensitive: this route matches case-sensitively"),
        "{}",
        other_warnings(&c)[0]
    );
    assert!(
        other_warnings(&c)[1].contains("routes[3].match.case_insensitive:"),
        "{}",
        other_warnings(&c)[1]
    );
    let text = with_routes("  - name: a\n    match: { path: /a, case_sensitive: true, case_insensitive: true }\n");
    assert!(err(&text).contains("routes[0].match.case_sensitive: contradicts"));
}

#[test]
fn case_folded_shadows_are_reported() {
    let text = with_routes(
        "  - name: all-admin
    match: { prefix: /ADMIN }
  - name: delete
    match: { methods: [POST], path: /admin/delete }
  - name: users
    match: { prefix: /Admin/Users }
  - name: exact
    match: { prefix: /ops, case_sensitive: true }
  - name: folded-under-exact
    match: { prefix: /ops/x }
  - name: exact-under-exact
    match: { path: /ops/y, case_sensitive: true }
",
    );
    let c = from_str(&text, "routes.yaml").expect("valid");
    let shadows: Vec<&String> = c.warnings.iter().filter(|w| w.contains("shadowed")).collect();
    assert_eq!(shadows.len(), 3, "{:?}", c.warnings);
    assert!(shadows[0].contains("routes[1] `delete` is shadowed by routes[0] `all-admin`"));
    assert!(shadows[1].contains("routes[2] `users` is shadowed by routes[0] `all-admin`"));
    // A case-sensitive prefix cannot shadow a folding route (`/OPS/x` gets
    // past it), but it does shadow a case-sensitive one.
    assert!(shadows[2].contains("routes[5] `exact-under-exact` is shadowed by routes[3] `exact`"));
}

/// Warnings other than the no-identity one, which every route without an
/// identity source or `require.users`/`groups` gets.
pub(super) fn other_warnings(c: &Config) -> Vec<String> {
    c.warnings
        .iter()
        .filter(|w| !w.contains("becomes its actor"))
        .cloned()
        .collect()
}

#[test]
fn round_two_settings_refuse_hostile_values() {
    for (yaml, at) in [
        (
            "notify: { webhook: 'http://127.0.0.1:9/h', queue: 0 }\n",
            "notify.queue",
        ),
        (
            "notify: { webhook: 'http://127.0.0.1:9/h', queue: 99999999999 }\n",
            "notify.queue",
        ),
        ("notify: { webhook: 'http://127.0.0.1:9/h', queue: -1 }\n", "notify"),
        ("limits: { drain: soon }\n", "limits.drain"),
        ("limits: { drain: -5s }\n", "limits.drain"),
        ("limits: { body_read_timeout: 0s }\n", "limits.body_read_timeout"),
        (
            "limits: { ceremony_rate_per_client: 0 }\n",
            "limits.ceremony_rate_per_client",
        ),
        (
            "limits: { ceremony_rate_per_session: 0 }\n",
            "limits.ceremony_rate_per_session",
        ),
        ("limits: { ceremony_rate_per_client: -3 }\n", "limits"),
        ("limits: { ceremony_rate_per_session: lots }\n", "limits"),
        ("state: { backend: memcached }\n", "state"),
        ("state: { backend: redis }\n", "state"),
    ] {
        let e = err(&format!(
            "{BASE}{yaml}routes:\n  - name: a\n    match: {{ path: /a }}\n"
        ));
        assert!(e.contains(at), "{yaml} -> {e}");
    }
}

/// Approvals alone, and nothing that names the requester: `check` warns,
/// since the gateway refuses such requests from sessions nobody is bound
/// to. An identity source, a proof method or a workload certificate each
/// name the requester, so those routes get no such warning.
#[test]
fn approval_only_routes_without_a_requester_identity_are_warned_about() {
    let routes = "  - name: wire
    match: { path: /wire }
    require: { approvals: 1 }
  - name: vendor
    match: { path: /vendor }
    require: { methods: [totp], approvals: 1 }
  - name: agent
    match: { caller: workload, path: /agent }
    require: { approvals: 1 }
";
    let unknown = |c: &Config| -> Vec<String> {
        c.warnings
            .iter()
            .filter(|w| w.contains("no `identity:` source names the requester"))
            .cloned()
            .collect()
    };
    let c = from_str(&with_routes(routes), "routes.yaml").expect("valid");
    let warned = unknown(&c);
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(warned[0].starts_with("routes.yaml:"), "{}", warned[0]);
    assert!(warned[0].contains("routes[0].require"), "{}", warned[0]);
    assert!(warned[0].contains("401 no_identity"), "{}", warned[0]);
    assert!(warned[1].contains("routes[2].require"), "{}", warned[1]);

    let mtls =
        format!("{BASE}identity: {{ mtls: true }}\nroutes:\n{routes}").replace("k.pem }", "k.pem, client_ca: ca.pem }");
    let warned = unknown(&from_str(&mtls, "routes.yaml").expect("valid"));
    assert_eq!(warned.len(), 1, "a workload certificate names the agent: {warned:?}");
    assert!(warned[0].contains("routes[0].require"), "{}", warned[0]);

    let header = format!("{BASE}identity: {{ header: X-Remote-User }}\nroutes:\n{routes}");
    let c = from_str(&header, "routes.yaml").expect("valid");
    assert!(unknown(&c).is_empty(), "{:?}", c.warnings);
}

use crate::config;
use crate::route::canonical::canonicalize;
use crate::route::MatchRequest;
use http::{HeaderMap, Method};

fn table(routes: &str) -> config::Config {
    let text = format!(
        "listen: 127.0.0.1:1
tls: {{ cert: c, key: k }}
upstream: http://127.0.0.1:2
session: {{ cookie: S }}
assertion: {{ key: a, issuer: i, audience: a }}
routes:
{routes}"
    );
    config::from_str(&text, "t.yaml").expect("valid config")
}

fn find(
    c: &config::Config,
    methods: &[Method],
    host: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Option<String> {
    let path = canonicalize(path).expect("canonical");
    let req = MatchRequest {
        host,
        methods,
        path: &path,
        query,
        headers,
        workload: false,
    };
    c.routes.find(&req).route.map(|r| r.name.clone())
}

#[test]
fn first_match_wins_and_predicates_filter() {
    let c = table(
        "  - name: host-only
    match: { host: [admin.example], prefix: /x }
  - name: q
    match: { path: /search, query: { op: 'drop|delete' } }
  - name: h
    match: { path: /api, headers: { x-role: admin } }
  - name: post-users
    match: { methods: [POST], path: '/users/[0-9]+' }
  - name: any-users
    match: { path: '/users/.*' }
",
    );
    let h = HeaderMap::new();
    let post = [Method::POST];
    let get = [Method::GET];
    assert_eq!(
        find(&c, &get, "admin.example", "/x/y", None, &h).as_deref(),
        Some("host-only")
    );
    assert_eq!(find(&c, &get, "other", "/x/y", None, &h), None);
    assert_eq!(
        find(&c, &get, "h", "/search", Some("op=delete"), &h).as_deref(),
        Some("q")
    );
    assert_eq!(
        find(&c, &get, "h", "/search", Some("a=1&op=x&op=drop"), &h).as_deref(),
        Some("q"),
        "any duplicate value counts"
    );
    assert_eq!(
        find(&c, &get, "h", "/search", Some("op=dropx"), &h),
        None,
        "query regex is anchored"
    );
    let mut admin = HeaderMap::new();
    admin.insert("x-role", "admin".parse().expect("hv"));
    assert_eq!(find(&c, &get, "h", "/api", None, &admin).as_deref(), Some("h"));
    assert_eq!(find(&c, &get, "h", "/api", None, &h), None);
    assert_eq!(
        find(&c, &post, "h", "/users/12", None, &h).as_deref(),
        Some("post-users")
    );
    assert_eq!(find(&c, &get, "h", "/users/12", None, &h).as_deref(), Some("any-users"));
}

#[test]
fn path_regex_is_anchored_and_prefix_is_segment_aware() {
    let c = table("  - name: a\n    match: { path: /admin }\n  - name: p\n    match: { prefix: /ops/ }\n");
    let h = HeaderMap::new();
    let get = [Method::GET];
    assert_eq!(find(&c, &get, "h", "/admin", None, &h).as_deref(), Some("a"));
    assert_eq!(
        find(&c, &get, "h", "/admin/", None, &h).as_deref(),
        Some("a"),
        "one trailing slash is ignored"
    );
    assert_eq!(find(&c, &get, "h", "/administrator", None, &h), None);
    assert_eq!(find(&c, &get, "h", "/x/admin", None, &h), None);
    assert_eq!(find(&c, &get, "h", "/ops", None, &h).as_deref(), Some("p"));
    assert_eq!(find(&c, &get, "h", "/ops/restart", None, &h).as_deref(), Some("p"));
    assert_eq!(find(&c, &get, "h", "/opsx", None, &h), None);
}

#[test]
fn params_case_and_method_miss() {
    let c = table(
        "  - name: del
    match: { methods: [DELETE], path: '/admin/users/[a-z]+' }
  - name: ci
    match: { path: /Console/Reset, case_insensitive: true }
",
    );
    let h = HeaderMap::new();
    let del = [Method::DELETE];
    assert_eq!(
        find(&c, &del, "h", "/admin/users/bob;jsessionid=1", None, &h).as_deref(),
        Some("del")
    );
    assert_eq!(
        find(&c, &del, "h", "/admin;x=y/users/bob", None, &h).as_deref(),
        Some("del")
    );
    assert_eq!(
        find(&c, &[Method::GET], "h", "/console/RESET", None, &h).as_deref(),
        Some("ci")
    );
    let path = canonicalize("/admin/users/bob").expect("canonical");
    let lookup = c.routes.find(&MatchRequest {
        host: "h",
        methods: &[Method::POST],
        path: &path,
        query: None,
        headers: &h,
        workload: false,
    });
    assert!(lookup.route.is_none());
    assert!(lookup.method_miss, "a POST form could still carry _method=DELETE");
}

#[test]
fn a_get_route_also_takes_head_from_any_source() {
    let c = table(
        "  - name: export
    match: { methods: [GET], path: /export }
  - name: purge
    match: { methods: [DELETE], path: /purge }
",
    );
    let h = HeaderMap::new();
    let overridden = [Method::POST, Method::HEAD];
    assert_eq!(
        find(&c, &overridden, "h", "/export", None, &h).as_deref(),
        Some("export")
    );
    assert_eq!(find(&c, &[Method::HEAD], "h", "/purge", None, &h), None);
}

#[test]
fn thousand_routes_still_find_the_first() {
    let mut routes = String::new();
    for i in 0..1000 {
        routes.push_str(&format!(
            "  - name: r{i}\n    match: {{ path: '/api/v{i}/items/[0-9]+' }}\n"
        ));
    }
    let c = table(&routes);
    let h = HeaderMap::new();
    assert_eq!(
        find(&c, &[Method::GET], "h", "/api/v999/items/7", None, &h).as_deref(),
        Some("r999")
    );
    assert_eq!(find(&c, &[Method::GET], "h", "/api/v1000/items/7", None, &h), None);
}

#[test]
fn paths_fold_case_by_default_and_keep_it_when_asked() {
    let c = table(
        "  - name: exact
    match: { path: /Exact/Path, case_sensitive: true }
  - name: sql
    match: { prefix: /admin/sql }
  - name: transfers
    match: { methods: [POST], path: /api/transfers }
",
    );
    let h = HeaderMap::new();
    let get = [Method::GET];
    assert_eq!(find(&c, &get, "h", "/ADMIN/SQL/run", None, &h).as_deref(), Some("sql"));
    assert_eq!(find(&c, &get, "h", "/admin/Sql", None, &h).as_deref(), Some("sql"));
    assert_eq!(
        find(&c, &[Method::POST], "h", "/API/Transfers", None, &h).as_deref(),
        Some("transfers")
    );
    assert_eq!(find(&c, &get, "h", "/Exact/Path", None, &h).as_deref(), Some("exact"));
    assert_eq!(find(&c, &get, "h", "/exact/path", None, &h), None);
}

#[test]
fn query_predicates_match_every_reading() {
    let c = table(
        "  - name: legacy-delete
    match: { methods: [GET], path: /legacy, query: { action: delete } }
  - name: exact
    match: { path: /exact, query: { action: delete }, case_sensitive: true }
",
    );
    let h = HeaderMap::new();
    let get = [Method::GET];
    for q in [
        "action=delete",
        "x=1;action=delete",
        "action=delete;x=1",
        "Action=delete",
        "ACTION=delete&x=1",
        "x=1; action=delete",
        "action=view&action=delete",
        "action=delete&action=view",
        "x=1;action=view;action=delete",
        "%61ction=delete",
        "action=DELETE",
        "Action=Delete&x=1",
    ] {
        assert_eq!(
            find(&c, &get, "h", "/legacy", Some(q), &h).as_deref(),
            Some("legacy-delete"),
            "{q}"
        );
    }
    for q in [
        "action=view",
        "x=action=delete",
        "actions=delete",
        "action=deleted",
        "action%3Ddelete",
    ] {
        assert_eq!(find(&c, &get, "h", "/legacy", Some(q), &h), None, "{q}");
    }
    assert_eq!(
        find(&c, &get, "h", "/exact", Some("x=1;action=delete"), &h).as_deref(),
        Some("exact")
    );
    assert_eq!(find(&c, &get, "h", "/exact", Some("Action=delete"), &h), None);
    assert_eq!(find(&c, &get, "h", "/exact", Some("action=DELETE"), &h), None);
}

#[test]
fn an_override_is_matched_under_both_methods_and_the_stricter_wins() {
    let c = table(
        "  - name: items-shadow
    match: { methods: [POST], prefix: /api/items }
    hold: { mode: shadow }
  - name: items-conditional
    match: { methods: [PUT], prefix: /api/items }
    when: [ { header: { name: x-risk, regex: '.+' } } ]
  - name: item-delete
    match: { methods: [DELETE], path: '/api/items/[0-9]+' }
  - name: item-purge
    match: { methods: [PATCH], path: '/api/items/[0-9]+' }
    deny: true
  - name: two-approvals
    match: { methods: [POST], path: /pay }
    require: { approvals: 2, approvers: [ops] }
  - name: one-proof
    match: { methods: [DELETE], path: /pay }
",
    );
    let h = HeaderMap::new();
    let lookup = |methods: &[Method], path: &str| {
        let path = canonicalize(path).expect("canonical");
        let l = c.routes.find(&MatchRequest {
            host: "h",
            methods,
            path: &path,
            query: None,
            headers: &h,
            workload: false,
        });
        let method = l.method.clone();
        (l.governing().map(|r| r.name.clone()), method)
    };
    let post = Method::POST;
    assert_eq!(
        lookup(std::slice::from_ref(&post), "/api/items/9").0.as_deref(),
        Some("items-shadow")
    );
    // hold beats shadow, whichever order the methods come in
    for methods in [[post.clone(), Method::DELETE], [Method::DELETE, post.clone()]] {
        assert_eq!(
            lookup(&methods, "/api/items/9"),
            (Some("item-delete".into()), Some(Method::DELETE))
        );
    }
    // deny beats hold
    assert_eq!(
        lookup(&[post.clone(), Method::DELETE, Method::PATCH], "/api/items/9")
            .0
            .as_deref(),
        Some("item-purge")
    );
    // an unconditional hold beats one that waits for a condition
    assert_eq!(
        lookup(&[Method::PUT, Method::DELETE], "/api/items/9").0.as_deref(),
        Some("item-delete")
    );
    assert_eq!(
        lookup(&[post.clone(), Method::PUT], "/api/items/9").0.as_deref(),
        Some("items-conditional")
    );
    // an override naming a method no route lists keeps the stricter wire reading
    assert_eq!(
        lookup(&[Method::DELETE, Method::GET], "/api/items/9").0.as_deref(),
        Some("item-delete")
    );
    // between two holds, the one needing more approvals
    assert_eq!(
        lookup(&[post.clone(), Method::DELETE], "/pay").0.as_deref(),
        Some("two-approvals")
    );

    // A POST form could carry `_method=DELETE`: the body is worth reading
    // even though a (weaker) route already matched.
    let path = canonicalize("/api/items/9").expect("canonical");
    let l = c.routes.find(&MatchRequest {
        host: "h",
        methods: std::slice::from_ref(&post),
        path: &path,
        query: None,
        headers: &h,
        workload: false,
    });
    assert!(l.method_miss, "a stricter DELETE route is one `_method` away");
    let l = c.routes.find(&MatchRequest {
        host: "h",
        methods: &[post, Method::PATCH],
        path: &path,
        query: None,
        headers: &h,
        workload: false,
    });
    assert!(!l.method_miss, "nothing is stricter than the deny already chosen");
}

use super::*;
use crate::config::{from_str, Config};
use http::{HeaderValue, Request as HttpRequest};
use proptest::prelude::*;
use std::time::Duration;

const CONFIG: &str = "listen: 127.0.0.1:8443
tls: { cert: c.pem, key: k.pem }
upstream: http://127.0.0.1:8080
session: { cookie: SESSIONID }
assertion: { key: a.pem, issuer: stepgate, audience: legacy }
limits: { max_body: 64 }
routes:
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfer }
    when:
      - json: { pointer: /amount, gt: 1000 }
    require: { methods: [totp] }
  - name: risky-admin
    action: admin.any
    match: { prefix: /admin/risky }
    when:
      - header: { name: X-Forwarded-Host, not_in: [inside.example] }
      - session_age_over: 8h
    require: { methods: [totp] }
  - name: items-shadow
    match: { methods: [POST], prefix: /api/items }
    hold: { mode: shadow }
  - name: item-delete
    action: item.delete
    match: { methods: [DELETE], path: '/api/items/[0-9]+' }
    require: { methods: [totp] }
    hold: { mode: challenge }
  - name: no-sql
    match: { prefix: /admin/sql }
    deny: true
  - name: users
    action: user.delete
    match: { methods: [POST, DELETE], path: '/admin/users/[a-z]+' }
    require: { methods: [totp] }
    hold: { mode: auto }
";

/// Built once: compiling the routes costs more than planning a request.
fn config() -> &'static Config {
    static CFG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    CFG.get_or_init(|| from_str(CONFIG, "routes.yaml").expect("test config"))
}

const NOW: u64 = 1_800_000_000;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

/// One request as a client could send it.
#[derive(Debug, Clone)]
struct Case {
    method: Method,
    uri: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    websocket: bool,
    seen_age: Option<u64>,
}

impl Case {
    fn new(method: &str, uri: &str) -> Case {
        Case {
            method: Method::from_bytes(method.as_bytes()).expect("method"),
            uri: uri.to_owned(),
            headers: vec![("host", "gw.example".to_owned())],
            body: Vec::new(),
            websocket: false,
            seen_age: Some(60),
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Case {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn session(self) -> Case {
        self.header("cookie", "SESSIONID=abc")
    }

    fn body(mut self, body: &[u8]) -> Case {
        self.body = body.to_vec();
        self
    }

    fn parts(&self) -> Parts {
        let mut req = HttpRequest::builder().method(self.method.clone()).uri(&self.uri);
        for (k, v) in &self.headers {
            req = req.header(*k, HeaderValue::from_str(v).expect("header value"));
        }
        req.body(()).expect("request").into_parts().0
    }

    /// The plan as the gateway reaches it: without the body first, then
    /// with it only if the plan asks for it.
    fn as_gateway(&self, cfg: &Config) -> Plan {
        self.run(cfg, false)
    }

    /// The plan as `stepgate explain` reaches it: the body given up front.
    fn as_explain(&self, cfg: &Config) -> Plan {
        self.run(cfg, true)
    }

    fn run(&self, cfg: &Config, body_first: bool) -> Plan {
        let mut parts = self.parts();
        let target = match front(&mut parts, cfg) {
            Ok(t) => t,
            Err(reject) => return Plan::Refuse(reject),
        };
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        let session = Session {
            carried: Carried::of(&cfg.session, &parts.headers, None),
            seen: self.seen_age.map(|age| Sighting {
                first: NOW - age,
                device: conditions::device_key(user_agent(&parts.headers), ip),
            }),
        };
        let mut body = body_first.then_some(self.body.as_slice());
        loop {
            let req = Request {
                method: &parts.method,
                target: &target,
                headers: &parts.headers,
                body,
                client_addr: Some(ip),
                client_ip: ip,
                trusted_peer: false,
                workload: false,
                websocket: self.websocket,
            };
            match plan(cfg, &req, &session, now()) {
                Plan::ReadBody if body.is_none() => body = Some(&self.body),
                other => return other,
            }
        }
    }
}

/// A plan in a form two plans can be compared by.
fn summary(p: &Plan) -> String {
    let name = |r: &Routed| {
        format!(
            "{}{}",
            r.route.name,
            r.read_as.as_ref().map(|m| format!(" as {m}")).unwrap_or_default()
        )
    };
    match p {
        Plan::Refuse(r) => format!("refuse {}", r.code()),
        Plan::Gateway => "gateway".into(),
        Plan::ReadBody => "read body".into(),
        Plan::Forward(None) => "forward".into(),
        Plan::Forward(Some(r)) => format!("forward calm {}", name(r)),
        Plan::Deny(r) => format!("deny {}", name(r)),
        Plan::NeedSession(r) => format!("no session {}", name(r)),
        Plan::Shadow { routed, reasons } => format!("shadow {} {reasons:?}", name(routed)),
        Plan::Hold {
            routed, mode, reasons, ..
        } => format!("hold {} {} {reasons:?}", name(routed), mode.as_str()),
    }
}

fn gateway(case: Case) -> String {
    summary(&case.as_gateway(config()))
}

#[test]
fn the_gateway_prefix_and_unrouted_paths() {
    assert_eq!(gateway(Case::new("GET", "/.stepup/jwks.json")), "gateway");
    assert_eq!(gateway(Case::new("GET", "/.STEPUP;x/holds/1")), "gateway");
    assert_eq!(gateway(Case::new("POST", "/public")), "forward");
}

#[test]
fn ambiguous_input_is_refused_before_any_route() {
    assert_eq!(
        gateway(Case::new("DELETE", "/admin/users/%2e%2e%2Fx")),
        "refuse bad_request"
    );
    // The Host check `explain` once lacked: Host and authority disagree.
    let case = Case::new("DELETE", "https://gw.example/admin/users/bob").header("host", "other.example");
    assert_eq!(gateway(case), "refuse bad_request");
    let case = Case::new("DELETE", "/admin/users/bob").header("host", "second.example");
    assert_eq!(gateway(case), "refuse bad_request", "two Host headers");
    let case = Case::new("DELETE", "/admin/users/bob").header("x_user", "a");
    assert_eq!(gateway(case), "refuse bad_request");
}

#[test]
fn deny_session_and_hold() {
    assert_eq!(gateway(Case::new("GET", "/admin/sql/run")), "deny no-sql");
    assert_eq!(gateway(Case::new("DELETE", "/admin/users/bob")), "no session users");
    assert_eq!(
        gateway(Case::new("DELETE", "/admin/users/bob").session()),
        "hold users auto []"
    );
    let two = Case::new("DELETE", "/admin/users/bob").header("cookie", "SESSIONID=a; SESSIONID=b");
    assert_eq!(gateway(two), "refuse bad_request", "an ambiguous session");
}

#[test]
fn a_websocket_handshake_waits_on_its_connection() {
    let mut case = Case::new("DELETE", "/admin/users/bob").session();
    case.websocket = true;
    assert_eq!(gateway(case), "hold users hold []");
}

#[test]
fn a_hold_binds_its_body_within_the_limit() {
    let cfg = config();
    let case = Case::new("DELETE", "/admin/users/bob").session().body(&[b'x'; 65]);
    assert_eq!(summary(&case.as_gateway(cfg)), "refuse body_too_large");
    // Without a session nothing is read: an anonymous flood buffers nothing.
    let case = Case::new("POST", "/api/transfer")
        .header("content-type", "application/json")
        .body(&[b'x'; 65]);
    assert_eq!(summary(&case.as_gateway(cfg)), "no session transfer");
}

#[test]
fn conditions_decide_on_the_body_they_read() {
    let json = |amount: u32| {
        Case::new("POST", "/api/transfer")
            .session()
            .header("content-type", "application/json")
            .body(format!(r#"{{"amount": {amount}}}"#).as_bytes())
    };
    assert_eq!(gateway(json(10)), "forward calm transfer");
    assert_eq!(gateway(json(5000)), r#"hold transfer auto ["json:/amount>1000"]"#);
    let broken = json(1).body(b"{\"amount\": 1");
    assert_eq!(gateway(broken), "refuse bad_request");
}

#[test]
fn conditions_see_the_headers_the_upstream_would_see() {
    // From an untrusted peer the forwarding family is stripped, so a
    // client cannot calm a condition with a header the upstream never gets.
    let case = Case::new("GET", "/admin/risky/x")
        .session()
        .header("x-forwarded-host", "inside.example");
    assert_eq!(gateway(case), r#"hold risky-admin auto ["header:x-forwarded-host"]"#);
}

#[test]
fn a_session_never_seen_is_unknown_and_steps_up() {
    let mut case = Case::new("GET", "/admin/risky/x").session();
    case.seen_age = None;
    let plan = gateway(case);
    assert!(plan.contains("session_age_over:8h"), "{plan}");
    let mut case = Case::new("GET", "/admin/risky/x").session();
    case.seen_age = Some(9 * 3600);
    assert!(gateway(case).contains("session_age_over:8h"));
}

#[test]
fn an_override_selects_the_stricter_route() {
    assert_eq!(gateway(Case::new("POST", "/api/items/9")), "shadow items-shadow []");
    let header = Case::new("POST", "/api/items/9")
        .session()
        .header("x-http-method-override", "DELETE");
    assert_eq!(gateway(header), "hold item-delete as DELETE challenge []");
    let form = Case::new("POST", "/api/items/9")
        .session()
        .header("content-type", "application/x-www-form-urlencoded")
        .body(b"_method=DELETE");
    assert_eq!(gateway(form), "hold item-delete as DELETE challenge []");
}

fn arb_case() -> impl Strategy<Value = Case> {
    let method = prop::sample::select(vec!["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD"]);
    let path = prop::sample::select(vec![
        "/api/transfer",
        "/api/transfer/",
        "/API/transfer",
        "/api/%74ransfer",
        "/api/items/9",
        "/api/items/x",
        "/api//items/9",
        "/admin/users/bob",
        "/admin/users/bob/../alice",
        "/admin/users/b%2fob",
        "/admin/sql/run",
        "/admin/SQL",
        "/admin/risky/a",
        "/admin/./risky",
        "/.stepup/holds/1",
        "/public",
    ]);
    let query = prop::sample::select(vec!["", "?a=1", "?_method=DELETE", "?x=1;_method=delete"]);
    let override_header = prop::option::of(prop::sample::select(vec!["DELETE", "POST", "GET"]));
    let content_type = prop::option::of(prop::sample::select(vec![
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
    ]));
    let body = prop::sample::select(vec![
        "",
        r#"{"amount": 5}"#,
        r#"{"amount": 50000}"#,
        "{broken",
        "_method=DELETE",
        "a=1&_method=PUT",
        "0123456789012345678901234567890123456789012345678901234567890123456789",
    ]);
    let session = prop::sample::select(vec!["", "SESSIONID=a", "SESSIONID=a; SESSIONID=b"]);
    let seen = prop::option::of(prop::sample::select(vec![10u64, 40_000]));
    let forwarded = prop::option::of(prop::sample::select(vec!["inside.example", "x.example"]));
    (
        method,
        path,
        query,
        override_header,
        content_type,
        body,
        session,
        seen,
        forwarded,
        any::<bool>(),
    )
        .prop_map(|(m, p, q, o, ct, body, s, seen, fwd, ws)| {
            let mut case = Case::new(m, &format!("{p}{q}"));
            if let Some(o) = o {
                case = case.header("x-http-method-override", o);
            }
            if let Some(ct) = ct {
                case = case.header("content-type", ct);
            }
            if !s.is_empty() {
                case = case.header("cookie", s);
            }
            if let Some(f) = fwd {
                case = case.header("x-forwarded-host", f);
            }
            case.seen_age = seen;
            case.websocket = ws && m == "GET";
            case.body(body.as_bytes())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// `explain` gives the body up front; the gateway reads it only when
    /// the plan asks. Either way the plan is the same.
    #[test]
    fn explain_and_the_gateway_reach_the_same_plan(case in arb_case()) {
        let cfg = config();
        prop_assert_eq!(summary(&case.as_gateway(cfg)), summary(&case.as_explain(cfg)));
    }

    /// A request that a route with requirements governs is never forwarded
    /// unless that route's own conditions were asked and none fired; and
    /// nothing under the gateway's prefix is ever forwarded.
    #[test]
    fn a_governed_request_is_never_forwarded_unasked(case in arb_case()) {
        let cfg = config();
        let plan = case.as_gateway(cfg);
        let mut parts = case.parts();
        let Ok(target) = front(&mut parts, cfg) else {
            prop_assert!(matches!(plan, Plan::Refuse(_)), "{}", summary(&plan));
            return Ok(());
        };
        let as_sent = cfg.routes.find(&MatchRequest {
            host: &target.host_name,
            methods: std::slice::from_ref(&parts.method),
            path: &target.path,
            query: target.query.as_deref(),
            headers: &parts.headers,
            workload: false,
        })
        .governing();
        match &plan {
            Plan::Forward(None) => {
                prop_assert!(as_sent.is_none(), "an unrouted forward had a route");
                prop_assert!(!crate::route::gateway_owns(&cfg.stepup.prefix, &target.path));
            }
            Plan::Forward(Some(r)) => {
                prop_assert!(!r.route.when.is_empty(), "{} forwarded without conditions", r.route.name);
            }
            Plan::ReadBody => prop_assert!(false, "the gateway fed the plan its body"),
            _ => {}
        }
        // The stricter-outcome rule: an override can only tighten.
        if let Some(route) = as_sent {
            if route.when.is_empty() && route.hold.mode != HoldMode::Shadow && !route.deny {
                let held = matches!(plan, Plan::Hold { .. } | Plan::NeedSession(_) | Plan::Refuse(_) | Plan::Deny(_));
                prop_assert!(held, "{} governs but the plan is {}", route.name, summary(&plan));
            }
        }
    }
}

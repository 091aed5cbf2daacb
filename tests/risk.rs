//! Risk-adaptive step-up end to end (SPEC §3, §7 `when:`): one route that
//! passes a request straight through or holds it depending on where it
//! comes from, when, for how much and from which device; sudo-mode reuse;
//! break-glass; caller kinds. Real TLS in front of the recording upstream.

mod common;
mod holdkit;

use common::*;
use holdkit::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stepgate::clock::ManualClock;

/// The test client connects from 127.0.0.1, so trusting it as a proxy lets
/// each request choose its client address with `X-Forwarded-For`.
const VIA_PROXY: &str = "trusted_proxies: [127.0.0.1/32]";

fn assertion_of(r: &Recorded) -> Option<String> {
    r.header("x-stepup-assertion")
}

fn text(resp: &RawResponse) -> String {
    String::from_utf8_lossy(&resp.body).into_owned()
}

/// Expects a 401 `step_up_required` and returns its `risk` member.
fn stepped_up(resp: &RawResponse) -> Value {
    assert_eq!(resp.status, 401, "{}", text(resp));
    let ch = resp.json();
    assert_eq!(ch["error"], "step_up_required", "{ch}");
    ch["risk"].clone()
}

async fn post(gw: &Gateway, target: &str, session: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    let c = cookie(session);
    let mut h: Vec<(&str, &str)> = vec![("cookie", &c)];
    h.extend_from_slice(headers);
    send(gw, "POST", target, &h, body).await
}

// ------------------------------------------------------------ client address

const WIRE: &str = "
  - name: wire
    action: money.wire
    match: { methods: [POST], path: /api/wire }
    when:
      - client_ip_not_in: [10.0.0.0/8]
    require: { methods: [token] }
    hold: { mode: challenge }
";

#[tokio::test]
async fn the_office_passes_unheld_and_elsewhere_steps_up_with_the_reason_signed() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, WIRE, VIA_PROXY).await;
    let body = br#"{"to":"ACME","amount":250}"#;

    // A client-sent assertion must not ride along on a forward that never
    // stepped up.
    let office = [("x-forwarded-for", "10.1.2.3"), ("x-stepup-assertion", "forged")];
    let resp = post(&gw, "/api/wire", "sess-wire", &office, body).await;
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(resp.header("x-upstream"), Some("recorder"));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.as_ref(), body);
    assert_eq!(assertion_of(&seen[0]), None, "an unheld forward carries no assertion");

    let resp = post(&gw, "/api/wire", "sess-wire", &[], body).await;
    assert_eq!(stepped_up(&resp), json!(["client_ip_not_in"]));
    let ch = resp.json();
    assert_eq!(ch["route"], "wire");
    assert_eq!(up.requests().len(), 1, "held, not forwarded");

    let done = complete_with_token(&gw, &hold_id(&ch), "sess-wire", &bound_token(&gw, &ch)).await;
    assert_eq!(done.status, 200, "{}", text(&done));
    let seen = up.requests();
    assert_eq!(seen.len(), 2, "released exactly once");
    assert_eq!(seen[1].body.as_ref(), body);
    let claims = verify_assertion(
        &gw,
        &assertion_of(&seen[1]).expect("released request carries an assertion"),
    );
    assert_eq!(claims["risk"], json!(["client_ip_not_in"]));
    assert_eq!(claims["hold"], ch["hold_id"]);
    assert_eq!(claims["route"], "wire");
    assert_eq!(claims["txn"], json!(txn_of(&seen[1], "localhost")));
    assert_eq!(claims["sid"], json!(gw.sid("sess-wire")));
    // The audit trail records why the request was held.
    let trail = std::fs::read_to_string(gw.dir.join("state/audit.jsonl")).expect("audit trail");
    let created: serde_json::Value = trail
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["event"] == "hold.created" && r["hold"] == ch["hold_id"])
        .expect("hold.created record");
    assert_eq!(created["risk"], json!(["client_ip_not_in"]));
    assert_eq!(created["reason"], "client_ip_not_in");
}

#[tokio::test]
async fn only_the_right_most_untrusted_hop_is_the_client() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, WIRE, VIA_PROXY).await;

    // The client wrote an office address itself; the proxy appended the real one.
    let spoofed = [("x-forwarded-for", "10.1.2.3, 203.0.113.9")];
    let resp = post(&gw, "/api/wire", "sess-xff", &spoofed, b"{}").await;
    assert_eq!(stepped_up(&resp), json!(["client_ip_not_in"]));

    // Trusted hops are skipped on the way back to the client.
    let chained = [("x-forwarded-for", "10.1.2.3, 127.0.0.1")];
    let resp = post(&gw, "/api/wire", "sess-xff", &chained, b"{}").await;
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(up.requests().len(), 1);

    // Without trusted_proxies nobody may choose their address.
    let up2 = Upstream::start().await;
    let closed = Gateway::start(up2.addr, WIRE, "").await;
    let resp = post(
        &closed,
        "/api/wire",
        "sess-xff",
        &[("x-forwarded-for", "10.1.2.3")],
        b"{}",
    )
    .await;
    assert_eq!(stepped_up(&resp), json!(["client_ip_not_in"]));
    assert_eq!(up2.requests().len(), 0);
}

// --------------------------------------------------------------------- time

fn hhmm(hour: u64) -> String {
    format!("{:02}:00", hour % 24)
}

#[tokio::test]
async fn outside_hours_follows_a_window_built_around_now() {
    let h = now_secs() / 3600 % 24;
    // [h-1, h+2) still holds "now" if the hour turns during the test, and
    // [h+2, h+4) cannot reach it; both wrap past midnight as overnight windows.
    let routes = format!(
        "
  - name: in-hours
    action: report.run
    match: {{ methods: [POST], path: /reports/run }}
    when:
      - outside_hours: {{ days: Mon-Sun, from: '{}', to: '{}', tz: UTC }}
    require: {{ methods: [token] }}
    hold: {{ mode: challenge }}
  - name: after-hours
    action: report.purge
    match: {{ methods: [POST], path: /reports/purge }}
    when:
      - outside_hours: {{ days: Mon-Sun, from: '{}', to: '{}', tz: UTC }}
    require: {{ methods: [token] }}
    hold: {{ mode: challenge }}
",
        hhmm(h + 23),
        hhmm(h + 2),
        hhmm(h + 2),
        hhmm(h + 4)
    );
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, &routes, "").await;

    let resp = post(&gw, "/reports/run", "sess-hours", &[], b"q=1").await;
    assert_eq!(resp.status, 200, "inside the window: {}", text(&resp));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(assertion_of(&seen[0]), None);

    let resp = post(&gw, "/reports/purge", "sess-hours", &[], b"q=1").await;
    assert_eq!(stepped_up(&resp), json!(["outside_hours"]));
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn an_old_session_steps_up_once_the_gateway_has_known_it_long_enough() {
    let clock = Arc::new(ManualClock::at_unix(now_secs()));
    let routes = "
  - name: export
    action: data.export
    match: { methods: [POST], path: /data/export }
    when:
      - session_age_over: 8h
    require: { methods: [token] }
    hold: { mode: challenge }
";
    let up = Upstream::start().await;
    let gw = Gateway::start_with_clock(up.addr, routes, "", clock.clone()).await;

    let resp = post(&gw, "/data/export", "sess-old", &[], b"").await;
    assert_eq!(resp.status, 200, "first sight: {}", text(&resp));
    clock.advance(Duration::from_secs(7 * 3600));
    let resp = post(&gw, "/data/export", "sess-old", &[], b"").await;
    assert_eq!(resp.status, 200, "7h old: {}", text(&resp));
    clock.advance(Duration::from_secs(2 * 3600));
    let resp = post(&gw, "/data/export", "sess-old", &[], b"").await;
    assert_eq!(stepped_up(&resp), json!(["session_age_over:8h"]));
    let resp = post(&gw, "/data/export", "sess-fresh", &[], b"").await;
    assert_eq!(resp.status, 200, "age is per session: {}", text(&resp));
    assert_eq!(up.requests().len(), 3);
}

// --------------------------------------------------------------------- body

const TRANSFERS: &str = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    when:
      - json: { pointer: /amount, gt: 10000 }
    require: { methods: [token] }
    hold: { mode: challenge }
  - name: payment
    action: money.pay
    match: { methods: [POST], path: /api/payments }
    when:
      - json: { pointer: /payment/amount, gt: 10000 }
    require: { methods: [token] }
    hold: { mode: challenge }
";

#[tokio::test]
async fn a_transfer_above_the_threshold_steps_up_and_one_below_passes_byte_for_byte() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, TRANSFERS, "").await;
    let json_ct = [("content-type", "application/json")];

    // Odd spacing, an escape and raw UTF-8: a gateway that re-serialised the
    // JSON it read would change these bytes.
    let small = "{ \"amount\" : 9999.5,\n  \"memo\": \"caf\\u00e9 \u{2615}\" }".as_bytes();
    let resp = post(&gw, "/api/transfers", "sess-json", &json_ct, small).await;
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.as_ref(), small, "forwarded byte-identical");
    assert_eq!(assertion_of(&seen[0]), None);

    let big = br#"{"amount": 25000, "to": "ACME"}"#;
    let resp = post(&gw, "/api/transfers", "sess-json", &json_ct, big).await;
    assert_eq!(stepped_up(&resp), json!(["json:/amount>10000"]));
    let ch = resp.json();

    // A number spelled as a JSON string is still that number.
    let quoted = br#"{"amount": "12000"}"#;
    let resp = post(&gw, "/api/transfers", "sess-json", &json_ct, quoted).await;
    assert_eq!(stepped_up(&resp), json!(["json:/amount>10000"]));
    assert_eq!(up.requests().len(), 1, "nothing above the threshold went upstream");

    let done = complete_with_token(&gw, &hold_id(&ch), "sess-json", &bound_token(&gw, &ch)).await;
    assert_eq!(done.status, 200, "{}", text(&done));
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body.as_ref(), big);
    let claims = verify_assertion(&gw, &assertion_of(&seen[1]).expect("assertion"));
    assert_eq!(claims["risk"], json!(["json:/amount>10000"]));
}

#[tokio::test]
async fn a_field_that_cannot_be_read_steps_up() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, TRANSFERS, "").await;
    let json_ct = ("content-type", "application/json");
    let cases: [(&[u8], (&str, &str), &str); 7] = [
        (
            br#"{"payment":{"amount":"12,000"}}"#,
            json_ct,
            "json:/payment/amount wrong_type",
        ),
        (
            br#"{"payment":{"amount":null}}"#,
            json_ct,
            "json:/payment/amount wrong_type",
        ),
        (
            br#"{"payment":{"amount":[20000]}}"#,
            json_ct,
            "json:/payment/amount wrong_type",
        ),
        (
            br#"{"payment":{"currency":"EUR"}}"#,
            json_ct,
            "json:/payment/amount missing",
        ),
        (br#"{"payment":"20000"}"#, json_ct, "json:/payment/amount missing"),
        (br#"{"amount":20000}"#, json_ct, "json:/payment/amount missing"),
        (b"", json_ct, "json:/payment/amount missing"),
    ];
    for (body, ct, reason) in cases {
        let resp = post(&gw, "/api/payments", "sess-nested", &[ct], body).await;
        assert_eq!(
            stepped_up(&resp),
            json!([reason]),
            "body {}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(up.requests().len(), 0, "every unreadable amount was held");

    // The same route does pass a readable amount below the threshold.
    let ok = br#"{"payment":{"amount":50,"currency":"EUR"}}"#;
    let resp = post(&gw, "/api/payments", "sess-nested", &[json_ct], ok).await;
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_and_never_forwarded() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, TRANSFERS, "").await;
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    let bodies: [(&[u8], &[&str]); 8] = [
        (br#"{"amount": 5"#, &[json]),
        (br#"{"amount": 5} {"amount": 50000}"#, &[json]),
        // Upstreams disagree on which duplicate wins.
        (br#"{"amount": 5, "Amount": 50000}"#, &[json]),
        (b"amount=50000", &[json]),
        // Read by its declared type only: Flask reads this form's `amount`
        // as 50000, Rack a body without a type as a form, and the
        // Werkzeug server the last of two types.
        (br#"{"amount": 5, "z": "&amount=50000&"}"#, &[form]),
        (br#"{"amount": 5, "z": "&amount=50000&"}"#, &[]),
        (br#"{"amount": 5, "z": "&amount=50000&"}"#, &[json, form]),
        (br#"{"amount": 5}"#, &["application/json, text/plain"]),
    ];
    for (body, types) in bodies {
        let headers: Vec<(&str, &str)> = types.iter().map(|t| ("content-type", *t)).collect();
        let resp = post(&gw, "/api/transfers", "sess-bad", &headers, body).await;
        assert_eq!(
            resp.status,
            400,
            "body {}: {}",
            String::from_utf8_lossy(body),
            text(&resp)
        );
        assert_eq!(resp.error_code(), "bad_request");
    }
    assert_eq!(up.requests().len(), 0);
    assert!(gw.gw.holds.open_holds().is_empty(), "no hold for a refused request");
}

#[tokio::test]
async fn a_form_field_decides_on_an_urlencoded_body() {
    let routes = "
  - name: card-limit
    action: card.limit
    match: { methods: [POST], path: /admin/limits }
    when:
      - form: { field: limit, gt: 1000 }
    require: { methods: [token] }
    hold: { mode: challenge }
";
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, routes, "").await;
    let form = ("content-type", "application/x-www-form-urlencoded; charset=utf-8");

    let low = b"card=4711&limit=500&note=caf%C3%A9+ok";
    let resp = post(&gw, "/admin/limits", "sess-form", &[form], low).await;
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.as_ref(), low);
    assert_eq!(assertion_of(&seen[0]), None);

    let cases: [(&[u8], &str); 3] = [
        (b"card=4711&limit=5000", "form:limit>1000"),
        // Frameworks that bind case-insensitively read this as `limit`.
        (b"LIMIT=5000", "form:limit>1000"),
        (b"limit=5%2C000", "form:limit wrong_type"),
    ];
    for (body, reason) in cases {
        let resp = post(&gw, "/admin/limits", "sess-form", &[form], body).await;
        assert_eq!(
            stepped_up(&resp),
            json!([reason]),
            "body {}",
            String::from_utf8_lossy(body)
        );
    }
    // Frameworks differ on which copy wins, a JSON body is not a form, and
    // neither is one without a type: each is refused before anything else.
    let refused: [(&[u8], &str); 4] = [
        (b"limit=500&limit=5000", form.1),
        (b"limit=500;limit=5000", form.1),
        (br#"{"limit":5}"#, "application/json"),
        (b"limit=5", ""),
    ];
    for (body, ct) in refused {
        let headers: &[(&str, &str)] = if ct.is_empty() { &[] } else { &[("content-type", ct)] };
        let resp = post(&gw, "/admin/limits", "sess-form", headers, body).await;
        assert_eq!(resp.status, 400, "{}", text(&resp));
        assert_eq!(resp.error_code(), "bad_request");
    }
    assert_eq!(up.requests().len(), 1);
    assert!(gw.gw.holds.open_holds().iter().all(|(m, _)| m.route == "card-limit"));
}

// ------------------------------------------------------------------ device

#[tokio::test]
async fn the_same_session_from_a_new_device_steps_up() {
    let routes = "
  - name: settings
    action: account.settings
    match: { methods: [POST], path: /account/settings }
    when:
      - new_device: true
    require: { methods: [token] }
    hold: { mode: challenge }
";
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, routes, "").await;
    let laptop = ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0");
    let phone = ("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 19_0) Safari/605.1");

    let resp = post(&gw, "/account/settings", "sess-dev", &[laptop], b"x=1").await;
    assert_eq!(resp.status, 200, "first sight: {}", text(&resp));
    let resp = post(&gw, "/account/settings", "sess-dev", &[laptop], b"x=2").await;
    assert_eq!(resp.status, 200, "same device again: {}", text(&resp));

    let resp = post(&gw, "/account/settings", "sess-dev", &[phone], b"x=3").await;
    assert_eq!(stepped_up(&resp), json!(["new_device"]));

    // Devices are remembered per session, and the first one stays the reference.
    let resp = post(&gw, "/account/settings", "sess-other", &[phone], b"x=4").await;
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let resp = post(&gw, "/account/settings", "sess-dev", &[laptop], b"x=5").await;
    assert_eq!(resp.status, 200, "{}", text(&resp));

    let bodies: Vec<Vec<u8>> = up.requests().iter().map(|r| r.body.to_vec()).collect();
    assert_eq!(
        bodies,
        [b"x=1".to_vec(), b"x=2".to_vec(), b"x=4".to_vec(), b"x=5".to_vec()]
    );
}

// ------------------------------------------------------------- combinators

const COMBOS: &str = "
  - name: all
    action: combo.all
    match: { methods: [POST], path: /combo/all }
    when:
      - all_of:
          - client_ip_not_in: [10.0.0.0/8]
          - json: { pointer: /amount, gt: 1000 }
    require: { methods: [token] }
    hold: { mode: challenge }
  - name: any
    action: combo.any
    match: { methods: [POST], path: /combo/any }
    when:
      - any_of:
          - header: { name: X-Env, in: [prod] }
          - client_ip_in: [192.0.2.0/24]
    require: { methods: [token] }
    hold: { mode: challenge }
  - name: not
    action: combo.not
    match: { methods: [POST], path: /combo/not }
    when:
      - not: { header: { name: X-Managed-Device, in: ['yes'] } }
    require: { methods: [token] }
    hold: { mode: challenge }
  - name: not-json
    action: combo.not-json
    match: { methods: [POST], path: /combo/not-json }
    when:
      - not: { json: { pointer: /approved, eq: true } }
    require: { methods: [token] }
    hold: { mode: challenge }
";

#[tokio::test]
async fn all_of_steps_up_only_when_every_child_fires() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, COMBOS, VIA_PROXY).await;
    let office = ("x-forwarded-for", "10.9.9.9");
    let home = ("x-forwarded-for", "198.51.100.4");
    let json_ct = ("content-type", "application/json");

    let resp = post(&gw, "/combo/all", "s", &[home, json_ct], br#"{"amount":5000}"#).await;
    assert_eq!(stepped_up(&resp), json!(["client_ip_not_in", "json:/amount>1000"]));
    for (who, body) in [(home, &br#"{"amount":50}"#[..]), (office, &br#"{"amount":5000}"#[..])] {
        let resp = post(&gw, "/combo/all", "s", &[who, json_ct], body).await;
        assert_eq!(
            resp.status,
            200,
            "{who:?} {}: {}",
            String::from_utf8_lossy(body),
            text(&resp)
        );
    }
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn any_of_steps_up_when_one_child_fires_and_names_each_that_did() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, COMBOS, VIA_PROXY).await;
    let lab = ("x-forwarded-for", "192.0.2.7");
    let prod = ("x-env", "prod");

    let resp = post(&gw, "/combo/any", "s", &[prod], b"").await;
    assert_eq!(stepped_up(&resp), json!(["header:x-env"]));
    let resp = post(&gw, "/combo/any", "s", &[lab], b"").await;
    assert_eq!(stepped_up(&resp), json!(["client_ip_in"]));
    let resp = post(&gw, "/combo/any", "s", &[prod, lab], b"").await;
    assert_eq!(stepped_up(&resp), json!(["header:x-env", "client_ip_in"]));
    // Sent twice, a header cannot be known to be what the upstream reads.
    let resp = post(&gw, "/combo/any", "s", &[("x-env", "dev"), ("x-env", "prod")], b"").await;
    assert_eq!(stepped_up(&resp), json!(["header:x-env ambiguous"]));
    assert_eq!(up.requests().len(), 0);

    let resp = post(&gw, "/combo/any", "s", &[("x-env", "staging")], b"").await;
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn not_inverts_a_known_answer_but_never_an_unknown_one() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, COMBOS, "").await;
    let json_ct = ("content-type", "application/json");

    let resp = post(&gw, "/combo/not", "s", &[], b"").await;
    assert_eq!(stepped_up(&resp), json!(["not(header:x-managed-device)"]));
    let resp = post(&gw, "/combo/not", "s", &[("x-managed-device", "yes")], b"").await;
    assert_eq!(resp.status, 200, "{}", text(&resp));

    let resp = post(&gw, "/combo/not-json", "s", &[json_ct], br#"{"approved":false}"#).await;
    assert_eq!(stepped_up(&resp), json!(["not(json:/approved=true)"]));
    // A body that leaves the field out must not pass as "not approved = false".
    let resp = post(&gw, "/combo/not-json", "s", &[json_ct], br#"{"note":"hi"}"#).await;
    assert_eq!(stepped_up(&resp), json!(["json:/approved missing"]));
    let resp = post(&gw, "/combo/not-json", "s", &[json_ct], br#"{"approved":"yes"}"#).await;
    assert_eq!(stepped_up(&resp), json!(["json:/approved wrong_type"]));
    let resp = post(&gw, "/combo/not-json", "s", &[json_ct], br#"{"approved":true}"#).await;
    assert_eq!(resp.status, 200, "{}", text(&resp));

    let targets: Vec<String> = up.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/combo/not", "/combo/not-json"]);
}

// -------------------------------------------------------------- sudo mode

const SUDO: &str = "
  - name: roles
    action: admin.roles
    match: { methods: [POST], path: '/admin/roles/([a-z]+)' }
    require: { methods: [token], max_age: 2m, reuse: 60s }
    hold: { mode: challenge }
  - name: keys
    action: admin.keys
    match: { methods: [POST], path: /admin/keys }
    require: { methods: [token], reuse: 60s }
    hold: { mode: challenge }
";

/// Steps `session` up on `target` with a token whose `auth_time` is
/// `auth_time`; returns the released request's assertion claims.
async fn step_up_once(
    gw: &Gateway,
    up: &Upstream,
    session: &str,
    target: &str,
    auth_time: u64,
) -> serde_json::Map<String, Value> {
    let (_, ch) = challenge(gw, session, target, b"grant").await;
    let token = gw.token(json!({"sid": ch["sid"], "txn": ch["txn"], "auth_time": auth_time}));
    let before = up.requests().len();
    let done = complete_with_token(gw, &hold_id(&ch), session, &token).await;
    assert_eq!(done.status, 200, "{}", text(&done));
    let seen = up.requests();
    assert_eq!(seen.len(), before + 1);
    let claims = verify_assertion(gw, &assertion_of(&seen[before]).expect("assertion"));
    assert_eq!(claims.get("reuse"), None, "a fresh step-up is not a reuse");
    claims
}

#[tokio::test]
async fn a_recent_step_up_covers_the_same_action_for_the_same_session_only() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, SUDO, "").await;
    let proved_at = now_secs() - 42;
    let first = step_up_once(&gw, &up, "sess-sudo", "/admin/roles/bob", proved_at).await;
    assert_eq!(first["auth_time"], json!(proved_at));

    // Another request for the same action: forwarded at once, no new proof.
    let resp = post(&gw, "/admin/roles/carol", "sess-sudo", &[], b"grant carol").await;
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].target, "/admin/roles/carol");
    assert_eq!(seen[1].body.as_ref(), b"grant carol");
    let claims = verify_assertion(&gw, &assertion_of(&seen[1]).expect("a reuse is still asserted"));
    assert_eq!(claims["reuse"], json!(true));
    assert_eq!(claims["auth_time"], json!(proved_at), "the original step-up's time");
    assert_eq!(claims["sub"], first["sub"]);
    assert_eq!(claims["act"], "admin.roles");
    assert_eq!(
        claims["txn"],
        json!(txn_of(&seen[1], "localhost")),
        "bound to the new request"
    );
    assert_ne!(claims["jti"], first["jti"]);
    assert_eq!(claims.get("hold"), None, "nothing was held");

    let resp = post(&gw, "/admin/roles/bob", "sess-stranger", &[], b"grant").await;
    assert_eq!(stepped_up(&resp), Value::Null, "another session gets no reuse");
    let resp = post(&gw, "/admin/keys", "sess-sudo", &[], b"rotate").await;
    assert_eq!(stepped_up(&resp), Value::Null, "another action gets no reuse");
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn the_reuse_window_closes() {
    let clock = Arc::new(ManualClock::at_unix(now_secs()));
    let up = Upstream::start().await;
    let gw = Gateway::start_with_clock(up.addr, SUDO, "", clock.clone()).await;
    step_up_once(&gw, &up, "sess-window", "/admin/keys", now_secs()).await;

    clock.advance(Duration::from_secs(50));
    let resp = post(&gw, "/admin/keys", "sess-window", &[], b"rotate").await;
    assert_eq!(resp.status, 200, "inside the 60s window: {}", text(&resp));
    clock.advance(Duration::from_secs(20));
    let resp = post(&gw, "/admin/keys", "sess-window", &[], b"rotate").await;
    stepped_up(&resp);
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn a_reuse_never_asserts_a_step_up_older_than_max_age() {
    let t0 = now_secs();
    let clock = Arc::new(ManualClock::at_unix(t0));
    let up = Upstream::start().await;
    let gw = Gateway::start_with_clock(up.addr, SUDO, "", clock.clone()).await;
    // 100s old against a 2m max_age: fresh enough when presented.
    step_up_once(&gw, &up, "sess-stale", "/admin/roles/bob", t0 - 100).await;
    let resp = post(&gw, "/admin/roles/bob", "sess-stale", &[], b"grant").await;
    assert_eq!(resp.status, 200, "reused while still fresh: {}", text(&resp));

    // Still inside the 60s reuse window, but the step-up is now 130s old.
    clock.advance(Duration::from_secs(30));
    let resp = post(&gw, "/admin/roles/bob", "sess-stale", &[], b"grant").await;
    assert_eq!(
        resp.status, 401,
        "an assertion with auth_time beyond the route's max_age was forwarded"
    );
    assert_eq!(up.requests().len(), 2);
}

// ------------------------------------------------------------- break-glass

/// A local webhook endpoint that records every JSON body POSTed to it.
struct Hook {
    url: String,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Hook {
    async fn start() -> Hook {
        use http_body_util::{BodyExt, Full};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind hook");
        let addr: SocketAddr = listener.local_addr().expect("hook addr");
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let rec = events.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let rec = rec.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let rec = rec.clone();
                        async move {
                            let bytes = req
                                .into_body()
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let event = serde_json::from_slice(&bytes)
                                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
                            rec.lock().expect("lock").push(event);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(bytes::Bytes::new())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Hook {
            url: format!("http://{addr}/hook"),
            events,
        }
    }

    fn named(&self, event: &str, hold: &str) -> Vec<Value> {
        self.events
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| e["event"] == event && e["hold_id"] == hold)
            .cloned()
            .collect()
    }

    /// Notifications are sent in the background; wait for one.
    async fn wait_for(&self, event: &str, hold: &str) -> Value {
        for _ in 0..1000 {
            if let Some(e) = self.named(event, hold).into_iter().next() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "webhook never received {event} for {hold}: {:?}",
            self.events.lock().expect("lock")
        );
    }
}

const APPROVAL_ROUTES: &str = "
  - name: agent-transfer
    action: treasury.transfer
    match: { methods: [POST], path: /api/agent/transfers }
    require: { methods: [token], approvals: 1, approvers: [ops] }
    hold: { mode: challenge, timeout: 2m }
    break_glass: { reason_required: true, replaces_approvals: true }
  - name: vendor-pay
    action: treasury.vendor
    match: { methods: [POST], path: /api/vendor }
    require: { methods: [token], approvals: 2, approvers: [ops] }
    hold: { mode: challenge, timeout: 2m }
    break_glass: { reason_required: true }
  - name: payroll
    action: treasury.payroll
    match: { methods: [POST], path: /api/payroll }
    require: { approvals: 1, approvers: [ops] }
    hold: { mode: challenge, timeout: 2m }
";

/// Indented, the first line continues the harness's own `stepup:` block.
fn approval_extra(hook: &Hook) -> String {
    use sha2::{Digest, Sha256};
    let key_sha256: String = Sha256::digest(b"olivia-api-key")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "  approvers: [ {{ name: olivia, groups: [ops], key_sha256: '{key_sha256}' }} ]\nnotify: {{ webhook: '{}' }}",
        hook.url
    )
}

fn audit_records(gw: &Gateway) -> Vec<Value> {
    std::fs::read_to_string(gw.dir.join("state/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

async fn break_glass(gw: &Gateway, hold: &str, session: &str, body: &Value) -> RawResponse {
    let c = cookie(session);
    complete_as(gw, hold, &[("cookie", &c)], body).await
}

#[tokio::test]
async fn break_glass_needs_a_reason_then_releases_once_audited_and_announced() {
    let hook = Hook::start().await;
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, APPROVAL_ROUTES, &approval_extra(&hook)).await;
    let body = br#"{"amount":90000,"payee":"payroll-provider"}"#;
    let (_, ch) = challenge(&gw, "sess-agent", "/api/agent/transfers", body).await;
    assert_eq!(ch["approvals"], json!(1));
    let hold = hold_id(&ch);

    // Not without the requester's own step-up, however good the reason.
    let resp = break_glass(
        &gw,
        &hold,
        "sess-agent",
        &json!({"method": "break_glass", "reason": "INC-4711: payroll stuck"}),
    )
    .await;
    assert_eq!(resp.status, 400, "{}", text(&resp));
    assert_eq!(resp.error_code(), "bad_request");
    assert_eq!(up.requests().len(), 0);
    let stepped = complete_with_token(&gw, &hold, "sess-agent", &bound_token(&gw, &ch)).await;
    assert_eq!(stepped.status, 202, "{}", text(&stepped));
    assert_eq!(up.requests().len(), 0, "the approval is still missing");

    // A reason a person can read: not empty, not blank, not invisible.
    for refused in [
        json!({"method": "break_glass"}),
        json!({"method": "break_glass", "reason": "   "}),
        json!({"method": "break_glass", "reason": "\u{200b}"}),
        json!({"method": "break_glass", "reason": "\u{200b}\u{2060}\u{feff} \u{202e}"}),
        json!({"method": "break_glass", "reason": "...!"}),
    ] {
        let resp = break_glass(&gw, &hold, "sess-agent", &refused).await;
        assert_eq!(resp.status, 400, "{refused}: {}", text(&resp));
        assert_eq!(resp.error_code(), "bad_request");
    }
    let resp = break_glass(
        &gw,
        &hold,
        "sess-intruder",
        &json!({"method": "break_glass", "reason": "let me"}),
    )
    .await;
    assert_eq!(resp.status, 403, "{}", text(&resp));
    assert_eq!(resp.error_code(), "session_mismatch");
    assert_eq!(up.requests().len(), 0);
    assert_eq!(status_state(&gw, &hold, "sess-agent").await, "pending");

    let reason = "INC-4711: payroll run stuck, approvers unreachable";
    let resp = break_glass(
        &gw,
        &hold,
        "sess-agent",
        &json!({"method": "break_glass", "reason": reason}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(resp.header("x-upstream"), Some("recorder"), "the upstream's own answer");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.as_ref(), body);
    let claims = verify_assertion(&gw, &assertion_of(&seen[0]).expect("assertion"));
    assert_eq!(claims["break_glass"], json!(true));
    assert_eq!(claims["hold"], json!(hold));
    assert_eq!(claims["txn"], json!(txn_of(&seen[0], "localhost")));
    assert_eq!(claims.get("approvers"), None, "nobody approved");

    let again = break_glass(
        &gw,
        &hold,
        "sess-agent",
        &json!({"method": "break_glass", "reason": reason}),
    )
    .await;
    assert_eq!(again.status, 409, "{}", text(&again));
    assert_eq!(again.error_code(), "already_released");
    assert_eq!(up.requests().len(), 1, "forwarded once");

    let records = audit_records(&gw);
    let used: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "break_glass.used" && r["hold"] == hold.as_str())
        .collect();
    assert_eq!(used.len(), 1, "only the accepted break-glass is recorded: {used:?}");
    assert_eq!(used[0]["reason"], reason);
    let released = records
        .iter()
        .find(|r| r["event"] == "hold.released" && r["hold"] == hold.as_str())
        .expect("hold.released recorded");
    assert!(
        used[0]["seq"].as_u64() < released["seq"].as_u64(),
        "the why before the release"
    );

    let event = hook.wait_for("hold.break_glass", &hold).await;
    assert_eq!(event["reason"], reason);
    assert_eq!(event["route"], "agent-transfer");
    assert_eq!(event["txn"], ch["txn"]);
    assert_eq!(hook.named("hold.break_glass", &hold).len(), 1);
}

#[tokio::test]
async fn a_route_without_break_glass_refuses_it() {
    let hook = Hook::start().await;
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, APPROVAL_ROUTES, &approval_extra(&hook)).await;
    // The requester stepped up on the session before (on a transfer that
    // still waits for its approval), so the gateway knows who asks.
    let first = step_up_first(&gw, "sess-payroll", "/api/agent/transfers", b"first").await;
    assert_eq!(first.status, 202, "{}", text(&first));
    let (_, ch) = challenge(&gw, "sess-payroll", "/api/payroll", b"run").await;
    let hold = hold_id(&ch);

    let resp = break_glass(
        &gw,
        &hold,
        "sess-payroll",
        &json!({"method": "break_glass", "reason": "urgent, honest"}),
    )
    .await;
    assert_eq!(resp.status, 400, "{}", text(&resp));
    assert_eq!(resp.error_code(), "bad_request");
    assert_eq!(up.requests().len(), 0);
    assert_eq!(status_state(&gw, &hold, "sess-payroll").await, "pending");
    assert!(
        !audit_records(&gw).iter().any(|r| r["event"] == "break_glass.used"),
        "a refused break-glass leaves no break_glass.used record"
    );
    // The pending notice proves the webhook works, so silence about break-glass means something.
    hook.wait_for("hold.pending", &hold).await;
    assert!(hook.named("hold.break_glass", &hold).is_empty());
}

/// Issue 13 #12: a route whose `break_glass:` does not say
/// `replaces_approvals: true` keeps its approvals, even after the
/// requester's own step-up and with a good reason; the attempt is refused
/// and nothing reaches the upstream.
#[tokio::test]
async fn break_glass_replaces_approvals_only_where_the_route_says_so() {
    let hook = Hook::start().await;
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, APPROVAL_ROUTES, &approval_extra(&hook)).await;
    let (_, ch) = challenge(&gw, "sess-vendor", "/api/vendor", b"pay").await;
    assert_eq!(ch["approvals"], json!(2));
    let hold = hold_id(&ch);
    let stepped = complete_with_token(&gw, &hold, "sess-vendor", &bound_token(&gw, &ch)).await;
    assert_eq!(stepped.status, 202, "{}", text(&stepped));
    let resp = break_glass(
        &gw,
        &hold,
        "sess-vendor",
        &json!({"method": "break_glass", "reason": "INC-9: vendor will cut us off"}),
    )
    .await;
    assert_eq!(resp.status, 400, "{}", text(&resp));
    assert_eq!(resp.error_code(), "bad_request");
    assert_eq!(up.requests().len(), 0);
    assert_eq!(status_state(&gw, &hold, "sess-vendor").await, "pending");
    assert!(!audit_records(&gw).iter().any(|r| r["event"] == "break_glass.used"));
    hook.wait_for("hold.pending", &hold).await;
    assert!(hook.named("hold.break_glass", &hold).is_empty());
}

// ------------------------------------------------------------------ caller

#[tokio::test]
async fn a_caller_without_a_client_certificate_is_a_person() {
    let routes = "
  - name: agents-only
    action: jobs.agent
    match: { caller: workload, methods: [POST], path: /api/jobs }
    deny: true
  - name: people
    action: jobs.person
    match: { caller: person, methods: [POST], path: /api/jobs }
    require: { methods: [token] }
    hold: { mode: challenge }
";
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, routes, "").await;
    let (_, ch) = challenge(&gw, "sess-person", "/api/jobs", b"run").await;
    assert_eq!(ch["route"], "people", "the workload route is skipped, not matched");
    assert_eq!(ch["action"], "jobs.person");
    assert_eq!(up.requests().len(), 0);
}

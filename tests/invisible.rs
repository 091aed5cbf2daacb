//! Invisible characters in display fields (issue 13 #13): a Bidi override
//! or a zero-width space must not disguise what a person approves. The
//! step-up page and the approvals API show them escaped. Real Flask behind.

mod common;
mod stepup_kit;

use common::upstreams::{Framework, RealUpstream};
use common::*;
use stepup_kit::{approvers_line, extra, ApproverKey};

const ROUTES: &str = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { methods: [token], approvals: 1, approvers: [treasury] }
    display: [ { label: Payee, json: /payee } ]
    hold: { mode: challenge }
";

#[tokio::test]
async fn bidi_and_zero_width_characters_are_shown_escaped_on_the_page_and_in_the_api() {
    let up = RealUpstream::start(Framework::Flask).await;
    let bob = ApproverKey::new("bob");
    let gw = Gateway::start(
        up.addr,
        ROUTES,
        &extra(&[approvers_line(&[bob.yaml(&["treasury"], false)])], ""),
    )
    .await;
    // Shown raw, "ACME\u{202E}ylatoT" reads as "ACMETotaly" turned around.
    let payee = "ACME\u{202E}ylatoT\u{200B}\u{2066}";
    let body = serde_json::json!({ "payee": payee, "amount": 5 }).to_string();
    let headers = [("cookie", "SESSIONID=invisible"), ("content-type", "application/json")];
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", "/api/transfers", &headers, body.as_bytes()),
    )
    .await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    let hold = resp.json()["hold_id"].as_str().expect("hold id").to_owned();
    let shown = r"ACME\u{202E}ylatoT\u{200B}\u{2066}";

    let auth = bob.bearer();
    let queue = raw(
        gw.addr,
        &gw.pki,
        &request("GET", "/.stepup/holds", &[("authorization", auth.as_str())], b""),
    )
    .await;
    assert_eq!(queue.status, 200, "{}", String::from_utf8_lossy(&queue.body));
    let text = String::from_utf8_lossy(&queue.body).into_owned();
    let q: serde_json::Value = serde_json::from_str(&text).expect("json");
    let display = q["holds"][0]["display"].to_string();
    // JSON text: each escaping backslash is itself escaped.
    assert!(display.contains(r"ACME\\u{202E}ylatoT\\u{200B}\\u{2066}"), "{display}");
    for c in ['\u{202E}', '\u{200B}', '\u{2066}'] {
        assert!(!text.contains(c), "the API carries U+{:04X} raw: {text}", c as u32);
    }

    let page = raw(
        gw.addr,
        &gw.pki,
        &request(
            "GET",
            &format!("/.stepup/holds/{hold}"),
            &[("cookie", "SESSIONID=invisible"), ("accept", "text/html")],
            b"",
        ),
    )
    .await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body).into_owned();
    assert!(html.contains(shown), "{html}");
    for c in ['\u{202E}', '\u{200B}', '\u{2066}'] {
        assert!(!html.contains(c), "the page carries U+{:04X} raw", c as u32);
    }
    assert!(up.ran_handler("transfer").is_empty());
}

//! The hold lifecycle in one pass: challenge, token proof, release, signed
//! assertion whose txn matches what the upstream received.

mod common;

use common::*;

#[tokio::test]
async fn challenge_then_token_releases_once_with_a_verifiable_assertion() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let cookie = ("cookie", "SESSIONID=s3cr3t-session");
    let body = br#"{"confirm":true}"#;
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            "/admin/users/bob/delete",
            &[cookie, ("content-type", "application/json")],
            body,
        ),
    )
    .await;
    assert_eq!(resp.status, 401);
    let ch = resp.json();
    assert_eq!(ch["error"], "step_up_required");
    assert_eq!(ch["route"], "delete-user");
    assert_eq!(ch["sid"], gw.sid("s3cr3t-session"));
    assert!(resp
        .header("www-authenticate")
        .expect("challenge header")
        .starts_with("StepUp hold=\""));
    assert_eq!(up.count("/admin"), 0, "nothing reaches the upstream before a proof");

    let hold = ch["hold_id"].as_str().expect("hold id");
    let token = gw.token(serde_json::json!({"sid": ch["sid"], "txn": ch["txn"]}));
    let complete = serde_json::json!({"method": "token", "token": token}).to_string();
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            &format!("/.stepup/holds/{hold}/complete"),
            &[cookie, ("content-type", "application/json")],
            complete.as_bytes(),
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.header("x-upstream"), Some("recorder"));

    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/admin/users/bob/delete");
    assert_eq!(&r.body[..], body);
    let claims = verify_assertion(&gw, &r.header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["txn"], txn_of(r, "localhost"));
    assert_eq!(claims["txn"], ch["txn"]);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["hold"], hold);
    assert_eq!(claims["act"], "user.delete");

    let again = raw(
        gw.addr,
        &gw.pki,
        &request("POST", &format!("/.stepup/holds/{hold}/complete"), &[cookie], b"{}"),
    )
    .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), "already_released");
    assert_eq!(up.requests().len(), 1);
}

//! Failure limits that a stranger cannot turn against a person (issue 13
//! #6): wrong codes count per person at one client address and per client
//! address, so an attacker's guesses slow down only the attacker. And the
//! code that confirmed a TOTP enrollment on the command line is refused for
//! every use, approver sign-in included (issue 21 #7). The two client
//! addresses come from a trusted proxy's X-Forwarded-For.
#![allow(clippy::unwrap_used)]

mod common;
mod pagekit;
mod stepup_kit;

use common::*;
use pagekit::*;
use serde_json::json;
use stepup_kit::*;

const TOP: &str = "trusted_proxies: [ 127.0.0.1/32 ]\n";

fn from(ip: &str) -> (&'static str, &str) {
    ("x-forwarded-for", ip)
}

/// A code that is wrong at the gateway's now (none of the steps it accepts).
fn wrong(s: &Setup, secret: &str) -> String {
    let near: Vec<String> = [0, 30, 60].iter().map(|d| pyotp_at(secret, s.now() + d - 30)).collect();
    (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|c| !near.contains(c))
        .unwrap()
}

async fn hold(s: &Setup, cookie: &str, ip: &str) -> String {
    let r = post_json(
        &s.gw,
        "/admin/users/carol/delete",
        &[("cookie", cookie), from(ip)],
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 401, "{}", body_text(&r));
    r.json()["hold_id"].as_str().unwrap().to_owned()
}

async fn totp(s: &Setup, cookie: &str, ip: &str, hold: &str, code: &str) -> RawResponse {
    post_json(
        &s.gw,
        &format!("/.stepup/holds/{hold}/complete"),
        &[("cookie", cookie), from(ip)],
        &json!({"method": "totp", "user": "alice", "code": code}),
    )
    .await
}

#[tokio::test]
async fn a_strangers_wrong_codes_slow_down_the_stranger_and_never_lock_the_person_out() {
    let s = setup(TOP).await;
    let alice = enroll(&s.gw.dir, "alice");
    let bad = wrong(&s, &alice);
    let attacker = "203.0.113.7";

    // 20 wrong codes for alice from the attacker's address, over as many
    // throwaway sessions and holds as it takes.
    let mut n = 0;
    let mut sessions = 0;
    while n < 20 {
        sessions += 1;
        let cookie = format!("SESSIONID=thrower-{sessions}");
        let h = hold(&s, &cookie, attacker).await;
        loop {
            let r = totp(&s, &cookie, attacker, &h, &bad).await;
            n += 1;
            if r.status == 403 || n == 20 {
                break;
            }
            assert_eq!(r.error_code(), "invalid_proof", "{}", body_text(&r));
        }
    }
    // The attacker is now refused even with alice's right code, which is
    // therefore not spent.
    let code = pyotp_at(&alice, s.now());
    let cookie = "SESSIONID=thrower-last";
    let h = hold(&s, cookie, attacker).await;
    let r = totp(&s, cookie, attacker, &h, &code).await;
    assert_eq!(
        r.status,
        401,
        "the attacker's address is not slowed down: {}",
        body_text(&r)
    );
    assert_eq!(s.up.count("/admin/users/carol/delete"), 0);

    // Alice, from her own address, steps up with that same code.
    let mine = "SESSIONID=alice-own";
    let h = hold(&s, mine, "198.51.100.20").await;
    let r = totp(&s, mine, "198.51.100.20", &h, &code).await;
    assert_eq!(r.status, 200, "alice is locked out by a stranger: {}", body_text(&r));
    assert_eq!(s.up.count("/admin/users/carol/delete"), 1);
}

#[tokio::test]
async fn a_strangers_wrong_sign_ins_do_not_lock_the_approver_out() {
    let s = setup(TOP).await;
    let bad = wrong(&s, &s.bob_totp);
    let signin = |ip: &'static str, code: String| {
        let s = &s;
        async move {
            s.form(
                "/.stepup/approver/login",
                &[ORIGIN, from(ip)],
                &format!("name=bob&code={code}"),
            )
            .await
        }
    };
    for _ in 0..20 {
        assert_eq!(signin("203.0.113.9", bad.clone()).await.status, 401);
    }
    // Unknown names count against the sender too.
    for _ in 0..5 {
        let r = s
            .form(
                "/.stepup/approver/login",
                &[ORIGIN, from("203.0.113.9")],
                "name=nobody&code=123456",
            )
            .await;
        assert_eq!(r.status, 401);
    }
    assert_eq!(
        signin("203.0.113.9", s.bob_code(0)).await.status,
        401,
        "the stranger is not slowed"
    );
    let r = signin("198.51.100.21", s.bob_code(0)).await;
    assert_eq!(r.status, 303, "bob is locked out by a stranger: {}", body_text(&r));
}

#[tokio::test]
async fn the_enrollment_confirm_code_never_signs_an_approver_in() {
    let s = setup("").await;
    // bob enrolls again, the way an operator does on the command line.
    let run = stepgate(&s.gw.dir, &["enroll", "totp", "bob", "--force"]);
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);
    let otp = parse_otpauth(run.stdout.lines().find(|l| l.starts_with("otpauth://")).unwrap());
    let code = pyotp_at(&otp.secret, s.now());
    let run = stepgate(&s.gw.dir, &["enroll", "totp", "bob", "--confirm", &code]);
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);

    let r = s
        .form("/.stepup/approver/login", &[ORIGIN], &format!("name=bob&code={code}"))
        .await;
    assert_eq!(r.status, 401, "the confirm code signed bob in");
    assert!(r.header("set-cookie").is_none());
    let next = pyotp_at(&otp.secret, s.now() + 30);
    let r = s
        .form("/.stepup/approver/login", &[ORIGIN], &format!("name=bob&code={next}"))
        .await;
    assert_eq!(r.status, 303, "{}", body_text(&r));
}

/// Issue 21 #9: logout revokes the sign-in on the server, so a copy of the
/// cookie taken before it stops showing the queue at once.
#[tokio::test]
async fn logout_revokes_a_copied_approver_cookie() {
    let s = setup("").await;
    let bob = s.sign_in_bob().await;
    let copy = bob.clone();
    let q = get(&s.gw, "/.stepup/holds", &[("cookie", copy.as_str())]).await;
    assert_eq!(q.status, 200);
    let out = s
        .form("/.stepup/approver/logout", &[ORIGIN, ("cookie", bob.as_str())], "")
        .await;
    assert_eq!(out.status, 303);
    let q = get(&s.gw, "/.stepup/holds", &[("cookie", copy.as_str())]).await;
    assert_eq!(q.status, 403, "the copied cookie still works after logout");
    // A new sign-in is a new cookie, unaffected.
    s.clock.advance(std::time::Duration::from_secs(30));
    let again = s.sign_in_bob().await;
    assert_ne!(again, bob);
    let q = get(&s.gw, "/.stepup/holds", &[("cookie", again.as_str())]).await;
    assert_eq!(q.status, 200);
}

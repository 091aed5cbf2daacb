//! Cross-site requests to the gateway's own endpoints (SPEC §7): a page on
//! another site posts a form at `complete`, the sign-in, logout or a
//! decision, and the victim's browser attaches the victim's cookies. The
//! browser's `Origin` / `Sec-Fetch-Site` give it away; each such request
//! gets 403 `forbidden` and nothing happens. Requests with neither header
//! (API clients) are judged by their session as before. The same attack
//! from a real page in Chromium is `tests/browser.rs::cross_site_complete`.
#![allow(clippy::unwrap_used)]

mod common;
mod pagekit;
mod stepup_kit;

use common::*;
use pagekit::*;
use stepup_kit::*;

/// What a browser sends with a form another site posts, in the shapes
/// Chromium and Firefox use (Origin alone, Sec-Fetch-Site alone, both).
const CROSS: [&[(&str, &str)]; 5] = [
    &[("origin", "https://evil.example")],
    &[("origin", "null")],
    &[("sec-fetch-site", "cross-site")],
    // Another port of the same host is another origin, though the same site.
    &[("origin", "https://localhost:4443"), ("sec-fetch-site", "same-site")],
    &[("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")],
];

fn with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = base.to_vec();
    v.extend_from_slice(more);
    v
}

fn forbidden(r: &RawResponse, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", body_text(r));
    if r.header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        assert_eq!(r.json()["error"], "forbidden", "{what}");
    }
    assert!(r.header("set-cookie").is_none(), "{what} set a cookie");
}

/// A transfer waiting for bob, approved by him with his API key: the
/// victim's session only has to collect it. The victim was named on the
/// session by an earlier step-up (see `pagekit::step_up_on`).
async fn approved_transfer(s: &Setup, cookie: &str) -> String {
    let held = s
        .form("/api/transfers", &[("cookie", cookie)], "amount=25000&payee=ACME")
        .await;
    assert_eq!(held.status, 401, "{}", body_text(&held));
    let hold = held.json()["hold_id"].as_str().unwrap().to_owned();
    let txn = held.json()["txn"].as_str().unwrap().to_owned();
    let ok = approve(&s.gw, &s.bob, &hold, &txn).await;
    assert_eq!(ok.status, 200, "{}", body_text(&ok));
    hold
}

#[tokio::test]
async fn a_cross_site_complete_never_releases_the_victims_hold() {
    let s = setup("").await;
    let victim = "SESSIONID=victim-session";
    s.step_up_on(victim, "dana").await;
    let hold = approved_transfer(&s, victim).await;
    let complete = format!("/.stepup/holds/{hold}/complete");

    for headers in CROSS {
        let h = with(&[("cookie", victim)], headers);
        // The empty form that collects an approved hold, as a form and as a page.
        forbidden(&s.form(&complete, &h, "").await, &format!("collect {headers:?}"));
        forbidden(
            &s.form(&complete, &with(&h, &[HTML]), "").await,
            &format!("collect as a page {headers:?}"),
        );
        forbidden(
            &post_json(&s.gw, &complete, &h, &serde_json::json!({})).await,
            &format!("JSON collect {headers:?}"),
        );
    }
    assert_eq!(
        s.up.count("/api/transfers"),
        0,
        "a cross-site complete released the transfer"
    );

    // The victim's own page collects it.
    let own = s
        .form(
            &complete,
            &[("cookie", victim), ORIGIN, ("sec-fetch-site", "same-origin")],
            "",
        )
        .await;
    assert_eq!(own.status, 200, "{}", body_text(&own));
    assert_eq!(s.up.count("/api/transfers"), 1);

    // A browser that sends only Sec-Fetch-Site is judged by it too, and an
    // API client that sends neither header by its session, as before.
    let second = approved_transfer(&s, victim).await;
    let r = s
        .form(
            &format!("/.stepup/holds/{second}/complete"),
            &[("cookie", victim), ("sec-fetch-site", "same-origin")],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    let third = approved_transfer(&s, victim).await;
    let r = complete_json(&s, victim, &third).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert_eq!(s.up.count("/api/transfers"), 3);
}

async fn complete_json(s: &Setup, cookie: &str, hold: &str) -> RawResponse {
    complete(&s.gw, cookie, hold, serde_json::json!({})).await
}

#[tokio::test]
async fn cross_site_sign_in_logout_and_decisions_are_refused() {
    let s = setup("").await;
    let code = s.bob_code(0);
    let signin = format!("name=bob&code={code}");
    for headers in CROSS {
        forbidden(
            &s.form("/.stepup/approver/login", headers, &signin).await,
            &format!("sign-in {headers:?}"),
        );
        forbidden(
            &s.form("/.stepup/approver/login", &with(headers, &[HTML]), &signin)
                .await,
            &format!("sign-in page {headers:?}"),
        );
        forbidden(
            &post_json(
                &s.gw,
                "/.stepup/approver/login/options",
                headers,
                &serde_json::json!({"name": "bob"}),
            )
            .await,
            &format!("sign-in options {headers:?}"),
        );
        forbidden(
            &post_json(
                &s.gw,
                "/.stepup/enroll/options",
                headers,
                &serde_json::json!({"token": "x"}),
            )
            .await,
            &format!("enroll options {headers:?}"),
        );
    }
    // Issue 21 #8: no Origin, only `Sec-Fetch-Site: cross-site`. The code
    // was not used up by the refusals: bob still signs in with it.
    let bob = s.sign_in_bob().await;

    let victim = "SESSIONID=victim-two";
    s.step_up_on(victim, "dana").await;
    let held = s
        .form("/api/transfers", &[("cookie", victim)], "amount=25000&payee=ACME")
        .await;
    let hold = held.json()["hold_id"].as_str().unwrap().to_owned();
    let txn = held.json()["txn"].as_str().unwrap().to_owned();
    let next = s.bob_code(1);
    for headers in CROSS {
        let h = with(&[("cookie", bob.as_str())], headers);
        forbidden(
            &s.form(
                &format!("/.stepup/holds/{hold}/approve"),
                &h,
                &format!("txn={txn}&code={next}"),
            )
            .await,
            &format!("approve {headers:?}"),
        );
        forbidden(
            &s.form("/.stepup/approver/logout", &h, "").await,
            &format!("logout {headers:?}"),
        );
    }
    // Nothing was decided: the hold still waits for bob.
    let q = get(&s.gw, "/.stepup/holds", &[("cookie", bob.as_str())]).await;
    assert_eq!(q.status, 200);
    assert_eq!(q.json()["holds"][0]["hold_id"], hold.as_str());
    assert_eq!(s.up.count("/api/transfers"), 0);
}

//! The browser pages over real TLS: the step-up page and the enrollment
//! page, and the headers and escaping of every page. The no-JavaScript
//! paths (code form, "Continue" after an approval) are driven as a browser
//! without JavaScript would drive them, with plain form posts. TOTP codes
//! come from Python pyotp.
#![allow(clippy::unwrap_used)]

mod common;
// The demo's console lives in the binary; the test builds the same file.
#[path = "../src/cli/console.rs"]
mod console;
mod pagekit;
mod stepup_kit;

use common::*;
use pagekit::*;
use stepup_kit::*;

#[tokio::test]
async fn every_page_sends_the_strict_headers_and_only_nonced_inline_code() {
    let s = setup("").await;
    let c = "SESSIONID=pages-headers";
    enroll(&s.gw.dir, "alice");
    let held = s.form("/admin/users/carol/delete", &[HTML, ("cookie", c)], "").await;
    assert_eq!(held.status, 401);
    let html = assert_page(&held);
    assert!(held.header("www-authenticate").unwrap().starts_with("StepUp hold=\""));
    let complete = form_action(&html, "/complete");
    let hold = complete.split('/').nth(3).unwrap().to_owned();

    let again = get(&s.gw, &format!("/.stepup/holds/{hold}"), &[HTML, ("cookie", c)]).await;
    assert_eq!(again.status, 200);
    assert_page(&again);
    let wrong = s
        .form(&complete, &[HTML, ("cookie", c)], "method=totp&user=alice&code=000000")
        .await;
    assert_eq!(wrong.status, 401);
    assert_page(&wrong);

    let signin = get(&s.gw, "/.stepup/holds", &[HTML]).await;
    assert_eq!(signin.status, 200);
    assert!(assert_page(&signin).contains("<h1>Approver sign-in</h1>"));
    let bad = s
        .form("/.stepup/approver/login", &[HTML, ORIGIN], "name=bob&code=000000")
        .await;
    assert_eq!(bad.status, 401);
    assert!(assert_page(&bad).contains("role=\"alert\""));

    let bob = s.sign_in_bob().await;
    s.step_up_on("SESSIONID=pages-payer", "dana").await;
    let t = s
        .form(
            "/api/transfers",
            &[HTML, ("cookie", "SESSIONID=pages-payer")],
            "amount=9&payee=x",
        )
        .await;
    let t_hold = form_action(&page_text(&t), "/complete")
        .split('/')
        .nth(3)
        .unwrap()
        .to_owned();
    let list = get(&s.gw, "/.stepup/holds", &[HTML, ("cookie", &bob)]).await;
    assert_eq!(list.status, 200);
    assert!(assert_page(&list).contains("<h1>Pending approvals</h1>"));
    let review = get(&s.gw, &format!("/.stepup/holds/{t_hold}"), &[HTML, ("cookie", &bob)]).await;
    assert_eq!(review.status, 200);
    let review_html = assert_page(&review);
    let txn = hidden(&review_html, "txn");
    let decided = s
        .form(
            &format!("/.stepup/holds/{t_hold}/deny"),
            &[HTML, ORIGIN, ("cookie", &bob)],
            &format!("txn={txn}&code={}", s.bob_code(1)),
        )
        .await;
    assert_eq!(decided.status, 200, "{}", body_text(&decided));
    assert!(assert_page(&decided).contains("role=\"status\">Denied."));

    let enroll_bad = get(&s.gw, "/.stepup/enroll?token=nope", &[HTML]).await;
    assert!(assert_page(&enroll_bad).contains("This enrollment link is not valid"));
    let gone = s
        .form(
            "/.stepup/holds/AAAAAAAAAAAAAAAAAAAAAA/complete",
            &[HTML, ("cookie", c)],
            "",
        )
        .await;
    assert_eq!(gone.status, 404);
    assert_page(&gone);
}

#[tokio::test]
async fn nothing_from_the_request_reaches_a_page_unescaped() {
    let evil = "<script>alert(1)</script>\"'><img src=x>";
    let s = setup("trusted_proxies: [127.0.0.1/32]\nidentity: { header: X-Remote-User }").await;
    let c = "SESSIONID=pages-escape";
    let who = "eve<script>alert(\"who\")</script>'";
    let body = format!(
        "amount={}&payee={}",
        form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
    );
    let held = s
        .form(
            "/api/transfers?q=%22%3E%3Cscript%3E'",
            &[HTML, ("cookie", c), ("x-remote-user", who)],
            &body,
        )
        .await;
    assert_eq!(held.status, 401, "{}", body_text(&held));
    let held_delete = s
        .form(
            "/admin/users/x'%22%3Cb%3E/delete",
            &[HTML, ("cookie", "SESSIONID=pages-escape-2"), ("x-remote-user", who)],
            "",
        )
        .await;
    let bob = s.sign_in_bob().await;
    let hold = form_action(&page_text(&held), "/complete")
        .split('/')
        .nth(3)
        .unwrap()
        .to_owned();
    let review = get(&s.gw, &format!("/.stepup/holds/{hold}"), &[HTML, ("cookie", &bob)]).await;
    let list = get(&s.gw, "/.stepup/holds", &[HTML, ("cookie", &bob)]).await;
    let signin = s
        .form(
            "/.stepup/approver/login",
            &[HTML, ORIGIN],
            &format!(
                "name={}&code=1",
                form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
            ),
        )
        .await;
    for (what, r) in [
        ("step-up page", &held),
        ("step-up page (delete)", &held_delete),
        ("review", &review),
        ("list", &list),
        ("sign-in", &signin),
    ] {
        let html = assert_page(r);
        for raw_markup in ["<script>alert", "<img src=x>", "\"'>", "'\"<b>"] {
            assert!(!html.contains(raw_markup), "{what} echoes {raw_markup:?}:\n{html}");
        }
    }
    // The templates quote every attribute with `"`, so `'` can end nothing
    // and stays as it is; `<`, `>`, `&` and `"` are always escaped.
    let held_html = page_text(&held);
    assert!(held_html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&gt;&lt;img src=x&gt;"));
    assert!(!held_html.contains("='"), "an attribute quoted with ' :\n{held_html}");
    let delete_html = page_text(&held_delete);
    assert!(
        delete_html.contains("Signed in as <b>eve&lt;script&gt;"),
        "{delete_html}"
    );
    assert!(delete_html.contains("value=\"eve&lt;script&gt;alert(&quot;who&quot;)&lt;/script&gt;'\""));
    assert!(page_text(&review).contains("eve&lt;script&gt;alert(&quot;who&quot;)"));
    assert!(delete_html.contains("x'"), "{delete_html}");
}

#[tokio::test]
async fn a_code_accepted_while_approvals_are_missing_returns_the_browser_to_its_page() {
    let s = setup("").await;
    let alice = enroll(&s.gw.dir, "alice");
    let c = "SESSIONID=pages-vendor";
    let held = s.form("/admin/vendors", &[HTML, ("cookie", c)], "name=x").await;
    let html = page_text(&held);
    assert!(html.contains("Authenticator code") && html.contains("Waiting for approval by 1 person"));
    let complete = form_action(&html, "/complete");
    let code = pyotp_at(&alice, s.now());
    let r = s
        .form(
            &complete,
            &[HTML, ("cookie", c)],
            &format!("method=totp&user=alice&code={code}"),
        )
        .await;
    assert_eq!(r.status, 303, "{}", body_text(&r));
    let back = get(&s.gw, r.header("location").unwrap(), &[HTML, ("cookie", c)]).await;
    let html = assert_page(&back);
    assert!(html.contains("Confirmed by <b>alice</b>"), "{html}");
    assert!(!html.contains("Confirm with code"), "the proof is not asked for twice");
    assert_eq!(s.up.requests().len(), 0);
}

/// The built-in demo console as the upstream: a real legacy app that
/// answers a delete with a redirect and logs what it executed.
#[tokio::test]
async fn the_no_javascript_code_form_lands_on_the_consoles_redirect() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console = listener.local_addr().unwrap();
    let log = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("console-{}.jsonl", stepgate::ids::random_token()));
    tokio::spawn(console::run(listener, Some(log.clone())));
    let gw = Gateway::start(console, ROUTES, "").await;
    let alice = enroll(&gw.dir, "alice");

    let login = post_form(&gw, "/login", &[], "user=admin&password=x").await;
    assert_eq!(login.status, 303);
    let session = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let c = session.as_str();
    let held = post_form(&gw, "/admin/users/carol/delete", &[HTML, ("cookie", c)], "").await;
    assert_eq!(held.status, 401);
    let html = assert_page(&held);
    for shown in [
        "<h1>Confirm this action</h1>",
        "User</dt><dd>carol",
        "role=\"timer\"",
        "Confirm with code",
    ] {
        assert!(html.contains(shown), "{shown}:\n{html}");
    }
    let complete = form_action(&html, "/complete");

    let wrong = wrong_code(&alice);
    let r = post_form(
        &gw,
        &complete,
        &[HTML, ("cookie", c)],
        &format!("method=totp&user=alice&code={wrong}"),
    )
    .await;
    assert_eq!(r.status, 401);
    let html = assert_page(&r);
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(html.contains("4 attempts left"), "{html}");
    assert!(
        html.contains("name=\"user\" value=\"alice\""),
        "the user name is kept:\n{html}"
    );
    assert!(!html.trim_start().starts_with('{'), "a page, not JSON");

    fresh_step(5).await;
    let r = post_form(
        &gw,
        &complete,
        &[HTML, ("cookie", c)],
        &format!("method=totp&user=alice&code={}", pyotp_now(&alice)),
    )
    .await;
    assert_eq!(r.status, 303, "the console's own redirect: {}", body_text(&r));
    assert_eq!(r.header("location"), Some("/admin/users"));
    let list = get(&gw, "/admin/users", &[("cookie", c)]).await;
    let text = body_text(&list);
    assert!(text.contains("User <b>carol</b> was deleted"), "{text}");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["method"], "POST");
    assert_eq!(lines[0]["path"], "/admin/users/carol/delete");
    let claims = verify_assertion(&gw, lines[0]["assertion"].as_str().unwrap());
    assert_eq!(claims["amr"], serde_json::json!(["otp"]));
    assert_eq!(claims["sub"], "alice");
    let _ = std::fs::remove_file(log);
}

#[tokio::test]
async fn the_enrollment_page_names_the_user_of_a_valid_link_only() {
    let s = setup("").await;
    let no_webauthn = get(&s.gw, "/.stepup/enroll?token=whatever", &[HTML]).await;
    assert!(assert_page(&no_webauthn).contains("This enrollment link is not valid"));

    let up = Upstream::start().await;
    let webauthn = vec!["webauthn: { rp_id: localhost, origins: [ \"https://localhost\" ] }".to_owned()];
    let gw = Gateway::start(up.addr, ROUTES, &extra(&webauthn, "")).await;
    let token = "tok\"><script>alert(1)</script>";
    let store = stepgate::users::UserStore::open(&gw.dir.join("state/users.yaml"));
    store
        .update(|f| {
            f.users.entry("al<i>ce".into()).or_default().webauthn_enroll =
                Some(stepgate::users::EnrollToken::new(token, now_secs() + 600));
        })
        .unwrap();
    let query: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let ok = get(&gw, &format!("/.stepup/enroll?token={query}"), &[HTML]).await;
    assert_eq!(ok.status, 200, "{}", body_text(&ok));
    let html = assert_page(&ok);
    for shown in [
        "<h1>Register a passkey</h1>",
        "<b>al&lt;i&gt;ce</b>",
        "Register passkey</button>",
    ] {
        assert!(html.contains(shown), "{shown}:\n{html}");
    }
    assert!(html.contains("data-token=\"tok&quot;&gt;&lt;script&gt;"), "{html}");
    assert!(!html.contains("<script>alert"), "{html}");
    for bad in ["tok", "", &format!("{query}x")] {
        let r = get(&gw, &format!("/.stepup/enroll?token={bad}"), &[HTML]).await;
        assert_eq!(r.status, 403);
        assert!(assert_page(&r).contains("This enrollment link is not valid"));
    }
}

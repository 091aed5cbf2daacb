//! `stepgate demo`: a small legacy admin console to put the gateway in
//! front of. It knows nothing about step-up: it has a login, a user list
//! with delete buttons, a secrets page, a money transfer and settings, and
//! it shows the `X-StepUp-Assertion` it receives so the effect is visible.

use crate::body::{full, Body};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

#[derive(Default)]
struct Console {
    users: Mutex<BTreeSet<String>>,
    sessions: Mutex<BTreeSet<String>>,
    log: Mutex<Vec<String>>,
}

/// Serves the console on `listener` until the process ends.
pub async fn run(listener: TcpListener) {
    let console = Arc::new(Console::default());
    if let Ok(mut u) = console.users.lock() {
        for name in ["alice", "bob", "carol", "dave", "mallory"] {
            u.insert(name.to_owned());
        }
    }
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let console = console.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let console = console.clone();
                async move { Ok::<_, Infallible>(route(&console, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn esc(s: &str) -> String {
    crate::proxy::page_escape(s)
}

fn page(title: &str, body: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{t} · Acme Admin</title><style>{CSS}</style></head>\
         <body><header><b>Acme Admin</b> <span>legacy console · unchanged</span><a href=/admin>Dashboard</a><a href=/admin/secrets>Secrets</a><a href=/admin/transfer>Transfer</a><a href=/admin/settings>Settings</a></header><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    );
    let mut r = Response::new(full(html));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn redirect(to: &str, cookie: Option<String>) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = to.parse() {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| c.parse().ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

fn session(req: &Request<Incoming>) -> Option<String> {
    let cookies = req.headers().get(header::COOKIE)?.to_str().ok()?;
    cookies
        .split(';')
        .find_map(|c| c.trim().strip_prefix("SESSIONID=").map(str::to_owned))
}

/// The assertion the gateway attached, decoded for display (the console
/// trusts the gateway's TLS-terminated connection; a real upstream would
/// verify it against /.stepup/jwks.json).
fn assertion_note(req_headers: &http::HeaderMap) -> String {
    let Some(token) = req_headers.get("x-stepup-assertion").and_then(|v| v.to_str().ok()) else {
        return "<p class=warn>No X-StepUp-Assertion: this request was not stepped up.</p>".into();
    };
    match crate::jose::jws::decode(token) {
        Ok(d) => {
            let c = &d.claims;
            format!(
                "<p class=ok>Stepped up: <b>{}</b> via {} for <code>{}</code> (txn <code>{}</code>).</p>",
                esc(c.get("sub").and_then(|v| v.as_str()).unwrap_or("?")),
                esc(&c.get("amr").map(|v| v.to_string()).unwrap_or_default()),
                esc(c.get("act").and_then(|v| v.as_str()).unwrap_or("?")),
                esc(c.get("txn").and_then(|v| v.as_str()).unwrap_or("?")),
            )
        }
        Err(_) => "<p class=warn>Unreadable assertion.</p>".into(),
    }
}

async fn route(console: &Console, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let logged_in = session(&req).is_some_and(|s| console.sessions.lock().map(|l| l.contains(&s)).unwrap_or(false));
    if path == "/" || path == "/login" {
        if req.method() == Method::POST {
            let sid = crate::ids::random_token();
            if let Ok(mut s) = console.sessions.lock() {
                s.insert(sid.clone());
            }
            return redirect(
                "/admin",
                Some(format!("SESSIONID={sid}; Path=/; HttpOnly; Secure; SameSite=Lax")),
            );
        }
        return page(
            "Sign in",
            "<form method=post action=/login><label>User <input name=user value=admin></label>\
             <label>Password <input name=password type=password value=demo></label><button>Sign in</button></form>\
             <p class=hint>Any password works: this console is a stand-in for the app you cannot change.</p>",
        );
    }
    if !logged_in {
        return redirect("/", None);
    }
    let headers = req.headers().clone();
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let log = |line: String| {
        if let Ok(mut l) = console.log.lock() {
            l.push(line);
        }
    };
    match (method, path.as_str()) {
        (Method::GET, "/admin") => {
            let users = console.users.lock().map(|u| u.clone()).unwrap_or_default();
            let rows: String = users
                .iter()
                .map(|u| {
                    format!(
                        "<tr><td>{u}</td><td><form method=post action=/admin/users/{u}/delete><button class=danger>Delete</button></form></td></tr>",
                        u = esc(u)
                    )
                })
                .collect();
            let history: String = console
                .log
                .lock()
                .map(|l| l.iter().rev().take(8).map(|x| format!("<li>{x}</li>")).collect())
                .unwrap_or_default();
            page("Dashboard", &format!("<h2>Users</h2><table>{rows}</table><h2>Recent actions</h2><ul>{history}</ul>"))
        }
        (Method::POST, p) if p.starts_with("/admin/users/") && p.ends_with("/delete") => {
            let name = p.trim_start_matches("/admin/users/").trim_end_matches("/delete").to_owned();
            let removed = console.users.lock().map(|mut u| u.remove(&name)).unwrap_or(false);
            log(format!("deleted user <b>{}</b> {}", esc(&name), assertion_note(&headers)));
            if removed {
                redirect("/admin", None)
            } else {
                page("No such user", &format!("<p>{} does not exist.</p>", esc(&name)))
            }
        }
        (Method::GET, "/admin/secrets") => page(
            "Secrets",
            &format!("{}<pre>DATABASE_PASSWORD=correct-horse-battery-staple\nAPI_KEY=ak_live_4f9c2e</pre>", assertion_note(&headers)),
        ),
        (Method::GET, "/admin/transfer") => page(
            "Transfer money",
            "<form method=post action=/api/transfers><label>Payee <input name=payee value=\"ACME Supplies\"></label>\
             <label>Amount (EUR) <input name=amount value=25000></label><button>Send</button></form>\
             <p class=hint>Amounts over 10,000 need a step-up.</p>",
        ),
        (Method::POST, "/api/transfers") => {
            log(format!("transfer of {} to {} {}", esc(&field("amount")), esc(&field("payee")), assertion_note(&headers)));
            page(
                "Transfer sent",
                &format!("<p>Sent {} EUR to {}.</p>{}", esc(&field("amount")), esc(&field("payee")), assertion_note(&headers)),
            )
        }
        (Method::GET, "/admin/settings") => page(
            "Settings",
            "<form method=post action=/admin/settings><label>Maintenance mode <input name=maintenance value=off></label><button>Save</button></form>",
        ),
        (Method::POST, "/admin/settings") => {
            log(format!("settings saved {}", assertion_note(&headers)));
            page("Settings saved", &assertion_note(&headers))
        }
        _ => {
            let mut r = page("Not found", "<p>No such page.</p>");
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

const CSS: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;background:#f6f6f4;color:#222}header{background:#2b3a4a;color:#fff;padding:.7rem 1.5rem;display:flex;gap:1.2rem;align-items:center}header span{color:#9fb3c8;font-size:.85rem;margin-right:auto}header a{color:#fff}main{max-width:48rem;margin:2rem auto;padding:0 1rem}table{border-collapse:collapse}td{padding:.3rem 1rem .3rem 0}form{display:flex;gap:.6rem;flex-wrap:wrap;align-items:end}label{display:grid}input{padding:.4rem}button{padding:.4rem .9rem}.danger{background:#b3261e;color:#fff;border:0;border-radius:4px}.ok{background:#e6f4ea;padding:.5rem}.warn{background:#fff4e5;padding:.5rem}.hint{color:#666}";

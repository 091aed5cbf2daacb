//! `stepgate demo`: a small legacy admin console to put the gateway in
//! front of. It knows nothing about step-up: it has a login, a user list
//! with delete buttons, a secrets page, a money transfer and settings. It
//! shows the `X-StepUp-Assertion` it receives, so the effect is visible,
//! and records every privileged request it carries out, with that
//! assertion, as one JSON line in its log file.

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use stepgate::body::{full, Body};
use tokio::net::TcpListener;

struct Person {
    email: &'static str,
    role: &'static str,
    last_login: &'static str,
}

const PEOPLE: [(&str, Person); 5] = [
    (
        "alice",
        Person {
            email: "alice@acme.example",
            role: "Finance",
            last_login: "2 hours ago",
        },
    ),
    (
        "bob",
        Person {
            email: "bob@acme.example",
            role: "Treasury",
            last_login: "yesterday",
        },
    ),
    (
        "carol",
        Person {
            email: "carol@acme.example",
            role: "Support",
            last_login: "3 days ago",
        },
    ),
    (
        "dave",
        Person {
            email: "dave@acme.example",
            role: "Engineering",
            last_login: "last week",
        },
    ),
    (
        "mallory",
        Person {
            email: "mallory@contractor.example",
            role: "Contractor",
            last_login: "never",
        },
    ),
];

#[derive(Default)]
struct Console {
    users: Mutex<BTreeSet<String>>,
    /// Session id → signed-in user name.
    sessions: Mutex<HashMap<String, String>>,
    /// Session id → a note for the next page (after a redirect).
    flash: Mutex<HashMap<String, String>>,
    history: Mutex<Vec<String>>,
    maintenance: Mutex<String>,
    log: Option<PathBuf>,
}

/// Serves the console on `listener` until the process ends. `log` is the
/// JSON-lines file of executed privileged requests.
pub async fn run(listener: TcpListener, log: Option<PathBuf>) {
    let console = Arc::new(Console {
        log,
        maintenance: Mutex::new("off".into()),
        ..Console::default()
    });
    if let Ok(mut u) = console.users.lock() {
        u.extend(PEOPLE.iter().map(|(n, _)| (*n).to_owned()));
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
    stepgate::proxy::page_escape(s)
}

fn page(title: &str, user: Option<&str>, active: &str, body: &str) -> Response<Body> {
    let nav: String = [
        ("/admin", "Dashboard"),
        ("/admin/users", "Users"),
        ("/admin/transfer", "Payments"),
        ("/admin/secrets", "Secrets"),
        ("/admin/settings", "Settings"),
    ]
    .iter()
    .map(|(href, label)| {
        let cls = if *href == active { " class=on" } else { "" };
        format!("<a href={href}{cls}>{label}</a>")
    })
    .collect();
    let (nav, who) = match user {
        Some(u) => (
            format!("<nav>{nav}</nav>"),
            format!("<span class=who>{} · <a href=/logout>Log out</a></span>", esc(u)),
        ),
        None => (String::new(), String::new()),
    };
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>{t} · Acme Admin</title><style>{CSS}</style></head>\
         <body><header><b>ACME</b> Admin Console <small>v4.2.1</small>{who}</header>\
         <div class=wrap>{nav}<main><h1>{t}</h1>{body}</main></div>\
         <footer>© 2009–2026 Acme Corp. Internal use only.</footer></body></html>",
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

fn session(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies
        .split(';')
        .find_map(|c| c.trim().strip_prefix("SESSIONID=").map(str::to_owned))
}

/// The assertion the gateway attached, decoded for display (the console
/// trusts the gateway's TLS-terminated connection; a real upstream would
/// verify it against /.stepup/jwks.json).
fn assertion_note(headers: &HeaderMap) -> String {
    let Some(token) = headers.get("x-stepup-assertion").and_then(|v| v.to_str().ok()) else {
        return "<p class=warn>No X-StepUp-Assertion: this request was not stepped up.</p>".into();
    };
    match stepgate::jose::jws::decode(token) {
        Ok(d) => {
            let c = &d.claims;
            let s = |k: &str| esc(c.get(k).and_then(|v| v.as_str()).unwrap_or("?"));
            let list = |k: &str| {
                c.get(k)
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                esc(x
                                    .as_str()
                                    .or_else(|| x.get("sub").and_then(|s| s.as_str()))
                                    .unwrap_or("?"))
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            let (amr, approvers) = (list("amr"), list("approvers"));
            let how = match (amr.is_empty(), approvers.is_empty()) {
                (false, true) => format!("Stepped up by <b>{}</b> with {amr} ({})", s("sub"), s("acr")),
                (false, false) => format!(
                    "Stepped up by <b>{}</b> with {amr}, approved by <b>{approvers}</b>",
                    s("sub")
                ),
                (true, false) => format!("Approved by <b>{approvers}</b>"),
                (true, true) => format!("Released for <b>{}</b> ({})", s("sub"), s("acr")),
            };
            format!(
                "<p class=ok>X-StepUp-Assertion: {how}, for <code>{}</code>, txn <code>{}</code>.</p>",
                s("act"),
                s("txn"),
            )
        }
        Err(_) => "<p class=warn>Unreadable assertion.</p>".into(),
    }
}

impl Console {
    /// One line per privileged request carried out: what, and the
    /// assertion that came with it (null when none did).
    fn record(&self, method: &Method, path: &str, headers: &HeaderMap, note: String) {
        let assertion = headers.get("x-stepup-assertion").and_then(|v| v.to_str().ok());
        if let Some(path_buf) = &self.log {
            let line = serde_json::json!({"method": method.as_str(), "path": path, "assertion": assertion});
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path_buf)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = written {
                tracing::warn!(error = %e, "console log not written");
            }
        }
        if let Ok(mut h) = self.history.lock() {
            h.push(note);
        }
    }

    fn flash(&self, sid: &str, note: String) {
        if let Ok(mut f) = self.flash.lock() {
            f.insert(sid.to_owned(), note);
        }
    }

    fn take_flash(&self, sid: &str) -> String {
        self.flash
            .lock()
            .ok()
            .and_then(|mut f| f.remove(sid))
            .unwrap_or_default()
    }
}

async fn route(console: &Console, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let sid = session(req.headers());
    let user = sid
        .as_ref()
        .and_then(|s| console.sessions.lock().ok().and_then(|l| l.get(s).cloned()));
    if path == "/" || path == "/login" {
        if req.method() == Method::POST {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let name = form_urlencoded::parse(&body)
                .find(|(k, _)| k == "user")
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "admin".into());
            let sid = stepgate::ids::random_token();
            if let Ok(mut s) = console.sessions.lock() {
                s.insert(sid.clone(), name);
            }
            return redirect(
                "/admin",
                Some(format!("SESSIONID={sid}; Path=/; HttpOnly; Secure; SameSite=Lax")),
            );
        }
        return page(
            "Sign in",
            None,
            "",
            "<form method=post action=/login class=box><label>Username <input name=user value=admin autocomplete=username></label>\
             <label>Password <input name=password type=password value=demo autocomplete=current-password></label><button>Sign in</button></form>\
             <p class=hint>Any password works: this console stands in for the application you cannot change.</p>",
        );
    }
    let (Some(sid), Some(user)) = (sid, user) else {
        return redirect("/", None);
    };
    if path == "/logout" {
        if let Ok(mut s) = console.sessions.lock() {
            s.remove(&sid);
        }
        return redirect("/", Some("SESSIONID=; Path=/; Max-Age=0; Secure".into()));
    }
    let (parts, body) = req.into_parts();
    let (method, headers) = (parts.method, parts.headers);
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let form: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let show = |title: &str, active: &str, body: &str| page(title, Some(&user), active, body);
    match (method.clone(), path.as_str()) {
        (Method::GET, "/admin") => {
            let count = console.users.lock().map(|u| u.len()).unwrap_or(0);
            let history: String = console
                .history
                .lock()
                .map(|l| l.iter().rev().take(8).map(|x| format!("<li>{x}</li>")).collect())
                .unwrap_or_default();
            let history = if history.is_empty() { "<li class=hint>Nothing yet.</li>".into() } else { history };
            show(
                "Dashboard",
                "/admin",
                &format!(
                    "<div class=tiles><div><b>{count}</b>active users</div><div><b>€ 1,284,330</b>balance</div><div><b>3</b>open tickets</div></div>\
                     <h2>Recent privileged actions</h2><ul class=history>{history}</ul>"
                ),
            )
        }
        (Method::GET, "/admin/users") => {
            let users = console.users.lock().map(|u| u.clone()).unwrap_or_default();
            let rows: String = PEOPLE
                .iter()
                .filter(|(n, _)| users.contains(*n))
                .map(|(n, p)| {
                    format!(
                        "<tr><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td><form method=post action=/admin/users/{n}/delete>\
                         <button class=danger aria-label=\"Delete {n}\">Delete</button></form></td></tr>",
                        p.email, p.role, p.last_login
                    )
                })
                .collect();
            show(
                "Users",
                "/admin/users",
                &format!(
                    "{}<table><thead><tr><th>Username</th><th>Email</th><th>Department</th><th>Last login</th><th></th></tr></thead><tbody>{rows}</tbody></table>",
                    console.take_flash(&sid)
                ),
            )
        }
        (Method::POST, p) if p.starts_with("/admin/users/") && p.ends_with("/delete") => {
            let name = p.trim_start_matches("/admin/users/").trim_end_matches("/delete").to_owned();
            let removed = console.users.lock().map(|mut u| u.remove(&name)).unwrap_or(false);
            let note = assertion_note(&headers);
            console.record(&method, p, &headers, format!("deleted user <b>{}</b> {note}", esc(&name)));
            if removed {
                console.flash(&sid, format!("<p class=done>User <b>{}</b> was deleted.</p>{note}", esc(&name)));
                redirect("/admin/users", None)
            } else {
                show("No such user", "/admin/users", &format!("<p>{} does not exist.</p>", esc(&name)))
            }
        }
        (Method::GET, "/admin/secrets") => {
            let note = assertion_note(&headers);
            console.record(&method, "/admin/secrets", &headers, format!("viewed the secrets {note}"));
            show(
                "Secrets",
                "/admin/secrets",
                &format!(
                    "{note}<table><tr><th>Name</th><th>Value</th></tr><tr><td>DATABASE_PASSWORD</td><td><code>correct-horse-battery-staple</code></td></tr>\
                     <tr><td>PAYMENTS_API_KEY</td><td><code>ak_live_4f9c2e7d</code></td></tr><tr><td>SMTP_PASSWORD</td><td><code>s3cr3t-mail</code></td></tr></table>"
                ),
            )
        }
        (Method::GET, "/admin/transfer") => show(
            "Payments",
            "/admin/transfer",
            "<form method=post action=/api/transfers class=box><label>Payee <input name=payee value=\"ACME Supplies Ltd\"></label>\
             <label>IBAN <input name=iban value=\"DE89 3704 0044 0532 0130 00\"></label>\
             <label>Amount (EUR) <input name=amount value=25000 inputmode=numeric></label><button>Send payment</button></form>\
             <p class=hint>Payments over 10,000 EUR need a second person's approval.</p>",
        ),
        (Method::POST, "/api/transfers") => {
            let note = assertion_note(&headers);
            let (amount, payee) = (esc(&field("amount")), esc(&field("payee")));
            console.record(&method, "/api/transfers", &headers, format!("sent {amount} EUR to {payee} {note}"));
            show(
                "Payment sent",
                "/admin/transfer",
                &format!("<p class=done>Sent <b>{amount} EUR</b> to <b>{payee}</b>.</p>{note}"),
            )
        }
        (Method::GET, "/admin/settings") => {
            let current = console.maintenance.lock().map(|m| m.clone()).unwrap_or_default();
            let opt = |v: &str| {
                let sel = if current == v { " selected" } else { "" };
                format!("<option{sel}>{v}</option>")
            };
            show(
                "Settings",
                "/admin/settings",
                &format!(
                    "{}<form method=post action=/admin/settings class=box><label>Maintenance mode <select name=maintenance>{}{}</select></label>\
                     <label>Session timeout (minutes) <input name=timeout value=480></label><button>Save settings</button></form>",
                    console.take_flash(&sid),
                    opt("off"),
                    opt("on")
                ),
            )
        }
        (Method::POST, "/admin/settings") => {
            let note = assertion_note(&headers);
            if let Ok(mut m) = console.maintenance.lock() {
                *m = if field("maintenance") == "on" { "on".into() } else { "off".into() };
            }
            console.record(&method, "/admin/settings", &headers, format!("changed the settings {note}"));
            console.flash(&sid, format!("<p class=done>Settings saved.</p>{note}"));
            redirect("/admin/settings", None)
        }
        _ => {
            let mut r = show("Not found", "", "<p>No such page.</p>");
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

const CSS: &str = "body{font:14px/1.45 Tahoma,Verdana,Segoe UI,sans-serif;margin:0;background:#e9edf1;color:#1f2a36;display:flex;flex-direction:column;min-height:100vh}\
header{background:linear-gradient(#2f4d6e,#243c57);color:#fff;padding:.6rem 1.2rem;display:flex;gap:.5rem;align-items:baseline;border-bottom:3px solid #e3a21a}\
header small{color:#a9bfd6}.who{margin-left:auto;color:#d7e3ef}.who a{color:#fff}\
.wrap{display:flex;flex:1}nav{width:11rem;background:#f7f9fb;border-right:1px solid #c9d3dd;padding:1rem 0}\
nav a{display:block;padding:.45rem 1.2rem;color:#24405e;text-decoration:none}nav a.on{background:#dfe8f1;font-weight:bold;border-left:3px solid #2f4d6e}\
main{flex:1;padding:1.2rem 2rem;max-width:60rem}h1{font-size:1.35rem;margin:.2rem 0 1rem;color:#243c57}h2{font-size:1.05rem;color:#243c57}\
table{border-collapse:collapse;background:#fff;border:1px solid #c9d3dd;min-width:36rem}th{background:#dfe8f1;text-align:left}\
th,td{padding:.45rem .8rem;border-bottom:1px solid #e3e8ee}tr:nth-child(even) td{background:#f8fafc}\
.box{background:#fff;border:1px solid #c9d3dd;padding:1rem;display:grid;gap:.7rem;max-width:26rem}label{display:grid;gap:.2rem;font-weight:bold}\
input,select{font:inherit;padding:.35rem;border:1px solid #9aa9b8}button{font:inherit;padding:.35rem .9rem;background:#2f4d6e;color:#fff;border:1px solid #243c57;cursor:pointer}\
.danger{background:#b3261e;border-color:#8c1d17}td form{margin:0}\
.ok{background:#e6f4ea;border:1px solid #9bc7a8;padding:.5rem .7rem}.warn{background:#fff4e5;border:1px solid #e6c48f;padding:.5rem .7rem}\
.done{background:#e8f0fb;border:1px solid #9db6dd;padding:.5rem .7rem}.hint{color:#5b6775}code{background:#eef2f6;padding:0 .25rem}\
.tiles{display:flex;gap:1rem;margin-bottom:1rem}.tiles div{background:#fff;border:1px solid #c9d3dd;padding:.8rem 1.2rem;display:grid;color:#5b6775}.tiles b{font-size:1.3rem;color:#1f2a36}\
.history{background:#fff;border:1px solid #c9d3dd;padding:.6rem 1.6rem}.history li{margin:.3rem 0}.history p{display:inline;padding:.1rem .4rem;border:0}\
footer{color:#6b7885;font-size:.8rem;padding:.6rem 1.2rem;border-top:1px solid #c9d3dd;background:#f7f9fb}";

//! `stepgate explain` as an operator runs it (SPEC §8): the real binary on a
//! real config file, asked what the gateway would do with one request.

use std::path::PathBuf;
use std::process::Command;

const CONFIG: &str = "listen: 127.0.0.1:0
tls: { cert: cert.pem, key: key.pem }
upstream: http://127.0.0.1:9
session: { cookie: SESSIONID }
assertion: { key: assertion.pem, issuer: stepgate, audience: legacy }
routes:
  - name: delete-user
    action: user.delete
    match: { methods: [POST, DELETE], path: '/admin/users/([^/]+)(/delete)?' }
    when:
      - client_ip_not_in: [10.0.0.0/8]
      - outside_hours: { days: Mon-Fri, from: '08:00', to: '18:00', tz: Europe/Berlin }
      - json: { pointer: /amount, gt: 10000 }
      - session_age_over: 8h
      - new_device: true
    require: { methods: [totp], max_age: 5m, reuse: 60s }
    hold: { mode: challenge, timeout: 2m }
  - name: agent-transfer
    action: treasury.transfer
    match: { caller: workload, methods: [POST], path: /api/transfers }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: hold, timeout: 10m }
    break_glass: { reason_required: true }
  - name: no-raw-sql
    match: { prefix: /admin/sql }
    deny: true
  - name: items-shadow
    match: { methods: [POST], prefix: /api/items }
    hold: { mode: shadow }
  - name: item-delete
    action: item.delete
    match: { methods: [DELETE], path: '/api/items/[0-9]+' }
    require: { methods: [totp] }
";

const DELETE_URL: &str = "https://gw.example/admin/users/bob/delete";
/// Tuesday 11:00 in Berlin: inside the office window.
const OFFICE_HOURS: &str = "2026-11-24T10:00:00Z";

/// A temp dir with the config and body files; removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("stepgate-explain-{}", stepgate::ids::random_token()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("routes.yaml"), CONFIG).expect("write config");
        std::fs::write(dir.join("small.json"), br#"{"amount": 250}"#).expect("write body");
        std::fs::write(dir.join("big.json"), br#"{"amount": 25000}"#).expect("write body");
        std::fs::write(dir.join("broken.json"), br#"{"amount": 25000"#).expect("write body");
        std::fs::write(dir.join("override.form"), b"name=x&_method=DELETE").expect("write body");
        Dir(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    /// Runs `stepgate explain ARGS --config routes.yaml`.
    fn explain(&self, args: &[&str]) -> Run {
        let config = self.path("routes.yaml");
        let out = Command::new(env!("CARGO_BIN_EXE_stepgate"))
            .arg("explain")
            .args(args)
            .args(["--config", &config])
            .env_remove("RUST_LOG")
            .output()
            .expect("run stepgate");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A request that no condition of `delete-user` objects to; `extra`
    /// replaces a default `--ip`, `--at` or `--body` (clap refuses an option
    /// given twice) or adds arguments, to make exactly one thing risky.
    fn calm_delete(&self, extra: &[&str]) -> Run {
        let small = self.path("small.json");
        let mut options = vec![("--ip", "10.1.2.3"), ("--at", OFFICE_HOURS), ("--body", small.as_str())];
        let mut rest = Vec::new();
        let mut it = extra.iter();
        while let Some(arg) = it.next() {
            match options.iter_mut().find(|(name, _)| name == arg) {
                Some(option) => option.1 = it.next().expect("an option needs a value"),
                None => rest.push(*arg),
            }
        }
        // The route reads its body as JSON, so the body says it is JSON.
        let mut args = vec!["POST", DELETE_URL, "-H", "Content-Type: application/json"];
        for (name, value) in options {
            args.extend([name, value]);
        }
        args.extend(rest);
        self.explain(&args)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The value of the output line labelled `label` (`fired:`), if any.
    fn field(&self, label: &str) -> Option<String> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_owned())
    }

    fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    /// The conditions that fired, or None when the request would pass unheld.
    fn fired(&self) -> Option<String> {
        match self.field("fired:") {
            Some(f) => Some(f),
            None => {
                let decision = self.field("decision:").unwrap_or_default();
                assert!(decision.contains("forwarded unheld"), "{}", self.stdout);
                None
            }
        }
    }
}

#[test]
fn a_risky_request_names_its_route_every_fired_condition_and_the_requirements() {
    let dir = Dir::new();
    let body = dir.path("big.json");
    let run = dir
        .explain(&[
            "POST",
            DELETE_URL,
            "--ip",
            "203.0.113.5",
            "--at",
            "2026-11-24T22:00:00Z",
            "--body",
            &body,
            "-H",
            "Content-Type: application/json",
            "--session-age",
            "9h",
            "--new-device",
        ])
        .ok();
    assert_eq!(run.field("request:").as_deref(), Some("POST /admin/users/bob/delete"));
    assert_eq!(run.field("route:").as_deref(), Some("delete-user (action user.delete)"));
    assert_eq!(
        run.fired().as_deref(),
        Some("client_ip_not_in, outside_hours, json:/amount>10000, session_age_over:8h, new_device")
    );
    let requires = run.field("requires:").expect("requirements are printed");
    assert!(requires.contains("[totp]"), "{requires}");
    assert!(requires.contains("max_age 300s"), "{requires}");
    assert!(requires.contains("reusable for 60s"), "{requires}");
    let hold = run.field("hold:").expect("hold mode is printed");
    assert!(
        hold.starts_with("mode challenge (answer 401 step_up_required"),
        "{hold}"
    );
    assert!(hold.ends_with("timeout 120s"), "{hold}");
    assert!(
        !hold.contains("Challenge"),
        "the mode is printed as Rust's Debug: {hold}"
    );
}

#[test]
fn a_calm_request_on_a_sensitive_route_is_forwarded_unheld() {
    let dir = Dir::new();
    let run = dir.calm_delete(&["--session-age", "1h"]).ok();
    assert_eq!(run.field("route:").as_deref(), Some("delete-user (action user.delete)"));
    assert_eq!(run.fired(), None);
    assert_eq!(
        run.field("requires:"),
        None,
        "nothing is required of a request that passes"
    );
}

#[test]
fn each_condition_fires_on_its_own() {
    let dir = Dir::new();
    let big = dir.path("big.json");
    let cases: [(&[&str], &str); 4] = [
        (&["--ip", "198.51.100.7"], "client_ip_not_in"),
        (&["--at", "2026-11-28T10:00:00Z"], "outside_hours"),
        (&["--body", &big], "json:/amount>10000"),
        (&["--new-device"], "new_device"),
    ];
    for (extra, reason) in cases {
        let run = dir.calm_delete(extra).ok();
        assert_eq!(run.fired().as_deref(), Some(reason), "{extra:?}");
    }
    // No body at all is no amount, which the gateway holds (fail closed).
    let run = dir
        .explain(&["POST", DELETE_URL, "--ip", "10.1.2.3", "--at", OFFICE_HOURS])
        .ok();
    assert_eq!(run.fired().as_deref(), Some("json:/amount missing"));
}

#[test]
fn session_age_fires_only_past_the_limit() {
    let dir = Dir::new();
    let run = dir.calm_delete(&["--session-age", "9h"]).ok();
    assert_eq!(run.fired().as_deref(), Some("session_age_over:8h"));
    for young in ["1h", "8h"] {
        let run = dir.calm_delete(&["--session-age", young]).ok();
        assert_eq!(run.fired(), None, "a {young} old session is not over 8h");
    }
}

#[test]
fn office_hours_are_read_in_the_routes_time_zone() {
    let dir = Dir::new();
    let cases = [
        // Tue 11:00 CET, as Unix seconds.
        ("1795514400", false),
        // Tue 18:30 CET: the window ends at 18:00.
        ("2026-11-24T17:30:00Z", true),
        // Sat 11:00: not a weekday.
        ("2026-11-28T10:00:00Z", true),
        // Tue 08:30 CEST: inside only if summer time is applied.
        ("2026-07-07T06:30:00Z", false),
        // Tue 18:30 CEST: outside only if summer time is applied.
        ("2026-07-07T16:30:00Z", true),
    ];
    for (at, outside) in cases {
        let run = dir.calm_delete(&["--at", at]).ok();
        let want = outside.then(|| "outside_hours".to_owned());
        assert_eq!(run.fired(), want, "--at {at}");
    }
}

#[test]
fn a_request_no_route_matches_is_forwarded_untouched() {
    let dir = Dir::new();
    for (method, url) in [
        ("GET", "https://gw.example/public/index.html"),
        // The path matches, the method does not.
        ("GET", DELETE_URL),
    ] {
        let run = dir.explain(&[method, url]).ok();
        let route = run.field("route:").expect("route line");
        assert!(
            route.starts_with("none") && route.contains("forwarded untouched"),
            "{route}"
        );
        assert_eq!(run.field("requires:"), None);
    }
    // An override header is matched like the method it names.
    let run = dir
        .explain(&["GET", DELETE_URL, "-H", "X-HTTP-Method-Override: DELETE"])
        .ok();
    assert_eq!(
        run.field("route:").as_deref(),
        Some("delete-user (action user.delete) as DELETE")
    );
}

#[test]
fn an_ambiguous_path_is_a_400_before_any_route() {
    let dir = Dir::new();
    for url in [
        "https://gw.example/a/%2e%2e/%2e%2e/..",
        "https://gw.example/admin/users%2Fbob/delete",
    ] {
        let run = dir.explain(&["POST", url]).ok();
        assert!(run.stdout.starts_with("400 bad_request"), "{url}: {}", run.stdout);
        assert_eq!(run.field("route:"), None, "{url}");
    }
}

#[test]
fn a_header_the_gateway_refuses_is_a_400_not_a_forward() {
    // The gateway answers 400 to any header name with `_` (SPEC §2), so
    // explain must not promise a forward or a step-up for it.
    let dir = Dir::new();
    let run = dir
        .explain(&["GET", "https://gw.example/public", "-H", "X_StepUp_Assertion: forged"])
        .ok();
    assert!(run.stdout.starts_with("400 bad_request"), "{}", run.stdout);
    assert_eq!(run.field("route:"), None);
    let run = dir.calm_delete(&["-H", "X_Forwarded_For: 10.1.2.3"]).ok();
    assert!(run.stdout.starts_with("400 bad_request"), "{}", run.stdout);
}

#[test]
fn a_body_that_is_not_json_is_a_400_on_a_route_that_reads_it() {
    let dir = Dir::new();
    let broken = dir.path("broken.json");
    let run = dir.calm_delete(&["--body", &broken]).ok();
    let decision = run.field("decision:").expect("a decision");
    assert!(decision.starts_with("400 bad_request"), "{decision}");
    assert_eq!(run.field("requires:"), None);
    // Only as its one declared type: the gateway's reading, not a guess.
    let run = dir.calm_delete(&["-H", "Content-Type: text/plain"]).ok();
    let decision = run.field("decision:").expect("a decision");
    assert!(decision.starts_with("400 bad_request"), "{decision}");
}

#[test]
fn deny_routes_and_caller_kinds() {
    let dir = Dir::new();
    let run = dir.explain(&["GET", "https://gw.example/admin/sql/run"]).ok();
    assert_eq!(run.field("route:").as_deref(), Some("no-raw-sql (action no-raw-sql)"));
    assert!(run.field("decision:").expect("decision").starts_with("403 forbidden"));

    let url = "https://gw.example/api/transfers";
    let run = dir.explain(&["POST", url, "--workload"]).ok();
    assert_eq!(
        run.field("route:").as_deref(),
        Some("agent-transfer (action treasury.transfer)")
    );
    let requires = run.field("requires:").expect("requirements");
    assert!(
        requires.contains("1 approval(s)") && requires.contains("treasury"),
        "{requires}"
    );
    assert_eq!(run.field("break-glass:").as_deref(), Some("allowed with a reason"));

    // No route here is for people, so the workload route still governs a
    // person: leaving the certificate out must not open the path.
    let run = dir.explain(&["POST", url]).ok();
    assert_eq!(
        run.field("route:").as_deref(),
        Some("agent-transfer (action treasury.transfer)"),
        "{}",
        run.stdout
    );
}

#[test]
fn bad_input_exits_2_with_a_message() {
    let dir = Dir::new();
    let missing = dir.path("no-such-body.json");
    let cases: [&[&str]; 9] = [
        &["GE T", DELETE_URL],
        &["POST", "http://[::1"],
        &["GET", DELETE_URL, "-H", "NoColon"],
        &["GET", DELETE_URL, "-H", "Bad Name: x"],
        &["GET", DELETE_URL, "-H", "X-Ok: bad\u{1}value"],
        &["GET", DELETE_URL, "--at", "yesterday"],
        &["GET", DELETE_URL, "--session-age", "forever"],
        &["GET", DELETE_URL, "--ip", "10.0.0.300"],
        &["POST", DELETE_URL, "--body", &missing],
    ];
    for args in cases {
        let run = dir.explain(args);
        assert_eq!(run.code, Some(2), "{args:?}: {} {}", run.stdout, run.stderr);
        assert!(!run.stderr.trim().is_empty(), "{args:?} says why");
        assert!(run.stdout.is_empty(), "{args:?} explains nothing: {}", run.stdout);
    }
}

#[test]
fn a_broken_config_exits_2_naming_the_place() {
    let dir = Dir::new();
    let bad = CONFIG.replace("session_age_over: 8h", "session_age_over: soon");
    std::fs::write(dir.0.join("routes.yaml"), bad).expect("write config");
    let run = dir.explain(&["GET", DELETE_URL]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("routes.yaml:"), "{}", run.stderr);
    assert!(run.stderr.contains("routes[0].when"), "{}", run.stderr);
}

#[test]
fn an_invalid_host_is_a_400_before_any_route() {
    // The gateway refuses these (SPEC §2): nginx and Express read each as
    // `admin.example`, so no `host:` route could be trusted to see them.
    let dir = Dir::new();
    for host in ["admin.example:abc", "admin.example:1:2", "admin.example,x", "a b"] {
        let run = dir
            .explain(&["GET", "/admin/sql/run", "-H", &format!("Host: {host}")])
            .ok();
        assert!(run.stdout.starts_with("400 bad_request"), "{host}: {}", run.stdout);
        assert_eq!(run.field("route:"), None, "{host}");
    }
    let run = dir
        .explain(&["GET", "/admin/sql/run", "-H", "Host: Admin.Example.:8443"])
        .ok();
    assert_eq!(run.field("route:").as_deref(), Some("no-raw-sql (action no-raw-sql)"));
}

#[test]
fn an_override_is_explained_as_the_stricter_reading() {
    // As the gateway does (SPEC §2): matched under both methods, and the
    // DELETE hold wins over the earlier shadow route for POST.
    let dir = Dir::new();
    let url = "https://gw.example/api/items/9";
    let run = dir.explain(&["POST", url]).ok();
    assert_eq!(
        run.field("route:").as_deref(),
        Some("items-shadow (action items-shadow)")
    );
    let form = dir.path("override.form");
    for args in [
        vec!["POST", url, "-H", "X-HTTP-Method-Override: DELETE"],
        vec!["POST", "https://gw.example/api/items/9?x=1;_method=delete"],
        vec![
            "POST",
            url,
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
            "--body",
            &form,
        ],
    ] {
        let run = dir.explain(&args).ok();
        assert_eq!(
            run.field("route:").as_deref(),
            Some("item-delete (action item.delete) as DELETE"),
            "{args:?}: {}",
            run.stdout
        );
    }
}

#[test]
fn the_gateway_prefix_in_any_case_is_never_forwarded() {
    let dir = Dir::new();
    for url in [
        "https://gw.example/.stepup/jwks.json",
        "https://gw.example/.STEPUP/holds/x",
        "https://gw.example/.StepUp;x/approvals",
    ] {
        let run = dir.explain(&["GET", url]).ok();
        let route = run.field("route:").expect("route line");
        assert!(route.starts_with("the gateway's own endpoint"), "{url}: {route}");
    }
    let run = dir.explain(&["GET", "https://gw.example/.stepupx/a"]).ok();
    assert!(
        run.field("route:").is_some_and(|r| r.starts_with("none")),
        "{}",
        run.stdout
    );
}

#[test]
fn explain_refuses_what_the_gateway_refuses_and_names_a_missing_session() {
    let dir = Dir::new();
    // Host and the URL's authority disagree: the gateway answers 400
    // before any route, so explain must not name one.
    let run = dir
        .explain(&["GET", "https://gw.example/admin/sql/run", "-H", "Host: other.example"])
        .ok();
    assert!(run.stdout.starts_with("400 bad_request"), "{}", run.stdout);
    assert_eq!(run.field("route:"), None);
    // Without a session the gateway answers 401 no_session; explain says so
    // first, then what it would do with one.
    let run = dir.explain(&["DELETE", "https://gw.example/api/items/9"]).ok();
    let session = run.field("session:").expect("the missing session is named");
    assert!(session.contains("401 no_session"), "{session}");
    let run = dir
        .explain(&[
            "DELETE",
            "https://gw.example/api/items/9",
            "-H",
            "Cookie: SESSIONID=abc",
        ])
        .ok();
    assert_eq!(run.field("session:"), None, "{}", run.stdout);
    assert!(run.field("hold:").is_some(), "{}", run.stdout);
}

//! The command line as a user meets it (SPEC §8): the real binary, real
//! files, exit codes 0 / 2, and errors an editor can jump to.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Six lines, so the first route is on line 7 of every file below.
const BASE: &str = "listen: 127.0.0.1:0
tls: { cert: cert.pem, key: key.pem }
upstream: http://127.0.0.1:9
session: { cookie: SESSIONID }
assertion: { key: assertion.pem, issuer: stepgate, audience: legacy }
routes:
";

struct Dir(PathBuf);

impl Dir {
    /// A directory with the certificate and keys BASE names (secrets 0600):
    /// `check` and `serve` refuse missing key files.
    fn new() -> Dir {
        let dir = Dir::bare();
        write_keys(&dir.0);
        dir
    }

    fn bare() -> Dir {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("stepgate-cli-{}", stepgate::ids::random_token()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }
}

fn write_keys(dir: &Path) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).expect("cert");
    stepgate::keys::write_private(&dir.join("key.pem"), certified.signing_key.serialize_pem().as_bytes()).expect("key");
    let (_, pem) = stepgate::assertion::generate_signing_key();
    stepgate::keys::write_private(&dir.join("assertion.pem"), pem.as_bytes()).expect("assertion key");
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary to completion. `serve` would run forever on a valid
/// config, so a run that outlives the deadline is killed and fails the test
/// instead of hanging it.
fn stepgate(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stepgate");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("wait for stepgate"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("stepgate {args:?} did not exit");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check(config: &Path) -> Output {
    stepgate(&["check", "--config", config.to_str().expect("utf-8 path")])
}

/// Asserts exit 2 and exactly one stderr line `FILE:LINE:COL: message`
/// whose message starts with `message`; returns that line.
fn assert_located(out: &Output, file: &Path, line: usize, col: usize, message: &str) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {stderr:?}");
    let want = format!("{}:{line}:{col}: {message}", file.display());
    assert!(
        lines[0].starts_with(&want),
        "want a line starting with\n  {want}\ngot\n  {}",
        lines[0]
    );
    lines[0].to_owned()
}

#[test]
fn valid_file_checks_ok() {
    let dir = Dir::new();
    let f = dir.write(
        "routes.yaml",
        &format!(
            "{BASE}  - name: delete-user
    match: {{ methods: [POST], path: '/admin/users/[^/]+' }}
    require: {{ users: [alice] }}
  - name: sql
    match: {{ prefix: /admin/sql }}
    deny: true
"
        ),
    );
    let out = check(&f);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "no warnings for this file");
    assert_eq!(text(&out.stdout).trim_end(), format!("{}: ok (2 routes)", f.display()));
}

#[test]
fn yaml_syntax_error_is_located_at_the_offending_colon() {
    let dir = Dir::new();
    // Line 7, column 17 is the second `:` of `name: delete: user`.
    let f = dir.write(
        "routes.yaml",
        &format!("{BASE}  - name: delete: user\n    match: {{ path: /a }}\n"),
    );
    let line = assert_located(&check(&f), &f, 7, 17, "mapping values are not allowed in this context");
    assert!(!line.contains(" at line "), "location only once: {line}");
}

#[test]
fn unknown_keys_are_located_at_the_key() {
    let dir = Dir::new();
    // A misspelt route key in block style (line 9, column 5) ...
    let f = dir.write(
        "block.yaml",
        &format!(
            "{BASE}  - name: delete-user
    match: {{ methods: [POST], path: /a }}
    holdd: {{ mode: challenge }}
"
        ),
    );
    let line = assert_located(&check(&f), &f, 9, 5, "routes[0]: unknown field `holdd`");
    assert!(line.ends_with("; did you mean `hold`?"), "{line}");
    // ... and one inside a flow mapping (line 8, column 31).
    let f = dir.write(
        "flow.yaml",
        &format!("{BASE}  - name: delete-user\n    match: {{ methods: [POST], pth: /a }}\n"),
    );
    let line = assert_located(&check(&f), &f, 8, 31, "routes[0].match: unknown field `pth`");
    assert!(line.ends_with("; did you mean `path`?"), "{line}");
    // ... and at the top level (line 4, column 1).
    let f = dir.write(
        "top.yaml",
        &BASE.replacen("upstream:", "upstream: http://127.0.0.1:9\nupstreams:", 1),
    );
    let line = assert_located(&check(&f), &f, 4, 1, "unknown field `upstreams`");
    assert!(line.ends_with("; did you mean `upstream`?"), "{line}");
    // A key like nothing the file knows gets no guess.
    let f = dir.write(
        "far.yaml",
        &BASE.replacen(
            "upstream:",
            "upstream: http://127.0.0.1:9
zzzzqqq:",
            1,
        ),
    );
    let line = assert_located(&check(&f), &f, 4, 1, "unknown field `zzzzqqq`");
    assert!(!line.contains("did you mean"), "{line}");
}

#[test]
fn bad_regex_is_located_at_the_pattern() {
    let dir = Dir::new();
    // The pattern's opening quote is line 8, column 37.
    let f = dir.write(
        "routes.yaml",
        &format!(
            "{BASE}  - name: delete-user
    match: {{ methods: [POST], path: '/admin/(users' }}
"
        ),
    );
    let line = assert_located(&check(&f), &f, 8, 37, "routes[0].match.path: invalid regex: ");
    assert!(line.contains("unclosed group"), "{line}");
}

#[test]
fn shadowed_route_is_a_located_warning_not_an_error() {
    let dir = Dir::new();
    let f = dir.write(
        "routes.yaml",
        &format!(
            "{BASE}  - name: users
    match: {{ prefix: /admin/users }}
  - name: delete-bob
    match: {{ methods: [POST], path: /admin/users/bob/delete }}
"
        ),
    );
    let out = check(&f);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // (Each route also gets the no-identity warning; only the shadow is
    // looked at here.)
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("shadowed")).collect();
    assert_eq!(lines.len(), 1, "{stderr:?}");
    // Located at the shadowed route's first key (line 9, column 5).
    assert_eq!(
        lines[0],
        format!(
            "{}:9:5: warning: routes[1] `delete-bob` is shadowed by routes[0] `users` and can never match",
            f.display()
        )
    );
}

/// The upstream folds case (the default), so `/ADMIN` written in upper
/// case catches `/admin/users/bob/delete` written later: `check` says so.
/// With `case_sensitive: true` on the earlier route it would not, and the
/// warning goes.
#[test]
fn a_case_folded_prefix_shadowing_a_later_route_is_warned_about() {
    let dir = Dir::new();
    for (earlier, shadowed) in [
        ("{ prefix: /ADMIN }", true),
        ("{ prefix: /Admin, case_insensitive: true }", true),
        ("{ prefix: /ADMIN, case_sensitive: true }", false),
    ] {
        let f = dir.write(
            "routes.yaml",
            &format!(
                "{BASE}  - name: admin
    match: {earlier}
  - name: delete-bob
    match: {{ methods: [POST], path: /admin/users/bob/delete }}
"
            ),
        );
        let out = check(&f);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("shadowed")).collect();
        if shadowed {
            assert_eq!(
                lines,
                [format!(
                    "{}:9:5: warning: routes[1] `delete-bob` is shadowed by routes[0] `admin` and can never match",
                    f.display()
                )],
                "{earlier}: {stderr}"
            );
        } else {
            assert!(lines.is_empty(), "{earlier}: {stderr}");
        }
    }
}

#[test]
fn webauthn_relying_party_errors_are_located() {
    let dir = Dir::new();
    let head = BASE.trim_end_matches("routes:\n");
    let route = "routes:\n  - name: a\n    match: { path: /a }\n    require: { methods: [webauthn] }\n";
    // Line 7, column 45 is the origin whose host is not under the RP id.
    let f = dir.write(
        "routes.yaml",
        &format!("{head}stepup:\n  webauthn: {{ rp_id: example.com, origins: ['https://example.org'] }}\n{route}"),
    );
    assert_located(
        &check(&f),
        &f,
        7,
        45,
        "stepup.webauthn.origins[0]: the host of `https://example.org` is not example.com",
    );
    // Without a relying party, a route that can only be proved by a
    // passkey could never be satisfied (line 9, column 25: the method list).
    let f = dir.write("routes.yaml", &format!("{head}{route}"));
    assert_located(
        &check(&f),
        &f,
        9,
        25,
        "routes[0].require.methods: requires `webauthn` but stepup.webauthn is not configured",
    );
}

#[test]
fn missing_file_is_bad_input() {
    let dir = Dir::new();
    let f = dir.0.join("absent.yaml");
    assert_located(&check(&f), &f, 1, 1, "cannot read file: ");
}

#[test]
fn serve_refuses_an_invalid_config_exactly_like_check() {
    let dir = Dir::bare();
    let f = dir.write(
        "routes.yaml",
        &format!("{BASE}  - name: a\n    match: {{ path: '(' }}\n"),
    );
    let checked = check(&f);
    assert_located(&checked, &f, 8, 20, "routes[0].match.path: invalid regex");
    let served = stepgate(&["serve", "--config", f.to_str().expect("utf-8 path")]);
    assert_eq!(served.status.code(), Some(2), "{}", text(&served.stderr));
    assert_eq!(text(&served.stderr), text(&checked.stderr));
    assert!(
        !dir.0.join("cert.pem").exists() && !dir.0.join("assertion.pem").exists(),
        "nothing is generated for a config that does not load"
    );
}

#[cfg(unix)]
#[test]
fn keygen_writes_a_private_key_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::bare();
    let key = dir.0.join("keys").join("assertion.pem");
    let key_arg = key.to_str().expect("utf-8 path");

    let out = stepgate(&["keygen", "--out", key_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pem = std::fs::read_to_string(&key).expect("key written");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8: {pem}");
    let mode = std::fs::metadata(&key).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let again = stepgate(&["keygen", "--out", key_arg]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(&key).expect("key"),
        pem,
        "an existing key is never replaced without --force"
    );

    let forced = stepgate(&["keygen", "--out", key_arg, "--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced.stderr));
    assert_ne!(std::fs::read_to_string(&key).expect("key"), pem);
    let mode = std::fs::metadata(&key).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn jwks_kid_is_the_rfc7638_thumbprint_of_the_configured_key() {
    use p256::pkcs8::DecodePrivateKey;
    let dir = Dir::bare();
    let key = dir.0.join("assertion.pem");
    let made = stepgate(&["keygen", "--out", key.to_str().expect("utf-8 path")]);
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    // The key path in BASE is relative: it must resolve against the
    // config's directory, not the working directory.
    let f = dir.write(
        "routes.yaml",
        &format!("{BASE}  - name: a\n    match: {{ path: /a }}\n"),
    );

    let out = stepgate(&["jwks", "--config", f.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let jwks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{jwks}");
    let jwk = &keys[0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert!(jwk.get("d").is_none(), "no private part in a JWKS");
    let (x, y) = (jwk["x"].as_str().expect("x"), jwk["y"].as_str().expect("y"));

    // RFC 7638 §3.2: required members only, lexicographic order, no spaces.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    assert_eq!(jwk["kid"], thumbprint.as_str());

    // And the JWK is the public half of the key file, not some other key.
    let pem = std::fs::read_to_string(&key).expect("key");
    let signing = p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).expect("PKCS#8 P-256 key");
    let point = signing.verifying_key().to_sec1_point(false);
    assert_eq!(point.x().map(|c| URL_SAFE_NO_PAD.encode(c)).as_deref(), Some(x));
    assert_eq!(point.y().map(|c| URL_SAFE_NO_PAD.encode(c)).as_deref(), Some(y));

    assert!(
        text(&made.stdout).contains(&format!("kid {thumbprint}")),
        "keygen names the same kid: {}",
        text(&made.stdout)
    );
}

#[cfg(unix)]
#[test]
fn missing_or_readable_key_files_are_refused_with_their_line() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::bare();
    let f = dir.write(
        "routes.yaml",
        &format!("{BASE}  - name: a\n    match: {{ path: /a }}\n"),
    );
    let checked = check(&f);
    let line = assert_located(&checked, &f, 2, 14, "tls.cert:");
    assert!(
        line.contains("does not exist") && line.contains("stepgate demo"),
        "{line}"
    );
    // `serve` refuses the same way, and generates nothing.
    let served = stepgate(&["serve", "--config", f.to_str().expect("utf-8 path")]);
    assert_eq!(served.status.code(), Some(2), "{}", text(&served.stderr));
    assert!(text(&served.stderr).contains("tls.cert:"), "{}", text(&served.stderr));
    assert!(!dir.0.join("cert.pem").exists() && !dir.0.join("assertion.pem").exists());

    write_keys(&dir.0);
    std::fs::remove_file(dir.0.join("assertion.pem")).expect("rm");
    let line = assert_located(&check(&f), &f, 5, 19, "assertion.key:");
    assert!(line.contains("stepgate keygen"), "{line}");
    let served = stepgate(&["serve", "--config", f.to_str().expect("utf-8 path")]);
    assert_eq!(served.status.code(), Some(2), "{}", text(&served.stderr));
    assert!(
        !dir.0.join("assertion.pem").exists(),
        "serve never invents an assertion key"
    );

    write_keys(&dir.0);
    std::fs::set_permissions(dir.0.join("key.pem"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let line = assert_located(&check(&f), &f, 2, 29, "tls.key:");
    assert!(line.contains("chmod 600"), "{line}");
    std::fs::set_permissions(dir.0.join("key.pem"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(check(&f).status.code(), Some(0), "{}", text(&check(&f).stderr));
}

/// A certificate or key that exists but is not usable PEM, or a key that
/// belongs to another certificate, is refused by `check` and `serve` at the
/// config key that names it, before anything listens.
#[cfg(unix)]
#[test]
fn unusable_tls_files_are_refused_at_the_key_that_names_them() {
    let dir = Dir::bare();
    let f = dir.write(
        "routes.yaml",
        &format!("{BASE}  - name: a\n    match: {{ path: /a }}\n"),
    );
    write_keys(&dir.0);
    std::fs::write(
        dir.0.join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let line = assert_located(&check(&f), &f, 2, 14, "tls.cert:");
    assert!(line.contains("cert.pem") && line.contains("PEM"), "{line}");
    let served = stepgate(&["serve", "--config", f.to_str().expect("utf-8 path")]);
    assert_eq!(served.status.code(), Some(2), "{}", text(&served.stderr));
    let err = text(&served.stderr);
    assert!(err.contains("tls.cert:") && !err.contains("listening"), "{err}");

    // A well-formed key of another certificate.
    write_keys(&dir.0);
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    std::fs::write(dir.0.join("cert.pem"), other.cert.pem()).expect("cert");
    let line = assert_located(&check(&f), &f, 2, 29, "tls.key:");
    assert!(line.contains("belongs to the certificate"), "{line}");

    write_keys(&dir.0);
    assert_eq!(check(&f).status.code(), Some(0), "{}", text(&check(&f).stderr));
}

/// SPEC §5's `stepup.oidc` example passes `check` once its secret exists
/// and is private; without the secret file the gateway refuses to start
/// rather than run an OIDC client with no credential.
#[test]
fn oidc_example_checks_and_a_missing_client_secret_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new();
    let f = dir.write(
        "routes.yaml",
        "listen: 127.0.0.1:0
tls: { cert: cert.pem, key: key.pem }
upstream: http://127.0.0.1:9
session: { cookie: SESSIONID }
assertion: { key: assertion.pem, issuer: stepgate, audience: legacy }
stepup:
  oidc:
    issuer: https://idp.example/realms/corp
    client_id: stepgate
    client_secret_file: oidc-secret
    redirect_uri: https://gw.example/.stepup/oidc/callback
    scopes: [openid]
routes:
  - name: wire
    match: { methods: [POST], path: /admin/wire }
    require: { methods: [oidc], acr: [phr, \"urn:example:acr:mfa\"], max_age: 5m }
",
    );
    let line = assert_located(&check(&f), &f, 10, 25, "stepup.oidc.client_secret_file:");
    assert!(line.contains("does not exist"), "{line}");
    let served = stepgate(&["serve", "--config", f.to_str().expect("utf-8 path")]);
    assert_eq!(served.status.code(), Some(2), "{}", text(&served.stderr));
    assert!(
        text(&served.stderr).contains("stepup.oidc.client_secret_file"),
        "{}",
        text(&served.stderr)
    );

    let secret = dir.write("oidc-secret", "s3cret\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let line = assert_located(&check(&f), &f, 10, 25, "stepup.oidc.client_secret_file:");
    assert!(line.contains("chmod 600"), "{line}");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = check(&f);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

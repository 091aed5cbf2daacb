//! An `https://` upstream: a real nginx with TLS that demands a client
//! certificate (`ssl_verify_client on`), certificates generated here with
//! rcgen under target/. The gateway forwards over TLS with its client
//! certificate; an upstream certificate from another CA, or for another
//! name, is a 502 `upstream_unavailable` with no request reaching nginx;
//! without the client certificate nginx refuses. `stepgate check` refuses
//! missing, unreadable and half-configured upstream TLS settings.

mod common;
mod holdkit;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::ServerName;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

struct Ca {
    issuer: rcgen::Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(cn: &str) -> Ca {
    let key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.self_signed(&key).expect("ca cert");
    Ca {
        pem: cert.pem(),
        issuer: rcgen::Issuer::new(params, key),
    }
}

/// A certificate and its key (PEM), issued by `ca`.
fn leaf(ca: &Ca, cn: &str, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, &ca.issuer).expect("cert");
    (cert.pem(), key.serialize_pem())
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// The files every test here uses, in a directory of its own under target/:
/// the upstream's CA and certificate (for `upstream.test`), the CA nginx
/// trusts for clients and the gateway's client certificate, and an
/// unrelated CA.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("upstream-tls-{}", stepgate::ids::random_token()));
        std::fs::create_dir_all(&dir).expect("dir");
        let upstream_ca = ca("upstream test CA");
        let (cert, key) = leaf(&upstream_ca, "upstream.test", &["upstream.test"]);
        std::fs::write(dir.join("upstream-ca.pem"), &upstream_ca.pem).expect("write");
        std::fs::write(dir.join("upstream.pem"), cert).expect("write");
        write_private(&dir.join("upstream-key.pem"), &key);
        let client_ca = ca("gateway clients CA");
        let (cert, key) = leaf(&client_ca, "stepgate-gateway", &["gateway.test"]);
        std::fs::write(dir.join("client-ca.pem"), &client_ca.pem).expect("write");
        std::fs::write(dir.join("client.pem"), cert).expect("write");
        write_private(&dir.join("client-key.pem"), &key);
        std::fs::write(dir.join("other-ca.pem"), ca("some other CA").pem).expect("write");
        Files { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The `upstream_tls:` block trusting `ca`, verifying `name`, with the
    /// client certificate when `client`.
    fn upstream_tls(&self, ca: &str, name: &str, client: bool) -> String {
        let client = if client {
            format!(
                ", cert: '{}', key: '{}'",
                self.path("client.pem"),
                self.path("client-key.pem")
            )
        } else {
            String::new()
        };
        format!(
            "upstream_tls: {{ ca: '{}', server_name: {name}{client} }}\n",
            self.path(ca)
        )
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// nginx serving tests/upstreams/nginx_tls.conf from `files`' directory.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    async fn start(files: &Files) -> Nginx {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("nginx is not installed: apt-get install nginx");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = files.dir.clone();
        let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstreams/nginx_tls.conf"))
            .expect("nginx_tls.conf");
        let d = dir.to_str().expect("utf-8 dir");
        let conf = template.replace("__DIR__", d).replace("__PORT__", &port.to_string());
        std::fs::write(dir.join("nginx.conf"), conf).expect("write");
        let out = std::fs::File::create(dir.join("output.log")).expect("log");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-g")
            .arg(format!("daemon off; pid {d}/nginx.pid;"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("run nginx");
        let mut n = Nginx { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Ok(Some(status)) = n.child.try_wait() {
                panic!(
                    "nginx exited with {status}: {}",
                    n.file("output.log") + &n.file("error.log")
                );
            }
            assert!(Instant::now() < deadline, "nginx did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Every request nginx served, once a request of the test's own (over
    /// TLS with the client certificate, straight to nginx) is in the log:
    /// nginx logs after answering, and serves one connection at a time, so
    /// every earlier request is in the log by then.
    async fn records(&self, files: &Files) -> Vec<serde_json::Value> {
        let barrier = format!("/__barrier/{}", stepgate::ids::random_token());
        let (status, _) = self.direct(files, &barrier).await;
        assert_eq!(status, 200, "nginx answers its own barrier");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.file("record.log");
            if text.contains(&barrier) {
                return text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .filter(|v| !v["request_uri"].as_str().unwrap_or("").starts_with("/__barrier/"))
                    .collect();
            }
            assert!(Instant::now() < deadline, "the barrier never reached nginx's log");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One GET straight to nginx with the gateway's client certificate.
    async fn direct(&self, files: &Files, target: &str) -> (u16, String) {
        let mut roots = rustls::RootCertStore::empty();
        for c in stepgate::proxy::tls::load_certs(&files.dir.join("upstream-ca.pem")).expect("ca") {
            roots.add(c).expect("root");
        }
        let certs = stepgate::proxy::tls::load_certs(&files.dir.join("client.pem")).expect("cert");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(files.dir.join("client-key.pem")).expect("key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .expect("client cert");
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("upstream.test").expect("name"), tcp)
            .await
            .expect("handshake with nginx");
        let req = format!("GET {target} HTTP/1.1\r\nHost: upstream.test\r\nConnection: close\r\n\r\n");
        tls.write_all(req.as_bytes()).await.expect("write");
        let resp = read_response(&mut tls).await;
        (resp.status, String::from_utf8_lossy(&resp.body).into_owned())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn named<'a>(records: &'a [serde_json::Value], uri: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["request_uri"] == uri).collect()
}

#[tokio::test]
async fn pass_through_and_a_released_hold_travel_over_verified_tls_with_the_client_certificate() {
    let files = Files::new();
    let nginx = Nginx::start(&files).await;
    let extra = files.upstream_tls("upstream-ca.pem", "upstream.test", true);
    let gw = Gateway::start_url(&nginx.url(), DEFAULT_ROUTES, &extra).await;

    // Pass-through, twice: the second rides the pooled TLS connection.
    for path in ["/hello?n=1", "/hello?n=2"] {
        let resp = raw(gw.addr, &gw.pki, &request("GET", path, &[], b"")).await;
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        let body = resp.json();
        assert_eq!(body["served"], path);
        assert!(
            body["client"].as_str().unwrap_or("").contains("CN=stepgate-gateway"),
            "{body}"
        );
    }

    // A held request, released with a token, goes upstream over TLS too,
    // with its assertion.
    let target = "/admin/users/carol/delete";
    let (_, ch) = holdkit::challenge(&gw, "tls-session", target, b"x=1").await;
    let token = holdkit::bound_token(&gw, &ch);
    let resp = holdkit::complete_with_token(&gw, &holdkit::hold_id(&ch), "tls-session", &token).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["served"], target);

    let records = nginx.records(&files).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    for r in &records {
        assert_eq!(r["status"], "200", "{r}");
        assert_eq!(r["sni"], "upstream.test", "{r}");
        assert_eq!(r["client_verify"], "SUCCESS", "{r}");
        assert!(
            r["client_dn"].as_str().unwrap_or("").contains("CN=stepgate-gateway"),
            "{r}"
        );
        assert!(r["protocol"].as_str().unwrap_or("").starts_with("TLSv1."), "{r}");
        assert_eq!(r["host"], "localhost", "the client's Host is kept: {r}");
    }
    let (one, two) = (named(&records, "/hello?n=1"), named(&records, "/hello?n=2"));
    assert_eq!(
        one[0]["connection"], two[0]["connection"],
        "the second request reused the pooled TLS connection"
    );
    let held = named(&records, target);
    assert_eq!(held[0]["method"], "POST");
    let assertion = held[0]["assertion"].as_str().expect("assertion");
    let claims = verify_assertion(&gw, assertion);
    assert_eq!(claims["txn"], ch["txn"]);
}

#[tokio::test]
async fn an_upstream_certificate_from_another_ca_or_for_another_name_is_a_502_and_nothing_reaches_it() {
    let files = Files::new();
    let nginx = Nginx::start(&files).await;
    for (ca, name) in [("other-ca.pem", "upstream.test"), ("upstream-ca.pem", "elsewhere.test")] {
        let extra = files.upstream_tls(ca, name, true);
        let gw = Gateway::start_url(&nginx.url(), DEFAULT_ROUTES, &extra).await;
        let target = format!("/never/{name}");
        let resp = raw(gw.addr, &gw.pki, &request("GET", &target, &[], b"")).await;
        assert_eq!(resp.status, 502, "{ca} {name}: {}", String::from_utf8_lossy(&resp.body));
        assert_eq!(resp.error_code(), "upstream_unavailable");
        let body = String::from_utf8_lossy(&resp.body);
        assert!(!body.contains("certificate"), "internals stay in the log: {body}");
        let records = nginx.records(&files).await;
        assert!(named(&records, &target).is_empty(), "{ca} {name}: {records:#?}");
    }
    assert!(
        nginx.records(&files).await.is_empty(),
        "no request of the gateway's reached nginx"
    );
}

#[tokio::test]
async fn without_its_client_certificate_the_gateway_is_refused_by_nginx() {
    let files = Files::new();
    let nginx = Nginx::start(&files).await;
    let extra = files.upstream_tls("upstream-ca.pem", "upstream.test", false);
    let gw = Gateway::start_url(&nginx.url(), DEFAULT_ROUTES, &extra).await;
    let resp = raw(gw.addr, &gw.pki, &request("GET", "/hello", &[], b"")).await;
    // nginx finishes the handshake, then answers 400 instead of running
    // the location; the gateway relays that answer.
    assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(&resp.body));
    assert!(
        String::from_utf8_lossy(&resp.body).contains("No required SSL certificate was sent"),
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    let records = nginx.records(&files).await;
    let hello = named(&records, "/hello");
    assert_eq!(hello.len(), 1, "{records:#?}");
    assert_eq!(hello[0]["status"], "400");
    assert_eq!(hello[0]["client_verify"], "NONE");
}

// ------------------------------------------------------------ stepgate check

fn check(dir: &Path, upstream: &str, upstream_tls: &str) -> (i32, String) {
    let text = format!(
        "listen: 127.0.0.1:0
tls: {{ cert: cert.pem, key: key.pem }}
upstream: {upstream}
{upstream_tls}session: {{ cookie: SESSIONID }}
assertion: {{ key: assertion.pem, issuer: stepgate, audience: legacy }}
routes: []
"
    );
    let config = dir.join("routes.yaml");
    std::fs::write(&config, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run stepgate check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_refuses_missing_unreadable_and_half_configured_upstream_tls() {
    let files = Files::new();
    let dir = &files.dir;
    let pki = Pki::new();
    std::fs::write(dir.join("cert.pem"), &pki.cert_pem).expect("write");
    write_private(&dir.join("key.pem"), &pki.key_pem);
    write_private(
        &dir.join("assertion.pem"),
        &stepgate::assertion::generate_signing_key().1,
    );
    std::fs::write(dir.join("not-pem.pem"), "this is not a certificate\n").expect("write");
    let https = "https://127.0.0.1:8443";
    let client = "cert: client.pem, key: client-key.pem";

    let (code, out) = check(
        dir,
        https,
        &format!("upstream_tls: {{ ca: upstream-ca.pem, {client} }}\n"),
    );
    assert_eq!((code, out.contains(": ok (0 routes)")), (0, true), "{out}");
    let (code, out) = check(dir, https, "upstream_tls: { ca: upstream-ca.pem }\n");
    assert_eq!(code, 0, "a client certificate is optional: {out}");

    for (upstream, tls, expect) in [
        (https, String::new(), "an https:// upstream needs upstream_tls.ca"),
        (
            "http://127.0.0.1:8080",
            "upstream_tls: { ca: upstream-ca.pem }\n".to_owned(),
            "upstream_tls: is set but the upstream is http://",
        ),
        (
            https,
            "upstream_tls: { ca: missing-ca.pem }\n".to_owned(),
            "upstream_tls.ca:",
        ),
        (
            https,
            "upstream_tls: { ca: not-pem.pem }\n".to_owned(),
            "no certificate found",
        ),
        (
            https,
            "upstream_tls: { ca: upstream-ca.pem, cert: client.pem }\n".to_owned(),
            "upstream_tls.cert: needs upstream_tls.key too",
        ),
        (
            https,
            "upstream_tls: { ca: upstream-ca.pem, cert: client.pem, key: missing-key.pem }\n".to_owned(),
            "upstream_tls.key:",
        ),
        (
            https,
            "upstream_tls: { ca: upstream-ca.pem, server_name: 'not a name' }\n".to_owned(),
            "is not a DNS name or IP address",
        ),
        (
            "ftp://127.0.0.1:21",
            String::new(),
            "must be an http:// or https:// URL",
        ),
    ] {
        let (code, out) = check(dir, upstream, &tls);
        assert_eq!(code, 2, "{upstream} {tls}: {out}");
        assert!(out.contains(expect), "{upstream} {tls}: expected `{expect}` in: {out}");
        assert!(out.contains("routes.yaml:"), "located in the file: {out}");
    }

    // A client key others may read is refused like every other secret.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("client-key.pem"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, out) = check(
        dir,
        https,
        &format!("upstream_tls: {{ ca: upstream-ca.pem, {client} }}\n"),
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("upstream_tls.key:") && out.contains("chmod 600"), "{out}");
}

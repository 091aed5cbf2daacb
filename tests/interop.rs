//! Cross-language check of the assertion (SPEC §6: "verifiable by any
//! standard JWT library"): PyJWT and Node `jose` verify a real forwarded
//! assertion with the JWKS served at `/.stepup/jwks.json`, and refuse a
//! tampered one and one for another audience.
//!
//! A missing interpreter or library fails these tests on purpose:
//! `scripts/test-env` installs them (PyJWT into `.venv`, `npm ci` in
//! tests/interop), and a skipped interop test would look like a passing one.

mod common;
mod holdkit;

use common::*;
use holdkit::*;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const AUDIENCE: &str = "legacy-admin";
const ISSUER: &str = "stepgate";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn run(program: &str, args: &[&str], cwd: &Path, hint: &str) -> Output {
    // scripts/test-env installs PyJWT into the checkout's .venv.
    let program = match program {
        "python3" => common::python().into_os_string(),
        other => other.into(),
    };
    let program = program.to_string_lossy().into_owned();
    Command::new(&program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program}` ({e}); {hint}"))
}

struct Verifier {
    name: &'static str,
    program: &'static str,
    script: &'static str,
}

const PYJWT: Verifier = Verifier {
    name: "PyJWT",
    program: "python3",
    script: "verify.py",
};

const NODE_JOSE: Verifier = Verifier {
    name: "node jose",
    program: "node",
    script: "verify.mjs",
};

impl Verifier {
    /// Fails loudly when the toolchain is missing or is not the version
    /// the interop files pin, rather than letting a later check fail with
    /// a confusing traceback.
    fn preflight(&self) {
        let dir = interop_dir();
        let (args, hint): (&[&str], &str) = match self.program {
            "python3" => (
                &[
                    "-c",
                    "import jwt, jwt.algorithms as a; assert a.has_crypto, 'PyJWT without cryptography'; print(jwt.__version__)",
                ],
                "run scripts/test-env (it installs PyJWT into .venv)",
            ),
            _ => (
                &[
                    "--input-type=module",
                    "-e",
                    "import 'jose'; import { createRequire } from 'node:module'; console.log(createRequire(process.cwd() + '/').resolve('jose/package.json'))",
                ],
                "install Node.js and run scripts/test-env",
            ),
        };
        let out = run(self.program, args, &dir, hint);
        assert!(
            out.status.success(),
            "{} is not usable: {}\n{hint}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let (found, pinned) = match self.program {
            "python3" => {
                let reqs = std::fs::read_to_string(dir.join("requirements.txt")).expect("requirements.txt");
                let pin = reqs
                    .lines()
                    .find_map(|l| l.strip_prefix("PyJWT[crypto]=="))
                    .expect("requirements.txt pins PyJWT");
                (printed, pin.trim().to_owned())
            }
            _ => {
                let installed: Value =
                    serde_json::from_str(&std::fs::read_to_string(&printed).expect("jose package.json")).expect("JSON");
                let wanted: Value =
                    serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).expect("package.json"))
                        .expect("JSON");
                (
                    installed["version"].as_str().unwrap_or("?").to_owned(),
                    wanted["dependencies"]["jose"].as_str().unwrap_or("?").to_owned(),
                )
            }
        };
        assert_eq!(
            found, pinned,
            "{}: installed version differs from the pinned one; {hint}",
            self.name
        );
    }

    fn verify(&self, jwks: &Path, token: &str, audience: &str) -> Output {
        let dir = interop_dir();
        let script = dir.join(self.script);
        let args = [
            script.to_str().expect("UTF-8 path"),
            jwks.to_str().expect("UTF-8 path"),
            token,
            audience,
            ISSUER,
        ];
        run(self.program, &args, &dir, "see the preflight check")
    }
}

/// A released hold's assertion as the upstream received it, our own
/// verification of it, and the served JWKS written to a file.
async fn forwarded_assertion(gw: &Gateway, up: &Upstream) -> (String, Map<String, Value>, PathBuf) {
    let session = "sess-interop";
    let (_, ch) = challenge(gw, session, "/admin/users/bob/delete?via=interop", &all_bytes()).await;
    let token = gw.token(json!({"sid": ch["sid"], "txn": ch["txn"], "amr": ["hwk"], "acr": "urn:test"}));
    let resp = complete_with_token(gw, &hold_id(&ch), session, &token).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let assertion = seen[0].header("x-stepup-assertion").expect("assertion");
    let claims = verify_with_served_jwks(gw, &assertion).await;

    let served = send(gw, "GET", "/.stepup/jwks.json", &[], b"").await;
    assert_eq!(served.status, 200);
    let path = gw.dir.join("served-jwks.json");
    std::fs::write(&path, &served.body).expect("write JWKS");
    (assertion, claims, path)
}

/// The same claims with one change, signed properly with the gateway's
/// own assertion key, so only the change can make a verifier refuse it.
fn resigned(gw: &Gateway, assertion: &str, change: impl FnOnce(&mut Map<String, Value>)) -> String {
    let pem = std::fs::read_to_string(gw.dir.join("assertion.pem")).expect("assertion key");
    let key = stepgate::assertion::load_signing_key_pem(&pem).expect("key");
    let decoded = stepgate::jose::jws::decode(assertion).expect("decodes");
    let mut claims = decoded.claims;
    change(&mut claims);
    stepgate::jose::jws::encode_es256(&key, &Value::Object(decoded.raw_header), &Value::Object(claims)).expect("sign")
}

fn assert_accepts(v: &Verifier, jwks: &Path, token: &str, expected: &Map<String, Value>) {
    let out = v.verify(jwks, token, AUDIENCE);
    assert!(
        out.status.success(),
        "{} refused a good assertion: {}",
        v.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} printed no JSON ({e}): {}",
            v.name,
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(
        printed,
        Value::Object(expected.clone()),
        "{} reads other claims than ours",
        v.name
    );
}

fn assert_refuses(v: &Verifier, jwks: &Path, token: &str, audience: &str, what: &str) {
    let out = v.verify(jwks, token, audience);
    assert!(
        !out.status.success(),
        "{} accepted {what}: {}",
        v.name,
        String::from_utf8_lossy(&out.stdout)
    );
}

async fn cross_check(v: &Verifier) {
    v.preflight();
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let (assertion, claims, jwks) = forwarded_assertion(&gw, &up).await;
    assert_accepts(v, &jwks, &assertion, &claims);

    // Payload swapped under the original signature.
    let mut parts: Vec<String> = assertion.split('.').map(str::to_owned).collect();
    let mut forged = claims.clone();
    forged.insert("sub".into(), json!("mallory"));
    parts[1] = b64(Value::Object(forged).to_string());
    assert_refuses(v, &jwks, &parts.join("."), AUDIENCE, "a tampered payload");

    // A properly signed assertion meant for another audience; re-signing
    // with the right audience is accepted, so only `aud` decides.
    let control = resigned(&gw, &assertion, |_| {});
    assert_accepts(v, &jwks, &control, &claims);
    let other_aud = resigned(&gw, &assertion, |c| {
        c.insert("aud".into(), json!("another-app"));
    });
    assert_refuses(v, &jwks, &other_aud, AUDIENCE, "an assertion for another audience");
    assert_refuses(
        v,
        &jwks,
        &assertion,
        "another-app",
        "our assertion where another audience is expected",
    );
}

#[tokio::test]
async fn pyjwt_verifies_the_forwarded_assertion() {
    cross_check(&PYJWT).await;
}

#[tokio::test]
async fn node_jose_verifies_the_forwarded_assertion() {
    cross_check(&NODE_JOSE).await;
}

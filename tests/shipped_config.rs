//! The example `routes.yaml` shipped in the repository must stay valid.

use std::process::Command;

#[test]
fn shipped_routes_yaml_passes_check() {
    // `check` refuses missing key files, and the repository ships none: a
    // copy of the file beside generated ones (the tracked file stays).
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-shipped-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(dir.join("certs")).expect("dir");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/routes.yaml");
    std::fs::copy(shipped, dir.join("routes.yaml")).expect("copy");
    stepgate::keys::ensure_dev_tls(&dir.join("certs/gateway.pem"), &dir.join("certs/gateway-key.pem")).expect("tls");
    let (_, pem) = stepgate::assertion::generate_signing_key();
    stepgate::keys::write_private(&dir.join("certs/assertion-key.pem"), pem.as_bytes()).expect("key");
    let out = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(["check", "--config"])
        .arg(dir.join("routes.yaml"))
        .output()
        .expect("run stepgate check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The one warning the example may carry: without an identity source,
    // the first person to step up on a session becomes its actor.
    let other: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("warning") && !l.contains("becomes its actor"))
        .collect();
    assert!(other.is_empty(), "the example shadows a route: {stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

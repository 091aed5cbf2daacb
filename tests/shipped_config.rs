//! The example `routes.yaml` shipped in the repository must stay valid.

use std::process::Command;

#[test]
fn shipped_routes_yaml_passes_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(["check", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/routes.yaml")])
        .output()
        .expect("run stepgate check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "the example shadows a route: {stderr}");
}

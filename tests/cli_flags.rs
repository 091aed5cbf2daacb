//! Global command-line behaviour (issue 18): the version names its commit,
//! a log format typo is refused, and logs written to anything but a
//! terminal carry no colour codes.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn stepgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run stepgate")
}

#[test]
fn version_names_the_package_version_and_the_commit() {
    let out = stepgate(&["--version"]);
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).expect("utf-8");
    let expected_hash = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(
        line.trim(),
        format!("stepgate {} ({expected_hash})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_log_format_is_refused_with_the_valid_ones() {
    let out = stepgate(&["--log-format", "jsno", "check", "--config", "routes.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("jsno") && err.contains("text") && err.contains("json"),
        "{err}"
    );
}

/// `serve` logging into a pipe (as under systemd or `2>file`): plain text.
#[tokio::test]
async fn logs_to_a_pipe_have_no_colour_codes() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    for key in ["key.pem", "assertion.pem"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(gw.dir.join(key), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(["serve", "--config"])
        .arg(gw.dir.join("routes.yaml"))
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stepgate serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("read stderr");
        let done = line.contains("stepgate listening");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    assert!(text.contains("stepgate listening"), "serve did not start:\n{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in piped logs:\n{text:?}");
}

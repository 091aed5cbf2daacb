//! End-to-end tests in a real browser: headless Debian Chromium, driven by
//! playwright-core from `tests/browser/`, against the built `stepgate demo`
//! binary in a fresh working directory. Passkeys come from the DevTools
//! virtual authenticator (a software stand-in for a platform authenticator
//! that performs user verification). Each test is one scenario file under
//! `tests/browser/scenarios/`; see `tests/browser/run.mjs`.
//!
//! A missing Chromium, Node or npm install fails these tests on purpose:
//! `.ci/run` installs them, and a skipped browser test would look like a
//! passing one.

use std::path::{Path, PathBuf};
use std::process::Command;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn preflight() {
    let chromium = std::env::var("STEPGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium not found at {chromium}: install Debian's `chromium` package (`apt-get install chromium`, \
         which .ci/run does) or point STEPGATE_CHROMIUM at a Chromium binary"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core/package.json").exists()
            && browser_dir().join("node_modules/jose/package.json").exists(),
        "the browser test driver is not installed: run `cd tests/browser && npm ci` (.ci/run does)"
    );
}

fn scenario(name: &str) {
    scenario_with(name, &[]);
}

fn scenario_with(name: &str, env: &[(&str, &Path)]) {
    preflight();
    let out = Command::new("node")
        .arg("run.mjs")
        .arg(name)
        .current_dir(browser_dir())
        .envs(env.iter().copied())
        .env("STEPGATE_BIN", env!("CARGO_BIN_EXE_stepgate"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}): install Node.js (.ci/run does)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser scenario `{name}` failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // The runner prints this only after every check in the scenario ran.
    assert!(
        stdout.lines().any(|l| l == format!("ok {name}")),
        "scenario `{name}` did not report completion:\n{stdout}\n{stderr}"
    );
}

/// Issue #5 steps 1-5: enroll a passkey through the printed link, sign in
/// to the console, submit the delete-user form, complete with the passkey,
/// land on the console's answer; the console executed exactly one delete,
/// with an assertion (verified with `jose`) whose `amr` shows WebAuthn.
#[test]
fn passkey_journey() {
    scenario("passkey_journey");
}

/// An assertion over another hold's challenge is refused for this hold,
/// and the same assertion is accepted by the hold it was made for.
#[test]
fn passkey_for_another_hold_is_refused() {
    scenario("cross_hold");
}

/// A passkey assertion made on a page at an origin the config does not
/// list is refused, although everything else about it is valid.
#[test]
fn passkey_from_wrong_origin_is_refused() {
    scenario("wrong_origin");
}

/// TOTP on the step-up page with JavaScript disabled.
#[test]
fn totp_without_javascript() {
    scenario("totp_nojs");
}

/// A transfer waiting for bob: bob signs in on the approval page in a
/// second browser context and approves; the requester's page updates live
/// and lands on the console's answer.
#[test]
fn approval_in_second_browser() {
    scenario("approval");
}

/// The same with passkeys only: bob enrolls one through his link, signs in
/// on the approval page with it and approves with a fresh assertion.
#[test]
fn approval_with_passkeys_in_second_browser() {
    scenario("approval_passkey");
}

/// A page on another origin auto-submits forms at the victim's `complete`
/// (collect an approved transfer; break-glass with a reason): refused as
/// cross-site, and the console never executes the transfer (issue 21 #1).
#[test]
fn cross_site_complete() {
    scenario("cross_site_complete");
}

/// The screenshots of docs/pages.md. A test run writes them to a scratch dir
/// (tests never modify tracked files); `scripts/screenshots` sets
/// STEPGATE_SCREENSHOTS_DIR to docs/screenshots to regenerate those.
#[test]
fn screenshots() {
    let out = match std::env::var_os("STEPGATE_SCREENSHOTS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots"),
    };
    let _ = std::fs::remove_file(out.join("approval.png"));
    scenario_with("screenshots", &[("STEPGATE_SCREENSHOTS_DIR", &out)]);
    assert!(out.join("approval.png").is_file(), "no screenshot in {}", out.display());
}

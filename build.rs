//! Embeds the git commit in `stepgate --version`, so a report or a deployed
//! binary names the exact source it came from. Outside a git checkout (a
//! source tarball, `cargo install` from a registry) it says "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let hash = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!(
        "cargo:rustc-env=STEPGATE_VERSION={} ({hash})",
        env!("CARGO_PKG_VERSION")
    );
    // Re-run when HEAD moves: HEAD itself (branch switch, detached commit),
    // its reflog (every commit and checkout) and the branch's ref, loose or
    // packed. Only files that exist are named: cargo takes a missing one
    // for changed, and would rebuild the crate on every invocation.
    let mut watch = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watch.push(format!("{dir}/HEAD"));
        watch.push(format!("{dir}/logs/HEAD"));
    }
    if let (Some(common), Some(head_ref)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        watch.push(format!("{common}/{head_ref}"));
        watch.push(format!("{common}/packed-refs"));
    }
    for path in watch.iter().filter(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

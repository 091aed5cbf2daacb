//! The audit trail's story of every hold (SPEC §4, §9), checked from the
//! trail alone: every `hold.created` ends with exactly one closing record,
//! and every `hold.released` is followed by its `request.forwarded`.
//!
//! `common::Gateway` runs the check on every gateway a test started: in
//! full after `shutdown` (nothing may be left open then), and on drop for
//! holds that have ended (a hold still pending, or a release still in
//! flight, may not have its ending yet).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Events that end a hold's story. One, and only one, per hold.
pub const CLOSING: [&str; 5] = [
    "hold.released",
    "hold.expired",
    "hold.denied",
    "approval.denied",
    "hold.abandoned",
];

/// The trail's files in chain order: rotated files (named by their last
/// `seq`), then the current one.
pub fn trail_files(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let (Some(dir), Some(stem)) = (path.parent(), path.file_stem().and_then(|s| s.to_str())) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut rotated: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p != path
                        && p.extension().and_then(|e| e.to_str()) == Some("jsonl")
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&format!("{stem}.")))
                })
                .collect();
            rotated.sort();
            files.extend(rotated);
        }
    }
    files.push(path.to_owned());
    files
}

/// Every record of the trail at `path`, in order. `None` when the trail
/// is not a regular file (a test pointed it at a device).
pub fn records(path: &Path) -> Option<Vec<serde_json::Value>> {
    if !std::fs::metadata(path).map(|m| m.is_file()).unwrap_or(false) {
        return None;
    }
    let mut out = Vec::new();
    for f in trail_files(path) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        // A line still being appended is not a record yet.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        out.extend(complete.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    Some(out)
}

#[derive(Default, Debug)]
struct Story {
    created: usize,
    closing: Vec<String>,
    released: usize,
    forwarded: usize,
    /// `request.forwarded` seen before any `hold.released`.
    forwarded_unannounced: bool,
}

/// What is wrong with the stories in the trail at `path`. `open(hold)`
/// says a hold may legitimately lack its ending (still pending, or its
/// release still in flight); pass `|_| false` once the gateway stopped.
pub fn violations(path: &Path, open: impl Fn(&str) -> bool) -> Vec<String> {
    fleet_violations(&[path.to_owned()], open)
}

/// The trails of every instance whose trail sits beside `path` (instances
/// sharing holds on Redis): one hold's story may span several of them.
pub fn fleet_trails(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![path.to_owned()];
    if let Some(dir) = path.parent() {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut peers: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p != path
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.ends_with("audit.jsonl"))
                })
                .collect();
            peers.sort();
            out.extend(peers);
        }
    }
    out
}

/// [`violations`] of the stories told by several trails together, each
/// read in its own order.
pub fn fleet_violations(paths: &[PathBuf], open: impl Fn(&str) -> bool) -> Vec<String> {
    let mut records = Vec::new();
    for path in paths {
        records.extend(self::records(path).unwrap_or_default());
    }
    let mut stories: HashMap<String, Story> = HashMap::new();
    let mut order = Vec::new();
    for r in &records {
        let (Some(event), Some(hold)) = (r["event"].as_str(), r["hold"].as_str()) else {
            continue;
        };
        if !stories.contains_key(hold) {
            order.push(hold.to_owned());
        }
        let s = stories.entry(hold.to_owned()).or_default();
        match event {
            "hold.created" => s.created += 1,
            "request.forwarded" => {
                if s.released == 0 {
                    s.forwarded_unannounced = true;
                }
                s.forwarded += 1;
            }
            _ => {}
        }
        if event == "hold.released" {
            s.released += 1;
        }
        if CLOSING.contains(&event) {
            s.closing.push(event.to_owned());
        }
    }
    let mut problems = Vec::new();
    for hold in order {
        let s = &stories[&hold];
        let may_be_open = open(&hold);
        if s.created > 1 {
            problems.push(format!("hold {hold}: {} hold.created records", s.created));
        }
        if s.closing.len() > 1 {
            problems.push(format!(
                "hold {hold}: {} closing records {:?}",
                s.closing.len(),
                s.closing
            ));
        }
        if s.created == 1 && s.closing.is_empty() && !may_be_open {
            problems.push(format!("hold {hold}: hold.created has no closing record"));
        }
        if s.forwarded_unannounced {
            problems.push(format!(
                "hold {hold}: request.forwarded without hold.released before it"
            ));
        }
        if s.forwarded > 1 {
            problems.push(format!("hold {hold}: forwarded {} times", s.forwarded));
        }
        if s.released == 1 && s.forwarded == 0 && !may_be_open {
            problems.push(format!(
                "hold {hold}: hold.released is not followed by request.forwarded"
            ));
        }
    }
    problems
}

/// Asserts the stories of a trail whose gateway has stopped: nothing may
/// be left without its ending.
pub fn audit_invariants(path: &Path) {
    let problems = violations(path, |_| false);
    assert!(
        problems.is_empty(),
        "audit trail {} breaks the hold story invariants:\n{}",
        path.display(),
        problems.join("\n")
    );
}

/// Asserts the stories of a stopped instance that shared its holds on
/// Redis: a hold still open in the store outlives the instance (any other
/// instance may complete it), so only those may lack their ending.
pub fn stopped_fleet_invariants(gw: &stepgate::proxy::Gateway) {
    let path = gw.config().audit.path.clone();
    let open = |hold: &str| {
        stepgate::ids::HoldId::parse(hold)
            .is_some_and(|id| gw.holds.phase(&id).is_some_and(|p| p.is_open()) || gw.holds.meta(&id).is_none())
    };
    let problems = fleet_violations(&fleet_trails(&path), open);
    assert!(
        problems.is_empty(),
        "audit trails beside {} break the hold story invariants:\n{}",
        path.display(),
        problems.join("\n")
    );
}

/// Asserts the stories of a running gateway's trail. Records the gateway
/// has queued reach the file a moment later, so the check retries for a
/// while before it reports.
pub fn running_invariants(gw: &stepgate::proxy::Gateway) {
    let path = gw.config().audit.path.clone();
    // Instances sharing holds tell each hold's story together; a hold
    // another instance created is that instance's to finish.
    let shared = gw.shared_holds.is_some();
    let paths = if shared {
        fleet_trails(&path)
    } else {
        vec![path.clone()]
    };
    let open = |hold: &str| {
        let Some(id) = stepgate::ids::HoldId::parse(hold) else {
            return false;
        };
        gw.releases.holds().contains(&id)
            || gw.holds.phase(&id).is_some_and(|p| p.is_open())
            || (shared && gw.holds.meta(&id).is_none())
    };
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let problems = fleet_violations(&paths, open);
        if problems.is_empty() {
            return;
        }
        if Instant::now() > until {
            panic!(
                "audit trail {} breaks the hold story invariants:\n{}",
                path.display(),
                problems.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! At start: holds that the previous run of this instance opened and never
//! closed (it was killed, or the machine went down) get their closing
//! record, so every hold's story in the trail has its ending (SPEC §4).
//! Their clients' connections died with the process; a `challenge`-mode
//! client finds the hold gone and sends its request again.

use super::{Gateway, StartError};
use crate::audit;
use crate::audit::Event;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(super) const LOST: &str = "lost in a restart";

/// Whether a record ends a hold's story.
fn closes(event: Event) -> bool {
    matches!(
        event,
        audit::Event::HoldReleased
            | audit::Event::HoldExpired
            | audit::Event::HoldDenied
            | audit::Event::ApprovalDenied
            | audit::Event::HoldAbandoned
    )
}

/// The current trail file and the newest rotated one: a hold lives for
/// minutes, so its opening is in one of the two.
fn recent_files(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit");
    let prefix = format!("{stem}.");
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .or(Some(Path::new(".")))
    {
        let newest = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.as_path() != path
                    && p.extension().and_then(|e| e.to_str()) == Some("jsonl")
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix))
            })
            .max();
        files.extend(newest);
    }
    files.push(path.to_owned());
    files
}

/// The `hold.created` records of holds without a closing record, oldest
/// first. A line the crash cut short is skipped (it was never a record).
pub(super) fn unclosed(path: &Path) -> Vec<serde_json::Value> {
    let mut open: BTreeMap<String, (u64, serde_json::Value)> = BTreeMap::new();
    let mut n = 0u64;
    for file in recent_files(path) {
        // Only regular files hold a trail: a device such as /dev/full (the
        // test of an unwritable trail) would read forever.
        if !std::fs::metadata(&file).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for r in text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            let (Some(event), Some(hold)) = (r["event"].as_str(), r["hold"].as_str()) else {
                continue;
            };
            match Event::parse(event) {
                Some(audit::Event::HoldCreated) => {
                    n += 1;
                    open.insert(hold.to_owned(), (n, r.clone()));
                }
                Some(e) if closes(e) => {
                    open.remove(hold);
                }
                _ => {}
            }
        }
    }
    let mut out: Vec<_> = open.into_values().collect();
    out.sort_by_key(|(n, _)| *n);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Closes, in the trail, every hold the previous run left open.
pub(super) async fn close_lost_holds(gw: &Gateway) -> Result<usize, StartError> {
    if gw.shared_holds.is_some() {
        // Shared holds outlive an instance: any instance may still complete
        // or expire them, and whichever does writes their ending.
        return Ok(0);
    }
    let path = gw.config().audit.path.clone();
    let lost = unclosed(&path);
    for r in &lost {
        super::effects::lost(gw, r, LOST)
            .await
            .map_err(|_| StartError::Invalid {
                path: path.display().to_string(),
                message: "cannot close the holds a previous run left open".into(),
            })?;
    }
    if !lost.is_empty() {
        tracing::warn!(holds = lost.len(), "holds left open by a previous run closed as lost");
    }
    Ok(lost.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_holds_without_an_ending_in_the_current_and_newest_rotated_file() {
        let dir = crate::ids::test_tmp().join(format!("stepgate-recover-{}", crate::ids::random_token()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("audit.jsonl");
        let line = |event: &str, hold: &str| format!("{{\"event\":\"{event}\",\"hold\":\"{hold}\",\"route\":\"r\"}}\n");
        std::fs::write(
            dir.join("audit.000000000001.jsonl"),
            line("hold.created", "old-and-lost") + &line("hold.created", "h1"),
        )
        .expect("write");
        std::fs::write(
            dir.join("audit.000000000009.jsonl"),
            line("hold.created", "h2") + &line("hold.created", "h3"),
        )
        .expect("write");
        std::fs::write(
            &path,
            line("hold.released", "h2") + &line("hold.created", "h4") + "{\"event\":\"hold.expired\",\"ho",
        )
        .expect("write");
        std::fs::write(dir.join("audit-single-use.jsonl"), line("hold.created", "not-audit")).expect("write");
        let open: Vec<_> = unclosed(&path)
            .iter()
            .map(|r| r["hold"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(open, vec!["h3", "h4"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

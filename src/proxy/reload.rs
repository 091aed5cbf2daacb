//! Hot reload triggers: a change to the config file (watched through its
//! parent directory, because editors save by writing a new file and
//! renaming it over the old one) and SIGHUP. Bursts of events are
//! debounced into one reload.
//!
//! A change counts only once the file is complete (SPEC §7): when a writer
//! closes it after writing, or when a finished file is renamed into place.
//! A bare modification never does: a deploy tool that pauses mid-write
//! would otherwise have its valid prefix (say, the first of many routes)
//! loaded, and the later routes go unprotected until it finishes.

use super::Gateway;
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const DEBOUNCE: Duration = Duration::from_millis(300);

/// Starts watching `path`; keep the returned watcher alive for as long as
/// reloads should happen.
pub fn watch(gw: Arc<Gateway>, path: PathBuf) -> Result<notify::RecommendedWatcher, notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let name = path.file_name().map(|n| n.to_owned());
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            if completes(&ev, name.as_deref()) {
                let _ = tx.send(());
            }
        }
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let the editor finish its write-rename dance, then reload once.
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            let _ = gw.reload(&path).await;
        }
    });
    Ok(watcher)
}

/// Whether `ev` leaves a complete file named `name`: closed after writing,
/// or renamed into place (the destination, the last path of a rename).
fn completes(ev: &notify::Event, name: Option<&std::ffi::OsStr>) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
    let is_ours = |p: Option<&PathBuf>| p.is_some_and(|p| p.file_name() == name);
    match ev.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => ev.paths.iter().any(|p| is_ours(Some(p))),
        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both | RenameMode::Any)) => {
            is_ours(ev.paths.last())
        }
        _ => false,
    }
}

/// Reloads on every SIGHUP until the process ends.
#[cfg(unix)]
pub fn on_sighup(gw: Arc<Gateway>, path: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload by editing the file");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading configuration");
            let _ = gw.reload(&path).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::completes;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, EventKind, ModifyKind, RenameMode};
    use notify::Event;
    use std::ffi::OsStr;

    fn ev(kind: EventKind, paths: &[&str]) -> Event {
        paths.iter().fold(Event::new(kind), |e, p| e.add_path(p.into()))
    }

    #[test]
    fn only_a_closed_or_renamed_file_is_complete() {
        let name = Some(OsStr::new("routes.yaml"));
        let ours = "/etc/stepgate/routes.yaml";
        let yes = [
            ev(EventKind::Access(AccessKind::Close(AccessMode::Write)), &[ours]),
            ev(EventKind::Modify(ModifyKind::Name(RenameMode::To)), &[ours]),
            ev(
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                &["/etc/stepgate/.routes.yaml.swp", ours],
            ),
        ];
        for e in &yes {
            assert!(completes(e, name), "{e:?}");
        }
        let no = [
            ev(EventKind::Modify(ModifyKind::Data(DataChange::Any)), &[ours]),
            ev(EventKind::Modify(ModifyKind::Any), &[ours]),
            ev(EventKind::Create(CreateKind::File), &[ours]),
            ev(EventKind::Access(AccessKind::Open(AccessMode::Any)), &[ours]),
            ev(EventKind::Access(AccessKind::Close(AccessMode::Read)), &[ours]),
            // Our file renamed away, or another file closed.
            ev(
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                &[ours, "/etc/stepgate/routes.yaml.bak"],
            ),
            ev(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &["/etc/stepgate/.routes.yaml.swp"],
            ),
        ];
        for e in &no {
            assert!(!completes(e, name), "{e:?}");
        }
    }
}

//! Hot reload triggers: a change to the config file (watched through its
//! parent directory, because editors save by writing a new file and
//! renaming it over the old one) and SIGHUP. Bursts of events are
//! debounced into one reload.

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
            let ours = ev.paths.iter().any(|p| p.file_name() == name.as_deref());
            if ours && !ev.kind.is_access() {
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
            let _ = gw.reload(&path);
        }
    });
    Ok(watcher)
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
            let _ = gw.reload(&path);
        }
    });
}

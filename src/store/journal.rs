//! The memory backend's journal of spent single-use values: one JSON line
//! per value, synced before the value counts, read back at start. It is
//! rewritten with only the live records at start and whenever it has grown
//! well past them, so it stays about as large as the records themselves.

use super::state_error::StateError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One journal line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Entry {
    Once { key: String, until: u64 },
    Step { user: String, step: u64, until: u64 },
}

impl Entry {
    pub(super) fn until(&self) -> u64 {
        match self {
            Entry::Once { until, .. } | Entry::Step { until, .. } => *until,
        }
    }
}

#[derive(Debug)]
pub(super) struct Journal {
    path: PathBuf,
    file: std::fs::File,
}

fn io<'a>(path: &'a Path, what: &str) -> impl Fn(std::io::Error) -> StateError + 'a {
    let what = what.to_owned();
    move |e| StateError::Unavailable(format!("{what} {}: {e}", path.display()))
}

impl Journal {
    /// The entries of the journal at `path` still live at `now`, and the
    /// journal rewritten with only those. A line cut short by a crash is
    /// skipped: it was never acknowledged, so nothing was accepted on it.
    pub(super) fn open(path: &Path, now: u64) -> Result<(Journal, Vec<Entry>), StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(path, "cannot read")(e)),
        };
        let live: Vec<Entry> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
            .filter(|e| e.until() >= now)
            .collect();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(path, "cannot create the directory of"))?;
        }
        let file = rewrite(path, &live)?;
        Ok((
            Journal {
                path: path.to_owned(),
                file,
            },
            live,
        ))
    }

    /// Makes `entries` durable with one write and one sync.
    pub(super) fn append_all(&mut self, entries: &[Entry]) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for entry in entries {
            text.push_str(&serde_json::to_string(entry).map_err(|e| StateError::Unavailable(e.to_string()))?);
            text.push('\n');
        }
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(io(&self.path, "cannot append to"))
    }

    /// Replaces the file with `live` (write, sync, rename: a crash leaves
    /// the old file or the new one, never half of one).
    pub(super) fn compact(&mut self, live: &[Entry]) -> Result<(), StateError> {
        self.file = rewrite(&self.path, live)?;
        Ok(())
    }
}

fn rewrite(path: &Path, live: &[Entry]) -> Result<std::fs::File, StateError> {
    let mut out = String::new();
    for e in live {
        out.push_str(&serde_json::to_string(e).map_err(|e| StateError::Unavailable(e.to_string()))?);
        out.push('\n');
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(path, "cannot write"))?;
    f.write_all(out.as_bytes()).map_err(io(path, "cannot write"))?;
    f.sync_all().map_err(io(path, "cannot sync"))?;
    std::fs::rename(&tmp, path).map_err(io(path, "cannot replace"))?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io(path, "cannot open"))
}

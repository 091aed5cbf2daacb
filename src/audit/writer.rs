//! The single writer: assigns `seq`, links `prev`, batches and fsyncs,
//! rotates by size and signs checkpoints.

use super::queue::{Outcome, WriterGuard};
use super::{AuditConfig, AuditError, Job, Record, GENESIS};
use crate::assertion::AssertionSigner;
use crate::clock::{rfc3339, unix_secs};
use arc_swap::ArcSwapOption;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

const CHECKPOINT_MARK: &[u8] = br#""event":"checkpoint""#;

pub(super) struct Writer {
    cfg: AuditConfig,
    signer: Arc<AssertionSigner>,
    healthy: Arc<AtomicBool>,
    file: Option<File>,
    seq: u64,
    prev: String,
    size: u64,
    since_checkpoint: u64,
    /// The newest durable checkpoint line, served at `/audit/head`.
    head: Arc<ArcSwapOption<String>>,
    /// A checkpoint line of the batch being written, published once durable.
    pending_head: Option<String>,
    /// Whether to write a checkpoint before anything else (see `run`).
    start_checkpoint: bool,
}

#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    ts: String,
    event: &'a str,
    #[serde(flatten)]
    record: &'a Record,
    prev: &'a str,
}

pub(super) fn hash(line: &[u8]) -> String {
    let digest = Sha256::digest(line);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Writer {
    pub(super) fn open(
        cfg: AuditConfig,
        signer: Arc<AssertionSigner>,
        healthy: Arc<AtomicBool>,
        head: Arc<ArcSwapOption<String>>,
    ) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: cfg.path.display().to_string(),
            source,
        };
        if let Some(dir) = cfg.path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
        }
        cut_partial_line(&cfg.path).map_err(io)?;
        let resumed = resume(&cfg.path).map_err(io)?;
        let file = append(&cfg.path).map_err(io)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start_checkpoint =
            resumed.seq > 0 && (resumed.since_checkpoint > 0 || resumed.every != Some(cfg.checkpoint_every));
        head.store(resumed.head.map(Arc::new));
        Ok(Writer {
            cfg,
            signer,
            healthy,
            file: Some(file),
            seq: resumed.seq,
            prev: resumed.prev,
            size,
            // A restart continues the run it found, so a crash between two
            // checkpoints never doubles the gap a verifier must allow.
            since_checkpoint: resumed.since_checkpoint,
            head,
            pending_head: None,
            start_checkpoint,
        })
    }

    pub(super) fn run(mut self, mut queue: WriterGuard) {
        if self.start_checkpoint {
            // A restart seals what the last run left unsealed, and a new
            // `checkpoint_every` is signed before the first record under it,
            // so every run of records fits the promise of the checkpoint
            // that closes it.
            self.seal_now("start");
        }
        while let Some(batch) = queue.take() {
            let outcome = self.commit(batch);
            queue.finish(outcome);
            // After the waiters are released: rotation seals with a write
            // of its own that no waiter needs.
            if self.file.is_some() && self.size >= self.cfg.rotate_bytes {
                self.rotate();
            }
        }
        // Every handle is gone without a seal (the gateway was dropped
        // rather than shut down): seal the tail if there is anything to seal.
        if self.since_checkpoint > 0 {
            self.seal_now("closed");
        }
    }

    /// Writes a checkpoint on its own; on failure the chain continues from
    /// the last durable line, not from the checkpoint that never landed.
    fn seal_now(&mut self, why: &str) -> bool {
        let mut buf = Vec::new();
        let (seq0, prev0, since0) = (self.seq, self.prev.clone(), self.since_checkpoint);
        self.checkpoint(&mut buf, why);
        match self.write(&buf) {
            Ok(()) => {
                self.publish_head();
                true
            }
            Err(e) => {
                tracing::error!(error = %e, path = %self.cfg.path.display(), "audit checkpoint write failed");
                self.healthy.store(false, Ordering::Relaxed);
                (self.seq, self.prev, self.since_checkpoint) = (seq0, prev0, since0);
                self.pending_head = None;
                self.file = None;
                false
            }
        }
    }

    /// Writes a batch with one `fdatasync`; the outcome names each job's
    /// `seq`, or nothing at all when the write failed.
    fn commit(&mut self, batch: Vec<Job>) -> Outcome {
        let (seq0, prev0, since0) = (self.seq, self.prev.clone(), self.since_checkpoint);
        let mut buf = Vec::with_capacity(batch.len() * 300);
        let mut seqs = Vec::with_capacity(batch.len());
        for job in batch {
            let written = self.line(&mut buf, job.record.event.as_str(), &job.record).is_some();
            seqs.push(written.then_some(self.seq));
            if !written {
                continue;
            }
            self.since_checkpoint += 1;
            if job.seal {
                self.checkpoint(&mut buf, "shutdown");
            } else if self.since_checkpoint >= self.cfg.checkpoint_every {
                self.checkpoint(&mut buf, "interval");
            }
        }
        match self.write(&buf) {
            Ok(()) => {
                self.healthy.store(true, Ordering::Relaxed);
                self.publish_head();
                seqs
            }
            Err(e) => {
                tracing::error!(error = %e, path = %self.cfg.path.display(), "audit write failed; sensitive routes fail closed");
                self.healthy.store(false, Ordering::Relaxed);
                // Nothing of the batch is acknowledged; the chain continues
                // from the last durable line.
                (self.seq, self.prev, self.since_checkpoint) = (seq0, prev0, since0);
                self.pending_head = None;
                self.file = None;
                Vec::new()
            }
        }
    }

    fn line(&mut self, buf: &mut Vec<u8>, event: &str, record: &Record) -> Option<String> {
        let line = Line {
            seq: self.seq + 1,
            ts: rfc3339(SystemTime::now()),
            event,
            record,
            prev: &self.prev,
        };
        let text = serde_json::to_string(&line).ok()?;
        self.seq += 1;
        self.prev = hash(text.as_bytes());
        buf.extend_from_slice(text.as_bytes());
        buf.push(b'\n');
        Some(text)
    }

    fn publish_head(&mut self) {
        if let Some(h) = self.pending_head.take() {
            self.head.store(Some(Arc::new(h)));
        }
    }

    /// A signed checkpoint: the signature covers `prev`, which commits to
    /// every line before it.
    fn checkpoint(&mut self, buf: &mut Vec<u8>, why: &str) {
        // `every` is signed so that a verifier holding only the JWKS knows
        // how far apart checkpoints must be.
        let claims = serde_json::json!({
            "seq": self.seq + 1,
            "prev": self.prev,
            "every": self.cfg.checkpoint_every,
            "iat": unix_secs(SystemTime::now()),
        });
        let jws = match self.signer.sign_checkpoint(&claims) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign audit checkpoint");
                return;
            }
        };
        let record = Record::new(super::Event::Checkpoint)
            .with("reason_code", why)
            .with("jws", jws);
        if let Some(text) = self.line(buf, "checkpoint", &record) {
            self.pending_head = Some(text);
            self.since_checkpoint = 0;
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            // After a failed write the file may end in part of a line that
            // was never acknowledged; appending onto it would make an honest
            // trail look tampered for good.
            cut_partial_line(&self.cfg.path)?;
            let f = append(&self.cfg.path)?;
            self.size = f.metadata().map(|m| m.len()).unwrap_or(self.size);
            self.file = Some(f);
        }
        let Some(f) = self.file.as_mut() else {
            return Err(std::io::Error::other("audit file not open"));
        };
        f.write_all(buf)?;
        f.sync_data()?;
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Seals the current file with a checkpoint and starts the next one;
    /// the chain (seq and prev) continues across the files.
    fn rotate(&mut self) {
        if !self.seal_now("rotate") {
            return;
        }
        let target = rotated_name(&self.cfg.path, self.seq);
        self.file = None;
        if let Err(e) = std::fs::rename(&self.cfg.path, &target) {
            tracing::error!(error = %e, "audit rotation failed");
            return;
        }
        self.size = 0;
        tracing::info!(rotated = %target.display(), "audit file rotated");
    }
}

/// Cuts `path` back to its last complete line (SPEC §9). Only regular
/// files are touched; a missing file is fine.
fn cut_partial_line(path: &Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() > 0 => {}
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    // Read backwards in blocks until a newline is found.
    let mut end = len;
    let mut block = vec![0u8; 64 * 1024];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut block[..n])?;
        if let Some(i) = block[..n].iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        end = start;
    };
    if keep < len {
        tracing::warn!(path = %path.display(), bytes = len - keep, "cutting an incomplete audit line left by a failed write");
        f.set_len(keep)?;
        f.sync_all()?;
    }
    Ok(())
}

fn append(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// `audit.jsonl` → `audit.000000001234.jsonl`, named by its last `seq` so
/// the rotated files sort in chain order.
pub(super) fn rotated_name(path: &Path, last_seq: u64) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("jsonl");
    path.with_file_name(format!("{stem}.{last_seq:012}.{ext}"))
}

/// Where the chain left off.
struct Resumed {
    seq: u64,
    prev: String,
    /// Records after the newest checkpoint.
    since_checkpoint: u64,
    /// The newest checkpoint line.
    head: Option<String>,
    /// The spacing the newest checkpoint signed.
    every: Option<u64>,
}

/// Where the chain left off: the last line of the current file, or of the
/// newest rotated file when the current one is empty or missing; and, going
/// back as far as the newest checkpoint, how many records follow it.
fn resume(path: &Path) -> std::io::Result<Resumed> {
    let mut candidates = vec![path.to_owned()];
    if let (Some(dir), Some(stem)) = (path.parent(), path.file_stem().and_then(|s| s.to_str())) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{stem}.")) && p != path)
            })
            .collect();
        rotated.sort();
        candidates.extend(rotated.into_iter().rev());
    }
    let mut found: Option<(u64, String)> = None;
    let mut since_checkpoint = 0;
    for p in candidates {
        // Only regular files hold a chain (a device such as /dev/full, used
        // to test write failures, would read forever).
        if !std::fs::metadata(&p).map(|m| m.is_file()).unwrap_or(false) {
            continue;
        }
        let text = match std::fs::read(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in text.split(|&b| b == b'\n').rev().filter(|l| !l.is_empty()) {
            if found.is_none() {
                let seq = serde_json::from_slice::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["seq"].as_u64())
                    .ok_or_else(|| {
                        std::io::Error::other(format!("{}: last line is not an audit record", p.display()))
                    })?;
                found = Some((seq, hash(line)));
            }
            // The substring cannot occur inside a JSON string (its quotes
            // would be escaped), so only real checkpoints are parsed.
            let marked = line.windows(CHECKPOINT_MARK.len()).any(|w| w == CHECKPOINT_MARK);
            if marked && serde_json::from_slice::<serde_json::Value>(line).is_ok_and(|v| v["event"] == "checkpoint") {
                let (seq, prev) = found.unwrap_or_default();
                let head = String::from_utf8_lossy(line).into_owned();
                return Ok(Resumed {
                    seq,
                    prev,
                    since_checkpoint,
                    every: signed_every(&head),
                    head: Some(head),
                });
            }
            since_checkpoint += 1;
        }
    }
    let (seq, prev) = found.unwrap_or((0, GENESIS.to_owned()));
    Ok(Resumed {
        seq,
        prev,
        since_checkpoint,
        head: None,
        every: None,
    })
}

/// The `every` a checkpoint line's signature covers (unverified: the
/// writer only compares it with its own setting).
fn signed_every(line: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let decoded = crate::jose::jws::decode(v["jws"].as_str()?).ok()?;
    decoded.claims.get("every")?.as_u64()
}

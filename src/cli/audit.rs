//! `stepgate audit verify` and `stepgate audit show`.

use super::{load_config, signer, BadInput};
use std::path::{Path, PathBuf};
use stepgate::audit::verify::{verify as verify_chain, Keys, DEFAULT_CHECKPOINT_EVERY};
use stepgate::escape::Escaped;
use stepgate::jose::Jwks;

fn read(files: &[PathBuf]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    files
        .iter()
        .map(|f| {
            std::fs::read(f)
                .map(|b| (f.display().to_string(), b))
                .map_err(|e| BadInput(format!("{}: {e}", f.display())).into())
        })
        .collect()
}

/// Where `audit verify` finds the keys and what it checks with them.
pub struct Keyed<'a> {
    pub config: Option<&'a Path>,
    pub jwks: Option<&'a Path>,
    pub checkpoint_every: Option<u64>,
    pub head: Option<&'a Path>,
}

pub fn verify(files: &[PathBuf], opts: Keyed<'_>) -> anyhow::Result<()> {
    if files.is_empty() {
        return Err(BadInput("name the audit files to verify, oldest first".into()).into());
    }
    if opts.checkpoint_every == Some(0) {
        return Err(BadInput("--checkpoint-every must be at least 1".into()).into());
    }
    let (config, jwks, head) = (opts.config, opts.jwks, opts.head);
    let (keys, every) = match (config, jwks) {
        (Some(c), _) => {
            let cfg = load_config(c)?;
            let every = cfg.audit.checkpoint_every;
            (Some(Jwks::parse(&signer(&cfg)?.jwks().to_string())?), Some(every))
        }
        (None, Some(j)) => {
            let text = std::fs::read_to_string(j).map_err(|e| BadInput(format!("{}: {e}", j.display())))?;
            (
                Some(Jwks::parse(&text).map_err(|e| BadInput(format!("{}: {e}", j.display())))?),
                Some(opts.checkpoint_every.unwrap_or(DEFAULT_CHECKPOINT_EVERY)),
            )
        }
        (None, None) => (None, None),
    };
    let head = match head {
        Some(h) if keys.is_none() => {
            return Err(BadInput(format!(
                "{}: a collected head is checked with the keys: pass --config or --jwks too",
                h.display()
            ))
            .into())
        }
        Some(h) => Some(head_token(h)?),
        None => None,
    };
    let keys = keys.as_ref().map(|jwks| Keys {
        jwks,
        checkpoint_every: every,
        head: head.as_deref(),
    });
    match verify_chain(&read(files)?, keys.as_ref()) {
        Ok(s) => {
            println!(
                "ok: {} records (seq {}..{}), {} checkpoints{}; {} records after the last checkpoint (protected by the hash chain alone){}",
                s.records,
                s.first_seq,
                s.last_seq,
                s.checkpoints,
                if let (Some(_), Some(every)) = (&keys, every) {
                    format!(
                        ", {} signatures verified, no more than {every} records between them",
                        s.signatures_checked
                    )
                } else {
                    " (signatures not checked: pass --config or --jwks)".into()
                },
                s.after_checkpoint,
                match s.head_seq {
                    Some(seq) => format!("; agrees with the collected head at seq {seq}"),
                    None => String::new(),
                }
            );
            Ok(())
        }
        Err(f) => {
            eprintln!("{}", Escaped(&f.to_string()));
            Err(anyhow::anyhow!("audit verification failed"))
        }
    }
}

/// A collected head: the JSON line `/audit/head` serves, or its bare JWS.
fn head_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
    let text = text.trim();
    if text.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| BadInput(format!("{}: not JSON: {e}", path.display())))?;
        return v["jws"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| BadInput(format!("{}: no `jws` in the collected head", path.display())).into());
    }
    Ok(text.to_owned())
}

/// The files of the configured trail, oldest first.
fn default_files(config: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let cfg = load_config(config)?;
    let path = cfg.audit.path;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit").to_owned();
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    rotated.retain(|p| {
        p != &path
            && p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{stem}.")))
    });
    rotated.sort();
    rotated.push(path);
    Ok(rotated.into_iter().filter(|p| p.exists()).collect())
}

pub fn show(hold: &str, config: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    let files = if files.is_empty() {
        default_files(config)?
    } else {
        files.to_vec()
    };
    let mut found = 0;
    for (name, bytes) in read(&files)? {
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
                eprintln!("{}: skipping a line that is not JSON", Escaped(&name));
                continue;
            };
            if v["hold"].as_str() == Some(hold) {
                found += 1;
                let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
                let extra = ["reason", "jti", "status", "method", "target", "comment"]
                    .iter()
                    .filter_map(|k| v.get(*k).filter(|x| !x.is_null()).map(|x| format!("{k}={x}")))
                    .collect::<Vec<_>>()
                    .join(" ");
                say!(
                    "{:>8}  {}  {:<18} sub={} {}",
                    v["seq"],
                    s("ts"),
                    s("event"),
                    s("sub"),
                    extra
                );
            }
        }
    }
    if found == 0 {
        return Err(BadInput(format!("no audit records for hold {hold}")).into());
    }
    Ok(())
}

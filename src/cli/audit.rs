//! `stepgate audit verify` and `stepgate audit show`.

use super::{load_config, signer, BadInput};
use std::path::{Path, PathBuf};
use stepgate::audit::verify::verify as verify_chain;
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

pub fn verify(files: &[PathBuf], config: Option<&Path>, jwks: Option<&Path>) -> anyhow::Result<()> {
    if files.is_empty() {
        return Err(BadInput("name the audit files to verify, oldest first".into()).into());
    }
    let keys = match (config, jwks) {
        (Some(c), _) => Some(Jwks::parse(&signer(&load_config(c)?)?.jwks().to_string())?),
        (None, Some(j)) => {
            let text = std::fs::read_to_string(j).map_err(|e| BadInput(format!("{}: {e}", j.display())))?;
            Some(Jwks::parse(&text).map_err(|e| BadInput(format!("{}: {e}", j.display())))?)
        }
        (None, None) => None,
    };
    match verify_chain(&read(files)?, keys.as_ref()) {
        Ok(s) => {
            println!(
                "ok: {} records (seq {}..{}), {} checkpoints{}",
                s.records,
                s.first_seq,
                s.last_seq,
                s.checkpoints,
                if keys.is_some() {
                    format!(", {} signatures verified", s.signatures_checked)
                } else {
                    " (signatures not checked: pass --config or --jwks)".into()
                }
            );
            Ok(())
        }
        Err(f) => {
            eprintln!("{f}");
            Err(anyhow::anyhow!("audit verification failed"))
        }
    }
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
                eprintln!("{name}: skipping a line that is not JSON");
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
                println!(
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

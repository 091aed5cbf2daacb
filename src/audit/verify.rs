//! Checking a trail: the hash chain, the sequence across rotated files and,
//! given the JWKS, every checkpoint signature. Pure: the caller reads the
//! files. The first problem is reported with its file and line.

use super::writer::hash;
use super::GENESIS;
use crate::assertion::CHECKPOINT_TYP;
use crate::jose::{jws, Jwks};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub file: String,
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub checkpoints: u64,
    pub signatures_checked: u64,
}

/// Verifies `files` (name, bytes) in chain order.
pub fn verify(files: &[(String, Vec<u8>)], keys: Option<&Jwks>) -> Result<Summary, Failure> {
    let mut sum = Summary::default();
    let mut prev: Option<(String, u64)> = None;
    // The line whose hash the next line must name; a mismatch is reported
    // there, because that is the line whose bytes no longer match.
    let mut last_pos: Option<(String, usize)> = None;
    for (name, bytes) in files {
        let fail = |line: usize, reason: String| Failure {
            file: name.clone(),
            line,
            reason,
        };
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            let n = bytes.split(|&b| b == b'\n').count();
            return Err(fail(n, "truncated: the last line is incomplete".into()));
        }
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            if raw.is_empty() {
                if n == bytes.split(|&b| b == b'\n').count() {
                    break;
                }
                return Err(fail(n, "empty line".into()));
            }
            let v: serde_json::Value =
                serde_json::from_slice(raw).map_err(|_| fail(n, "not a JSON record (altered or truncated)".into()))?;
            let seq = v["seq"].as_u64().ok_or_else(|| fail(n, "missing seq".into()))?;
            let line_prev = v["prev"].as_str().ok_or_else(|| fail(n, "missing prev".into()))?;
            match &prev {
                Some((h, p)) => {
                    if seq != p + 1 {
                        return Err(fail(n, format!("sequence break: expected seq {}, found {seq} (a line was removed, reordered or inserted)", p + 1)));
                    }
                    if line_prev != h {
                        let (file, line) = last_pos.clone().unwrap_or((name.clone(), n));
                        return Err(Failure {
                            file,
                            line,
                            reason: format!(
                                "hash chain broken: this line does not match the prev recorded by seq {seq}"
                            ),
                        });
                    }
                }
                None => {
                    sum.first_seq = seq;
                    if seq == 1 && line_prev != GENESIS {
                        return Err(fail(n, "the first record must link to the genesis hash".into()));
                    }
                }
            }
            if v["event"] == "checkpoint" {
                sum.checkpoints += 1;
                if let Some(keys) = keys {
                    check_checkpoint(&v, seq, line_prev, keys).map_err(|r| fail(n, r))?;
                    sum.signatures_checked += 1;
                }
            }
            prev = Some((hash(raw), seq));
            last_pos = Some((name.clone(), n));
            sum.records += 1;
            sum.last_seq = seq;
        }
    }
    Ok(sum)
}

fn check_checkpoint(v: &serde_json::Value, seq: u64, prev: &str, keys: &Jwks) -> Result<(), String> {
    let token = v["jws"].as_str().ok_or("checkpoint without signature")?;
    let decoded = jws::decode(token).map_err(|e| format!("checkpoint signature malformed: {e}"))?;
    if decoded.header.typ.as_deref() != Some(CHECKPOINT_TYP) {
        return Err("checkpoint signature has the wrong typ".into());
    }
    let key = keys
        .get(decoded.header.kid.as_deref())
        .ok_or("checkpoint signed by an unknown key")?;
    jws::verify_es256(&decoded, key).map_err(|_| "forged checkpoint: the signature does not verify".to_owned())?;
    if decoded.claims.get("seq").and_then(|s| s.as_u64()) != Some(seq)
        || decoded.claims.get("prev").and_then(|p| p.as_str()) != Some(prev)
    {
        return Err("forged checkpoint: the signature is for another point of the chain".into());
    }
    Ok(())
}

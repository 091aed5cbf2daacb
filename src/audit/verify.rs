//! Checking a trail: the hash chain from the genesis record, the sequence
//! across rotated files and, given the JWKS, every checkpoint signature and
//! their spacing. Pure: the caller reads the files. The first problem is
//! reported with its file and line.
//!
//! The chain alone proves only that the lines agree with each other: an
//! attacker who deletes lines and re-links `prev` makes a consistent chain.
//! What he cannot make is a signature, so with the keys a trail must start
//! at seq 1, and no more than `checkpoint_every` records may pass without a
//! signed checkpoint. The records after the last checkpoint are protected
//! by the chain alone; a head kept outside (`/audit/head`) covers them.

use super::writer::hash;
use super::GENESIS;
use crate::assertion::CHECKPOINT_TYP;
use crate::jose::{jws, Jwks};

/// `audit.checkpoint_every` when the config does not say.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;

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
    /// Records after the last checkpoint: protected by the chain alone.
    pub after_checkpoint: u64,
    /// The seq of a collected head that the trail was checked against.
    pub head_seq: Option<u64>,
}

/// What signatures are checked with.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    pub jwks: &'a Jwks,
    /// The configured `audit.checkpoint_every`, when the config is known.
    /// Without it, each checkpoint's own signed `every` claim counts, and
    /// [`DEFAULT_CHECKPOINT_EVERY`] for what no checkpoint covers.
    pub checkpoint_every: Option<u64>,
    /// A checkpoint JWS kept outside the trail (from `/audit/head`): the
    /// trail must reach it and agree with it, or its end was cut.
    pub head: Option<&'a str>,
}

/// Where a run of records without a checkpoint began.
struct Run {
    len: u64,
    from: Option<(String, usize)>,
}

/// Verifies `files` (name, bytes) in chain order.
pub fn verify(files: &[(String, Vec<u8>)], keys: Option<&Keys<'_>>) -> Result<Summary, Failure> {
    let mut sum = Summary::default();
    let mut prev: Option<(String, u64)> = None;
    // The line whose hash the next line must name; a mismatch is reported
    // there, because that is the line whose bytes no longer match.
    let mut last_pos: Option<(String, usize)> = None;
    let mut run = Run { len: 0, from: None };
    // The spacing the latest verified checkpoint promised.
    let mut promised: Option<u64> = None;
    let head = match keys.and_then(|k| k.head.map(|h| (k, h))) {
        Some((k, token)) => Some(check_head(token, k.jwks).map_err(|reason| Failure {
            file: "head".into(),
            line: 1,
            reason,
        })?),
        None => None,
    };
    // The `prev` the trail holds at the head's seq, once reached.
    let mut at_head: Option<(String, String, usize)> = None;
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
        let count = bytes.split(|&b| b == b'\n').count();
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            if raw.is_empty() {
                if n == count {
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
                    // Whatever came before the first line given is unknown,
                    // and "unknown" is exactly what deleting it would leave.
                    if seq != 1 {
                        return Err(fail(n, format!("the trail does not start at its genesis record: the first record is seq {seq}, not 1 (records were removed from the start, or give the earlier files too, oldest first)")));
                    }
                    if line_prev != GENESIS {
                        return Err(fail(n, "the first record must link to the genesis hash".into()));
                    }
                    sum.first_seq = seq;
                }
            }
            if head.as_ref().is_some_and(|h| h.seq == seq) {
                at_head = Some((line_prev.to_owned(), name.clone(), n));
            }
            if v["event"] == "checkpoint" {
                sum.checkpoints += 1;
                if let Some(keys) = keys {
                    let every = check_checkpoint(&v, seq, line_prev, keys.jwks).map_err(|r| fail(n, r))?;
                    sum.signatures_checked += 1;
                    // A run is bounded by the spacing in force when it began
                    // (the previous checkpoint's promise) or when it ended
                    // (this one's), whichever is larger: a restart with a new
                    // `checkpoint_every` seals the old run at once.
                    let began = promised.or(keys.checkpoint_every).unwrap_or(DEFAULT_CHECKPOINT_EVERY);
                    let limit = began.max(every.unwrap_or(0));
                    if run.len > limit {
                        return Err(fail(n, gap(&run, limit)));
                    }
                    promised = every;
                }
                run = Run { len: 0, from: None };
            } else {
                run.len += 1;
                if run.from.is_none() {
                    run.from = Some((name.clone(), n));
                }
            }
            prev = Some((hash(raw), seq));
            last_pos = Some((name.clone(), n));
            sum.records += 1;
            sum.last_seq = seq;
        }
    }
    sum.after_checkpoint = run.len;
    let (end_file, end_line) =
        last_pos.unwrap_or_else(|| (files.last().map(|(n, _)| n.clone()).unwrap_or_else(|| "-".into()), 1));
    if let Some(keys) = keys {
        // The writer signs its spacing into every checkpoint (and a new
        // one at start), so the last checkpoint's promise is the rule for
        // the tail; the caller's value only where no checkpoint says.
        let limit = promised.or(keys.checkpoint_every).unwrap_or(DEFAULT_CHECKPOINT_EVERY);
        if run.len > limit {
            return Err(Failure {
                file: end_file,
                line: end_line,
                reason: gap(&run, limit),
            });
        }
    }
    if let Some(h) = head {
        match at_head {
            None => {
                return Err(Failure {
                    file: end_file,
                    line: end_line,
                    reason: format!(
                        "the trail ends at seq {} but the collected head is a checkpoint at seq {}: records were cut from the end",
                        sum.last_seq, h.seq
                    ),
                })
            }
            Some((p, file, line)) if p != h.prev => {
                return Err(Failure {
                    file,
                    line,
                    reason: format!(
                        "this trail does not agree with the collected head at seq {}: the records before it were rewritten",
                        h.seq
                    ),
                })
            }
            Some(_) => sum.head_seq = Some(h.seq),
        }
    }
    Ok(sum)
}

fn gap(run: &Run, limit: u64) -> String {
    let from = run
        .from
        .as_ref()
        .map(|(f, l)| format!(" from {f}:{l} on"))
        .unwrap_or_default();
    format!(
        "{} records{from} without a signed checkpoint, more than checkpoint_every ({limit}): checkpoints were removed and the chain re-linked",
        run.len
    )
}

/// Checks one checkpoint line; returns the spacing it promises (`every`),
/// which older checkpoints do not carry.
fn check_checkpoint(v: &serde_json::Value, seq: u64, prev: &str, keys: &Jwks) -> Result<Option<u64>, String> {
    let token = v["jws"].as_str().ok_or("checkpoint without signature")?;
    let claims = verified_claims(token, keys)?;
    if claims.get("seq").and_then(|s| s.as_u64()) != Some(seq)
        || claims.get("prev").and_then(|p| p.as_str()) != Some(prev)
    {
        return Err("forged checkpoint: the signature is for another point of the chain".into());
    }
    Ok(claims.get("every").and_then(|e| e.as_u64()).filter(|e| *e > 0))
}

fn verified_claims(token: &str, keys: &Jwks) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let decoded = jws::decode(token).map_err(|e| format!("checkpoint signature malformed: {e}"))?;
    if decoded.header.typ.as_deref() != Some(CHECKPOINT_TYP) {
        return Err("checkpoint signature has the wrong typ".into());
    }
    let key = keys
        .get(decoded.header.kid.as_deref())
        .ok_or("checkpoint signed by an unknown key")?;
    jws::verify_es256(&decoded, key).map_err(|_| "forged checkpoint: the signature does not verify".to_owned())?;
    Ok(decoded.claims)
}

/// A collected head: a checkpoint signature over (seq, prev).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub prev: String,
}

/// Verifies a collected head's signature and reads the point it names.
pub fn check_head(token: &str, keys: &Jwks) -> Result<Head, String> {
    let claims = verified_claims(token.trim(), keys).map_err(|e| format!("collected head: {e}"))?;
    match (
        claims.get("seq").and_then(|s| s.as_u64()),
        claims.get("prev").and_then(|p| p.as_str()),
    ) {
        (Some(seq), Some(prev)) => Ok(Head {
            seq,
            prev: prev.to_owned(),
        }),
        _ => Err("collected head: the signature names no point of the chain".into()),
    }
}

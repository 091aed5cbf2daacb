//! Step-up tokens for the load benchmark's sensitive-route scenario.
//!
//!     bench_tokens init DIR
//!         writes DIR/idp-key.pem (an ES256 issuer key) and DIR/idp-jwks.json
//!     bench_tokens mint --key DIR/idp-key.pem --iss ISS --aud AUD --sid SID --txn TXN --count N --out FILE
//!         writes N tokens, one a line, each with its own `jti`
//!
//! A `jti` is accepted once, so a load run needs one token per request.
//! Tokens are bound to one session and one request (`sid` + `txn`, taken
//! from the gateway's challenge for that request) and live 300 s, the most
//! the gateway accepts: mint them just before the run.

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Init {
        dir: PathBuf,
    },
    Mint {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        iss: String,
        #[arg(long)]
        aud: String,
        #[arg(long)]
        sid: String,
        #[arg(long)]
        txn: String,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
        /// Signing threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

fn main() -> Result<()> {
    match Args::parse().cmd {
        Cmd::Init { dir } => {
            let (key, pem) = stepgate::assertion::generate_signing_key();
            std::fs::write(dir.join("idp-key.pem"), pem)?;
            let jwk = stepgate::jose::jwk::public_jwk(key.verifying_key());
            std::fs::write(dir.join("idp-jwks.json"), json!({ "keys": [jwk] }).to_string())?;
        }
        Cmd::Mint {
            key,
            iss,
            aud,
            sid,
            txn,
            count,
            out,
            threads,
        } => {
            let pem = std::fs::read_to_string(&key).with_context(|| format!("read {}", key.display()))?;
            let key = stepgate::assertion::load_signing_key_pem(&pem).context("issuer key")?;
            let kid = stepgate::jose::jwk::thumbprint(key.verifying_key());
            let iat = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
            let run = stepgate::ids::random_token();
            let threads = threads.max(1);
            let parts: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let (key, kid, iss, aud, sid, txn, run) = (&key, &kid, &iss, &aud, &sid, &txn, &run);
                        s.spawn(move || {
                            let mut lines = String::new();
                            for i in (t..count).step_by(threads) {
                                let claims = json!({
                                    "iss": iss, "aud": aud, "iat": iat, "exp": iat + 300,
                                    "jti": format!("{run}-{i}"), "sub": "alice", "sid": sid, "txn": txn,
                                    "amr": ["otp"], "acr": "stepup",
                                });
                                lines.push_str(&stepgate::jose::jws::mint_es256(key, kid, claims));
                                lines.push('\n');
                            }
                            lines
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("signing thread")).collect()
            });
            let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
            for p in parts {
                f.write_all(p.as_bytes())?;
            }
            f.flush()?;
        }
    }
    Ok(())
}

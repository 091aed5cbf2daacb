//! The gateway under test: a real `stepgate serve` child process with its
//! own config, read from the outside through /proc and its admin listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

use crate::net::{self, Pki};

pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub approver_key: String,
    pub dir: PathBuf,
    child: Child,
    pid: u32,
}

/// The bench's routes: a `challenge` route (the request is answered 401 at
/// once and parked) and a `hold` route (the connection waits) that one
/// approval releases. Both take a 1-based capture so every hold is distinct.
fn config(port: u16, admin: u16, upstream: SocketAddr, holds: usize, key_sha256: &str) -> String {
    // Both kinds are pending at once, plus the warm-up holds; every hold-mode
    // request keeps its own connection open. Every client of the bench is
    // on loopback (waiting connections spread over 127.0.0.2 and up), so the
    // per-client budgets are lifted to the whole gateway's.
    let max_holds = 2 * holds + 1000;
    let max_connections = holds + 1000;
    format!(
        "listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
tls: {{ cert: cert.pem, key: key.pem }}
upstream: http://{upstream}
trusted_proxies: [127.0.0.0/8]
identity: {{ header: X-Remote-User }}
session: {{ cookie: SESSIONID }}
assertion: {{ key: assertion.pem, issuer: stepgate, audience: bench }}
audit: {{ path: state/audit.jsonl }}
limits: {{ max_holds: {max_holds}, max_connections: {max_connections}, max_holds_per_client: {max_holds}, max_holds_per_session: {max_holds}, max_held_bytes_per_client: 1GiB, max_buffered_bytes_per_client: 1GiB }}
stepup:
  users: state/users.yaml
  approvers: [ {{ name: ops-bot, groups: [ops], key_sha256: '{key_sha256}' }} ]
routes:
  - name: delete-user
    action: user.delete
    match: {{ methods: [POST], path: '/admin/users/([^/]+)/delete' }}
    require: {{ methods: [totp], max_age: 5m }}
    display: [ {{ label: User, capture: 1 }} ]
    hold: {{ mode: challenge, timeout: 30m }}
  - name: agent-transfer
    action: money.transfer
    match: {{ methods: [POST], path: '/api/agent/([0-9]+)' }}
    require: {{ approvals: 1, approvers: [ops] }}
    display: [ {{ label: Amount, json: /amount }}, {{ label: Payee, json: /payee }} ]
    hold: {{ mode: hold, timeout: 30m }}
"
    )
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

impl Gateway {
    pub async fn start(binary: &Path, upstream: SocketAddr, holds: usize, pki: &Pki) -> Result<Gateway> {
        Self::start_with(binary, pki, &[], |port, admin, key| {
            config(port, admin, upstream, holds, key)
        })
        .await
    }

    /// Starts the gateway with the config `config(port, admin port, approver
    /// key digest)` and `env` set for it.
    pub async fn start_with(
        binary: &Path,
        pki: &Pki,
        env: &[(&str, &str)],
        config: impl FnOnce(u16, u16, &str) -> String,
    ) -> Result<Gateway> {
        let dir = std::env::temp_dir().join(format!("stepgate-holdcap-{}", stepgate::ids::random_token()));
        std::fs::create_dir_all(dir.join("state"))?;
        std::fs::write(dir.join("cert.pem"), &pki.cert_pem)?;
        // `serve` refuses key files others may read.
        write_private(&dir.join("key.pem"), pki.key_pem.as_bytes())?;
        let (_, pem) = stepgate::assertion::generate_signing_key();
        write_private(&dir.join("assertion.pem"), pem.as_bytes())?;
        let approver_key = stepgate::ids::random_token();
        let digest: String = Sha256::digest(approver_key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (port, admin) = (net::free_port()?, net::free_port()?);
        std::fs::write(dir.join("routes.yaml"), config(port, admin, &digest))?;
        let log = std::fs::File::create(dir.join("gateway.log"))?;
        let child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(dir.join("routes.yaml"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let pid = child.id().context("the gateway exited at once")?;
        let gw = Gateway {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            approver_key,
            dir,
            child,
            pid,
        };
        gw.wait_ready().await?;
        Ok(gw)
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let up = tokio::net::TcpStream::connect(self.addr).await.is_ok();
            if up && self.metrics().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "the gateway did not come up; see {}",
            self.dir.join("gateway.log").display()
        )
    }

    /// A field of the gateway's /proc/PID/status, in KiB.
    pub fn status_kib(&self, field: &str) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in /proc/{}/status", self.pid))
    }

    /// VmRSS once it has stopped moving (two reads 300 ms apart within
    /// 16 KiB), so allocations still in flight are not missed.
    pub async fn settled_rss_kib(&self) -> Result<u64> {
        let mut last = self.status_kib("VmRSS")?;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.status_kib("VmRSS")?;
            if now.abs_diff(last) <= 16 {
                return Ok(now);
            }
            last = now;
        }
        Ok(last)
    }

    /// The admin listener's Prometheus page.
    pub async fn metrics(&self) -> Result<String> {
        let mut c = net::connect_plain(self.admin).await?;
        let req = net::request("GET", "admin", "/metrics", &[], Bytes::new());
        let (status, body) = net::call(&mut c, req).await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    pub async fn holds_open(&self) -> Result<usize> {
        Ok(net::metric(&self.metrics().await?, "stepgate_holds_open")? as usize)
    }

    /// Waits until the gateway reports `n` open holds.
    pub async fn wait_holds(&self, n: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let open = self.holds_open().await?;
            if open >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {open} of {n} holds open after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    #[allow(dead_code)] // hold_churn's
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the gateway wrote to its stdout and stderr so far.
    #[allow(dead_code)] // hold_churn's
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The durable audit writes (count, total seconds, and the cumulative
/// bucket counts) as the gateway's histogram reports them.
pub struct AuditWrites {
    pub count: f64,
    pub sum: f64,
    pub buckets: Vec<(f64, f64)>,
}

impl AuditWrites {
    pub fn read(page: &str) -> Result<AuditWrites> {
        let name = "stepgate_audit_write_seconds";
        let mut buckets = Vec::new();
        for line in page.lines() {
            let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix("_bucket{le=\"")) else {
                continue;
            };
            let Some((le, n)) = rest.split_once("\"} ") else {
                continue;
            };
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse()? };
            buckets.push((le, n.trim().parse()?));
        }
        Ok(AuditWrites {
            count: net::metric(page, &format!("{name}_count"))?,
            sum: net::metric(page, &format!("{name}_sum"))?,
            buckets,
        })
    }

    /// What happened between `before` and `self`: writes, mean seconds and
    /// the upper bound of the bucket holding the 99th percentile.
    pub fn since(&self, before: &AuditWrites) -> (f64, f64, f64) {
        let n = self.count - before.count;
        let mean = if n > 0.0 { (self.sum - before.sum) / n } else { 0.0 };
        let mut p99 = f64::NAN;
        for ((le, c), (_, b)) in self.buckets.iter().zip(&before.buckets) {
            if n > 0.0 && c - b >= 0.99 * n {
                p99 = *le;
                break;
            }
        }
        (n, mean, p99)
    }
}

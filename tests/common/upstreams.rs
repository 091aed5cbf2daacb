//! Real upstream processes for attack tests: the same sensitive handlers
//! served by Express, Flask (Werkzeug and gunicorn), a plain ASGI app on
//! hypercorn, Rack on WEBrick, nginx, and a hostile fake that answers 101
//! and keeps executing requests. Each app is its framework's own router and
//! parsers (`tests/upstreams/`), so a test asks "which handler did the real
//! app run, with what" instead of trusting our own idea of the upstream.
//!
//! Every app appends one JSON line per executed handler to a record log in
//! the upstream's temp dir; [`RealUpstream::ran`] reads it back.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framework {
    Express,
    Flask,
    /// The Flask app behind Werkzeug's `ProxyFix`, which believes one hop
    /// of `X-Forwarded-*` (the gateway's).
    FlaskProxyFix,
    FlaskGunicorn,
    Hypercorn,
    Rack,
    Nginx,
    Fake101,
}

use super::free_port;

impl Framework {
    pub const ALL: [Framework; 8] = [
        Framework::Express,
        Framework::Flask,
        Framework::FlaskProxyFix,
        Framework::FlaskGunicorn,
        Framework::Hypercorn,
        Framework::Rack,
        Framework::Nginx,
        Framework::Fake101,
    ];

    /// The `server` field the app writes into its records.
    pub fn name(self) -> &'static str {
        match self {
            Framework::Express => "express",
            Framework::Flask => "flask",
            Framework::FlaskProxyFix => "flask-proxyfix",
            Framework::FlaskGunicorn => "gunicorn",
            Framework::Hypercorn => "hypercorn",
            Framework::Rack => "rack",
            Framework::Nginx => "nginx",
            Framework::Fake101 => "fake101",
        }
    }
}

/// One handler execution as the app recorded it.
#[derive(Debug, Clone)]
pub struct Ran {
    pub handler: String,
    pub method: String,
    /// The path the framework routed on (decoded/normalised as it does).
    pub path: String,
    /// The host as the framework reads it, port stripped.
    pub host: String,
    pub query: serde_json::Value,
    /// The parsed body (form or JSON, as the framework picks); null when the
    /// framework did not parse one (nginx never reads it).
    pub body: serde_json::Value,
    /// The `SESSIONID` cookie as the framework's cookie parser reads it.
    pub session: Option<String>,
    /// `X-StepUp-Assertion`, when present.
    pub assertion: Option<String>,
    /// The request headers as the framework sees them.
    pub headers: serde_json::Value,
    /// The whole record line (framework-specific extras included).
    pub raw: serde_json::Value,
}

pub struct RealUpstream {
    pub addr: SocketAddr,
    pub framework: Framework,
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn upstreams_dir() -> PathBuf {
    manifest_dir().join("tests/upstreams")
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn venv_python() -> PathBuf {
    let py = manifest_dir().join(".venv/bin/python");
    if !py.exists() {
        panic!("{} is missing: run scripts/test-env to set up .venv", py.display());
    }
    py
}

impl RealUpstream {
    /// Starts `f` on a free port and waits (bounded) until it accepts.
    pub async fn start(f: Framework) -> RealUpstream {
        // A free port can be taken between probing and binding; try again.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(f).await {
                Ok(u) => return u,
                Err(e) => last = e,
            }
        }
        panic!("{f:?} upstream did not start: {last}");
    }

    async fn try_start(f: Framework) -> Result<RealUpstream, String> {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("stepgate-upstream-{}", stepgate::ids::random_token()));
        std::fs::create_dir_all(&dir).expect("upstream temp dir");
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let (mut cmd, log) = command(f, &dir, port);
        let out = std::fs::File::create(dir.join("output.log")).expect("output log");
        let err = out.try_clone().expect("output log");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{f:?} upstream: cannot run {:?}: {e}", cmd.get_program()));
        let mut up = RealUpstream {
            addr,
            framework: f,
            child,
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(up);
            }
            if let Ok(Some(status)) = up.child.try_wait() {
                let output = std::fs::read_to_string(up.dir.join("output.log")).unwrap_or_default();
                let tail: String = output
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(format!("exited with {status}; last output:\n{tail}"));
            }
            if Instant::now() > deadline {
                return Err(format!("not accepting on {addr} after 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every handler the app executed, in order.
    pub fn ran(&self) -> Vec<Ran> {
        if self.framework == Framework::Nginx {
            self.nginx_barrier();
        }
        let text = read_lossy(&self.log);
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| !v["path"].as_str().is_some_and(|p| p.starts_with("/__barrier/")))
            .map(|v| to_ran(self.framework, v))
            .collect()
    }

    pub fn ran_handler(&self, handler: &str) -> Vec<Ran> {
        self.ran().into_iter().filter(|r| r.handler == handler).collect()
    }

    /// The app's own stdout/stderr so far (for a failing test's message).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("output.log")).unwrap_or_default()
    }

    /// nginx writes the access log line after it has sent the response, so
    /// a test that just read a response could read the log too early. One
    /// process serves connections in order: once a later request's line is
    /// in the log, every earlier request's line is too.
    fn nginx_barrier(&self) {
        use std::io::{Read, Write};
        let id = stepgate::ids::random_token();
        let req = format!("GET /__barrier/{id} HTTP/1.1\r\nHost: barrier.invalid\r\nConnection: close\r\n\r\n");
        if let Ok(mut s) = std::net::TcpStream::connect(self.addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(req.as_bytes());
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let text = read_lossy(&self.log);
            if text.contains(&id) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RealUpstream {
    fn drop(&mut self) {
        // The whole group: gunicorn's and hypercorn's workers too.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn command(f: Framework, dir: &Path, port: u16) -> (Command, PathBuf) {
    let log = dir.join("record.log");
    let up = upstreams_dir();
    let port_s = port.to_string();
    let bind = format!("127.0.0.1:{port}");
    let cmd = match f {
        Framework::Express => {
            let node = which("node").unwrap_or_else(|| panic!("node is not installed: apt-get install nodejs npm"));
            let express = up.join("express/node_modules/express");
            if !express.exists() {
                panic!("{} is missing: run scripts/test-env", express.display());
            }
            let mut c = Command::new(node);
            c.arg(up.join("express/app.js")).arg(&port_s).arg(&log);
            c
        }
        Framework::Flask => {
            let mut c = Command::new(venv_python());
            c.current_dir(&up).arg("flask_app.py").arg(&port_s).arg(&log);
            c
        }
        Framework::FlaskProxyFix => {
            let mut c = Command::new(venv_python());
            c.current_dir(&up).arg("flask_proxyfix.py").arg(&port_s).arg(&log);
            c
        }
        Framework::FlaskGunicorn => {
            let mut c = Command::new(venv_python());
            c.current_dir(&up)
                .args(["-m", "gunicorn", "--workers", "1", "--bind", &bind, "flask_app:app"])
                .env("RECORD_LOG", &log)
                .env("RECORD_SERVER", "gunicorn");
            c
        }
        Framework::Hypercorn => {
            let mut c = Command::new(venv_python());
            c.current_dir(&up)
                .args(["-m", "hypercorn", "--workers", "1", "--bind", &bind, "asgi_app:app"])
                .env("RECORD_LOG", &log);
            c
        }
        Framework::Fake101 => {
            let mut c = Command::new(venv_python());
            c.current_dir(&up).arg("fake101.py").arg(&port_s).arg(&log);
            c
        }
        Framework::Rack => {
            let ruby = which("ruby")
                .unwrap_or_else(|| panic!("ruby is not installed: apt-get install ruby ruby-rack ruby-webrick"));
            let ok = Command::new(&ruby)
                .args(["-e", "require 'rack'; require 'rack/handler/webrick'"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                panic!("ruby cannot load rack and webrick: apt-get install ruby-rack ruby-webrick");
            }
            let mut c = Command::new(ruby);
            c.current_dir(&up).arg("rack_app.rb").arg(&port_s).arg(&log);
            c
        }
        Framework::Nginx => {
            let nginx = which("nginx")
                .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
                .unwrap_or_else(|| panic!("nginx is not installed: apt-get install nginx"));
            let template = std::fs::read_to_string(up.join("nginx.conf")).expect("tests/upstreams/nginx.conf");
            let d = dir.to_str().expect("utf-8 temp dir");
            let conf = template.replace("__DIR__", d).replace("__PORT__", &port_s);
            std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
            let mut c = Command::new(nginx);
            c.arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-g")
                .arg(format!("daemon off; pid {d}/nginx.pid;"));
            c
        }
    };
    (cmd, log)
}

/// The record log as text. nginx writes the bytes of a path that is not
/// UTF-8 as they came, and one such line must not hide every other record.
fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn opt_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn to_ran(f: Framework, v: serde_json::Value) -> Ran {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    if f == Framework::Nginx {
        // nginx logs every variable, empty when absent; absent is None here.
        let nonempty = |k: &str| v[k].as_str().filter(|x| !x.is_empty()).map(str::to_owned);
        let mut query = serde_json::Map::new();
        // nginx's $arg_NAME is the first occurrence; keep the first too.
        for (k, val) in form_urlencoded::parse(s("args").as_bytes()) {
            query
                .entry(k.into_owned())
                .or_insert(serde_json::Value::String(val.into_owned()));
        }
        let headers: serde_json::Map<_, _> = v["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .filter(|(_, x)| x.as_str().is_some_and(|x| !x.is_empty()))
                    .map(|(k, x)| (k.clone(), x.clone()))
                    .collect()
            })
            .unwrap_or_default();
        return Ran {
            handler: s("handler"),
            method: s("method"),
            path: s("path"),
            host: s("host"),
            query: serde_json::Value::Object(query),
            body: serde_json::Value::Null,
            session: nonempty("session"),
            assertion: nonempty("assertion"),
            headers: serde_json::Value::Object(headers),
            raw: v,
        };
    }
    Ran {
        handler: s("handler"),
        method: s("method"),
        path: s("path"),
        host: s("host"),
        query: v["query"].clone(),
        body: v["body"].clone(),
        session: opt_string(&v["session"]),
        assertion: opt_string(&v["assertion"]),
        headers: v["headers"].clone(),
        raw: v,
    }
}

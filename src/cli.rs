//! Command line (SPEC §8). Exit codes: 0 ok, 1 runtime failure, 2 bad input.

/// `println!` for text that may carry client bytes (a URL, a header, an
/// audit record's user or reason): control characters, escape sequences
/// and Bidi controls are printed visibly escaped, never sent to the
/// terminal as themselves (SPEC §7).
macro_rules! say {
    ($($t:tt)*) => {
        println!("{}", stepgate::escape::Escaped(&format!($($t)*)))
    };
}

mod audit;
mod console;
mod demo;
mod enroll;
mod explain;
mod raw;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use stepgate::assertion::{generate_signing_key, load_public_key_pem, load_signing_key_pem, AssertionSigner};
use stepgate::clock::SystemClock;
use stepgate::config::{self, Config};
use stepgate::{keys, proxy};

#[derive(Parser)]
#[command(
    name = "stepgate",
    version = env!("STEPGATE_VERSION"),
    about = "Step-up authentication gateway for applications that cannot be changed"
)]
pub struct Cli {
    /// Log format: `text` (default) or `json`, one object per line. What
    /// is logged is set with RUST_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The config file (routes.yaml).
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
    },
    /// Run the gateway in front of a built-in legacy admin console
    /// (development certificates and a TOTP enrollment on first run).
    Demo {
        /// Where the demo keeps its certificates, keys and state.
        #[arg(long, default_value = "stepgate-demo")]
        dir: PathBuf,
        /// The gateway's HTTPS port on localhost.
        #[arg(long, default_value_t = 8443)]
        port: u16,
    },
    /// Validate a config file; prints `file:line:col: message` on error.
    Check {
        /// The config file (routes.yaml).
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
    },
    /// Write a new P-256 assertion key (PKCS#8 PEM, mode 0600).
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the JWKS of the assertion keys (current and retired).
    Jwks {
        /// The config file (routes.yaml).
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
    },
    /// Verify or read the audit trail.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Show which route a request matches, which conditions fire and what
    /// would be required.
    Explain {
        /// The request method, e.g. POST.
        #[arg(required_unless_present = "raw")]
        method: Option<String>,
        /// The request URL, e.g. https://admin.example/admin/users/7/delete.
        #[arg(required_unless_present = "raw")]
        url: Option<String>,
        /// A request header, `Name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// A file with the request body.
        #[arg(long)]
        body: Option<PathBuf>,
        /// Instead of METHOD and URL: a file with the request as a client
        /// sends it over HTTP/1.1, head and body (`-` reads stdin). Bytes a
        /// URL cannot carry (bad escapes, absolute-form, two Host lines)
        /// meet the gateway's checks as they would on the wire.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["method", "url", "headers", "body"])]
        raw: Option<PathBuf>,
        /// The client IP (after trusted proxies); with --raw the peer's,
        /// and its X-Forwarded-For counts if it is a trusted proxy.
        #[arg(long, default_value = "127.0.0.1")]
        ip: std::net::IpAddr,
        /// When (Unix seconds or RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
        /// How long ago the gateway first saw the session, e.g. 9h.
        #[arg(long)]
        session_age: Option<String>,
        /// The session's device fingerprint changed.
        #[arg(long)]
        new_device: bool,
        /// The caller authenticated with a client certificate.
        #[arg(long)]
        workload: bool,
        /// The config file (routes.yaml).
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
    },
    /// Enroll a user's step-up credential.
    Enroll {
        #[command(subcommand)]
        kind: EnrollKind,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain and sequence (and, with --config or --jwks,
    /// every checkpoint signature) of FILES given in chain order.
    Verify {
        /// The trail's files, oldest first, the current file last.
        files: Vec<PathBuf>,
        /// Verify checkpoint signatures with the keys and spacing of this config.
        #[arg(long, conflicts_with = "jwks")]
        config: Option<PathBuf>,
        /// Verify checkpoint signatures with this JWKS (from `stepgate jwks`).
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// With --jwks: the `audit.checkpoint_every` the trail was written
        /// with (default 1000); --config reads it from the config.
        #[arg(long, conflicts_with = "config")]
        checkpoint_every: Option<u64>,
        /// A checkpoint collected from `/audit/head` (the JSON line or its
        /// JWS): the trail must reach it, or its end was cut.
        #[arg(long)]
        head: Option<PathBuf>,
    },
    /// Print one hold's story from the audit trail.
    Show {
        /// Hold ids are base64url, so one may begin with `-`.
        #[arg(long, allow_hyphen_values = true)]
        hold: String,
        /// The config file (routes.yaml).
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
        /// Files to read (default: the configured trail and its rotations).
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum EnrollKind {
    /// Create a TOTP secret (inactive until confirmed with --confirm CODE).
    Totp {
        /// The user name, as the user store and routes name it.
        user: String,
        /// The config file (routes.yaml).
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
        /// Activate the pending secret with a current code from the app.
        #[arg(long)]
        confirm: Option<String>,
        /// Replace an active TOTP credential.
        #[arg(long)]
        force: bool,
    },
    /// Print a one-time link that registers a passkey or security key.
    Webauthn {
        /// The user name, as the user store and routes name it.
        user: String,
        /// The config file (routes.yaml).
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
        /// How long the link works, e.g. 15m, 1h (at most 7d).
        #[arg(long, default_value = "15m")]
        ttl: String,
    },
}

/// A failure caused by the caller's input (exit 2) rather than at run time.
#[derive(Debug)]
pub(crate) struct BadInput(pub(crate) String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config } => check(&config),
        Command::Demo { dir, port } => demo::run(&dir, port),
        Command::Keygen { out, force } => keygen(&out, force),
        Command::Jwks { config } => jwks(&config),
        Command::Audit {
            cmd:
                AuditCmd::Verify {
                    files,
                    config,
                    jwks,
                    checkpoint_every,
                    head,
                },
        } => audit::verify(
            &files,
            audit::Keyed {
                config: config.as_deref(),
                jwks: jwks.as_deref(),
                checkpoint_every,
                head: head.as_deref(),
            },
        ),
        Command::Audit {
            cmd: AuditCmd::Show { hold, config, files },
        } => audit::show(&hold, &config, &files),
        Command::Explain {
            method,
            url,
            headers,
            body,
            raw,
            ip,
            at,
            session_age,
            new_device,
            workload,
            config,
        } => load_config(&config).and_then(|c| {
            let session_age = match session_age.as_deref() {
                Some(s) => Some(stepgate::config::units::parse_duration(s).map_err(BadInput)?),
                None => None,
            };
            let input = match (&raw, &method, &url) {
                (Some(file), _, _) => explain::Input::Raw(file),
                (None, Some(method), Some(url)) => explain::Input::Url {
                    method,
                    url,
                    headers: &headers,
                    body: body.as_deref(),
                },
                // clap requires both unless --raw is given.
                _ => return Err(BadInput("explain needs METHOD and URL, or --raw FILE".into()).into()),
            };
            explain::explain(
                &c,
                &explain::Request {
                    input,
                    ip,
                    at: at.as_deref(),
                    session_age,
                    new_device,
                    workload,
                },
            )
        }),
        Command::Enroll {
            kind:
                EnrollKind::Totp {
                    user,
                    config,
                    confirm,
                    force,
                },
        } => load_config(&config).and_then(|c| enroll::totp(&c, &user, confirm.as_deref(), force)),
        Command::Enroll {
            kind: EnrollKind::Webauthn { user, config, ttl },
        } => load_config(&config).and_then(|c| enroll::webauthn(&c, &user, &ttl)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<BadInput>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes are for a person at a terminal; in a file, journald or a
    // pipe they are noise that breaks grep. NO_COLOR (no-color.org) too.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // Fields carry client text (an approver's sign-in name, a reason, a
    // user, an error quoting a header). It is escaped for every log call at
    // once, in both formats, so a newline cannot forge a line and an escape
    // sequence cannot repaint a terminal (SPEC §7): text logs escape each
    // field value; JSON, which escapes C0 controls itself, gets the rest
    // (DEL, C1, Bidi) escaped on its way out.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    match format {
        LogFormat::Json => builder
            .with_writer(|| stepgate::escape::LogLine {
                inner: std::io::stderr(),
                json: true,
            })
            .json()
            .init(),
        LogFormat::Text => {
            use tracing_subscriber::field::MakeExt;
            let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                let text = format!("{value:?}");
                if field.name() == "message" {
                    write!(w, "{}", stepgate::escape::Escaped(&text))
                } else {
                    write!(w, "{}={}", field.name(), stepgate::escape::Escaped(&text))
                }
            })
            .delimited(" ");
            builder.with_writer(std::io::stderr).fmt_fields(fields).init()
        }
    }
}

pub(crate) fn load_config(path: &Path) -> anyhow::Result<Config> {
    config::load(path).map_err(|e| BadInput(e.to_string()).into())
}

fn check(path: &Path) -> anyhow::Result<()> {
    let config = load_config(path)?;
    config::check_files(path, &config).map_err(|e| BadInput(e.to_string()))?;
    check_tls(path, &config)?;
    if let config::StateConfig::Redis { url, prefix } = &config.state {
        check_shared_keys(&config, url, prefix)?;
    }
    for w in &config.warnings {
        eprintln!("{w}");
    }
    println!("{}: ok ({} routes)", path.display(), config.routes.routes().len());
    Ok(())
}

/// With a shared Redis: are this file's keys the ones the running
/// instances published? A difference is bad input (exit 2); a Redis that
/// does not answer is a runtime failure (exit 1), not a pass.
fn check_shared_keys(config: &Config, url: &str, prefix: &str) -> anyhow::Result<()> {
    use stepgate::store::{Fingerprints, RedisState, StateError, StateStore};
    let (session, _) = keys::load_or_create_session_key(&config.session.key_file)?;
    let fp = Fingerprints::new(&session, signer(config)?.kid());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        let store = RedisState::new(url, prefix)?;
        store.compare_keys(&fp).await
    });
    match result {
        Ok(()) => {
            println!("state: redis answers; the session and assertion keys match the running instances'");
            Ok(())
        }
        Err(StateError::KeyMismatch(m)) => Err(BadInput(format!("state: {m}")).into()),
        Err(e) => Err(anyhow::anyhow!("state: cannot compare key fingerprints: {e}")),
    }
}

/// The TLS files parsed as `serve` will use them: a certificate or key
/// that exists but is not PEM, or a key that does not fit its certificate,
/// is refused at the config key that names it, before anything listens.
fn check_tls(path: &Path, config: &Config) -> anyhow::Result<()> {
    use proxy::tls::{server_config, upstream_client_config, TlsError};
    let locate = |e: TlsError, section: &'static str| {
        let (at, what) = match &e {
            TlsError::File { path: file, message } => (
                config::tls_key_naming(config, file).unwrap_or(section),
                format!("{file}: not a usable PEM file ({message}); expected PEM blocks such as -----BEGIN CERTIFICATE----- or -----BEGIN PRIVATE KEY-----"),
            ),
            // rustls refuses a key that does not fit its certificate.
            TlsError::Rustls(_) => (section, format!("{e}; check that the key belongs to the certificate")),
            TlsError::ClientCa(_) => ("tls.client_ca", e.to_string()),
            _ => (section, e.to_string()),
        };
        BadInput(config::located(path, at, format!("{at}: {what}")).to_string())
    };
    let t = &config.tls;
    server_config(&t.cert, &t.key, t.client_ca.as_deref()).map_err(|e| locate(e, "tls.key"))?;
    if let Some(u) = &config.upstream.tls {
        upstream_client_config(u).map_err(|e| locate(e, "upstream_tls"))?;
    }
    Ok(())
}

fn keygen(out: &Path, force: bool) -> anyhow::Result<()> {
    if out.exists() && !force {
        return Err(BadInput(format!("{}: already exists (use --force to replace it)", out.display())).into());
    }
    let (_, pem) = generate_signing_key();
    keys::write_private(out, pem.as_bytes())?;
    let signer_kid = AssertionSigner::new(
        load_signing_key_pem(&pem)?,
        vec![],
        "x".into(),
        "x".into(),
        Duration::from_secs(60),
    )?
    .kid()
    .to_owned();
    println!("wrote {} (kid {signer_kid})", out.display());
    Ok(())
}

pub(crate) fn signer(config: &Config) -> anyhow::Result<AssertionSigner> {
    let a = &config.assertion;
    let pem = keys::read_text(&a.key)?;
    let key = load_signing_key_pem(&pem).with_context(|| a.key.display().to_string())?;
    let mut retired = Vec::new();
    for p in &a.retired_keys {
        retired.push(load_public_key_pem(&keys::read_text(p)?).with_context(|| p.display().to_string())?);
    }
    Ok(AssertionSigner::new(
        key,
        retired,
        a.issuer.clone(),
        a.audience.clone(),
        a.ttl,
    )?)
}

fn jwks(path: &Path) -> anyhow::Result<()> {
    let config = load_config(path)?;
    println!("{}", serde_json::to_string_pretty(&signer(&config)?.jwks())?);
    Ok(())
}

fn serve(path: &Path) -> anyhow::Result<()> {
    let config = load_config(path)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    // Only `demo` generates keys: a missing one here is a mistake to
    // report, not a reason to start with a new identity.
    config::check_files(path, &config).map_err(|e| BadInput(e.to_string()))?;
    check_tls(path, &config)?;
    // Serving happens on threads of its own (see `proxy::run_per_core`);
    // this runtime runs only the admin listener, reloads, signals and the
    // sweeper, which one worker keeps up with (a worker per core here would
    // sit idle next to the serving threads).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listen = config.listen;
        let admin = config.admin_listen;
        let gw = proxy::Gateway::load(config, Arc::new(SystemClock))?;
        // Watched before the port opens: once a client can connect, an edit
        // to the file is seen (an edit in between was missed).
        let _watcher = match proxy::reload::watch(gw.clone(), path.to_path_buf()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP");
                None
            }
        };
        // One listener per core on the same address (SO_REUSEPORT): the
        // kernel spreads connections over them.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let listeners = reuseport_listeners(listen, threads).with_context(|| format!("cannot listen on {listen}"))?;
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(addr) = admin {
            let admin_listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (admin)"))?;
            tracing::info!(%addr, "admin listener (metrics, healthz, readyz)");
            tokio::spawn(proxy::admin::run(gw.clone(), admin_listener, async move {
                let _ = admin_stopped.await;
            }));
        }
        #[cfg(unix)]
        proxy::reload::on_sighup(gw.clone(), path.to_path_buf());
        tracing::info!(%listen, upstream = %gw.config().upstream.authority, "stepgate listening");
        let drain = gw.config().limits.drain;
        proxy::run_per_core(gw, listeners, shutdown_signal(), drain).await?;
        let _ = stop_admin.send(());
        Ok(())
    })
}

/// `n` listeners on `addr` sharing it through `SO_REUSEPORT` (one
/// without it elsewhere). A port another process already listens on is
/// refused, as a single bind would be, rather than shared with it.
fn reuseport_listeners(addr: std::net::SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        // Bound but never listening: a probe that listened would take
        // connections into its backlog and reset them when dropped, so a
        // client arriving during start-up saw its handshake reset.
        let probe = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As a listener would: a port whose only users are connections in
        // TIME_WAIT (a restart after a crash) is free.
        probe.set_reuseaddr(true)?;
        probe.bind(addr)?;
        drop(probe);
    }
    let first = reuseport_listener(addr)?;
    let addr = first.local_addr()?;
    let mut all = vec![first];
    if cfg!(unix) {
        for _ in 1..n {
            all.push(reuseport_listener(addr)?);
        }
    }
    Ok(all)
}

fn reuseport_listener(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every command and every option or argument of every command says
    /// what it is in `--help`.
    #[test]
    fn every_help_entry_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() {
                missing.push(format!("{path} (the command)"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &format!("{path} {}", sub.get_name()), missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "stepgate", &mut missing);
        assert!(missing.is_empty(), "no description in --help: {missing:?}");
    }

    /// A port another process listens on is refused; a port held only by
    /// connections in TIME_WAIT, as after a crash, is taken (the restart
    /// after SIGKILL in tests/restart_recovery.rs needs it).
    #[tokio::test]
    async fn the_port_probe_refuses_a_listener_but_not_time_wait() {
        use std::io::Read;
        let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = other.local_addr().expect("addr");
        assert!(
            super::reuseport_listeners(addr, 2).is_err(),
            "a live listener's port was shared"
        );
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        let (accepted, _) = other.accept().expect("accept");
        // The server side closes first, so its end of the connection
        // stays in TIME_WAIT on the port.
        drop(accepted);
        let _ = client.read(&mut [0u8; 1]);
        drop(client);
        drop(other);
        let taken = super::reuseport_listeners(addr, 2).expect("a port in TIME_WAIT only is free");
        assert_eq!(taken.len(), 2);
    }
}

//! The network shell: TLS listener, per-request handler, upstream client.
//! It turns the core's decisions into bytes and owns every socket.

pub mod admin;
mod api;
mod approvals;
mod bodies;
mod browser;
mod challenge;
mod deadline;
mod display;
mod effects;
mod enroll;
mod extract;
mod facts;
mod first_byte;
mod fleet;
mod forward;
mod gate;
mod handler;
pub mod hygiene;
pub mod inflight;
mod limit;
mod oidc;
mod origin;
mod orphans;
mod page;
mod passkey;
mod pending;
pub mod plan;
mod proof_error;
mod proofs;
mod quota;
mod recover;
mod release;
pub mod reload;
pub mod respond;
mod serve;
mod sighting;
mod signin;
mod throttle;
pub mod tls;
mod upgrade;
mod webauthn;
mod who;

/// The `complete`/decision body parser's property check, for `crate::fuzzing`.
pub(crate) use api::proof_body::fuzz_check as fuzz_proof_body;

pub use crate::body::Body;
pub use forward::Upstream;
pub use page::escape as page_escape;
use respond::Reject;
pub use serve::{run, run_per_core};

/// What a person deciding about a hold is shown (approver queue, webhook):
/// the request's facts, never its body or any secret.
pub(crate) fn hold_summary(meta: &HoldMeta) -> serde_json::Map<String, serde_json::Value> {
    let display: Vec<serde_json::Value> = meta
        .display
        .iter()
        .map(|(l, v)| serde_json::json!({"label": l, "value": v}))
        .collect();
    let mut m = serde_json::Map::new();
    m.insert("hold_id".into(), meta.id.as_str().into());
    m.insert("route".into(), meta.route.clone().into());
    m.insert("action".into(), meta.action.clone().into());
    m.insert("requester".into(), meta.requester().into());
    m.insert("method".into(), meta.method.as_str().into());
    m.insert("target".into(), meta.path_and_query.clone().into());
    m.insert("display".into(), display.into());
    m.insert("txn".into(), meta.txn.as_str().into());
    m
}

/// An audit record about a hold, with the fields every hold event shares.
pub(crate) fn hold_record(event: audit::Event, meta: &HoldMeta) -> Record {
    Record {
        hold: Some(meta.id.as_str().to_owned()),
        route: Some(meta.route.clone()),
        action: Some(meta.action.clone()),
        sid: Some(meta.sid.as_str().to_owned()),
        txn: Some(meta.txn.as_str().to_owned()),
        ..Record::new(event)
    }
    .with("request_id", meta.request_id.clone())
}

use crate::assertion::{load_public_key_pem, load_signing_key_pem, AssertionSigner};
use crate::audit::{self, Audit, Record};
use crate::clock::{unix_secs, Clock};
use crate::config::Config;
use crate::hold::budget::BodyBudget;
use crate::hold::{HoldEngine, HoldMeta};
use crate::jose::Jwks;
use crate::keys;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::session::SessionKey;
use crate::stepup::token::{TokenIssuer, TokenVerifier};
use crate::stepup::webauthn::RelyingParty;
use crate::store::{Backoff, Fingerprints, MemoryState, RedisState, ReuseCache, Revoked, StateStore};
use crate::users::UserStore;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("state: {0}")]
    State(#[from] crate::store::StateError),
}

/// The parts of the gateway a reload replaces, swapped as one unit so a
/// request never sees routes from one file and issuers from another.
pub struct Live {
    pub config: Arc<Config>,
    pub upstream: Upstream,
    pub tokens: TokenVerifier,
    pub identity_jwt: Option<crate::identity::JwtIdentity>,
    /// `stepup.webauthn`, when passkeys are offered.
    pub webauthn: Option<Arc<RelyingParty>>,
    /// `stepup.oidc`, when re-authentication at an OpenID Provider is offered.
    pub oidc: Option<Arc<oidc::Provider>>,
}

fn upstream(config: &Config, metrics: &Metrics) -> Result<Upstream, StartError> {
    let tls = match &config.upstream.tls {
        Some(t) => Some(tls::upstream_client_config(t)?),
        None => None,
    };
    Ok(Upstream::new(
        config.upstream.authority.clone(),
        tls,
        config.limits.upstream_timeout,
        metrics.upstream_seconds.clone(),
    ))
}

fn oidc_provider(config: &Config) -> Result<Option<Arc<oidc::Provider>>, StartError> {
    let Some(o) = &config.stepup.oidc else { return Ok(None) };
    oidc::Provider::new(o)
        .map(|p| Some(Arc::new(p)))
        .map_err(|e| StartError::Invalid {
            path: "stepup.oidc".into(),
            message: e.to_string(),
        })
}

fn relying_party(config: &Config) -> Result<Option<Arc<RelyingParty>>, StartError> {
    let Some(w) = &config.stepup.webauthn else {
        return Ok(None);
    };
    RelyingParty::new(w)
        .map(|rp| Some(Arc::new(rp)))
        .map_err(|e| StartError::Invalid {
            path: "stepup.webauthn".into(),
            message: e.to_string(),
        })
}

fn identity_jwt(config: &Config) -> Result<Option<crate::identity::JwtIdentity>, StartError> {
    let Some(j) = &config.identity.jwt else { return Ok(None) };
    let text = keys::read_text(&j.jwks)?;
    crate::identity::JwtIdentity::new(j.issuer.clone(), j.audience.clone(), &text)
        .map(Some)
        .map_err(|e| StartError::Invalid {
            path: j.jwks.display().to_string(),
            message: e.to_string(),
        })
}

fn token_verifier(config: &Config) -> Result<TokenVerifier, StartError> {
    let mut issuers = Vec::new();
    for i in &config.stepup.token_issuers {
        let text = keys::read_text(&i.jwks)?;
        let keys = Jwks::parse(&text).map_err(|e| StartError::Invalid {
            path: i.jwks.display().to_string(),
            message: e.to_string(),
        })?;
        issuers.push(TokenIssuer {
            issuer: i.issuer.clone(),
            audience: i.audience.clone(),
            keys,
        });
    }
    Ok(TokenVerifier::new(issuers))
}

/// Where the memory backend journals spent single-use values: next to the
/// audit trail, which is the directory a deployment already keeps.
pub fn single_use_journal(config: &Config) -> std::path::PathBuf {
    let stem = config
        .audit
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("audit");
    // Not `<stem>.<something>.jsonl`: that is how rotated trail files are named.
    config.audit.path.with_file_name(format!("{stem}-single-use.jsonl"))
}

/// Audits and counts every webhook notification that will not be
/// delivered: a drop is never silent (issue 21 #3).
fn notify_dropped(audit: &Audit, metrics: &Metrics) -> crate::notify::OnDrop {
    let audit = audit.clone();
    let dropped = metrics.notifications_dropped.clone();
    Arc::new(move |event: &serde_json::Value, why: crate::notify::Dropped| {
        dropped
            .get_or_create(&crate::metrics::ResultLabels {
                result: why.as_str().to_owned(),
            })
            .inc();
        let text = |k: &str| event[k].as_str().map(str::to_owned);
        audit.record_later(
            Record {
                hold: text("hold_id"),
                route: text("route"),
                action: text("action"),
                txn: text("txn"),
                reason: Some(why.as_str().to_owned()),
                ..Record::new(audit::Event::NotifyDropped)
            }
            .with("notification", event["event"].as_str().unwrap_or_default().to_owned()),
        );
    })
}

/// Everything a request needs, shared by all connections.
pub struct Gateway {
    live: ArcSwap<Live>,
    pub session_key: SessionKey,
    pub signer: Arc<AssertionSigner>,
    pub audit: Audit,
    pub metrics: Metrics,
    /// Single-use records (token `jti`s, TOTP steps): in memory, or shared
    /// by every instance on Redis (`state:`).
    pub state: Arc<dyn StateStore>,
    /// Digests of the keys every instance must share.
    pub fingerprints: Fingerprints,
    pub holds: HoldEngine,
    /// Request bodies in memory, from their first byte until forwarded or
    /// their hold ends (`limits.max_buffered_bytes*`).
    pub bodies: Arc<BodyBudget>,
    /// Holds in Redis, shared by every instance (`state.backend: redis`);
    /// `holds` then mirrors the ones created here.
    pub shared_holds: Option<Arc<crate::store::RedisHolds>>,
    /// This process, as the owner of the holds whose clients wait on it.
    pub instance: String,
    pub users: UserStore,
    pub reuse: ReuseCache,
    /// What failed proofs cost per person at one client address (see
    /// `proofs`); the counts are in `state`, shared on Redis.
    pub failures: Backoff,
    /// What failed proofs and sign-ins cost per client address, whoever
    /// they name.
    pub client_failures: Backoff,
    /// Approver cookies ended by logout (memory only, like the other caches).
    pub revoked_approvers: Revoked,
    /// Rates of the ceremony endpoints per client and session.
    pub(crate) throttle: throttle::Throttle,
    /// OIDC authorization flows in flight.
    pub(crate) oidc_flows: oidc::Flows,
    pub notifier: Option<Notifier>,
    /// Releases being carried out (forwarded and recorded) right now.
    pub releases: Arc<inflight::Releases>,
    pub clock: Arc<dyn Clock>,
    shutdown: watch::Sender<bool>,
}

/// A record on its way into the audit trail: queued already, resolved when
/// it is durable.
pub(crate) type Written = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Reject>> + Send + 'static>>;

/// Per-connection facts the handler needs.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// DER of the verified client certificate, when one was presented.
    pub client_cert: Option<Arc<Vec<u8>>>,
}

impl Gateway {
    /// Loads the key material the config points at (the only file I/O of
    /// start-up besides TLS).
    pub fn load(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StartError> {
        let (session, created) = keys::load_or_create_session_key(&config.session.key_file)?;
        if created {
            tracing::warn!(path = %config.session.key_file.display(), "generated a new session key; share this file between instances");
        }
        let invalid = |path: &std::path::Path, e: &dyn std::fmt::Display| StartError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let session_digest = Fingerprints::session_digest(&session);
        let session_key = SessionKey::new(session).map_err(|e| invalid(&config.session.key_file, &e))?;
        let key_pem = keys::read_text(&config.assertion.key)?;
        let key = load_signing_key_pem(&key_pem).map_err(|e| invalid(&config.assertion.key, &e))?;
        let mut retired = Vec::new();
        for path in &config.assertion.retired_keys {
            let pem = keys::read_text(path)?;
            retired.push(load_public_key_pem(&pem).map_err(|e| invalid(path, &e))?);
        }
        let a = &config.assertion;
        let signer = Arc::new(
            AssertionSigner::new(key, retired, a.issuer.clone(), a.audience.clone(), a.ttl)
                .map_err(|e| invalid(&a.key, &e))?,
        );
        let fingerprints = Fingerprints {
            session: session_digest,
            assertion: signer.kid().to_owned(),
        };
        let shared_holds = match &config.state {
            crate::config::StateConfig::Memory => None,
            crate::config::StateConfig::Redis { url, prefix } => Some(Arc::new(crate::store::RedisHolds::new(
                url,
                prefix,
                config.limits.keep_ended_holds,
            )?)),
        };
        let state: Arc<dyn StateStore> = match &config.state {
            crate::config::StateConfig::Memory => {
                Arc::new(MemoryState::open(&single_use_journal(&config), unix_secs(clock.now()))?)
            }
            crate::config::StateConfig::Redis { url, prefix } => Arc::new(RedisState::new(url, prefix)?),
        };
        let audit = Audit::open(config.audit.clone(), signer.clone()).map_err(|e| invalid(&config.audit.path, &e))?;
        let tokens = token_verifier(&config)?;
        let identity_jwt = identity_jwt(&config)?;
        let webauthn = relying_party(&config)?;
        let oidc = oidc_provider(&config)?;
        let metrics = Metrics::new();
        let upstream = upstream(&config, &metrics)?;
        let holds = HoldEngine::new(config.limits.max_holds, config.limits.max_holds_per_session)
            .with_max_held_bytes(config.limits.max_held_bytes)
            .with_client_quota(
                config.limits.max_holds_per_client,
                config.limits.max_held_bytes_per_client,
            )
            .with_keep_ended(config.limits.keep_ended_holds);
        let (shutdown, _) = watch::channel(false);
        let notifier = match &config.notify {
            Some(n) => Some(
                Notifier::start(
                    n.webhook.clone(),
                    n.queue,
                    Duration::from_millis(500),
                    notify_dropped(&audit, &metrics),
                )
                .map_err(|e| StartError::Invalid {
                    path: "notify.webhook".into(),
                    message: e.to_string(),
                })?,
            ),
            None => None,
        };
        let users = UserStore::open(&config.stepup.users);
        if let Err(e) = users.snapshot() {
            return Err(StartError::Invalid {
                path: config.stepup.users.display().to_string(),
                message: e.to_string(),
            });
        }
        Ok(Arc::new(Gateway {
            audit,
            users,
            reuse: ReuseCache::default(),
            failures: Backoff::new(5, 30, 900),
            client_failures: Backoff::new(20, 30, 900),
            revoked_approvers: Revoked::default(),
            throttle: throttle::Throttle::new(&config.limits),
            oidc_flows: oidc::Flows::default(),
            notifier,
            releases: Arc::default(),
            live: ArcSwap::from_pointee(Live {
                config: Arc::new(config),
                upstream,
                tokens,
                identity_jwt,
                webauthn,
                oidc,
            }),
            metrics,
            session_key,
            signer,
            state,
            fingerprints,
            holds,
            bodies: BodyBudget::new(),
            shared_holds,
            instance: crate::ids::random_token(),
            clock,
            shutdown,
        }))
    }

    /// Tells the webhook about a hold that involves approvers. Holds that
    /// only wait for the requester's own proof are not announced.
    pub fn notify(&self, event: &str, meta: &HoldMeta, now: std::time::SystemTime) {
        if meta.needs_approval {
            self.notify_always(event, meta, now, None);
        }
    }

    /// Notifies whatever the hold needs (break-glass is always announced).
    pub fn notify_always(&self, event: &str, meta: &HoldMeta, now: std::time::SystemTime, reason: Option<&str>) {
        let Some(n) = &self.notifier else { return };
        let mut event_json = hold_summary(meta);
        event_json.insert("event".into(), event.into());
        event_json.insert("reason".into(), reason.into());
        event_json.insert("at".into(), unix_secs(now).into());
        // An approver must hear of a hold waiting for them, and break-glass
        // must reach whoever watches for it, whatever else is queued.
        let priority = match event {
            "hold.break_glass" => crate::notify::Priority::BreakGlass,
            "hold.pending" if meta.needs_approval => crate::notify::Priority::Approval,
            _ => crate::notify::Priority::Routine,
        };
        n.send(serde_json::Value::Object(event_json), priority);
    }

    /// Appends to the audit trail and waits for it to be durable; without
    /// the record, the sensitive work must not go on. The record is queued
    /// at the call (see [`Audit::record`]).
    pub fn audit(&self, record: Record) -> Written {
        let started = std::time::Instant::now();
        let written = self.audit.record(record);
        let seconds = self.metrics.audit_write_seconds.clone();
        Box::pin(async move {
            let result = written.await;
            seconds.observe(started.elapsed().as_secs_f64());
            result.map(|_| ()).map_err(|e| {
                tracing::error!(error = %e, "audit append failed");
                Reject::AuditUnavailable
            })
        })
    }

    /// The live configuration (one atomic load; cheap).
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    pub fn config(&self) -> Arc<Config> {
        self.live.load().config.clone()
    }

    /// Whether passkeys are configured (pages offer them only then).
    pub(crate) fn webauthn_enabled(&self) -> bool {
        self.config().stepup.webauthn.is_some()
    }

    /// The configured WebAuthn origins, which are also the gateway's own
    /// origins for the same-origin check on POSTs.
    pub(crate) fn webauthn_origins(&self) -> Vec<String> {
        self.config()
            .stepup
            .webauthn
            .as_ref()
            .map(|w| w.origins.clone())
            .unwrap_or_default()
    }

    /// Re-reads the config file and swaps it in if it is valid; otherwise
    /// the running configuration stays and the errors are logged with
    /// their line and column. Settings bound at start-up (listener, TLS,
    /// keys, audit, session key, user store, webhook) need a restart.
    pub async fn reload(self: &Arc<Self>, path: &std::path::Path) -> Result<usize, String> {
        let result = self.try_reload(path);
        self.metrics.reload(result.is_ok());
        match &result {
            Ok(n) => {
                tracing::info!(routes = n, path = %path.display(), "configuration reloaded");
                self.audit.record_later(
                    Record::new(audit::Event::ConfigReloaded)
                        .with("routes", *n as u64)
                        .reason("applied"),
                );
                let (ended, tightened) = pending::reach_all(self, self.clock.now()).await;
                if ended + tightened > 0 {
                    tracing::info!(ended, tightened, "reload applied to pending holds");
                }
            }
            Err(e) => {
                tracing::error!(path = %path.display(), "reload refused, keeping the running configuration: {e}");
                self.audit
                    .record_later(Record::new(audit::Event::ConfigReloaded).reason(format!("refused: {e}")));
            }
        }
        result
    }

    fn try_reload(&self, path: &std::path::Path) -> Result<usize, String> {
        let config = crate::config::load(path).map_err(|e| e.to_string())?;
        let tokens = token_verifier(&config).map_err(|e| e.to_string())?;
        let identity_jwt = identity_jwt(&config).map_err(|e| e.to_string())?;
        let webauthn = relying_party(&config).map_err(|e| e.to_string())?;
        let old = self.live();
        // An unchanged provider keeps its discovery and JWKS cache.
        let oidc = match &old.oidc {
            Some(p) if config.stepup.oidc.as_ref() == Some(&p.config) => Some(p.clone()),
            _ => oidc_provider(&config).map_err(|e| e.to_string())?,
        };
        let o = &old.config;
        let fixed = [
            ("listen", o.listen != config.listen),
            (
                "tls",
                o.tls.cert != config.tls.cert || o.tls.key != config.tls.key || o.tls.client_ca != config.tls.client_ca,
            ),
            (
                "assertion",
                o.assertion.key != config.assertion.key || o.assertion.retired_keys != config.assertion.retired_keys,
            ),
            ("audit", o.audit.path != config.audit.path),
            ("state", o.state != config.state),
            ("session.key_file", o.session.key_file != config.session.key_file),
            ("stepup.users", o.stepup.users != config.stepup.users),
            ("admin_listen", o.admin_listen != config.admin_listen),
        ];
        for (name, changed) in fixed {
            if changed {
                tracing::warn!(setting = name, "changed in the file but applies only after a restart");
            }
        }
        // A TLS upstream is rebuilt on every reload, so a renewed client
        // certificate or CA file is read without a restart.
        let upstream = if o.upstream.authority == config.upstream.authority
            && o.upstream.tls.is_none()
            && config.upstream.tls.is_none()
            && o.limits.upstream_timeout == config.limits.upstream_timeout
        {
            old.upstream.clone()
        } else {
            upstream(&config, &self.metrics).map_err(|e| e.to_string())?
        };
        let routes = config.routes.routes().len();
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        self.live.store(Arc::new(Live {
            config: Arc::new(config),
            upstream,
            tokens,
            identity_jwt,
            webauthn,
            oidc,
        }));
        Ok(routes)
    }

    /// Resolves when the gateway starts shutting down.
    pub fn shutting_down(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Forgets what only matters for a while: idle sessions, reuse
    /// windows, revoked approvers' marks. (Holds expire in
    /// `effects::sweep`.)
    fn purge(&self) {
        let now = self.clock.now();
        let secs = unix_secs(now);
        // Also forgets sessions idle for a day (`SESSION_IDLE_SECS`).
        self.state.purge(secs);
        self.reuse.purge(secs, 3600);
        self.revoked_approvers.purge(secs);
    }
}

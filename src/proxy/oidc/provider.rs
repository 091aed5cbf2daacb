//! The gateway as an OIDC client of one OpenID Provider: discovery, the
//! JWKS (cached, refetched when a token names an unknown `kid`), pushed
//! authorization requests and the code exchange. HTTPS only; with
//! `stepup.oidc.ca` the OP's certificate must chain to that CA alone.

use crate::body::{full, Body};
use crate::config::{OidcClientAuth, OidcConfig};
use crate::stepup::oidc::{OidcError, ProviderKeys};
use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RESPONSE: usize = 256 * 1024;
/// Tokens naming unknown kids refetch the JWKS at most this often, so
/// garbage kids cannot turn the gateway into a load generator for the OP.
const REFETCH_EVERY: Duration = Duration::from_secs(10);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// Why talking to the OP failed. Logged and audited; the browser is told
/// only that the identity provider could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    #[error("{what}: {detail}")]
    Http { what: &'static str, detail: String },
    #[error("{what}: the provider answered {status}")]
    Status { what: &'static str, status: StatusCode },
    #[error("{what}: {detail}")]
    Document { what: &'static str, detail: String },
    #[error(transparent)]
    Token(#[from] OidcError),
    #[error("cannot read {path}: {detail}")]
    Credential { path: String, detail: String },
}

fn http_err(what: &'static str) -> impl Fn(String) -> ProviderError {
    move |detail| ProviderError::Http { what, detail }
}

/// The endpoints discovery found.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub jwks_uri: String,
    /// RFC 9126 `pushed_authorization_request_endpoint`, when advertised.
    pub par: Option<String>,
}

enum Credential {
    Secret(String),
    Key(Box<crate::jose::jws::Es256Key>),
}

pub struct Provider {
    pub config: OidcConfig,
    credential: Credential,
    http: HttpsClient,
    endpoints: ArcSwapOption<Endpoints>,
    keys: ArcSwapOption<ProviderKeys>,
    refetched_at: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// Reads the client credential (a missing or empty one is an error:
    /// fail closed) and prepares the HTTPS client. No network yet.
    pub fn new(config: &OidcConfig) -> Result<Self, ProviderError> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|e| ProviderError::Credential {
                path: p.display().to_string(),
                detail: e.to_string(),
            })
        };
        let credential = match &config.client_auth {
            OidcClientAuth::SecretFile(p) => {
                let secret = read(p)?.trim().to_owned();
                if secret.is_empty() {
                    return Err(ProviderError::Credential {
                        path: p.display().to_string(),
                        detail: "the client secret file is empty".into(),
                    });
                }
                Credential::Secret(secret)
            }
            OidcClientAuth::PrivateKeyJwt(p) => {
                let key = crate::assertion::load_signing_key_pem(&read(p)?).map_err(|e| ProviderError::Credential {
                    path: p.display().to_string(),
                    detail: e.to_string(),
                })?;
                let key = crate::jose::jws::Es256Key::new(&key).map_err(|e| ProviderError::Credential {
                    path: p.display().to_string(),
                    detail: e.to_string(),
                })?;
                Credential::Key(Box::new(key))
            }
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match &config.ca {
            Some(ca) => builder.with_tls_config(private_ca(ca)?),
            None => builder.with_native_roots().map_err(|e| ProviderError::Credential {
                path: "system trust store".into(),
                detail: e.to_string(),
            })?,
        };
        let https = builder.https_only().enable_http1().build();
        Ok(Provider {
            config: config.clone(),
            credential,
            http: Client::builder(TokioExecutor::new()).build(https),
            endpoints: ArcSwapOption::empty(),
            keys: ArcSwapOption::empty(),
            refetched_at: std::sync::Mutex::new(None),
        })
    }

    /// The OP's endpoints, discovered once.
    pub async fn endpoints(&self) -> Result<Arc<Endpoints>, ProviderError> {
        if let Some(e) = self.endpoints.load_full() {
            return Ok(e);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let doc = self.get_json("discovery", &url).await?;
        let text = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_owned);
        // OIDC Discovery §4.3: the document must name exactly the issuer we
        // asked about, or an attacker's document could redirect us.
        if text("issuer").as_deref() != Some(self.config.issuer.as_str()) {
            return Err(ProviderError::Document {
                what: "discovery",
                detail: "issuer in the document differs from stepup.oidc.issuer".into(),
            });
        }
        let https = |name: &'static str, required: bool| -> Result<Option<String>, ProviderError> {
            match text(name) {
                Some(u) if u.starts_with("https://") => Ok(Some(u)),
                Some(_) => Err(ProviderError::Document {
                    what: "discovery",
                    detail: format!("{name} is not an https URL"),
                }),
                None if required => Err(ProviderError::Document {
                    what: "discovery",
                    detail: format!("{name} is missing"),
                }),
                None => Ok(None),
            }
        };
        let missing = |name: &'static str| ProviderError::Document {
            what: "discovery",
            detail: format!("{name} is missing"),
        };
        let endpoints = Arc::new(Endpoints {
            authorization: https("authorization_endpoint", true)?.ok_or_else(|| missing("authorization_endpoint"))?,
            token: https("token_endpoint", true)?.ok_or_else(|| missing("token_endpoint"))?,
            jwks_uri: https("jwks_uri", true)?.ok_or_else(|| missing("jwks_uri"))?,
            par: https("pushed_authorization_request_endpoint", false)?,
        });
        self.endpoints.store(Some(endpoints.clone()));
        Ok(endpoints)
    }

    /// The cached keys, fetched on first use.
    pub async fn keys(&self) -> Result<Arc<ProviderKeys>, ProviderError> {
        match self.keys.load_full() {
            Some(k) => Ok(k),
            None => self.fetch_keys().await,
        }
    }

    /// Fetches the JWKS again because a token named an unknown `kid` (a key
    /// rotation at the OP), unless such a refetch happened very recently.
    pub async fn refetch_keys(&self) -> Result<Arc<ProviderKeys>, ProviderError> {
        {
            let mut at = self.refetched_at.lock().unwrap_or_else(|p| p.into_inner());
            if let (true, Some(k)) = (at.is_some_and(|t| t.elapsed() < REFETCH_EVERY), self.keys.load_full()) {
                return Ok(k);
            }
            *at = Some(Instant::now());
        }
        self.fetch_keys().await
    }

    async fn fetch_keys(&self) -> Result<Arc<ProviderKeys>, ProviderError> {
        let endpoints = self.endpoints().await?;
        let bytes = self.get("jwks", &endpoints.jwks_uri).await?;
        let keys = Arc::new(ProviderKeys::parse(&bytes)?);
        self.keys.store(Some(keys.clone()));
        tracing::info!(issuer = %self.config.issuer, keys = ?keys, "OIDC provider keys fetched");
        Ok(keys)
    }

    /// RFC 9126: pushes the request; returns its `request_uri`.
    pub async fn push(&self, par: &str, params: &[(&'static str, String)], now: u64) -> Result<String, ProviderError> {
        let doc = self.post_form("pushed authorization request", par, params, now).await?;
        doc.get("request_uri")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ProviderError::Document {
                what: "pushed authorization request",
                detail: "no request_uri".into(),
            })
    }

    /// Exchanges an authorization code; returns the ID token.
    pub async fn exchange(&self, code: &str, verifier: &str, now: u64) -> Result<String, ProviderError> {
        let endpoints = self.endpoints().await?;
        let params = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", self.config.redirect_uri.to_string()),
            ("code_verifier", verifier.to_owned()),
        ];
        let doc = self.post_form("token", &endpoints.token, &params, now).await?;
        doc.get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ProviderError::Document {
                what: "token",
                detail: "no id_token in the token response".into(),
            })
    }

    async fn post_form(
        &self,
        what: &'static str,
        url: &str,
        params: &[(&'static str, String)],
        now: u64,
    ) -> Result<Value, ProviderError> {
        let mut params = params.to_vec();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(parse_uri(what, url)?)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        match &self.credential {
            Credential::Secret(secret) => {
                // RFC 6749 §2.3.1: both halves form-encoded before Basic.
                let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let basic = STANDARD.encode(format!("{}:{}", enc(&self.config.client_id), enc(secret)));
                req = req.header(header::AUTHORIZATION, format!("Basic {basic}"));
            }
            Credential::Key(key) => {
                params.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ));
                params.push(("client_assertion", self.client_assertion(key, url, now)?));
                // A pushed request already names the client; an OP refuses
                // a parameter given twice (RFC 6749 §3.2).
                if !params.iter().any(|(k, _)| *k == "client_id") {
                    params.push(("client_id", self.config.client_id.clone()));
                }
            }
        }
        let body = crate::stepup::oidc::request::encode(&params);
        let req = req.body(full(body)).map_err(|e| http_err(what)(e.to_string()))?;
        let bytes = self.send(what, req).await?;
        serde_json::from_slice(&bytes).map_err(|_| ProviderError::Document {
            what,
            detail: "response is not JSON".into(),
        })
    }

    /// RFC 7523 client authentication: a short-lived ES256 JWT about
    /// ourselves, audience the endpoint it is sent to.
    fn client_assertion(&self, key: &crate::jose::jws::Es256Key, aud: &str, now: u64) -> Result<String, ProviderError> {
        let header = serde_json::json!({ "alg": "ES256", "typ": "JWT" });
        let claims = serde_json::json!({
            "iss": self.config.client_id, "sub": self.config.client_id, "aud": aud,
            "iat": now, "exp": now + 60, "jti": crate::ids::random_token(),
        });
        crate::jose::jws::encode_es256_typed(key, &header, &claims).map_err(|e| ProviderError::Credential {
            path: "stepup.oidc.private_key_jwt.key".into(),
            detail: e.to_string(),
        })
    }

    async fn get_json(&self, what: &'static str, url: &str) -> Result<Value, ProviderError> {
        let bytes = self.get(what, url).await?;
        serde_json::from_slice(&bytes).map_err(|_| ProviderError::Document {
            what,
            detail: "response is not JSON".into(),
        })
    }

    async fn get(&self, what: &'static str, url: &str) -> Result<bytes::Bytes, ProviderError> {
        let req = Request::get(parse_uri(what, url)?)
            .header(header::ACCEPT, "application/json")
            .body(full(bytes::Bytes::new()))
            .map_err(|e| http_err(what)(e.to_string()))?;
        self.send(what, req).await
    }

    async fn send(&self, what: &'static str, req: Request<Body>) -> Result<bytes::Bytes, ProviderError> {
        let resp = tokio::time::timeout(TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| http_err(what)("timed out".into()))?
            .map_err(|e| http_err(what)(e.to_string()))?;
        let status = resp.status();
        let body = tokio::time::timeout(TIMEOUT, Limited::new(resp.into_body(), MAX_RESPONSE).collect())
            .await
            .map_err(|_| http_err(what)("timed out reading the body".into()))?
            .map_err(|e| http_err(what)(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            tracing::warn!(what, %status, body = %String::from_utf8_lossy(&body[..body.len().min(300)]), "OIDC provider refused");
            return Err(ProviderError::Status { what, status });
        }
        Ok(body)
    }
}

fn parse_uri(what: &'static str, url: &str) -> Result<Uri, ProviderError> {
    url.parse().map_err(|_| ProviderError::Document {
        what,
        detail: "endpoint is not a URL".into(),
    })
}

fn private_ca(path: &std::path::Path) -> Result<rustls::ClientConfig, ProviderError> {
    let fail = |detail: String| ProviderError::Credential {
        path: path.display().to_string(),
        detail,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject as _;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// What the step-up page calls the OP: the host of its issuer URL.
pub(crate) fn display_name(issuer: &str) -> String {
    issuer
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_else(|| "your identity provider".to_owned())
}

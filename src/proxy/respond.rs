//! The one place where a refusal becomes an HTTP response. Every error code
//! of SPEC §4.3 is a variant here; the message is fixed text, so nothing
//! internal can leak into a response by accident.

use crate::body::{full, Body};
use crate::hold::engine::EngineError;
use crate::hold::HoldError;
use http::{header, HeaderValue, Response, StatusCode};

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reject {
    /// Ambiguous path, underscore header, malformed proof. The detail is a
    /// fixed description chosen by the gateway, never client bytes.
    BadRequest(&'static str),
    NoSession,
    NoIdentity,
    /// A hold only approvers decide, asked for from a session on which
    /// nobody is known: 401 `no_identity` (see `who::requester_for`).
    UnknownRequester,
    IdentityMismatch,
    InvalidProof {
        attempts_left: u32,
    },
    StepUpExpired,
    SessionMismatch,
    StepUpDenied,
    SelfApproval,
    Forbidden,
    UnknownHold,
    AlreadyReleased,
    TxnMismatch,
    HoldExpired,
    BodyTooLarge,
    TooManyHolds,
    /// A client (or session) calling a ceremony endpoint faster than its
    /// rate allows; SPEC's one 429 code, with `Retry-After` in seconds.
    Throttled {
        retry_after: u64,
    },
    UpstreamUnavailable,
    AuditUnavailable,
    /// The shared state store (Redis) cannot be reached: sensitive routes
    /// fail closed.
    StateUnavailable,
    ShuttingDown,
    NotFound,
    /// The gateway itself failed (the assertion could not be signed): not
    /// the upstream's fault, and nothing was forwarded.
    Internal,
}

impl Reject {
    pub fn status(&self) -> StatusCode {
        use Reject::*;
        match self {
            BadRequest(_) => StatusCode::BAD_REQUEST,
            NoSession | NoIdentity | UnknownRequester | InvalidProof { .. } | StepUpExpired => StatusCode::UNAUTHORIZED,
            SessionMismatch | IdentityMismatch | StepUpDenied | SelfApproval | Forbidden => StatusCode::FORBIDDEN,
            UnknownHold | NotFound => StatusCode::NOT_FOUND,
            AlreadyReleased | TxnMismatch => StatusCode::CONFLICT,
            HoldExpired => StatusCode::GONE,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            TooManyHolds | Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            AuditUnavailable | StateUnavailable | ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        use Reject::*;
        match self {
            BadRequest(_) => "bad_request",
            NoSession => "no_session",
            NoIdentity | UnknownRequester => "no_identity",
            IdentityMismatch => "identity_mismatch",
            InvalidProof { .. } => "invalid_proof",
            StepUpExpired => "step_up_expired",
            SessionMismatch => "session_mismatch",
            StepUpDenied => "step_up_denied",
            SelfApproval => "self_approval",
            Forbidden => "forbidden",
            UnknownHold => "unknown_hold",
            AlreadyReleased => "already_released",
            TxnMismatch => "txn_mismatch",
            HoldExpired => "hold_expired",
            BodyTooLarge => "body_too_large",
            TooManyHolds | Throttled { .. } => "too_many_holds",
            UpstreamUnavailable => "upstream_unavailable",
            AuditUnavailable => "audit_unavailable",
            StateUnavailable => "state_unavailable",
            ShuttingDown => "shutting_down",
            NotFound => "not_found",
            Internal => "internal_error",
        }
    }

    pub fn message(&self) -> &'static str {
        use Reject::*;
        match self {
            BadRequest(detail) => detail,
            NoSession => "this action needs a session",
            NoIdentity => "this action needs exactly one identity",
            UnknownRequester => {
                "this action is decided by approvers, who must know who asks: sign in or step up on this session first"
            }
            IdentityMismatch => "this session belongs to someone else",
            InvalidProof { .. } => "the proof was not accepted",
            StepUpExpired => "the step-up was not completed in time",
            SessionMismatch => "this hold belongs to another session",
            StepUpDenied => "the step-up was denied",
            SelfApproval => "you cannot approve your own request",
            Forbidden => "this action is not allowed",
            UnknownHold => "no such hold",
            AlreadyReleased => "the hold was already released",
            TxnMismatch => "the approval is for a different request",
            HoldExpired => "the hold has expired",
            BodyTooLarge => "the request body is too large for a sensitive action",
            TooManyHolds => "too many pending step-ups",
            Throttled { .. } => "too many requests from this client; try again later",
            UpstreamUnavailable => "the upstream is unavailable",
            AuditUnavailable => "the audit trail is unavailable",
            StateUnavailable => "the shared state store is unavailable",
            ShuttingDown => "the gateway is shutting down",
            Internal => "the gateway could not complete the request; nothing was forwarded",
            NotFound => "not found",
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut body = serde_json::json!({"error": self.code(), "message": self.message()});
        if let Reject::InvalidProof { attempts_left } = self {
            body["attempts_left"] = attempts_left.into();
        }
        let mut resp = json(self.status(), &body);
        if self.status() == StatusCode::UNAUTHORIZED {
            // Every 401 carries a challenge (RFC 9110 §11.6.1). The hold's
            // full challenge is `step_up_required`'s (gate); these name
            // the scheme and why, with the code's fixed text only.
            if let Ok(v) = HeaderValue::from_str(&format!("StepUp error=\"{}\"", self.code())) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if matches!(self, Reject::ShuttingDown | Reject::StateUnavailable) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let Reject::Throttled { retry_after } = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        resp
    }
}

/// What a refused hold event tells the caller.
impl From<EngineError> for Reject {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unknown => Reject::UnknownHold,
            EngineError::Hold(HoldError::AlreadyReleased) => Reject::AlreadyReleased,
            EngineError::Hold(HoldError::Expired) => Reject::HoldExpired,
            EngineError::Hold(HoldError::Denied) => Reject::StepUpDenied,
            EngineError::Hold(HoldError::SelfApproval) => Reject::SelfApproval,
            EngineError::Hold(e @ (HoldError::BreakGlassNeedsStepUp | HoldError::BreakGlassCannotReplaceApprovals)) => {
                Reject::BadRequest(if e == HoldError::BreakGlassNeedsStepUp {
                    "break-glass needs your own step-up first"
                } else {
                    "break-glass cannot replace this action's approvals"
                })
            }
            EngineError::Hold(HoldError::MethodNotAccepted) => {
                Reject::BadRequest("this proof method is not accepted for this action")
            }
            EngineError::Hold(_) => Reject::BadRequest("the request could not be applied"),
            EngineError::StoreUnavailable => Reject::StateUnavailable,
            EngineError::GlobalLimit
            | EngineError::SessionLimit
            | EngineError::ByteLimit
            | EngineError::ClientLimit => Reject::TooManyHolds,
        }
    }
}

/// The answer to a HEAD request: the same head, no body. HTTP/1.1 framing
/// drops the body by itself, HTTP/2 would send it as DATA frames, which a
/// HEAD response must not carry. The length it would have had is kept.
pub fn without_body(resp: Response<Body>) -> Response<Body> {
    use http_body::Body as _;
    if resp.body().is_end_stream() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    if let Some(len) = body.size_hint().exact() {
        parts
            .headers
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(len));
    }
    Response::from_parts(parts, crate::body::empty())
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the mapping of SPEC §4.3: a changed status or code is a
    /// breaking change for every client.
    #[test]
    fn status_and_code_table() {
        let table = [
            (Reject::BadRequest("x"), 400, "bad_request"),
            (Reject::NoSession, 401, "no_session"),
            (Reject::NoIdentity, 401, "no_identity"),
            (Reject::UnknownRequester, 401, "no_identity"),
            (Reject::IdentityMismatch, 403, "identity_mismatch"),
            (Reject::InvalidProof { attempts_left: 2 }, 401, "invalid_proof"),
            (Reject::StepUpExpired, 401, "step_up_expired"),
            (Reject::SessionMismatch, 403, "session_mismatch"),
            (Reject::StepUpDenied, 403, "step_up_denied"),
            (Reject::SelfApproval, 403, "self_approval"),
            (Reject::Forbidden, 403, "forbidden"),
            (Reject::UnknownHold, 404, "unknown_hold"),
            (Reject::AlreadyReleased, 409, "already_released"),
            (Reject::TxnMismatch, 409, "txn_mismatch"),
            (Reject::HoldExpired, 410, "hold_expired"),
            (Reject::BodyTooLarge, 413, "body_too_large"),
            (Reject::TooManyHolds, 429, "too_many_holds"),
            (Reject::Throttled { retry_after: 3 }, 429, "too_many_holds"),
            (Reject::UpstreamUnavailable, 502, "upstream_unavailable"),
            (Reject::Internal, 500, "internal_error"),
            (Reject::AuditUnavailable, 503, "audit_unavailable"),
            (Reject::StateUnavailable, 503, "state_unavailable"),
            (Reject::ShuttingDown, 503, "shutting_down"),
        ];
        for (r, status, code) in table {
            assert_eq!(r.status().as_u16(), status, "{r:?}");
            assert_eq!(r.code(), code);
        }
    }

    #[test]
    fn every_401_names_its_scheme() {
        for r in [
            Reject::NoSession,
            Reject::NoIdentity,
            Reject::UnknownRequester,
            Reject::InvalidProof { attempts_left: 1 },
        ] {
            let code = r.code();
            let resp = r.into_response();
            assert_eq!(
                resp.headers()[header::WWW_AUTHENTICATE],
                format!("StepUp error=\"{code}\"").as_str()
            );
        }
        assert!(!Reject::Forbidden
            .into_response()
            .headers()
            .contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn shutting_down_says_when_to_retry() {
        let resp = Reject::ShuttingDown.into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
    }
}

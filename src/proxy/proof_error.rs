//! Why a proof was not accepted. The text goes to the log and to the
//! trail's `reason`; the client only ever learns `invalid_proof`, so the
//! detail here may name users and steps.

use crate::policy::ProofMethod;
use crate::stepup::oidc::OidcError;
use crate::stepup::token::TokenError;
use crate::stepup::totp::TotpError;
use crate::users::UserError;
use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("route does not accept {0} proofs")]
    NotAccepted(ProofMethod),
    #[error("{0} is not configured")]
    NotConfigured(&'static str),
    #[error("token is not UTF-8")]
    NotUtf8,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("auth_time is {age}s old, route max_age is {max_age}s")]
    TooOld { age: u64, max_age: u64 },
    #[error("token jti was already used")]
    JtiUsed,
    #[error("no user given")]
    NoUser,
    #[error("too many failures from {0}; backing off")]
    ClientBackingOff(IpAddr),
    #[error("too many failures for {who} from {client}; backing off")]
    PersonBackingOff { who: String, client: IpAddr },
    #[error("{0} has no confirmed TOTP credential")]
    NoTotp(String),
    #[error(transparent)]
    Totp(#[from] TotpError),
    #[error("TOTP code for step {step} was already used by {user}")]
    StepUsed { user: String, step: u64 },
    #[error("TOTP code for step {0} was used to confirm enrollment")]
    EnrollmentCode(u64),
    #[error("step-up by {sub} for a session of {identity}")]
    IdentityMismatch { sub: String, identity: String },
    #[error("{0} is not allowed to step up for this route")]
    NotAllowed(String),
    #[error("user store: {0}")]
    Users(#[from] UserError),
    #[error("{0} is gone from the user store")]
    UserGone(String),
    #[error("{0:?} is not an approver")]
    NotApprover(String),
    #[error("no passkey credential")]
    NoCredential,
    #[error("malformed credential: {0}")]
    MalformedCredential(String),
    #[error("clientDataJSON names no challenge")]
    NoChallenge,
    #[error("no pending challenge for this purpose (unknown, used, expired or issued for another request)")]
    NoPendingChallenge,
    #[error("challenge was issued to {issued}, not {named}")]
    ChallengeUser { issued: String, named: String },
    #[error("passkey assertion refused: {0}")]
    Assertion(String),
    #[error("the provider returned error `{0}`")]
    Provider(String),
    #[error("the response names another issuer (iss)")]
    IssuerMixUp,
    #[error("no code in the response")]
    NoCode,
    #[error("authorization code was already used")]
    CodeUsed,
    #[error("the provider could not be asked: {0}")]
    Unreachable(String),
    #[error("ID token refused: {0}")]
    IdToken(OidcError),
    #[error("access token refused: {0}")]
    AccessToken(OidcError),
}

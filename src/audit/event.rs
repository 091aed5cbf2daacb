//! Every kind of audit record, by name. The names are what the trail,
//! `audit show` and anything that reads the JSON lines see; the enum keeps
//! the writers from inventing a spelling that no reader knows.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    HoldCreated,
    HoldTightened,
    HoldReleased,
    HoldExpired,
    HoldDenied,
    HoldAbandoned,
    ProofAccepted,
    ProofRejected,
    ApprovalGranted,
    ApprovalDenied,
    BreakGlassUsed,
    RequestForwarded,
    /// A request forwarded at once on an earlier step-up of its session.
    ReuseAccepted,
    /// A request forwarded at once on an up-front step-up token.
    TokenAccepted,
    /// A request forwarded at once on an OIDC access token showing a fresh
    /// login.
    OidcAccessTokenAccepted,
    ShadowWouldHold,
    IdentityMismatch,
    ApproverSignedIn,
    WebauthnEnrolled,
    OidcUnavailable,
    OidcUnknownState,
    ConfigReloaded,
    NotifyDropped,
    GatewayShutdown,
    Checkpoint,
}

impl Event {
    pub const ALL: [Event; 25] = [
        Event::HoldCreated,
        Event::HoldTightened,
        Event::HoldReleased,
        Event::HoldExpired,
        Event::HoldDenied,
        Event::HoldAbandoned,
        Event::ProofAccepted,
        Event::ProofRejected,
        Event::ApprovalGranted,
        Event::ApprovalDenied,
        Event::BreakGlassUsed,
        Event::RequestForwarded,
        Event::ReuseAccepted,
        Event::TokenAccepted,
        Event::OidcAccessTokenAccepted,
        Event::ShadowWouldHold,
        Event::IdentityMismatch,
        Event::ApproverSignedIn,
        Event::WebauthnEnrolled,
        Event::OidcUnavailable,
        Event::OidcUnknownState,
        Event::ConfigReloaded,
        Event::NotifyDropped,
        Event::GatewayShutdown,
        Event::Checkpoint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::HoldCreated => "hold.created",
            Event::HoldTightened => "hold.tightened",
            Event::HoldReleased => "hold.released",
            Event::HoldExpired => "hold.expired",
            Event::HoldDenied => "hold.denied",
            Event::HoldAbandoned => "hold.abandoned",
            Event::ProofAccepted => "proof.accepted",
            Event::ProofRejected => "proof.rejected",
            Event::ApprovalGranted => "approval.granted",
            Event::ApprovalDenied => "approval.denied",
            Event::BreakGlassUsed => "break_glass.used",
            Event::RequestForwarded => "request.forwarded",
            Event::ReuseAccepted => "reuse.accepted",
            Event::TokenAccepted => "token.accepted",
            Event::OidcAccessTokenAccepted => "oidc.access_token.accepted",
            Event::ShadowWouldHold => "shadow.would_hold",
            Event::IdentityMismatch => "identity.mismatch",
            Event::ApproverSignedIn => "approver.signed_in",
            Event::WebauthnEnrolled => "webauthn.enrolled",
            Event::OidcUnavailable => "oidc.unavailable",
            Event::OidcUnknownState => "oidc.unknown_state",
            Event::ConfigReloaded => "config.reloaded",
            Event::NotifyDropped => "notify.dropped",
            Event::GatewayShutdown => "gateway.shutdown",
            Event::Checkpoint => "checkpoint",
        }
    }

    /// The event a trail line names, if it is one this version writes.
    pub fn parse(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_distinct_and_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for e in Event::ALL {
            assert!(seen.insert(e.as_str()), "{e} twice");
            assert_eq!(Event::parse(e.as_str()), Some(e));
        }
        assert_eq!(Event::parse("hold.made_up"), None);
    }

    /// The operations guide lists every event a reader of the trail may
    /// meet.
    #[test]
    fn the_operations_guide_names_every_event() {
        let guide = include_str!("../../docs/operations.md");
        for e in Event::ALL {
            assert!(
                guide.contains(&format!("`{e}`")),
                "docs/operations.md does not name `{e}`"
            );
        }
    }
}

//! Every kind of audit record, by name. The names are what the trail,
//! `audit show` and anything that reads the JSON lines see; the enum keeps
//! the writers from inventing a spelling that no reader knows.

use std::fmt;

/// One list of (variant, name): the enum, `ALL` and `as_str` are made from
/// it, so a new event cannot be added to one and forgotten in another.
macro_rules! events {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Event {
            $($(#[$doc])* $variant,)*
        }

        impl Event {
            pub const ALL: &'static [Event] = &[$(Event::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Event::$variant => $name,)*
                }
            }
        }
    };
}

events! {
    HoldCreated => "hold.created",
    HoldTightened => "hold.tightened",
    HoldReleased => "hold.released",
    HoldExpired => "hold.expired",
    HoldDenied => "hold.denied",
    HoldAbandoned => "hold.abandoned",
    ProofAccepted => "proof.accepted",
    ProofRejected => "proof.rejected",
    ApprovalGranted => "approval.granted",
    ApprovalDenied => "approval.denied",
    BreakGlassUsed => "break_glass.used",
    RequestForwarded => "request.forwarded",
    /// A request forwarded at once on an earlier step-up of its session.
    ReuseAccepted => "reuse.accepted",
    /// A request forwarded at once on an up-front step-up token.
    TokenAccepted => "token.accepted",
    /// A request forwarded at once on an OIDC access token showing a fresh
    /// login.
    OidcAccessTokenAccepted => "oidc.access_token.accepted",
    ShadowWouldHold => "shadow.would_hold",
    IdentityMismatch => "identity.mismatch",
    ApproverSignedIn => "approver.signed_in",
    WebauthnEnrolled => "webauthn.enrolled",
    OidcUnavailable => "oidc.unavailable",
    OidcUnknownState => "oidc.unknown_state",
    ConfigReloaded => "config.reloaded",
    NotifyDropped => "notify.dropped",
    GatewayShutdown => "gateway.shutdown",
    Checkpoint => "checkpoint",
}

impl Event {
    /// The event a trail line names, if it is one this version writes.
    pub fn parse(name: &str) -> Option<Event> {
        Event::ALL.iter().copied().find(|e| e.as_str() == name)
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
        for &e in Event::ALL {
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

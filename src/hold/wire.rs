//! A hold as a shared store keeps it: its facts and state as JSON (its
//! parked request in `hold::parked`'s packed form). Pure conversion; the store decides
//! where the bytes live. Decoding never trusts the bytes (a store shared
//! with other software may hold anything) and fails instead of panicking.

use super::engine::HoldMeta;
use super::state::{Approval, HoldState, Phase, Proof};
use crate::clock::unix_millis;
use crate::ids::{HoldId, Sid, Txn};
use crate::policy::{BreakGlass, HoldMode, ProofMethod, Requirements};
use http::Method;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
#[error("a stored hold could not be read: {0}")]
pub struct WireError(String);

fn bad(what: &str) -> WireError {
    WireError(what.to_owned())
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[derive(Serialize, Deserialize)]
struct MetaWire {
    id: String,
    route: String,
    action: String,
    label: String,
    sid: String,
    txn: String,
    method: String,
    host: String,
    path: String,
    pq: String,
    mode: String,
    created_ms: u64,
    ip: IpAddr,
    risk: Vec<String>,
    identity: Option<String>,
    display: Vec<(String, String)>,
    needs_approval: bool,
    request_id: String,
}

#[derive(Serialize, Deserialize)]
struct ProofWire {
    method: String,
    sub: String,
    auth_time: u64,
    amr: Vec<String>,
    acr: String,
}

#[derive(Serialize, Deserialize)]
struct RequireWire {
    methods: Vec<String>,
    max_age_s: u64,
    approvals: u32,
    approvers: Vec<String>,
    users: Vec<String>,
    groups: Vec<String>,
    reuse_s: u64,
    /// (reason_required, replaces_approvals)
    break_glass: Option<(bool, bool)>,
    acr: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct StateWire {
    phase: String,
    require: RequireWire,
    deadline_ms: u64,
    attempts_left: u32,
    proof: Option<ProofWire>,
    approvals: Vec<(String, u64)>,
    release_on_satisfy: bool,
    break_glass: bool,
}

fn method_of(s: &str) -> Result<ProofMethod, WireError> {
    [
        ProofMethod::Totp,
        ProofMethod::Webauthn,
        ProofMethod::Token,
        ProofMethod::Oidc,
    ]
    .into_iter()
    .find(|m| m.as_str() == s)
    .ok_or_else(|| bad("proof method"))
}

/// The hold's state alone, as JSON: what every transition rewrites.
pub fn encode_state(s: &HoldState) -> String {
    let r = &s.requirements;
    let w = StateWire {
        phase: s.phase.as_str().to_owned(),
        require: RequireWire {
            methods: r.methods.iter().map(|m| m.as_str().to_owned()).collect(),
            max_age_s: r.max_age.as_secs(),
            approvals: r.approvals,
            approvers: r.approvers.clone(),
            users: r.users.clone(),
            groups: r.groups.clone(),
            reuse_s: r.reuse.as_secs(),
            break_glass: r.break_glass.map(|b| (b.reason_required, b.replaces_approvals)),
            acr: r.acr.clone(),
        },
        deadline_ms: unix_millis(s.deadline),
        attempts_left: s.attempts_left,
        proof: s.proof.as_ref().map(|p| ProofWire {
            method: p.method.as_str().to_owned(),
            sub: p.sub.clone(),
            auth_time: p.auth_time,
            amr: p.amr.clone(),
            acr: p.acr.clone(),
        }),
        approvals: s.approvals.iter().map(|a| (a.sub.clone(), a.at)).collect(),
        release_on_satisfy: s.release_on_satisfy,
        break_glass: s.break_glass,
    };
    serde_json::to_string(&w).unwrap_or_default()
}

pub fn decode_state(text: &[u8]) -> Result<HoldState, WireError> {
    let w: StateWire = serde_json::from_slice(text).map_err(|e| WireError(e.to_string()))?;
    let methods = w
        .require
        .methods
        .iter()
        .map(|m| method_of(m))
        .collect::<Result<_, _>>()?;
    let proof = match w.proof {
        Some(p) => Some(Proof {
            method: method_of(&p.method)?,
            sub: p.sub,
            auth_time: p.auth_time,
            amr: p.amr,
            acr: p.acr,
        }),
        None => None,
    };
    Ok(HoldState {
        phase: Phase::parse(&w.phase).ok_or_else(|| bad("phase"))?,
        requirements: Requirements {
            methods,
            max_age: Duration::from_secs(w.require.max_age_s),
            approvals: w.require.approvals,
            approvers: w.require.approvers,
            users: w.require.users,
            groups: w.require.groups,
            reuse: Duration::from_secs(w.require.reuse_s),
            break_glass: w.require.break_glass.map(|(r, a)| BreakGlass {
                reason_required: r,
                replaces_approvals: a,
            }),
            acr: w.require.acr,
        },
        deadline: at(w.deadline_ms),
        attempts_left: w.attempts_left,
        proof,
        approvals: w.approvals.into_iter().map(|(sub, at)| Approval { sub, at }).collect(),
        release_on_satisfy: w.release_on_satisfy,
        break_glass: w.break_glass,
    })
}

/// The facts that never change, as JSON.
pub fn encode_meta(m: &HoldMeta) -> String {
    let w = MetaWire {
        id: m.id.as_str().to_owned(),
        route: m.route.clone(),
        action: m.action.clone(),
        label: m.label.clone(),
        sid: m.sid.as_str().to_owned(),
        txn: m.txn.as_str().to_owned(),
        method: m.method.as_str().to_owned(),
        host: m.host.clone(),
        path: m.path().to_owned(),
        pq: m.path_and_query.clone(),
        mode: m.mode.as_str().to_owned(),
        created_ms: unix_millis(m.created),
        ip: m.client_ip,
        risk: m.risk.clone(),
        identity: m.identity.clone(),
        display: m.display.clone(),
        needs_approval: m.needs_approval,
        request_id: m.request_id.clone(),
    };
    serde_json::to_string(&w).unwrap_or_default()
}

pub fn decode_meta(text: &[u8]) -> Result<HoldMeta, WireError> {
    let w: MetaWire = serde_json::from_slice(text).map_err(|e| WireError(e.to_string()))?;
    Ok(HoldMeta {
        id: HoldId::parse(&w.id).ok_or_else(|| bad("hold id"))?,
        route: w.route,
        action: w.action,
        label: w.label,
        sid: Sid(w.sid),
        txn: Txn(w.txn),
        method: Method::from_bytes(w.method.as_bytes()).map_err(|_| bad("method"))?,
        host: w.host,
        path_and_query: w.pq,
        mode: HoldMode::parse(&w.mode).ok_or_else(|| bad("mode"))?,
        created: at(w.created_ms),
        client_ip: w.ip,
        risk: w.risk,
        identity: w.identity,
        display: w.display,
        needs_approval: w.needs_approval,
        request_id: w.request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> HoldMeta {
        HoldMeta {
            id: HoldId::random(),
            route: "delete-user".into(),
            action: "user.delete".into(),
            label: "Delete a user".into(),
            sid: Sid("sid-1".into()),
            txn: Txn("txn-1".into()),
            method: Method::DELETE,
            host: "console.test:8443".into(),
            path_and_query: "/admin/users/carol?x=1".into(),
            mode: HoldMode::Hold,
            created: at(1_700_000_000_123),
            client_ip: "2001:db8::1".parse().expect("ip"),
            risk: vec!["new_session".into()],
            identity: Some("alice".into()),
            display: vec![("User".into(), "carol".into())],
            needs_approval: true,
            request_id: "rid".into(),
        }
    }

    #[test]
    fn a_hold_comes_back_as_it_was_stored() {
        let m = meta();
        let back = decode_meta(encode_meta(&m).as_bytes()).expect("meta");
        assert_eq!(format!("{m:?}"), format!("{back:?}"));

        let mut req = Requirements {
            methods: vec![ProofMethod::Totp, ProofMethod::Webauthn],
            max_age: Duration::from_secs(300),
            approvals: 2,
            approvers: vec!["ops".into()],
            break_glass: Some(BreakGlass {
                reason_required: true,
                replaces_approvals: false,
            }),
            ..Requirements::default()
        };
        req.acr = vec!["gold".into()];
        let mut s = HoldState::new(req, at(1_700_000_120_000), 4, true);
        s.phase = Phase::Satisfied;
        s.proof = Some(Proof {
            method: ProofMethod::Totp,
            sub: "alice".into(),
            auth_time: 7,
            amr: vec!["otp".into()],
            acr: "gold".into(),
        });
        s.approvals.push(Approval {
            sub: "bob".into(),
            at: 9,
        });
        let back = decode_state(encode_state(&s).as_bytes()).expect("state");
        assert_eq!(format!("{s:?}"), format!("{back:?}"));
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        assert!(decode_state(b"{").is_err());
        assert!(decode_meta(b"null").is_err());
    }
}

//! A hold's share of its client's quota in the state store: taken before
//! the hold is parked, given back when it ends, on whichever instance.
//! Kept apart from `fleet` and `orphans`, which both give shares back.

use super::Gateway;
use crate::clock::unix_secs;
use crate::hold::engine::client_key;
use crate::hold::{HoldMeta, Parked};
use crate::store::HoldQuota;
use std::time::SystemTime;

/// Counts a hold about to be created against its client's quota
/// (`limits.max_holds_per_client`, `max_held_bytes_per_client`) in the
/// state store: on Redis one quota per client across the fleet, each
/// hold's share lapsing at its deadline should nobody give it back (an
/// instance that died). 429 `too_many_holds` over the quota, 503 when the
/// store cannot count it.
pub(super) async fn take(
    gw: &Gateway,
    limits: &crate::config::Limits,
    meta: &HoldMeta,
    parked: &Parked,
    deadline: SystemTime,
    now: SystemTime,
) -> Result<(), super::respond::Reject> {
    let client = client_key(meta.client_ip).to_string();
    let quota = HoldQuota {
        client: &client,
        hold: meta.id.as_str(),
        bytes: crate::hold::engine::parked_size(parked),
        until: unix_secs(deadline).saturating_add(1),
        max_holds: limits.max_holds_per_client,
        max_bytes: limits.max_held_bytes_per_client,
    };
    match gw.state.take_hold_quota(quota, unix_secs(now)).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!(route = %meta.route, client = %client, "hold refused: the client's quota is used up");
            Err(super::respond::Reject::TooManyHolds)
        }
        Err(e) => {
            tracing::error!(route = %meta.route, error = %e, "cannot count the hold against its client's quota; refused");
            Err(super::respond::Reject::StateUnavailable)
        }
    }
}

/// Gives an ended hold's share of its client's quota back. A store that
/// cannot be asked keeps the share until the hold's deadline.
pub(super) async fn give_back(gw: &Gateway, meta: &HoldMeta) {
    let client = client_key(meta.client_ip).to_string();
    if let Err(e) = gw.state.give_hold_quota(&client, meta.id.as_str()).await {
        tracing::warn!(hold = %meta.id, error = %e, "cannot give a hold's quota back; it lapses at the deadline");
    }
}

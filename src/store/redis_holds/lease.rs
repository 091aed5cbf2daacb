//! Which instances are alive, and ending a release nobody can take.
//!
//! A `hold`-mode client waits on one instance's connection. When that
//! instance dies (SIGKILL, a lost machine) the connection dies with it, so
//! another instance must neither release the hold for it (nobody would
//! receive the upstream's answer, and the action would happen unseen) nor
//! leave a release lying in the store as if it had happened. Every
//! instance therefore keeps a short lease, `prefix:instance:{id}`, which it
//! renews well before it expires; an owner without a lease is gone.

use super::{timed, unavailable, RedisHolds};
use crate::hold::state::{HoldState, Phase};
use crate::hold::wire;
use crate::ids::HoldId;
use redis::Value;
use std::time::Duration;

/// Ends a hold released for a waiter that never took it: `released` →
/// `expired`, dropping the parked request in the same step, so the owner,
/// should it come back after all, finds nothing to forward. This is the one
/// step outside the state machine's table, and it is safe because only
/// the taker of the parked request (`forwarding`) may forward.
pub(super) const ORPHAN: &str = r"
if redis.call('HGET', KEYS[1], 'phase') ~= 'released' then return 0 end
local v = tonumber(redis.call('HGET', KEYS[1], 'v'))
redis.call('HSET', KEYS[1], 'v', tostring(v + 1), 'phase', 'expired', 'state', ARGV[1], 'by', ARGV[2])
redis.call('HDEL', KEYS[1], 'parked')
return 1
";

impl RedisHolds {
    fn lease_key(&self, instance: &str) -> String {
        format!("{}:instance:{{{instance}}}", self.prefix)
    }

    /// Says this instance is alive for the next `ttl`.
    pub async fn renew_lease(&self, instance: &str, ttl: Duration) -> Result<(), crate::store::StateError> {
        let mut c = self.conn.clone();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        timed(
            redis::cmd("SET")
                .arg(self.lease_key(instance))
                .arg("1")
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut c),
        )
        .await
    }

    /// Whether `instance` still holds its lease. A store that does not
    /// answer is an error, never a verdict: nobody is declared dead on it.
    pub async fn alive(&self, instance: &str) -> Result<bool, crate::store::StateError> {
        let mut c = self.conn.clone();
        let n: i64 = timed(redis::cmd("EXISTS").arg(self.lease_key(instance)).query_async(&mut c)).await?;
        Ok(n == 1)
    }

    /// Ends hold `id`, released for a waiter on an instance that is gone,
    /// as `expired`. `false`: it was taken or ended meanwhile.
    pub async fn orphan(&self, id: &HoldId, state: &HoldState, by: &str) -> Result<bool, crate::store::StateError> {
        let mut ended = state.clone();
        ended.phase = Phase::Expired;
        let mut c = self.conn.clone();
        let mut call = self.orphan.key(self.key(id.as_str()));
        call.arg(wire::encode_state(&ended)).arg(by);
        let answer: Value = timed(call.invoke_async(&mut c)).await?;
        match answer {
            Value::Int(1) => {
                self.unindex(id).await;
                Ok(true)
            }
            Value::Int(0) => Ok(false),
            _ => Err(unavailable("unexpected answer from the orphan script")),
        }
    }
}

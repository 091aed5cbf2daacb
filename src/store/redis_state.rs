//! The Redis backend of the shared-state port, for several instances
//! behind one load balancer.
//!
//! Every key starts with the configured prefix and carries its record's
//! identity in a hash tag (`{...}`), so on a Redis Cluster each record's
//! keys share a slot, and every key gets an expiry when it is written.
//! Client-chosen values (a token's `jti`, a user name) are hashed into the
//! key, which keeps keys short and free of separators.

use super::sessions::{Bind, Sighting, MAX_TRACKED_SESSIONS, SESSION_IDLE_SECS};
use super::shared::{Ceremony, DeviceKey, Fingerprints, HoldQuota, StateError, StateStore, StoreFuture};
use super::{Fails, Rate};
use dashmap::DashMap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a fingerprint stays published without an instance refreshing
/// it: short, so that a fleet restarted with new keys can publish them a
/// minute after the last old instance went away.
const FINGERPRINT_TTL_SECS: u64 = 60;

/// A TOTP step matters only while a code of it can still be accepted (one
/// step of skew either side); ten minutes leaves a wide margin.
const STEP_TTL_SECS: u64 = 600;

/// An answer slower than this counts as no answer: a request must not hang
/// on a store that is gone.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Sets the user's last step only if the new one is newer, and gives the
/// key its expiry, in one step on the server.
const ADVANCE_STEP: &str = r"
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local step = tonumber(ARGV[1])
if step <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
";

/// Keeps a ceremony with its purpose and expiry in one step.
const PUT_CEREMONY: &str = r"
redis.call('HSET', KEYS[1], 'purpose', ARGV[1], 'value', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Takes a ceremony once, and only for the purpose it was issued for: a
/// challenge presented for another purpose stays where it is.
const TAKE_CEREMONY: &str = r"
local purpose = redis.call('HGET', KEYS[1], 'purpose')
if not purpose or purpose ~= ARGV[1] then return false end
local value = redis.call('HGET', KEYS[1], 'value')
redis.call('DEL', KEYS[1])
return value
";

/// Counts a failure: a key quiet for its keep time starts over, and the
/// last failure's time never moves back (instances' clocks differ a little).
const RECORD_FAILURE: &str = r"
local now = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local count = tonumber(redis.call('HGET', KEYS[1], 'count') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
if now >= last + keep then count = 0 end
if last > now then now = last end
redis.call('HSET', KEYS[1], 'count', count + 1, 'last', now)
redis.call('EXPIRE', KEYS[1], keep)
return count + 1
";

/// A token bucket in milli-tokens (see `rate.rs`, whose arithmetic this
/// repeats): refilled by the time since it was last taken from, never
/// beyond the burst and never by a clock that went back. Returns
/// {taken, milli-tokens left}.
const TAKE_RATE: &str = r"
local burst = tonumber(ARGV[1])
local per_minute = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local left = tonumber(redis.call('HGET', KEYS[1], 'left') or ARGV[1])
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or ARGV[3])
local elapsed = now - at
if elapsed < 0 then elapsed = 0 end
left = math.min(burst, left + math.floor(elapsed * per_minute / 60))
if left < 1000 then return {0, left} end
redis.call('HSET', KEYS[1], 'left', left - 1000, 'at', math.max(now, at))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, left - 1000}
";

/// Records a session's first sighting unless one is recorded, keeps the
/// session for its idle window, and returns {first, device} as recorded.
const SIGHT: &str = r"
local first = redis.call('HGET', KEYS[1], 'first')
local device = redis.call('HGET', KEYS[1], 'device')
if not first then
  first = ARGV[1]
  device = ARGV[2]
  redis.call('HSET', KEYS[1], 'first', first, 'device', device)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {first, device or ''}
";

/// Binds a person to a session unless someone else is: {1, ''} bound
/// now, {0, ''} already this person, {2, them} someone else.
const BIND: &str = r"
local who = redis.call('HGET', KEYS[1], 'who')
if not who then
  redis.call('HSET', KEYS[1], 'who', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return {1, ''}
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if who == ARGV[1] then return {0, ''} end
return {2, who}
";

/// Unbinds a person, only if they are the one bound.
const UNBIND: &str = r"
if redis.call('HGET', KEYS[1], 'who') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'who')
end
return 1
";

/// A client's open holds: KEYS[1] a sorted set of hold ids scored by the
/// second each lapses, KEYS[2] their parked bytes by id. Lapsed shares go
/// first (a hold whose instance died without giving its share back), then
/// the hold is admitted within both limits. Both keys expire with the
/// latest share. Returns 1 admitted, 0 refused.
const TAKE_QUOTA: &str = r"
local now = tonumber(ARGV[1])
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for _, id in ipairs(lapsed) do redis.call('HDEL', KEYS[2], id) end
if #lapsed > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1]) end
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then return 0 end
local used = 0
for _, b in ipairs(redis.call('HVALS', KEYS[2])) do used = used + tonumber(b) end
if used + tonumber(ARGV[3]) > tonumber(ARGV[6]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local ttl = math.max(1, tonumber(last[2]) - now + 1)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return 1
";

/// Gives one hold's share back; a client with no open hold has no keys.
const GIVE_QUOTA: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1], KEYS[2]) end
return 1
";

/// A session's sighting, as this instance last read it from Redis. The
/// facts of a first sighting never change, so a session seen here within
/// [`SIGHT_REFRESH_SECS`] is answered without a round trip.
#[derive(Debug, Clone, Copy)]
struct Sighted {
    seen: Sighting,
    synced: u64,
}

/// How long a sighting read from Redis is answered from this instance's
/// copy before it is read again (which also renews the key's TTL).
const SIGHT_REFRESH_SECS: u64 = 300;

pub struct RedisState {
    conn: ConnectionManager,
    prefix: String,
    available: AtomicBool,
    advance: redis::Script,
    put_ceremony: redis::Script,
    take_ceremony: redis::Script,
    record_failure: redis::Script,
    take_rate: redis::Script,
    sight: redis::Script,
    bind: redis::Script,
    unbind: redis::Script,
    take_quota: redis::Script,
    give_quota: redis::Script,
    /// Sightings read lately (see [`Sighted`]), bounded.
    sighted: DashMap<[u8; 32], Sighted>,
    /// What this instance published, refreshed by every probe.
    published: std::sync::Mutex<Option<Fingerprints>>,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState").field("prefix", &self.prefix).finish()
    }
}

fn digest(text: &str) -> String {
    digest_bytes(text.as_bytes())
}

fn digest_bytes(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A client for `url` and its lazily connected, self-healing connection,
/// with the short timeouts every store operation relies on (a request
/// must not hang on a Redis that is gone).
pub(super) fn connect(url: &str) -> Result<(redis::Client, ConnectionManager), StateError> {
    let client = redis::Client::open(url).map_err(|e| StateError::Unavailable(e.category().to_owned()))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(200));
    let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
        .map_err(|e| StateError::Unavailable(e.to_string()))?;
    Ok((client, conn))
}

impl RedisState {
    /// Connects lazily: nothing is sent until the first operation (see
    /// [`StateStore::join`], which the server runs before it serves).
    /// Must be called inside a Tokio runtime, which then drives the
    /// connection for every serving thread.
    pub fn new(url: &str, prefix: &str) -> Result<Self, StateError> {
        let (_, conn) = connect(url)?;
        Ok(RedisState {
            conn,
            prefix: prefix.to_owned(),
            available: AtomicBool::new(false),
            advance: redis::Script::new(ADVANCE_STEP),
            put_ceremony: redis::Script::new(PUT_CEREMONY),
            take_ceremony: redis::Script::new(TAKE_CEREMONY),
            record_failure: redis::Script::new(RECORD_FAILURE),
            take_rate: redis::Script::new(TAKE_RATE),
            sight: redis::Script::new(SIGHT),
            bind: redis::Script::new(BIND),
            unbind: redis::Script::new(UNBIND),
            take_quota: redis::Script::new(TAKE_QUOTA),
            give_quota: redis::Script::new(GIVE_QUOTA),
            sighted: DashMap::new(),
            published: std::sync::Mutex::new(None),
        })
    }

    fn key(&self, kind: &str, tag: &str) -> String {
        format!("{}:{kind}:{{{tag}}}", self.prefix)
    }

    /// A session's record: its first sighting and who acts on it. The id
    /// is already a keyed digest; it is hashed again like every key part.
    fn session_key(&self, sid: &[u8; 32]) -> String {
        self.key("session", &digest_bytes(sid))
    }

    /// A client's quota: the holds and their bytes, one hash tag.
    fn quota_keys(&self, client: &str) -> (String, String) {
        let tag = digest(client);
        (self.key("quota", &tag), self.key("quota-bytes", &tag))
    }

    fn fingerprint_key(&self) -> String {
        self.key("fingerprints", "instances")
    }

    /// Runs one operation with a deadline and records whether the store
    /// answered.
    async fn run<T>(&self, op: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, StateError> {
        let result = match tokio::time::timeout(OP_TIMEOUT, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StateError::Unavailable(e.to_string())),
            Err(_) => Err(StateError::Unavailable("no answer in time".into())),
        };
        self.note(result.is_ok());
        result
    }

    fn note(&self, ok: bool) {
        let was = self.available.swap(ok, Ordering::Relaxed);
        if was && !ok {
            tracing::error!(
                backend = "redis",
                "state store unreachable: sensitive routes fail closed"
            );
        } else if !was && ok {
            tracing::info!(backend = "redis", "state store reachable");
        }
    }

    async fn publish(&self, fp: &Fingerprints) -> Result<(), StateError> {
        let key = self.fingerprint_key();
        let mut c = self.conn.clone();
        let mine = fp.encode();
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&mine)
                    .arg("NX")
                    .arg("EX")
                    .arg(FINGERPRINT_TTL_SECS)
                    .query_async(&mut c),
            )
            .await?;
        if set.is_some() {
            return Ok(());
        }
        let theirs: Option<String> = self.run(redis::cmd("GET").arg(&key).query_async(&mut c)).await?;
        mismatch(fp, theirs.as_deref())?;
        let _: bool = self
            .run(
                redis::cmd("EXPIRE")
                    .arg(&key)
                    .arg(FINGERPRINT_TTL_SECS)
                    .query_async(&mut c),
            )
            .await?;
        Ok(())
    }
}

/// An error naming the keys that differ from the published ones.
fn mismatch(fp: &Fingerprints, published: Option<&str>) -> Result<(), StateError> {
    let Some(theirs) = published.filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let differ = fp.differences(theirs);
    if differ.is_empty() {
        return Ok(());
    }
    Err(StateError::KeyMismatch(format!(
        "other instances on this Redis run with another {}; every instance needs the same keys",
        differ.join(" and another ")
    )))
}

impl StateStore for RedisState {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn claim_once<'a>(&'a self, key: &'a str, expires: u64, now: u64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let ttl = expires.saturating_sub(now).max(1);
            let set: Option<String> = self
                .run(
                    redis::cmd("SET")
                        .arg(self.key("once", &digest(key)))
                        .arg(expires)
                        .arg("NX")
                        .arg("EX")
                        .arg(ttl)
                        .query_async(&mut c),
                )
                .await?;
            Ok(set.is_some())
        })
    }

    fn advance_step<'a>(&'a self, user: &'a str, step: u64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let mut call = self.advance.key(self.key("totp", &digest(user)));
            call.arg(step).arg(STEP_TTL_SECS);
            let newer: i64 = self.run(call.invoke_async(&mut c)).await?;
            Ok(newer == 1)
        })
    }

    fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    fn probe(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let _: String = self.run(redis::cmd("PING").query_async(&mut c)).await?;
            let fp = self.published.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(fp) = fp {
                // A Redis that came back empty gets the fingerprints again.
                if let Err(e) = self.publish(&fp).await {
                    tracing::error!(error = %e, "shared key check failed");
                }
            }
            Ok(())
        })
    }

    fn join<'a>(&'a self, fp: &'a Fingerprints) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.publish(fp).await?;
            *self.published.lock().unwrap_or_else(|p| p.into_inner()) = Some(fp.clone());
            Ok(())
        })
    }

    fn compare_keys<'a>(&'a self, fp: &'a Fingerprints) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let theirs: Option<String> = self
                .run(redis::cmd("GET").arg(self.fingerprint_key()).query_async(&mut c))
                .await?;
            mismatch(fp, theirs.as_deref())
        })
    }

    fn put_ceremony<'a>(&'a self, c: Ceremony<'a>, now: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            // No per-owner bound here: the ceremony rates bound what one
            // client can put in, and every entry expires with its ceremony.
            let mut call = self.put_ceremony.key(self.key("ceremony", &digest_bytes(c.challenge)));
            call.arg(c.purpose)
                .arg(c.value)
                .arg(c.expires.saturating_sub(now).max(1));
            let _: i64 = self.run(call.invoke_async(&mut conn)).await?;
            Ok(())
        })
    }

    fn take_ceremony<'a>(
        &'a self,
        challenge: &'a [u8],
        purpose: &'a str,
        _now: u64,
    ) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut call = self.take_ceremony.key(self.key("ceremony", &digest_bytes(challenge)));
            call.arg(purpose);
            self.run(call.invoke_async(&mut conn)).await
        })
    }

    fn failures<'a>(&'a self, key: &'a str, _now: u64) -> StoreFuture<'a, Option<Fails>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let (count, last): (Option<u32>, Option<u64>) = self
                .run(
                    redis::cmd("HMGET")
                        .arg(self.key("fail", &digest(key)))
                        .arg("count")
                        .arg("last")
                        .query_async(&mut conn),
                )
                .await?;
            Ok(count.zip(last).map(|(count, last)| Fails { count, last }))
        })
    }

    fn record_failure<'a>(&'a self, key: &'a str, now: u64, forget_after: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut call = self.record_failure.key(self.key("fail", &digest(key)));
            call.arg(now).arg(forget_after.max(1));
            let _: i64 = self.run(call.invoke_async(&mut conn)).await?;
            Ok(())
        })
    }

    fn clear_failures<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let _: i64 = self
                .run(
                    redis::cmd("DEL")
                        .arg(self.key("fail", &digest(key)))
                        .query_async(&mut conn),
                )
                .await?;
            Ok(())
        })
    }

    fn take_rate<'a>(&'a self, key: &'a str, rate: Rate, now_ms: u64) -> StoreFuture<'a, Result<(), u64>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let burst = u64::from(rate.burst.max(1)) * 1000;
            let per_minute = u64::from(rate.per_minute.max(1));
            // A bucket left alone this long is full again: the same as none.
            let refill_ms = (burst * 60).div_ceil(per_minute).max(1);
            let mut call = self.take_rate.key(self.key("rate", &digest(key)));
            call.arg(burst).arg(per_minute).arg(now_ms).arg(refill_ms);
            let (taken, left): (i64, u64) = self.run(call.invoke_async(&mut conn)).await?;
            Ok(if taken == 1 { Ok(()) } else { Err(rate.wait_secs(left)) })
        })
    }

    fn sight<'a>(
        &'a self,
        sid: &'a [u8; 32],
        now: u64,
        device: &'a DeviceKey<'a>,
    ) -> StoreFuture<'a, Option<Sighting>> {
        Box::pin(async move {
            let known = self.sighted.get(sid).map(|e| *e);
            if let Some(k) = known {
                // A store that does not answer cannot refresh the copy, and
                // the first sighting's facts do not change.
                if now < k.synced.saturating_add(SIGHT_REFRESH_SECS) || !self.is_available() {
                    return Ok(Some(k.seen));
                }
            } else if !self.is_available() {
                // Not asked: the pass-through path must not wait on a store
                // that is gone. Unknown facts make the conditions fire.
                return Ok(None);
            }
            // What this instance knows is offered again, so a Redis that
            // lost the record gets the first sighting back, not a new one.
            let (first, dev) = match known {
                Some(k) => (k.seen.first, k.seen.device),
                None => (now, device()),
            };
            let mut conn = self.conn.clone();
            let mut call = self.sight.key(self.session_key(sid));
            call.arg(first).arg(hex16(&dev)).arg(SESSION_IDLE_SECS);
            let (first, dev): (u64, String) = self.run(call.invoke_async(&mut conn)).await?;
            let seen = Sighting {
                first,
                // A record without a readable device (written by something
                // else) has an unknown device, as a full tracker would.
                device: unhex16(&dev).unwrap_or([0; 16]),
            };
            if known.is_some() || self.sighted.len() < MAX_TRACKED_SESSIONS {
                self.sighted.insert(*sid, Sighted { seen, synced: now });
            }
            Ok(Some(seen))
        })
    }

    fn actor<'a>(&'a self, sid: &'a [u8; 32]) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            self.run(
                redis::cmd("HGET")
                    .arg(self.session_key(sid))
                    .arg("who")
                    .query_async(&mut conn),
            )
            .await
        })
    }

    fn bind_actor<'a>(&'a self, sid: &'a [u8; 32], who: &'a str, _now: u64) -> StoreFuture<'a, Bind> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut call = self.bind.key(self.session_key(sid));
            call.arg(who).arg(SESSION_IDLE_SECS);
            let (outcome, bound): (i64, String) = self.run(call.invoke_async(&mut conn)).await?;
            Ok(match outcome {
                1 => Bind::New,
                0 => Bind::Same,
                _ => Bind::Other(bound),
            })
        })
    }

    fn unbind_actor<'a>(&'a self, sid: &'a [u8; 32], who: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut call = self.unbind.key(self.session_key(sid));
            call.arg(who);
            let _: i64 = self.run(call.invoke_async(&mut conn)).await?;
            Ok(())
        })
    }

    fn take_hold_quota<'a>(&'a self, q: HoldQuota<'a>, now: u64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let (holds, bytes) = self.quota_keys(q.client);
            let mut call = self.take_quota.key(holds);
            call.key(bytes)
                .arg(now)
                .arg(q.hold)
                .arg(q.bytes)
                .arg(q.until.max(now))
                .arg(q.max_holds)
                .arg(q.max_bytes);
            let admitted: i64 = self.run(call.invoke_async(&mut conn)).await?;
            Ok(admitted == 1)
        })
    }

    fn give_hold_quota<'a>(&'a self, client: &'a str, hold: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let (holds, bytes) = self.quota_keys(client);
            let mut call = self.give_quota.key(holds);
            call.key(bytes).arg(hold);
            let _: i64 = self.run(call.invoke_async(&mut conn)).await?;
            Ok(())
        })
    }

    fn purge(&self, now: u64) {
        self.sighted
            .retain(|_, s| now.saturating_sub(s.synced) < SIGHT_REFRESH_SECS);
        crate::sparse::shrink(&self.sighted);
    }
}

fn hex16(bytes: &[u8; 16]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex16(text: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_prefixed_tagged_and_hide_client_values() {
        let s = RedisState::new("redis://127.0.0.1:1", "sg").expect("lazy");
        let k = s.key("once", &digest("jti:https://idp:abc"));
        assert!(k.starts_with("sg:once:{"), "{k}");
        assert!(k.ends_with('}'));
        assert!(!k.contains("abc"));
        assert!(!s.is_available(), "unknown until asked");
    }

    #[tokio::test]
    async fn an_unreachable_store_is_an_error_not_a_yes() {
        // Port 1 on loopback refuses at once: the claim must fail closed.
        let s = RedisState::new("redis://127.0.0.1:1", "sg").expect("lazy");
        assert!(s.claim_once("k", 100, 0).await.is_err());
        assert!(s.advance_step("alice", 1).await.is_err());
        let c = Ceremony {
            challenge: b"c",
            purpose: "p",
            owner: "o",
            value: b"v",
            expires: 100,
        };
        assert!(s.put_ceremony(c, 0).await.is_err());
        assert!(s.take_ceremony(b"c", "p", 0).await.is_err());
        assert!(s.failures("k", 0).await.is_err());
        assert!(s.record_failure("k", 0, 900).await.is_err());
        let rate = Rate {
            burst: 1,
            per_minute: 1,
        };
        assert!(s.take_rate("k", rate, 0).await.is_err());
        assert!(s.actor(&[1; 32]).await.is_err());
        assert!(s.bind_actor(&[1; 32], "bob", 0).await.is_err());
        let q = HoldQuota {
            client: "10.0.0.1",
            hold: "h",
            bytes: 1,
            until: 100,
            max_holds: 1,
            max_bytes: 10,
        };
        assert!(s.take_hold_quota(q, 0).await.is_err(), "no hold without its quota");
        assert!(!s.is_available());
        // A sighting is not even asked for: the pass-through path does not
        // wait on a store that is gone, and the session's facts are unknown.
        let device = || -> [u8; 16] { unreachable!("not asked") };
        assert_eq!(s.sight(&[1; 32], 0, &device).await.ok(), Some(None));
    }

    #[test]
    fn device_keys_round_trip_through_hex() {
        let d = [0xa5; 16];
        assert_eq!(unhex16(&hex16(&d)), Some(d));
        assert_eq!(unhex16(""), None);
        assert_eq!(unhex16(&"zz".repeat(16)), None);
        assert_eq!(unhex16(&"é".repeat(16)), None);
    }
}

//! Holds shared by every instance on one Redis (SPEC §10).
//!
//! A hold is one hash, `prefix:hold:{id}`, whose fields share the id's hash
//! tag (so on a Cluster they share a slot) and which expires a while after
//! the hold's deadline:
//!
//! | field | what |
//! |---|---|
//! | `v` | version, bumped by every write |
//! | `phase` | the hold's phase, or `forwarding` once an instance took the parked request |
//! | `meta` | the facts that never change (JSON) |
//! | `state` | the state machine's state (JSON) |
//! | `parked` | the parked request, until someone forwards it or the hold ends |
//! | `owner` | the instance whose client may be waiting for the answer |
//!
//! The state machine itself runs in the instance ([`HoldState::on`]);
//! Redis only commits its result. Every write is one Lua script that
//! compares the version the decision was made on and refuses any phase
//! change outside [`TRANSITIONS`] (the script's table is built from that
//! very constant), so two instances deciding at once cannot both win: the
//! loser reloads and decides again on the new state. Taking the parked
//! request (`released` → `forwarding`) is a step of its own, which only one
//! caller can take, and it is what entitles an instance to forward.

use super::shared::StateError;
use crate::clock::unix_secs;
use crate::hold::engine::{HoldMeta, Packed, Parked};
use crate::hold::state::{Event, HoldError, HoldState, Phase, Transition, TRANSITIONS};
use crate::hold::wire;
use crate::ids::HoldId;
use redis::aio::ConnectionManager;
use redis::Value;
use std::time::{Duration, SystemTime};

mod lease;

/// The store-only step after `released`: the parked request is taken.
pub const FORWARDING: &str = "forwarding";

const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// A decision made on a stale version is retried this often before the
/// caller is told the store is too busy to answer.
const MAX_RETRIES: usize = 64;

const STEP: &str = r"
local allowed = {__TABLE__}
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return {0} end
if v ~= ARGV[1] then return {-1} end
local from = redis.call('HGET', KEYS[1], 'phase')
local to = ARGV[2]
if from ~= to and not allowed[from .. '>' .. to] then return {-2, from} end
local take = ARGV[4] == '1'
if take and not allowed[to .. '>forwarding'] then return {-2, from} end
local phase = to
if take then phase = 'forwarding' end
redis.call('HSET', KEYS[1], 'v', tostring(tonumber(v) + 1), 'phase', phase, 'state', ARGV[3])
if take then
  local p = redis.call('HGET', KEYS[1], 'parked')
  redis.call('HDEL', KEYS[1], 'parked')
  redis.call('HSET', KEYS[1], 'by', ARGV[5])
  if not p then return {1} end
  return {1, p}
end
if to == 'denied' or to == 'expired' then redis.call('HDEL', KEYS[1], 'parked') end
return {1}
";

const CLAIM: &str = r"
if redis.call('HGET', KEYS[1], 'phase') ~= 'released' then return {0} end
local p = redis.call('HGET', KEYS[1], 'parked')
local v = tonumber(redis.call('HGET', KEYS[1], 'v'))
redis.call('HSET', KEYS[1], 'v', tostring(v + 1), 'phase', 'forwarding', 'by', ARGV[1])
redis.call('HDEL', KEYS[1], 'parked')
if not p then return {1} end
return {1, p}
";

/// The Lua table of allowed phase changes: [`TRANSITIONS`] plus taking
/// the parked request of a released hold.
pub fn lua_table() -> String {
    let mut pairs: Vec<String> = TRANSITIONS
        .iter()
        .map(|(a, b)| format!("['{}>{}']=true", a.as_str(), b.as_str()))
        .collect();
    pairs.push(format!("['{}>{FORWARDING}']=true", Phase::Released.as_str()));
    pairs.join(",")
}

/// A hold as read from the store.
#[derive(Debug)]
pub struct Stored {
    pub meta: HoldMeta,
    pub state: HoldState,
    pub version: u64,
    /// The stored phase: the state's, or `forwarding`.
    pub phase: String,
    pub owner: String,
}

/// What one committed event did.
#[derive(Debug)]
pub struct Stepped {
    pub meta: HoldMeta,
    pub state: HoldState,
    pub transition: Transition,
    pub owner: String,
    /// The parked request, for the one caller that took it (checked when
    /// the release unpacks it).
    pub parked: Option<Packed>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HoldStoreError {
    #[error("no such hold")]
    Unknown,
    #[error(transparent)]
    Hold(#[from] HoldError),
    #[error(transparent)]
    Store(#[from] StateError),
}

/// What a commit attempt answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Commit {
    Done(Option<Vec<u8>>),
    /// Someone wrote first; decide again.
    Stale,
    Unknown,
    /// The table forbids going from this phase.
    Refused(String),
}

pub struct RedisHolds {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    keep: Duration,
    step: redis::Script,
    claim: redis::Script,
    orphan: redis::Script,
}

impl std::fmt::Debug for RedisHolds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHolds").field("prefix", &self.prefix).finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StateError {
    StateError::Unavailable(e.to_string())
}

async fn timed<T>(op: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, StateError> {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(r) => r.map_err(unavailable),
        Err(_) => Err(unavailable("no answer in time")),
    }
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

impl RedisHolds {
    /// Connects lazily, like the rest of the Redis state. An ended hold
    /// stays readable for `keep` after its deadline (`limits.keep_ended_holds`,
    /// as the memory engine keeps it), so late callers learn how it ended.
    pub fn new(url: &str, prefix: &str, keep: Duration) -> Result<Self, StateError> {
        let (client, conn) = super::redis_state::connect(url)?;
        Ok(RedisHolds {
            client,
            conn,
            prefix: prefix.to_owned(),
            keep,
            step: redis::Script::new(&STEP.replace("__TABLE__", &lua_table())),
            claim: redis::Script::new(CLAIM),
            orphan: redis::Script::new(lease::ORPHAN),
        })
    }

    fn key(&self, id: &str) -> String {
        format!("{}:hold:{{{id}}}", self.prefix)
    }

    /// Open holds, and releases not yet taken, by deadline, for
    /// approvers' queues and for sweeping the holds of an instance that is
    /// gone. Its own slot: it is an index,
    /// kept beside the atomic writes, never part of them.
    fn index(&self) -> String {
        format!("{}:holds:{{index}}", self.prefix)
    }

    /// The channel on which releases for a waiting client are announced.
    pub fn channel(&self) -> String {
        format!("{}:released", self.prefix)
    }

    /// Stores a new hold, owned by `owner` (the instance it waits on).
    pub async fn put(
        &self,
        meta: &HoldMeta,
        state: &HoldState,
        parked: &Parked,
        owner: &str,
    ) -> Result<(), StateError> {
        let key = self.key(meta.id.as_str());
        let expire_at = unix_secs(state.deadline) + self.keep.as_secs();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&key)
            .arg("v")
            .arg("1")
            .arg("phase")
            .arg(state.phase.as_str())
            .arg("meta")
            .arg(wire::encode_meta(meta))
            .arg("state")
            .arg(wire::encode_state(state))
            .arg("parked")
            .arg(Packed::pack(parked).to_bytes())
            .arg("owner")
            .arg(owner)
            .ignore()
            .cmd("EXPIREAT")
            .arg(&key)
            .arg(expire_at)
            .ignore()
            .cmd("ZADD")
            .arg(self.index())
            .arg(unix_secs(state.deadline))
            .arg(meta.id.as_str())
            .ignore();
        let mut c = self.conn.clone();
        timed(pipe.query_async::<()>(&mut c)).await
    }

    pub async fn load(&self, id: &HoldId) -> Result<Option<Stored>, StateError> {
        let mut c = self.conn.clone();
        let fields: Vec<Option<Vec<u8>>> = timed(
            redis::cmd("HMGET")
                .arg(self.key(id.as_str()))
                .arg(&["v", "phase", "meta", "state", "owner"])
                .query_async(&mut c),
        )
        .await?;
        let [Some(v), Some(phase), Some(meta), Some(state), owner] = <[Option<Vec<u8>>; 5]>::try_from(fields)
            .map_err(|_| unavailable("HMGET answered the wrong number of fields"))?
        else {
            return Ok(None);
        };
        let damaged = |e: wire::WireError| unavailable(format!("hold {id}: {e}"));
        Ok(Some(Stored {
            meta: wire::decode_meta(&meta).map_err(damaged)?,
            state: wire::decode_state(&state).map_err(damaged)?,
            version: std::str::from_utf8(&v)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| unavailable("hold version"))?,
            phase: String::from_utf8_lossy(&phase).into_owned(),
            owner: owner
                .map(|o| String::from_utf8_lossy(&o).into_owned())
                .unwrap_or_default(),
        }))
    }

    /// One compare-and-set: writes `state` if the hold is still at
    /// `version` and the table allows its phase change; `take` also moves
    /// a released hold on to `forwarding` and hands back its parked bytes.
    pub async fn commit(
        &self,
        id: &HoldId,
        version: u64,
        state: &HoldState,
        take: bool,
        by: &str,
    ) -> Result<Commit, StateError> {
        let mut c = self.conn.clone();
        let mut call = self.step.key(self.key(id.as_str()));
        call.arg(version.to_string())
            .arg(state.phase.as_str())
            .arg(wire::encode_state(state))
            .arg(if take { "1" } else { "0" })
            .arg(by);
        let answer: Vec<Value> = timed(call.invoke_async(&mut c)).await?;
        let commit = match answer.first().and_then(int) {
            Some(1) => Commit::Done(answer.get(1).and_then(bytes)),
            Some(0) => Commit::Unknown,
            Some(-1) => Commit::Stale,
            Some(-2) => Commit::Refused(
                answer
                    .get(1)
                    .and_then(bytes)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default(),
            ),
            _ => return Err(unavailable("unexpected answer from the hold script")),
        };
        // A release left for a waiter elsewhere stays listed until it is
        // taken, so that it is found if its instance dies first.
        let left_for_owner = state.phase == Phase::Released && !take;
        if matches!(commit, Commit::Done(_)) && !state.phase.is_open() && !left_for_owner {
            self.unindex(id).await;
        }
        Ok(commit)
    }

    async fn unindex(&self, id: &HoldId) {
        let mut c = self.conn.clone();
        let removed: Result<i64, _> = timed(
            redis::cmd("ZREM")
                .arg(self.index())
                .arg(id.as_str())
                .query_async(&mut c),
        )
        .await;
        if let Err(e) = removed {
            // The index is only a list to look at; an entry left behind is
            // dropped by the next sweep that finds its hold closed.
            tracing::warn!(hold = %id, error = %e, "could not drop an ended hold from the index");
        }
    }

    /// Applies `event` the way the memory engine does, but across
    /// instances: read, decide with the pure state machine, commit with a
    /// compare-and-set, and decide again on the new state if another
    /// instance wrote first. `take(stored, transition)` says whether this
    /// caller will forward a release (and so takes the parked request).
    pub async fn apply(
        &self,
        id: &HoldId,
        event: Event,
        now: SystemTime,
        by: &str,
        take: impl Fn(&Stored, &Transition) -> bool,
    ) -> Result<Stepped, HoldStoreError> {
        for _ in 0..MAX_RETRIES {
            let stored = self.load(id).await?.ok_or(HoldStoreError::Unknown)?;
            if stored.phase == FORWARDING {
                return Err(HoldError::AlreadyReleased.into());
            }
            let mut state = stored.state.clone();
            let transition = state.on(event.clone(), now)?;
            if state.phase == stored.state.phase
                && transition == Transition::Progress
                && state_eq(&state, &stored.state)
            {
                // Nothing to write (e.g. a collect that finds approvals
                // missing): no need to race anyone.
                return Ok(Stepped {
                    meta: stored.meta,
                    state,
                    transition,
                    owner: stored.owner,
                    parked: None,
                });
            }
            let wants = transition == Transition::Release && take(&stored, &transition);
            match self.commit(id, stored.version, &state, wants, by).await? {
                Commit::Done(parked) => {
                    let parked = parked.map(Packed::from_bytes);
                    return Ok(Stepped {
                        meta: stored.meta,
                        state,
                        transition,
                        owner: stored.owner,
                        parked,
                    });
                }
                Commit::Stale => continue,
                Commit::Unknown => return Err(HoldStoreError::Unknown),
                Commit::Refused(from) => {
                    tracing::error!(hold = %id, %from, to = state.phase.as_str(), "store refused a phase change");
                    return Err(HoldError::AlreadyReleased.into());
                }
            }
        }
        Err(unavailable("too many concurrent writers on one hold").into())
    }

    /// Holds a pending hold to tightened requirements (a reload), with the
    /// same compare-and-set as any event. `f` says whether it changed the
    /// state; the answer is whether a change was committed.
    pub async fn rewrite(&self, id: &HoldId, f: impl Fn(&mut HoldState) -> bool) -> Result<bool, HoldStoreError> {
        for _ in 0..MAX_RETRIES {
            let stored = self.load(id).await?.ok_or(HoldStoreError::Unknown)?;
            let mut state = stored.state.clone();
            if !f(&mut state) {
                return Ok(false);
            }
            match self.commit(id, stored.version, &state, false, "").await? {
                Commit::Done(_) => return Ok(true),
                Commit::Stale => continue,
                Commit::Unknown => return Err(HoldStoreError::Unknown),
                Commit::Refused(_) => return Ok(false),
            }
        }
        Err(unavailable("too many concurrent writers on one hold").into())
    }

    /// Takes the parked request of a hold released for a client waiting on
    /// this instance. `None`: someone else took it, or there is none.
    pub async fn claim(&self, id: &HoldId, by: &str) -> Result<Option<Packed>, StateError> {
        let mut c = self.conn.clone();
        let mut call = self.claim.key(self.key(id.as_str()));
        call.arg(by);
        let answer: Vec<Value> = timed(call.invoke_async(&mut c)).await?;
        if answer.first().and_then(int) != Some(1) {
            return Ok(None);
        }
        self.unindex(id).await;
        match answer.get(1).and_then(bytes) {
            Some(p) => Ok(Some(Packed::from_bytes(p))),
            None => Ok(None),
        }
    }

    /// Tells every instance that hold `id` was released for a waiter.
    pub async fn announce(&self, id: &HoldId) -> Result<(), StateError> {
        let mut c = self.conn.clone();
        timed(
            redis::cmd("PUBLISH")
                .arg(self.channel())
                .arg(id.as_str())
                .query_async::<i64>(&mut c),
        )
        .await
        .map(|_| ())
    }

    /// The ids in the open-holds index (some may have ended meanwhile).
    pub async fn indexed(&self) -> Result<Vec<HoldId>, StateError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = timed(
            redis::cmd("ZRANGE")
                .arg(self.index())
                .arg(0)
                .arg(-1)
                .query_async(&mut c),
        )
        .await?;
        Ok(ids.iter().filter_map(|s| HoldId::parse(s)).collect())
    }

    /// Drops index entries of holds that ended or are gone.
    pub async fn forget(&self, id: &HoldId) {
        self.unindex(id).await;
    }

    /// A pub/sub connection subscribed to the release channel.
    pub async fn subscribe(&self) -> Result<redis::aio::PubSub, StateError> {
        let mut ps = timed(self.client.get_async_pubsub()).await?;
        timed(ps.subscribe(self.channel())).await?;
        Ok(ps)
    }
}

fn state_eq(a: &HoldState, b: &HoldState) -> bool {
    wire::encode_state(a) == wire::encode_state(b)
}

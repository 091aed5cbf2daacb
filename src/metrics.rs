//! Prometheus metrics, served on `admin_listen` (`/metrics`).
//!
//! Names follow the Prometheus conventions: counters end in `_total`,
//! durations are in seconds, an HTTP status is the `code` label, the build
//! is `stepgate_build_info`, and the process exports the standard
//! `process_*` metrics.

mod process;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    /// The HTTP status of the answer.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProofLabels {
    pub method: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// What a throttled request was counted against (`client`, `session`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottleLabels {
    pub by: String,
}

pub struct Metrics {
    registry: Registry,
    /// `requests` counters of unrouted requests by status code, resolved
    /// once: the family lookup hashes two fresh strings under a lock.
    unrouted: Box<[std::sync::OnceLock<Counter>]>,
    pub requests: Family<RequestLabels, Counter>,
    pub upstream_seconds: Histogram,
    pub holds_open: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Holds in memory, open or ended and kept for late callers.
    pub holds_kept: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Request body bytes in memory: being read, parked, or on their way upstream.
    pub body_bytes_buffered: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub hold_transitions: Family<StateLabels, Counter>,
    pub hold_wait_seconds: Histogram,
    pub proofs: Family<ProofLabels, Counter>,
    pub approvals: Family<DecisionLabels, Counter>,
    pub assertions: Counter<u64, AtomicU64>,
    pub reloads: Family<ResultLabels, Counter>,
    /// Webhook notifications not delivered, by why (`queue_full`, `undeliverable`).
    pub notifications_dropped: Family<ResultLabels, Counter>,
    pub audit_write_seconds: Histogram,
    /// 1 while the state store (memory, or Redis) answers, 0 while it does not.
    pub state_available: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub connections_refused: Counter<u64, AtomicU64>,
    /// Ceremony requests refused for their rate (see `proxy::throttle`).
    pub throttled: Family<ThrottleLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            unrouted: (0..1000).map(|_| std::sync::OnceLock::new()).collect(),
            requests: Family::default(),
            upstream_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            holds_open: Gauge::default(),
            body_bytes_buffered: Gauge::default(),
            holds_kept: Gauge::default(),
            hold_transitions: Family::default(),
            hold_wait_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            proofs: Family::default(),
            approvals: Family::default(),
            assertions: Counter::default(),
            reloads: Family::default(),
            notifications_dropped: Family::default(),
            audit_write_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            state_available: Gauge::default(),
            connections_refused: Counter::default(),
            throttled: Family::default(),
        };
        m.registry.register_collector(Box::new(process::ProcessCollector));
        let r = m.registry.sub_registry_with_prefix("stepgate");
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("STEPGATE_VERSION").to_owned(),
            })
            .set(1);
        r.register("build_info", "The running build: version and git commit", build);
        r.register("requests", "Requests by route and HTTP status code", m.requests.clone());
        r.register(
            "upstream_seconds",
            "Upstream response time (headers)",
            m.upstream_seconds.clone(),
        );
        r.register("holds_open", "Holds pending or satisfied", m.holds_open.clone());
        r.register(
            "holds_kept",
            "Holds in memory: open, or ended and kept for limits.keep_ended_holds",
            m.holds_kept.clone(),
        );
        r.register(
            "body_bytes_buffered",
            "Request body bytes held in memory (being read, parked, or being forwarded)",
            m.body_bytes_buffered.clone(),
        );
        r.register("hold_transitions", "Holds reaching a state", m.hold_transitions.clone());
        r.register(
            "hold_wait_seconds",
            "Time from hold to release or end",
            m.hold_wait_seconds.clone(),
        );
        r.register("proofs", "Proofs by method and result", m.proofs.clone());
        r.register("approvals", "Approver decisions", m.approvals.clone());
        r.register(
            "throttled",
            "Passkey options and sign-ins refused for their rate, by what was counted",
            m.throttled.clone(),
        );
        r.register(
            "state_available",
            "Whether the state store answers (1) or not (0)",
            m.state_available.clone(),
        );
        r.register("assertions_signed", "Assertions signed", m.assertions.clone());
        r.register("config_reloads", "Configuration reloads by result", m.reloads.clone());
        r.register(
            "notifications_dropped",
            "Webhook notifications not delivered, by reason",
            m.notifications_dropped.clone(),
        );
        r.register(
            "audit_write_seconds",
            "Durable audit append latency",
            m.audit_write_seconds.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at accept because limits.max_connections was reached",
            m.connections_refused.clone(),
        );
        m
    }

    pub fn request(&self, route: &str, code: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                code: code.to_owned(),
            })
            .inc();
    }

    /// `request("none", status)`, without the family lookup.
    pub fn unrouted_request(&self, status: http::StatusCode) {
        let Some(slot) = self.unrouted.get(usize::from(status.as_u16())) else {
            return self.request("none", status.as_str());
        };
        slot.get_or_init(|| {
            self.requests
                .get_or_create(&RequestLabels {
                    route: "none".to_owned(),
                    code: status.as_str().to_owned(),
                })
                .clone()
        })
        .inc();
    }

    pub fn transition(&self, state: &str, waited: Option<Duration>) {
        self.hold_transitions
            .get_or_create(&StateLabels {
                state: state.to_owned(),
            })
            .inc();
        if let Some(w) = waited {
            self.hold_wait_seconds.observe(w.as_secs_f64());
        }
    }

    pub fn proof(&self, method: &str, ok: bool) {
        self.proofs
            .get_or_create(&ProofLabels {
                method: method.to_owned(),
                result: if ok { "accepted" } else { "rejected" }.to_owned(),
            })
            .inc();
    }

    pub fn decision(&self, approve: bool) {
        self.approvals
            .get_or_create(&DecisionLabels {
                decision: if approve { "approve" } else { "deny" }.to_owned(),
            })
            .inc();
    }

    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "failed" }.to_owned(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrouted_requests_count_in_the_requests_family() {
        let m = Metrics::new();
        m.unrouted_request(http::StatusCode::OK);
        m.unrouted_request(http::StatusCode::OK);
        m.request("none", "200");
        m.unrouted_request(http::StatusCode::BAD_GATEWAY);
        let text = m.encode();
        assert!(
            text.contains(r#"stepgate_requests_total{route="none",code="200"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"stepgate_requests_total{route="none",code="502"} 1"#),
            "{text}"
        );
    }
}

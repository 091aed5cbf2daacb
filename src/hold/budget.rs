//! The byte budget for request bodies the gateway buffers: a body on a
//! sensitive route is read whole before its hold exists (for conditions,
//! display fields, `_method` and the `txn`), and stays in memory while its
//! hold is pending. The hold limits only see it once it is parked, so an
//! open body on its own must count too.
//!
//! A [`Charge`] is taken before the first byte is read and grows with the
//! body; whatever it holds returns to the budget when it is dropped. The
//! buffered bytes own their charge (see [`Charge::seal`]), so the budget is
//! given back exactly when the last copy of the body is freed: a refused
//! read, a forward, an ended hold or a client that went away.
//!
//! Counting is kept per client address (as the hold quotas are) and
//! globally. The client's share is checked first, so one client filling
//! its share is refused before it can take the rest from everyone else.

use super::engine::client_key;
use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The limits a charge is held to, taken from the configuration the
/// request was served under (a reload applies to later requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub total: u64,
    pub per_client: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    #[error("the global budget for buffered request bodies is used up")]
    Global,
    #[error("the client's share of the budget for buffered request bodies is used up")]
    Client,
}

/// Bytes of request bodies buffered now, in total and per client.
#[derive(Debug, Default)]
pub struct BodyBudget {
    used: AtomicU64,
    by_client: DashMap<IpAddr, u64>,
}

impl BodyBudget {
    pub fn new() -> Arc<Self> {
        Arc::new(BodyBudget::default())
    }

    /// All buffered body bytes now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The buffered body bytes charged to `client` now.
    pub fn client_used(&self, client: IpAddr) -> u64 {
        self.by_client.get(&client_key(client)).map(|c| *c).unwrap_or(0)
    }

    /// An empty charge for one body from `client`.
    pub fn open(self: &Arc<Self>, client: IpAddr, caps: Caps) -> Charge {
        Charge {
            budget: self.clone(),
            client: client_key(client),
            caps,
            bytes: 0,
        }
    }

    fn take(&self, client: IpAddr, n: u64, caps: Caps) -> Result<(), BudgetError> {
        {
            let mut c = self.by_client.entry(client).or_insert(0);
            if c.saturating_add(n) > caps.per_client {
                let empty = *c == 0;
                drop(c);
                if empty {
                    self.by_client.remove_if(&client, |_, c| *c == 0);
                }
                return Err(BudgetError::Client);
            }
            *c += n;
        }
        if self.used.fetch_add(n, Ordering::AcqRel).saturating_add(n) > caps.total {
            self.used.fetch_sub(n, Ordering::AcqRel);
            self.give_back_client(client, n);
            return Err(BudgetError::Global);
        }
        Ok(())
    }

    fn give_back(&self, client: IpAddr, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        self.give_back_client(client, n);
    }

    fn give_back_client(&self, client: IpAddr, n: u64) {
        let mut gone = false;
        if let Some(mut c) = self.by_client.get_mut(&client) {
            *c = c.saturating_sub(n);
            gone = *c == 0;
        }
        if gone {
            self.by_client.remove_if(&client, |_, c| *c == 0);
        }
    }
}

/// Bytes one body holds against the budget, given back on drop.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<BodyBudget>,
    client: IpAddr,
    caps: Caps,
    bytes: u64,
}

impl Charge {
    /// Grows the charge to cover `total` bytes, or refuses and stays as it
    /// was. Never shrinks.
    pub fn cover(&mut self, total: u64) -> Result<(), BudgetError> {
        let extra = total.saturating_sub(self.bytes);
        if extra == 0 {
            return Ok(());
        }
        self.budget.take(self.client, extra, self.caps)?;
        self.bytes = total;
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Freezes a buffered body into `Bytes` that own this charge: it is
    /// given back when the last clone of the body is dropped, wherever
    /// that happens (a parked hold, a forward, a refused request).
    pub fn seal(mut self, buf: BytesMut) -> Bytes {
        if buf.is_empty() {
            return Bytes::new();
        }
        // Charged for what is actually kept: the allocation, not the length.
        let buf: Box<[u8]> = if self.cover(buf.capacity() as u64).is_err() {
            // The length was charged and fits; the spare capacity need not.
            Box::from(&buf[..])
        } else {
            Vec::from(buf).into_boxed_slice()
        };
        // What a parked body keeps for as long as its hold: the bytes and
        // the smallest record of whom to give them back to.
        let sealed = Sealed {
            budget: self.budget.clone(),
            client: self.client,
            bytes: std::mem::take(&mut self.bytes),
        };
        Bytes::from_owner(Owned { buf, _charge: sealed })
    }
}

/// A sealed charge: it can no longer grow, only be given back.
#[derive(Debug)]
struct Sealed {
    budget: Arc<BodyBudget>,
    client: IpAddr,
    bytes: u64,
}

impl Drop for Sealed {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(self.client, self.bytes);
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(self.client, self.bytes);
        }
    }
}

/// Body bytes together with the charge that pays for them.
struct Owned {
    buf: Box<[u8]>,
    _charge: Sealed,
}

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        total: 100,
        per_client: 40,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn a_clients_share_is_refused_before_the_global_budget() {
        let b = BodyBudget::new();
        let mut a = b.open(ip("10.0.0.2"), CAPS);
        a.cover(30).expect("within the share");
        let mut a2 = b.open(ip("10.0.0.2"), CAPS);
        assert_eq!(a2.cover(11), Err(BudgetError::Client));
        assert_eq!(a2.bytes(), 0, "a refused charge holds nothing");
        assert_eq!(b.used(), 30);
        a2.cover(10).expect("the rest of the share");
        let mut other = b.open(ip("10.0.0.3"), CAPS);
        other.cover(40).expect("another client has its own share");
        assert_eq!(b.client_used(ip("10.0.0.2")), 40);
    }

    #[test]
    fn the_global_budget_refuses_and_leaves_the_clients_share_untouched() {
        let b = BodyBudget::new();
        let held: Vec<Charge> = (1..=3)
            .map(|i| {
                let mut c = b.open(ip(&format!("10.0.0.{i}")), CAPS);
                c.cover(30).expect("fits");
                c
            })
            .collect();
        let mut late = b.open(ip("10.0.0.9"), CAPS);
        assert_eq!(late.cover(11), Err(BudgetError::Global));
        assert_eq!(b.client_used(ip("10.0.0.9")), 0);
        assert_eq!(b.used(), 90);
        drop(held);
        assert_eq!(b.used(), 0);
        late.cover(40).expect("the budget came back");
    }

    #[test]
    fn sealed_bytes_give_the_charge_back_when_the_last_clone_goes() {
        let b = BodyBudget::new();
        let mut c = b.open(ip("10.0.0.2"), CAPS);
        let mut buf = BytesMut::with_capacity(20);
        buf.extend_from_slice(b"0123456789");
        c.cover(10).expect("fits");
        let body = c.seal(buf);
        assert_eq!(&body[..], b"0123456789");
        assert_eq!(b.used(), 20, "the allocation is what is kept");
        let slice = body.slice(2..4);
        drop(body);
        assert_eq!(b.used(), 20, "a slice keeps the allocation alive");
        drop(slice);
        assert_eq!(b.used(), 0);
        assert_eq!(b.client_used(ip("10.0.0.2")), 0);
    }

    #[test]
    fn spare_capacity_over_the_share_is_copied_away_not_refused() {
        let b = BodyBudget::new();
        let mut c = b.open(ip("10.0.0.2"), CAPS);
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(&[7; 30]);
        c.cover(30).expect("fits");
        let body = c.seal(buf);
        assert_eq!(body.len(), 30);
        assert_eq!(b.used(), 30);
        drop(body);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let b = BodyBudget::new();
        let mut one = b.open(ip("2001:db8:1:2::1"), CAPS);
        one.cover(40).expect("fits");
        let mut two = b.open(ip("2001:db8:1:2::99"), CAPS);
        assert_eq!(two.cover(1), Err(BudgetError::Client));
    }
}

//! Each client's share of the in-flight slots.
//!
//! A body is read before its signature can be checked, so a request with forged but fresh
//! signature headers holds one of the `MAX_CONCURRENT_WEBHOOKS` slots while its body trickles in
//! (the minimum body rate cuts it after about a second, but a client can reconnect). Capping
//! what one client address holds leaves the rest of the slots to everyone else: one slow or
//! hostile client can no longer make every vendor's webhook a 503.
//!
//! Behind a load balancer every request comes from the balancer's address: there, turn the share
//! off (`MAX_IN_FLIGHT_PER_CLIENT=0`) and let the balancer limit clients.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

pub struct ClientShares {
    /// Slots one client may hold at once; 0: no limit.
    limit: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One slot of one client, given back when dropped.
pub struct ClientShare<'a> {
    shares: &'a ClientShares,
    client: IpAddr,
}

impl ClientShares {
    pub fn new(limit: usize) -> ClientShares {
        ClientShares { limit, held: Mutex::default() }
    }

    /// A slot for `client`, or `None` when it already holds its share.
    pub fn take(&self, client: IpAddr) -> Option<Option<ClientShare<'_>>> {
        if self.limit == 0 {
            return Some(None);
        }
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(client).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Some(ClientShare { shares: self, client }))
    }
}

impl Drop for ClientShare<'_> {
    fn drop(&mut self) {
        let mut held = self.shares.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share() {
        let shares = ClientShares::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = shares.take(a).unwrap();
        let _second = shares.take(a).unwrap();
        assert!(shares.take(a).is_none(), "a's share is full");
        assert!(shares.take(b).is_some(), "b is not affected");
        drop(first);
        assert!(shares.take(a).is_some(), "a slot came back");
        assert!(ClientShares::new(0).take(a).unwrap().is_none(), "off: no share to hold");
    }
}

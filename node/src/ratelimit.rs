//! Login throttling, sans-IO: failures are recorded with the time passed in, and a check says
//! whether another attempt may be made now.
//!
//! Limits (documented in `docs/operating.md`): per account, 5 failures in 15 minutes; per
//! client address, 20 failures in 15 minutes. A success clears the account's count (not the
//! address's: one address guessing many accounts stays throttled).
//!
//! A login *attempt* counts as a failure from the moment it starts ([`LoginLimiter::attempt`])
//! until it is known to have succeeded, so attempts made at the same instant cannot all pass
//! the check before any of them is recorded. An IPv6 client is keyed by its /64, the block a
//! single subscriber gets.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};

use confab_keys::UnixTime;

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max_failures: usize,
    pub window_secs: u64,
}

pub const PER_ACCOUNT: Limit = Limit { max_failures: 5, window_secs: 15 * 60 };
pub const PER_ADDRESS: Limit = Limit { max_failures: 20, window_secs: 15 * 60 };

/// Failure times per key inside a sliding window.
#[derive(Debug)]
struct Window<K> {
    limit: Limit,
    failures: HashMap<K, Vec<UnixTime>>,
}

impl<K: Eq + Hash + Clone> Window<K> {
    fn new(limit: Limit) -> Self {
        Window { limit, failures: HashMap::new() }
    }

    /// Seconds until another attempt is allowed, or `None` if one is allowed now.
    fn retry_after(&mut self, key: &K, now: UnixTime) -> Option<u64> {
        let window = self.limit.window_secs;
        let times = self.failures.get_mut(key)?;
        times.retain(|&t| t + window > now);
        if times.len() < self.limit.max_failures {
            return None;
        }
        let oldest_relevant = times[times.len() - self.limit.max_failures];
        Some((oldest_relevant + window).saturating_sub(now).max(1))
    }

    fn record(&mut self, key: &K, now: UnixTime) {
        let times = self.failures.entry(key.clone()).or_default();
        times.push(now);
        // Only the most recent `max_failures` matter; keep memory bounded under attack.
        if times.len() > self.limit.max_failures {
            let excess = times.len() - self.limit.max_failures;
            times.drain(..excess);
        }
    }

    fn forget(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Takes back one failure recorded at `at` (an attempt that turned out to succeed).
    fn take_back(&mut self, key: &K, at: UnixTime) {
        if let Some(times) = self.failures.get_mut(key)
            && let Some(i) = times.iter().rposition(|&t| t == at)
        {
            times.remove(i);
        }
    }

    fn prune(&mut self, now: UnixTime) {
        let window = self.limit.window_secs;
        self.failures.retain(|_, times| times.last().is_some_and(|&t| t + window > now));
    }
}

/// The part of a client's address that identifies one subscriber: an IPv4 address, or the /64
/// of an IPv6 one (an IPv4-mapped IPv6 address is its IPv4 address).
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

#[derive(Debug)]
pub struct LoginLimiter {
    accounts: Window<String>,
    addresses: Window<IpAddr>,
    recorded: u64,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::new(PER_ACCOUNT, PER_ADDRESS)
    }
}

impl LoginLimiter {
    pub fn new(per_account: Limit, per_address: Limit) -> Self {
        LoginLimiter { accounts: Window::new(per_account), addresses: Window::new(per_address), recorded: 0 }
    }

    /// `Err(seconds)` when either the account or the address must wait. `account` is the
    /// case-folded username, or `None` where there is no account (a sign-up attempt).
    pub fn check(&mut self, account: Option<&str>, address: IpAddr, now: UnixTime) -> Result<(), u64> {
        let by_account = account.and_then(|a| self.accounts.retry_after(&a.to_string(), now));
        let by_address = self.addresses.retry_after(&client_key(address), now);
        match by_account.max(by_address) {
            None => Ok(()),
            Some(wait) => Err(wait),
        }
    }

    pub fn record_failure(&mut self, account: Option<&str>, address: IpAddr, now: UnixTime) {
        if let Some(a) = account {
            self.accounts.record(&a.to_string(), now);
        }
        self.addresses.record(&client_key(address), now);
        self.recorded += 1;
        if self.recorded.is_multiple_of(1024) {
            self.accounts.prune(now);
            self.addresses.prune(now);
        }
    }

    /// Checks, and if another attempt is allowed counts this one as a failure at once, in
    /// one step. Call [`LoginLimiter::succeeded`] with the same time if it succeeds.
    pub fn attempt(&mut self, account: Option<&str>, address: IpAddr, now: UnixTime) -> Result<(), u64> {
        self.check(account, address, now)?;
        self.record_failure(account, address, now);
        Ok(())
    }

    /// An attempt begun at `at` succeeded: the account's count is cleared and the address
    /// gets back the failure the attempt was counted as.
    pub fn succeeded(&mut self, account: Option<&str>, address: IpAddr, at: UnixTime) {
        if let Some(a) = account {
            self.accounts.forget(&a.to_string());
        }
        self.addresses.take_back(&client_key(address), at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn account_locks_after_five_failures_and_unlocks_after_window() {
        let mut l = LoginLimiter::default();
        for i in 0..5 {
            assert!(l.check(Some("alice"), A, 100 + i).is_ok());
            l.record_failure(Some("alice"), A, 100 + i);
        }
        assert_eq!(l.check(Some("alice"), B, 105), Err(895), "another address is throttled for that account too");
        assert!(l.check(Some("bob"), B, 105).is_ok(), "other accounts are unaffected");
        assert!(l.check(Some("alice"), A, 100 + 900).is_ok(), "the oldest failure has left the window");
    }

    #[test]
    fn address_locks_after_twenty_failures_across_accounts() {
        let mut l = LoginLimiter::default();
        for i in 0..20 {
            l.record_failure(Some(&format!("user{i}")), A, 10);
        }
        assert!(l.check(Some("fresh"), A, 11).is_err());
        assert!(l.check(Some("fresh"), B, 11).is_ok());
    }

    #[test]
    fn attempts_made_together_are_counted_before_any_of_them_ends() {
        let mut l = LoginLimiter::default();
        // Forty attempts at the same instant, none finished yet: five get through.
        let allowed = (0..40).filter(|_| l.attempt(Some("alice"), A, 100).is_ok()).count();
        assert_eq!(allowed, 5);
        // One of them was right: the account is clear again, the address keeps four.
        l.succeeded(Some("alice"), A, 100);
        assert!(l.attempt(Some("alice"), A, 101).is_ok());
        assert_eq!(l.addresses.failures[&A].len(), 5);
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let mut l = LoginLimiter::default();
        for i in 0..20u16 {
            let address: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            l.record_failure(None, address, 10);
        }
        assert!(l.check(None, "2001:db8:1:2:ffff::1".parse().unwrap(), 11).is_err());
        assert!(l.check(None, "2001:db8:1:3::1".parse().unwrap(), 11).is_ok());
        assert_eq!(client_key("::ffff:192.0.2.1".parse().unwrap()), A);
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let mut l = LoginLimiter::new(Limit { max_failures: 2, window_secs: 60 }, Limit { max_failures: 3, window_secs: 60 });
        l.record_failure(Some("alice"), A, 0);
        l.record_failure(Some("alice"), A, 1);
        assert!(l.check(Some("alice"), B, 2).is_err());
        l.succeeded(Some("alice"), B, 2);
        assert!(l.check(Some("alice"), B, 2).is_ok());
        l.record_failure(None, A, 3);
        assert!(l.check(None, A, 4).is_err());
    }
}

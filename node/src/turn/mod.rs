//! The embedded TURN relay: who may allocate (time-limited credentials that only an
//! admitted participant is given, scoped to their seat), where a relay may send (never to
//! this machine, its networks, or anything not public), and the listeners (UDP, TCP, TLS,
//! and TLS on the HTTPS port). See docs/decisions.md for the crate chosen and why.

pub mod credentials;
pub mod front;
pub mod policy;
pub mod service;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::meeting::protocol::IceServer;
use credentials::TurnSecret;

/// TURN usernames whose seats ended (left, removed, timed out): refused from then on, until
/// the expiry written in them. Shared by the hub, which adds to it, and every listener.
#[derive(Debug, Clone, Default)]
pub struct Withdrawn(Arc<RwLock<HashMap<String, u64>>>);

impl Withdrawn {
    pub fn withdraw(&self, usernames: &[String], now: u64) {
        let mut set = self.0.write().unwrap_or_else(|p| p.into_inner());
        set.retain(|_, expires| *expires > now);
        for username in usernames {
            let expires = username.split(':').next().and_then(|e| e.parse().ok()).unwrap_or(u64::MAX);
            if expires > now {
                set.insert(username.clone(), expires);
            }
        }
    }

    pub fn contains(&self, username: &str) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).contains_key(username)
    }
}

/// The prejoin self-test's credentials: minutes at most.
pub const PROBE_TTL_SECS: u64 = 300;
/// The participant number in the prejoin self-test's credentials (seats start at 1).
pub const PROBE_PARTICIPANT: u64 = 0;

/// Hands out the node's STUN and TURN servers with credentials for one seat.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub secret: TurnSecret,
    /// `stun:` URLs (no credentials).
    pub stun: Vec<String>,
    /// `turn:` and `turns:` URLs, in the order browsers should prefer them.
    pub turn: Vec<String>,
    /// Seconds a seat's credentials last (`turn_credential_ttl`).
    pub ttl: u64,
}

impl Issuer {
    /// For `participant` of `room`; [`PROBE_PARTICIPANT`] gets short-lived ones.
    pub fn ice_servers(&self, room: &str, participant: u64, now: u64) -> Vec<IceServer> {
        let ttl = if participant == PROBE_PARTICIPANT { self.ttl.min(PROBE_TTL_SECS) } else { self.ttl };
        let mut servers = Vec::new();
        if !self.stun.is_empty() {
            servers.push(IceServer { urls: self.stun.clone(), username: None, credential: None });
        }
        if !self.turn.is_empty() {
            let (username, credential) = self.secret.issue(room, participant, now, ttl);
            servers.push(IceServer { urls: self.turn.clone(), username: Some(username), credential: Some(credential) });
        }
        servers
    }
}

/// `HOST:PORT` for a URL: IPv6 addresses in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

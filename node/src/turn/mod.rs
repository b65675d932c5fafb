//! The embedded TURN relay's decisions, sans-IO: who may allocate (time-limited
//! credentials that only an admitted participant is given, scoped to their seat) and where
//! a relay may send (never to this machine, its networks, or anything not public).
//!
//! The TURN server itself (UDP, TCP and TLS) is not wired in yet; see docs/decisions.md
//! for the crate chosen and why.

pub mod credentials;
pub mod policy;

//! The SFU relay role: the part of `confab` that forwards media once a meeting grows past
//! the mesh threshold. It knows nothing of accounts or HTTP; the node hands it admitted
//! participants.
//!
//! Nothing lives here yet: small meetings run as a browser mesh and the node only signals.
//! The forwarding engine (str0m, sharded per core) arrives with the SFU work; see
//! `ARCHITECTURE.md` for where it will sit.

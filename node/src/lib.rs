//! The node: HTTPS, accounts, tokens, meetings, signaling, TURN, and the wiring of `keys`
//! and `relay`. A library so that the fuzz targets (`fuzz/`) reach the parsers strangers
//! feed; `main.rs` is the `confab` binary. See ARCHITECTURE.md for the map.

pub mod capabilities;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod datadir;
pub mod duration;
pub mod http;
pub mod loadtest;
pub mod meeting;
pub mod metrics;
pub mod procfs;
pub mod ratelimit;
pub mod secrets;
pub mod store;
pub mod turn;

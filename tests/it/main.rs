//! Every integration and end-to-end test, one module per behaviour, linked into one binary
//! (`cargo test -p confab-tests --test it`; a module's tests: `--test it turn::`).
//!
//! They start the real `confab` binary (built once, see `confab_tests::node::confab_bin`),
//! and talk to it over real sockets: HTTPS, WebSocket, UDP, TURN, and real browsers (headless
//! Chromium and Firefox ESR). Tests that run browsers or load the machine hold
//! `confab_tests::browser::exclusive()`, so that two of them never share the two cores.

mod browser_signup_invite;
mod cli_tokens_accounts_invites;
mod cluster;
mod cluster_cli;
mod config_precedence;
mod connectivity;
mod http_bad_input;
mod i18n;
mod impairment;
mod imports;
mod loadtest;
mod login_rate_limit;
mod meeting_mesh;
mod meeting_sfu;
mod phones_a11y;
mod restart_persistence;
mod security;
mod sfu_interop;
mod shutdown_on_signal;
mod signaling_protocol;
mod signup_token_race;
mod turn;

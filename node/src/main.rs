//! `confab`: the one binary. See ARCHITECTURE.md for the map; the code is the
//! `confab_node` library (`lib.rs`), this file only parses the command line and starts it.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use confab_node::cli::{Cli, Command, LogFormat};
use confab_node::config::{self, FileConfig};
use confab_node::{commands, loadtest};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // rustls is built with one provider here, but later dependencies (quinn, libp2p) bring a
    // second, and rustls then refuses to guess: choose explicitly, once, first.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let file = FileConfig::load(cli.global.config.as_deref())?;
    let common = config::common(&cli.global, &file)?;
    init_logging(common.log_format, &common.log)?;
    match cli.command {
        Command::Serve(opts) => commands::serve(common, config::serve(&opts, &file)?),
        Command::Token(command) => commands::token(&common, command),
        Command::Account(command) => commands::account(&common, command),
        Command::Invite(opts) => commands::invite(&common, opts),
        Command::NodeKey => commands::node_key(&common),
        Command::Cluster(command) => confab_node::cluster::command(command),
        Command::Drain { undo } => commands::drain(&common, undo),
        Command::Loadtest(opts) => loadtest::run(opts),
    }
}

/// str0m warns once per codec parameter it ignores in every offer (Chromium's RED, for
/// one): noise unless someone asks for str0m's logs by name.
const QUIET_STR0M: &str = "str0m::format=error";

/// The TURN server's STUN layer logs every wrong TURN password as an error: a client's
/// mistake (counted in `confab_turn_refused_total`), not the node's; and the TURN server
/// logs each allocation's end at info: per-participant detail, not news.
const QUIET_STUN: &str = ",stun_proto::auth=off,turn_server_proto=warn";

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let mut filter = if filter.contains("str0m") { filter.to_string() } else { format!("{filter},{QUIET_STR0M}") };
    if !filter.contains("stun_proto") {
        filter.push_str(QUIET_STUN);
    }
    let filter = EnvFilter::try_new(&filter).map_err(|e| anyhow::anyhow!("the log filter {filter:?} is not valid: {e}"))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

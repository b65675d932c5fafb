//! The command line. Every option of `serve` can also come from the TOML file or a
//! `CONFAB_*` environment variable; a flag wins over the variable, which wins over the file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use confab_keys::Role;

use crate::duration::Span;

#[derive(Debug, Parser)]
#[command(name = "confab", version, about = "Self-hosted videoconferencing: one binary, small meetings as a direct mesh.")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalOptions {
    /// TOML configuration file. [default: ./confab.toml if it exists]
    #[arg(long, global = true, env = "CONFAB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the database, the node key and the self-signed certificate. Back it up.
    /// [default: ./confab-data]
    #[arg(long, global = true, env = "CONFAB_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The address people use to reach this node, e.g. https://meet.example.org. Links and
    /// invites are built from it. [default: https://localhost:<listen port>]
    #[arg(long, global = true, env = "CONFAB_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// Log format on standard error. [default: text]
    #[arg(long, global = true, env = "CONFAB_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `confab=debug`). [default: info]
    #[arg(long, global = true, env = "CONFAB_LOG", value_name = "FILTER")]
    pub log: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node: HTTPS pages, accounts, meetings and signaling.
    Serve(ServeOptions),
    /// Issue, list and revoke one-time sign-up tokens (the ticketmaster's work, from a shell).
    #[command(subcommand)]
    Token(TokenCommand),
    /// List accounts, grant or take the ticketmaster role, disable or enable accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Sign an invite link with an account key kept in a file (for people who script).
    Invite(InviteOptions),
    /// Print this node's public key (the root that every capability chains to).
    NodeKey,
    /// The cluster's membership, signed with the operator key (run these off the nodes).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Before maintenance: move this node's meetings and participants to the other nodes of
    /// its cluster (run on the node; `--undo` takes it back into service).
    Drain {
        /// Take the node back into service.
        #[arg(long)]
        undo: bool,
    },
    /// Bots that join a meeting, send and receive media, and report loss, latency and the
    /// server's cost (see docs/benchmarks.md).
    Loadtest(crate::loadtest::LoadtestOptions),
}

#[derive(Debug, Args)]
pub struct ServeOptions {
    /// Address and port to listen on for HTTPS. [default: 127.0.0.1:8443]
    #[arg(long, env = "CONFAB_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<String>,

    /// PEM certificate chain for HTTPS. Without it (and --tls-key) a self-signed certificate
    /// is generated in the data directory.
    #[arg(long, env = "CONFAB_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "CONFAB_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How long the first-start sign-up token (printed while no account exists) stays valid.
    /// [default: 24h]
    #[arg(long, env = "CONFAB_FIRST_TOKEN_TTL", value_name = "DURATION")]
    pub first_token_ttl: Option<Span>,

    /// Meetings with at most this many participants are a direct mesh between browsers;
    /// past it they use the node's SFU. 0 means always the SFU. [default: 4]
    #[arg(long, env = "CONFAB_MESH_THRESHOLD", value_name = "N")]
    pub mesh_threshold: Option<usize>,

    /// How long a participant whose connection to the node dropped keeps their seat while
    /// their browser reconnects. [default: 30s]
    #[arg(long, env = "CONFAB_RECONNECT_GRACE", value_name = "DURATION")]
    pub reconnect_grace: Option<Span>,

    /// At most this many guests from one network address (an IPv4 address or an IPv6 /64)
    /// hold seats in one meeting; 0 means no limit. Loopback is never limited. [default: 20]
    #[arg(long, env = "CONFAB_SEATS_PER_ADDRESS", value_name = "N")]
    pub seats_per_address: Option<usize>,

    /// A STUN or TURN server for browsers' ICE (stun:HOST:PORT, turn:..., turns:...), given
    /// once per server. Servers that need credentials go in the TOML file. [default: none]
    #[arg(long = "ice-server", env = "CONFAB_ICE_SERVERS", value_name = "URL", value_delimiter = ',')]
    pub ice_servers: Vec<String>,

    /// UDP address for the SFU's media. [default: 0.0.0.0 and the HTTPS port; when TURN
    /// shares the HTTPS port, 3479 (HTTPS on a port below 1024) or any free port]
    #[arg(long, env = "CONFAB_RELAY_LISTEN", value_name = "ADDR:PORT")]
    pub relay_listen: Option<String>,

    /// The IP address browsers should send SFU media to, if not the listening one.
    /// [default: the listening address, or this machine's address on its default route]
    #[arg(long, env = "CONFAB_RELAY_IP", value_name = "IP")]
    pub relay_ip: Option<std::net::IpAddr>,

    /// SFU threads, each with its own UDP port (the relay port and the ones after it).
    /// [default: one per core]
    #[arg(long, env = "CONFAB_RELAY_SHARDS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub relay_shards: Option<u16>,

    /// In SFU mode, forward at most this many videos to each participant: those of the most
    /// recent speakers. [default: 9]
    #[arg(long, env = "CONFAB_LAST_N", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub last_n: Option<u16>,

    /// The embedded TURN relay's UDP and TCP address (also a STUN server), or `off`.
    /// [default: 0.0.0.0:3478]
    #[arg(long, env = "CONFAB_TURN_LISTEN", value_name = "ADDR:PORT|off")]
    pub turn_listen: Option<String>,

    /// Also serve TURN over TLS on its own address (the HTTPS certificate).
    /// [default: none]
    #[arg(long, env = "CONFAB_TURN_TLS_LISTEN", value_name = "ADDR:PORT")]
    pub turn_tls_listen: Option<String>,

    /// Accept TURN over TLS on the HTTPS port as well, for networks that allow only
    /// outgoing TCP to port 443. [default: true when HTTPS listens on port 443]
    #[arg(long, env = "CONFAB_TURN_ON_HTTPS", value_name = "BOOL")]
    pub turn_on_https: Option<bool>,

    /// Let TURN relay to private, link-local and CGNAT addresses (a relay for a private
    /// network). Loopback is never allowed. [default: false]
    #[arg(long, env = "CONFAB_TURN_ALLOW_PRIVATE", value_name = "BOOL")]
    pub turn_allow_private: Option<bool>,

    /// How long the TURN credentials a participant gets on joining stay valid (a
    /// reconnection brings new ones). [default: 24h]
    #[arg(long, env = "CONFAB_TURN_CREDENTIAL_TTL", value_name = "DURATION")]
    pub turn_credential_ttl: Option<Span>,

    /// At most this many participants' signaling sockets on this node; past it a newcomer is
    /// told `node_full` and, in a cluster, goes to another node. 0 means no limit. In a
    /// cluster it also weighs which node is a meeting's home. [default: 0]
    #[arg(long, env = "CONFAB_MAX_PARTICIPANTS", value_name = "N")]
    pub max_participants: Option<usize>,

    /// Join a cluster: the public half of its operator key (64 hex digits, printed by
    /// `confab cluster init`). Needs --membership. [default: no cluster]
    #[arg(long, env = "CONFAB_CLUSTER_OPERATOR", value_name = "HEX", requires = "membership")]
    pub cluster_operator: Option<String>,

    /// The cluster's membership document (`membership.cfm`, from the operator). Read again
    /// whenever it changes; the highest epoch seen is also kept in the data directory.
    #[arg(long, env = "CONFAB_MEMBERSHIP", value_name = "FILE", requires = "cluster_operator")]
    pub membership: Option<PathBuf>,

    /// UDP address for the cluster's control plane (libp2p over QUIC). [default: 0.0.0.0
    /// and the port of this node's first address in the membership]
    #[arg(long, env = "CONFAB_CLUSTER_LISTEN", value_name = "ADDR:PORT")]
    pub cluster_listen: Option<std::net::SocketAddr>,
}

/// Where the operator key and the membership document are.
#[derive(Debug, Args)]
pub struct ClusterFiles {
    /// The operator key: made by `cluster init`, kept off the nodes (readable by its owner only).
    #[arg(long, value_name = "FILE", default_value = "cluster-operator.key")]
    pub operator_key: PathBuf,
    /// The signed membership document (`cfm1.…`): every node gets a copy.
    #[arg(long, value_name = "FILE", default_value = "membership.cfm")]
    pub membership: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Create the operator key and a new cluster's first membership document (no members).
    Init {
        #[command(flatten)]
        files: ClusterFiles,
    },
    /// Add a node (or change its addresses, roles or expiry), as a new epoch.
    Add {
        #[command(flatten)]
        files: ClusterFiles,
        /// The node's public key, as `confab node-key` prints it on that node (64 hex digits).
        #[arg(long, value_name = "HEX")]
        node_key: String,
        /// Where the other nodes reach it, `host:port` (repeat for several).
        #[arg(long = "address", value_name = "HOST:PORT", required = true)]
        addresses: Vec<String>,
        /// What it does: `media`, `accounts` (the accounts database's single writer), or both
        /// (`accounts,media`).
        #[arg(long, default_value = "media", value_name = "ROLES")]
        roles: String,
        /// How long its membership lasts before the operator must renew it (s, m, h, d, w).
        #[arg(long, default_value = "365d")]
        expires: Span,
    },
    /// Remove a node, as a new epoch.
    Remove {
        #[command(flatten)]
        files: ClusterFiles,
        #[arg(long, value_name = "HEX")]
        node_key: String,
    },
    /// Show the membership document's members (verified against the operator key file).
    Show {
        #[command(flatten)]
        files: ClusterFiles,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a new one-time sign-up token and print it (it is shown only this once).
    Issue {
        /// Who the token is for, to recognise it in the list later.
        #[arg(long, default_value = "")]
        note: String,
        /// How long the token stays valid (s, m, h, d, w).
        #[arg(long, default_value = "7d")]
        expires: Span,
    },
    /// List every token: unused, used (by whom), expired, revoked.
    List,
    /// Revoke an unused token by its number (as shown by `token list`).
    Revoke { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// List accounts and their roles.
    List,
    /// Let an account issue sign-up tokens.
    GrantTicketmaster { username: String },
    /// Take the ticketmaster role away.
    RevokeTicketmaster { username: String },
    /// Disable an account: it can no longer log in and every invite it signed stops working.
    Disable { username: String },
    /// Let a disabled account log in again (its old invites stay void).
    Enable { username: String },
}

#[derive(Debug, Args)]
pub struct InviteOptions {
    /// The account that invites.
    #[arg(long)]
    pub account: String,
    /// File holding the account's ed25519 key; created (mode 0600) if it does not exist.
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// The meeting's name.
    #[arg(long)]
    pub room: String,
    /// What the invite grants.
    #[arg(long, default_value = "guest", value_parser = parse_role)]
    pub role: Role,
    /// How long the invite stays valid (at most 90d, the account certificate's lifetime).
    #[arg(long, default_value = "7d")]
    pub expires: Span,
    /// Create the meeting for the account if it does not exist yet.
    #[arg(long)]
    pub create_meeting: bool,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

//! Resolving the settings: flag, then `CONFAB_*` variable (both via clap), then the TOML
//! file, then the embedded default.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::cli::{GlobalOptions, LogFormat, ServeOptions};
use crate::duration::Span;
use crate::meeting::protocol::IceServer;
use crate::meeting::room::RoomConfig;

pub const DEFAULT_DATA_DIR: &str = "./confab-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
pub const DEFAULT_CONFIG_FILE: &str = "confab.toml";
pub const DEFAULT_FIRST_TOKEN_TTL: Span = Span(24 * 3600);
pub const DEFAULT_MESH_THRESHOLD: usize = 4;
pub const DEFAULT_RECONNECT_GRACE: Span = Span(30);
pub const DEFAULT_LAST_N: usize = 9;
pub use crate::meeting::room::DEFAULT_SEATS_PER_ADDRESS;

/// The TOML file: the same names as the long flags, with `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    pub log_format: Option<LogFormat>,
    pub log: Option<String>,
    pub listen: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub first_token_ttl: Option<String>,
    pub mesh_threshold: Option<usize>,
    pub reconnect_grace: Option<String>,
    pub seats_per_address: Option<usize>,
    /// `[[ice_servers]]` tables: `urls`, and `username` and `credential` for TURN.
    pub ice_servers: Option<Vec<IceServer>>,
    pub relay_listen: Option<String>,
    pub relay_ip: Option<std::net::IpAddr>,
    pub relay_shards: Option<u16>,
    pub last_n: Option<u16>,
    pub turn_listen: Option<String>,
    pub turn_tls_listen: Option<String>,
    pub turn_on_https: Option<bool>,
    pub turn_allow_private: Option<bool>,
    pub turn_credential_ttl: Option<String>,
    pub max_participants: Option<usize>,
    pub cluster_operator: Option<String>,
    pub membership: Option<PathBuf>,
    pub cluster_listen: Option<std::net::SocketAddr>,
}

impl FileConfig {
    /// The explicitly named file (which must exist), or `./confab.toml` if present.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<FileConfig> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => PathBuf::from(DEFAULT_CONFIG_FILE),
            None => return Ok(FileConfig::default()),
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("the configuration file {} is not valid", path.display()))
    }
}

/// Settings every command needs.
#[derive(Debug, Clone)]
pub struct Common {
    pub data_dir: PathBuf,
    /// Set explicitly; otherwise derived from the listening port by `serve`.
    pub public_url: Option<String>,
    pub log_format: LogFormat,
    pub log: String,
}

#[derive(Debug, Clone)]
pub struct Serve {
    pub listen: String,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub first_token_ttl: Span,
    pub room: RoomConfig,
    pub ice_servers: Vec<IceServer>,
    /// None: 0.0.0.0 and the port HTTPS listens on.
    pub relay_listen: Option<String>,
    pub relay_ip: Option<std::net::IpAddr>,
    pub relay: confab_relay::RelayConfig,
    pub turn: Turn,
    /// Signaling sockets this node takes at most (0: no limit).
    pub max_participants: usize,
    /// None: a node on its own.
    pub cluster: Option<Cluster>,
}

/// Membership of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub operator: [u8; 32],
    pub membership: PathBuf,
    /// None: the port of this node's first address in the membership.
    pub listen: Option<std::net::SocketAddr>,
}

/// The embedded TURN relay's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// UDP and TCP; None: off.
    pub listen: Option<std::net::SocketAddr>,
    pub tls_listen: Option<std::net::SocketAddr>,
    /// None: when HTTPS listens on port 443.
    pub on_https: Option<bool>,
    pub allow_private: bool,
    /// How long a participant's TURN credentials stay valid.
    pub credential_ttl: Span,
}

pub const DEFAULT_TURN_LISTEN: &str = "0.0.0.0:3478";
pub const DEFAULT_TURN_CREDENTIAL_TTL: Span = Span(24 * 3600);

pub fn common(flags: &GlobalOptions, file: &FileConfig) -> anyhow::Result<Common> {
    let public_url = flags.public_url.clone().or_else(|| file.public_url.clone()).map(|u| normalize_public_url(&u)).transpose()?;
    Ok(Common {
        data_dir: flags.data_dir.clone().or_else(|| file.data_dir.clone()).unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
        public_url,
        log_format: flags.log_format.or(file.log_format).unwrap_or(LogFormat::Text),
        log: flags.log.clone().or_else(|| file.log.clone()).unwrap_or_else(|| "info".into()),
    })
}

pub fn serve(flags: &ServeOptions, file: &FileConfig) -> anyhow::Result<Serve> {
    let tls = match (flags.tls_cert.clone().or_else(|| file.tls_cert.clone()), flags.tls_key.clone().or_else(|| file.tls_key.clone())) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => bail!("tls_cert and tls_key go together: give both, or neither for a self-signed certificate"),
    };
    let first_token_ttl = span("first_token_ttl", flags.first_token_ttl, &file.first_token_ttl, DEFAULT_FIRST_TOKEN_TTL)?;
    let reconnect_grace = span("reconnect_grace", flags.reconnect_grace, &file.reconnect_grace, DEFAULT_RECONNECT_GRACE)?;
    let ice_servers = if !flags.ice_servers.is_empty() {
        flags.ice_servers.iter().map(|url| IceServer { urls: vec![url.trim().to_string()], username: None, credential: None }).collect()
    } else {
        file.ice_servers.clone().unwrap_or_default()
    };
    for server in &ice_servers {
        check_ice_server(server)?;
    }
    Ok(Serve {
        listen: flags.listen.clone().or_else(|| file.listen.clone()).unwrap_or_else(|| DEFAULT_LISTEN.into()),
        tls,
        first_token_ttl,
        room: RoomConfig {
            mesh_threshold: flags.mesh_threshold.or(file.mesh_threshold).unwrap_or(DEFAULT_MESH_THRESHOLD),
            reconnect_grace_ms: reconnect_grace.secs() * 1000,
            seats_per_address: flags.seats_per_address.or(file.seats_per_address).unwrap_or(DEFAULT_SEATS_PER_ADDRESS),
            ..RoomConfig::default()
        },
        ice_servers,
        relay_listen: flags.relay_listen.clone().or_else(|| file.relay_listen.clone()),
        relay_ip: flags.relay_ip.or(file.relay_ip),
        relay: relay_config(flags, file)?,
        turn: turn_config(flags, file)?,
        max_participants: flags.max_participants.or(file.max_participants).unwrap_or(0),
        cluster: cluster_config(flags, file)?,
    })
}

fn cluster_config(flags: &ServeOptions, file: &FileConfig) -> anyhow::Result<Option<Cluster>> {
    let operator = flags.cluster_operator.clone().or_else(|| file.cluster_operator.clone());
    let membership = flags.membership.clone().or_else(|| file.membership.clone());
    let listen = flags.cluster_listen.or(file.cluster_listen);
    match (operator, membership) {
        (None, None) if listen.is_none() => Ok(None),
        (Some(operator), Some(membership)) => {
            Ok(Some(Cluster { operator: crate::cluster::parse_key(&operator, "cluster_operator (the operator key's public half)")?, membership, listen }))
        }
        _ => bail!("cluster_operator and membership go together (and cluster_listen needs them): give both to join a cluster, or neither"),
    }
}

fn relay_config(flags: &ServeOptions, file: &FileConfig) -> anyhow::Result<confab_relay::RelayConfig> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = flags.relay_shards.or(file.relay_shards).map_or(cores, usize::from);
    let last_n = flags.last_n.or(file.last_n).map_or(DEFAULT_LAST_N, usize::from);
    if !(1..=64).contains(&shards) {
        bail!("relay_shards must be between 1 and 64, not {shards}");
    }
    if !(1..=64).contains(&last_n) {
        bail!("last_n must be between 1 and 64, not {last_n}");
    }
    Ok(confab_relay::RelayConfig { last_n, shards, ..Default::default() })
}

fn turn_config(flags: &ServeOptions, file: &FileConfig) -> anyhow::Result<Turn> {
    let listen = flags.turn_listen.clone().or_else(|| file.turn_listen.clone()).unwrap_or_else(|| DEFAULT_TURN_LISTEN.into());
    let listen = match listen.trim() {
        "off" | "none" => None,
        text => Some(text.parse().map_err(|_| anyhow::anyhow!("turn_listen {text:?} is not ADDR:PORT or off"))?),
    };
    let tls_listen = match flags.turn_tls_listen.clone().or_else(|| file.turn_tls_listen.clone()) {
        None => None,
        Some(text) => Some(text.trim().parse().map_err(|_| anyhow::anyhow!("turn_tls_listen {text:?} is not ADDR:PORT"))?),
    };
    Ok(Turn {
        listen,
        tls_listen,
        on_https: flags.turn_on_https.or(file.turn_on_https),
        allow_private: flags.turn_allow_private.or(file.turn_allow_private).unwrap_or(false),
        credential_ttl: span("turn_credential_ttl", flags.turn_credential_ttl, &file.turn_credential_ttl, DEFAULT_TURN_CREDENTIAL_TTL)?,
    })
}

fn span(name: &str, flag: Option<Span>, file: &Option<String>, default: Span) -> anyhow::Result<Span> {
    match (flag, file) {
        (Some(span), _) => Ok(span),
        (None, Some(text)) => text.parse().map_err(|e| anyhow::anyhow!("{name} in the configuration file: {e}")),
        (None, None) => Ok(default),
    }
}

/// The URL schemes of RFC 7064/7065, which browsers accept; TURN servers need credentials.
fn check_ice_server(server: &IceServer) -> anyhow::Result<()> {
    if server.urls.is_empty() {
        bail!("an ICE server needs at least one URL");
    }
    for url in &server.urls {
        let scheme = url.split(':').next().unwrap_or("");
        match scheme {
            "stun" | "stuns" => {}
            "turn" | "turns" if server.username.is_some() && server.credential.is_some() => {}
            "turn" | "turns" => bail!("the TURN server {url:?} needs a username and credential (set them in the configuration file)"),
            _ => bail!("{url:?} is not a STUN or TURN URL (stun:HOST:PORT, turn:HOST:PORT, turns:HOST:PORT)"),
        }
        if url.len() <= scheme.len() + 1 || url.contains(char::is_whitespace) {
            bail!("{url:?} is not a STUN or TURN URL (stun:HOST:PORT, turn:HOST:PORT, turns:HOST:PORT)");
        }
    }
    Ok(())
}

/// `https://host[:port]` with no path and no trailing slash.
pub fn normalize_public_url(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let Some(rest) = trimmed.strip_prefix("https://") else {
        bail!("public_url {url:?} must start with https:// (browsers allow camera and microphone only on secure pages)");
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        bail!("public_url {url:?} must be https://HOST or https://HOST:PORT, with no path");
    }
    Ok(trimmed.to_string())
}

/// The host part of a public URL, for the self-signed certificate's names.
pub fn public_host(url: &str) -> &str {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    rest.rsplit_once(':').map(|(h, _)| h).unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        assert_eq!(normalize_public_url("https://meet.example.org/").unwrap(), "https://meet.example.org");
        assert!(normalize_public_url("http://meet.example.org").is_err());
        assert!(normalize_public_url("https://meet.example.org/path").is_err());
        assert_eq!(public_host("https://meet.example.org:8443"), "meet.example.org");
        assert_eq!(public_host("https://[::1]:8443"), "::1");
        assert_eq!(public_host("https://localhost"), "localhost");
    }

    #[test]
    fn ice_servers_are_checked() {
        let stun = IceServer { urls: vec!["stun:stun.example.org:3478".into()], username: None, credential: None };
        assert!(check_ice_server(&stun).is_ok());
        let turn = IceServer { urls: vec!["turns:turn.example.org:443?transport=tcp".into()], ..stun.clone() };
        assert!(check_ice_server(&turn).unwrap_err().to_string().contains("username and credential"));
        let turn = IceServer { username: Some("u".into()), credential: Some("c".into()), ..turn };
        assert!(check_ice_server(&turn).is_ok());
        for bad in ["https://stun.example.org", "stun:", "stun:a b"] {
            assert!(check_ice_server(&IceServer { urls: vec![bad.into()], ..stun.clone() }).is_err(), "{bad}");
        }
        let file: FileConfig = toml::from_str("[[ice_servers]]\nurls = [\"turn:t.example.org\"]\nusername = \"u\"\ncredential = \"c\"\n").unwrap();
        assert_eq!(file.ice_servers.unwrap()[0].username.as_deref(), Some("u"));
    }

    #[test]
    fn file_rejects_unknown_keys() {
        assert!(toml::from_str::<FileConfig>("listen = \"0.0.0.0:443\"").is_ok());
        assert!(toml::from_str::<FileConfig>("lisen = \"0.0.0.0:443\"").is_err());
    }
}

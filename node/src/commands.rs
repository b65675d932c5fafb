//! What each subcommand does. `serve` runs the node; the others work directly on the data
//! directory, so an operator can run them on the node's machine while it serves (SQLite
//! serialises the writes).

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;

use anyhow::{Context, bail};
use confab_keys::{CapabilityId, InviteBody, RoomName};

use crate::capabilities::{CERTIFICATE_LIFETIME_SECS, certify};
use crate::cli::{AccountCommand, InviteOptions, TokenCommand};
use crate::clock::{self, format_utc};
use crate::config::{self, Common};
use crate::datadir::{self, DataDir};
use crate::http::{self, AppState};
use crate::meeting::Hub;
use crate::meeting::room::Effect;
use crate::secrets::{self, random_bytes};
use crate::store::{Account, InviteRecord, NewToken, Store, TokenStatus};
use confab_relay::{Held, Notice, PeerKey, Relay};

pub fn serve(common: Common, settings: config::Serve) -> anyhow::Result<()> {
    raise_open_files_limit();
    let data = DataDir::open(&common.data_dir)?;
    let store = Arc::new(data.store()?);
    let node_key = data.node_key()?;
    let trusted = crate::cluster::Trusted::only(node_key.public());
    let cluster = match &settings.cluster {
        Some(c) => Some(join_cluster(c, settings.max_participants, &data, &node_key, store.clone(), trusted.clone())?),
        None => None,
    };
    // In a cluster, accounts live on the accounts node only.
    let holds_accounts = cluster.as_ref().is_none_or(|c| c.view().accounts_node(clock::now()) == Some(node_key.public()));

    let listener = TcpListener::bind(&settings.listen).with_context(|| format!("cannot listen on {}", settings.listen))?;
    let bound = listener.local_addr()?;
    // Listening on one address: that address is where browsers find the node.
    let default_host = if bound.ip().is_unspecified() || bound.ip().is_loopback() { "localhost".to_string() } else { bound.ip().to_string() };
    let public_url = common.public_url.clone().unwrap_or_else(|| format!("https://{}", crate::turn::host_port(&default_host, bound.port())));
    let tls = match &settings.tls {
        Some((cert, key)) => datadir::tls_from_pem(cert, key)?,
        None => data.self_signed_tls(config::public_host(&public_url))?,
    };

    // The banner is printed once every listener is bound; the "serving" line comes last, so
    // whatever reads stdout knows the banner is complete and the node is reachable.
    let mut banner = String::new();
    let now = clock::now();
    let token = secrets::new_signup_token();
    let expires_at = now + settings.first_token_ttl.secs();
    if holds_accounts && store.replace_first_start_token(&secrets::digest(&token), now, expires_at)? {
        banner += &format!(
            "No account exists yet. Create the first (admin) account at {public_url}/create with this one-time sign-up token, valid until {}:\n",
            format_utc(expires_at)
        );
        banner += &format!("    {token}\n");
    }
    banner += &format!("Confab {} is serving {public_url} (listening on {bound})\n", env!("CARGO_PKG_VERSION"));

    let turn_on_https = settings.turn.on_https.unwrap_or(bound.port() == 443);
    let mut settings = settings;
    if let Some(cluster) = &cluster {
        // The relay exchanges meetings' media with the other members over the cascade.
        settings.relay.node = confab_relay::NodeId::of_key(&node_key.public());
        let links = cluster.cascade.clone();
        settings.relay.cascade = Some(confab_relay::Cascade(Arc::new(move |node, frame| links.send_relay(node, frame))));
    }
    let (relay, notices) = start_relay(&settings, bound, turn_on_https)?;
    tracing::info!(%public_url, %bound, relay = %relay.addr, node_key = %hex_key(&node_key.public()), "node started");
    let withdrawn = crate::turn::Withdrawn::default();
    let edges = Arc::new(crate::cluster::edges::Edges::new(relay.clone(), cluster.as_ref().map(|c| c.cascade.clone())));
    let to_relay = {
        let (edges, withdrawn) = (edges.clone(), withdrawn.clone());
        Box::new(move |room: &str, effect: &Effect| match effect {
            Effect::Departed { participant, turn_usernames } => {
                edges.remove(PeerKey { room: room.to_string(), participant: participant.0 });
                withdrawn.withdraw(turn_usernames, clock::now());
            }
            Effect::Held { participant, audio, video } => {
                edges.hold(PeerKey { room: room.to_string(), participant: participant.0 }, Held { audio: *audio, video: *video })
            }
            _ => {}
        })
    };
    let hub = Hub::new(settings.room.clone(), to_relay);
    let own_media = relay.addrs.clone();
    if let Some(cluster) = &cluster {
        cluster.set_public_url(&public_url);
    }
    let mut state = AppState::new(store, node_key, public_url.clone(), hub, settings.ice_servers.clone(), relay);
    state.trusted = trusted;
    state.edges = edges;
    state.max_participants = settings.max_participants;
    state.cluster = cluster.map(Arc::new);
    actix_web::rt::System::new().block_on(async move {
        let state = match start_turn(&settings, &public_url, bound, own_media, withdrawn, &tls, turn_on_https).await? {
            Some((issuer, service)) => state.with_turn(issuer, service),
            None => state,
        };
        std::io::stdout().write_all(banner.as_bytes())?;
        std::io::stdout().flush()?;
        http::run(state, listener, tls, notices, turn_on_https).await.map_err(anyhow::Error::from)
    })?;
    tracing::info!("node stopped");
    Ok(())
}

/// `confab drain`: marks the data directory so that the running node hands its meetings
/// and participants to the other members (or, with `undo`, takes them again).
pub fn drain(common: &Common, undo: bool) -> anyhow::Result<()> {
    let data = DataDir::open(&common.data_dir)?;
    let path = data.draining_path();
    if undo {
        match std::fs::remove_file(&path) {
            Ok(()) => println!("Back in service: the node takes meetings and participants again."),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("The node was not being drained."),
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
        return Ok(());
    }
    std::fs::write(&path, format!("{}\n", clock::now())).with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "Draining: within a few seconds the node's meetings move to other nodes, its participants reconnect through them, and it refuses newcomers (its /healthz answers 503)."
    );
    println!("Watch confab_participants reach 0 in its /metrics; then stop it. `confab drain --undo` takes it back into service.");
    println!("(A node on its own, not in a cluster, has nowhere to hand anything: it ignores this.)");
    Ok(())
}

/// Reads the membership (the operator's file and the data directory's copy: the higher
/// epoch wins) and starts the control plane.
fn join_cluster(
    settings: &config::Cluster,
    capacity: usize,
    data: &DataDir,
    node_key: &confab_keys::NodeKey,
    store: Arc<Store>,
    trusted: crate::cluster::Trusted,
) -> anyhow::Result<crate::cluster::net::Cluster> {
    use crate::cluster::{membership::View, net};
    let persisted = data.membership_path();
    let mut documents = Vec::new();
    for path in [&settings.membership, &persisted] {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                documents.push(confab_keys::Membership::from_text(text.trim()).with_context(|| format!("{} is not a membership document", path.display()))?)
            }
            Err(e) if path == &persisted && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read the membership {}", path.display())),
        }
    }
    let now = clock::now();
    let view = View::from_documents(settings.operator, &documents, now).context("the membership does not verify with --cluster-operator")?;
    let own = view.member(&node_key.public(), now).cloned();
    let listen = match (settings.listen, &own) {
        (Some(listen), _) => listen,
        (None, Some(member)) => {
            let port = member.addresses.first().and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| p.parse::<u16>().ok());
            std::net::SocketAddr::from(([0, 0, 0, 0], port.context("this node's first address in the membership has no port: set --cluster-listen")?))
        }
        (None, None) => bail!(
            "this node ({}) is not a member of cluster {} (epoch {}): ask the operator to run `confab cluster add --node-key {}`, or set --cluster-listen to wait for that",
            hex_key(&node_key.public()),
            secrets::hex(&view.cluster()),
            view.epoch(),
            hex_key(&node_key.public())
        ),
    };
    if own.is_none() {
        tracing::warn!(epoch = view.epoch(), "this node is not a member of the cluster: members will refuse it until the operator adds it");
    }
    let cascade_listen = std::net::SocketAddr::new(listen.ip(), crate::cluster::cascade::port_for(listen.port()));
    let settings =
        net::Settings { listen, membership_file: Some(settings.membership.clone()), persisted, cascade_listen, drain_file: data.draining_path(), capacity };
    let cluster = net::start(node_key, view, settings, store, trusted)?;
    tracing::info!(%listen, epoch = cluster.view().epoch(), "cluster control plane started");
    Ok(cluster)
}

/// The SFU's first UDP port when `relay_listen` is not set: the HTTPS port number, unless
/// TURN shares the HTTPS port. Chromium then ignores the SFU's candidate: it never checks a
/// candidate at its TURN server's own address and port, nor (since about 2024) one on
/// another port below 1024. So: 3479 beside TURN's 3478, or any free port above 1024.
fn default_relay_port(https: u16, turn_on_https: bool) -> u16 {
    match (turn_on_https, https) {
        (false, port) => port,
        (true, port) if port < 1024 => 3479,
        (true, _) => 0,
    }
}

/// The SFU's UDP socket: by default on every interface (see [`default_relay_port`]),
/// announced to browsers at the listening IP or, for a wildcard, at this machine's
/// default-route IP.
fn start_relay(
    settings: &config::Serve,
    https: std::net::SocketAddr,
    turn_on_https: bool,
) -> anyhow::Result<(Relay, tokio::sync::mpsc::UnboundedReceiver<Notice>)> {
    let bind: std::net::SocketAddr = match &settings.relay_listen {
        Some(text) => text.parse().with_context(|| format!("relay_listen {text:?} is not ADDR:PORT"))?,
        None => std::net::SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), default_relay_port(https.port(), turn_on_https)),
    };
    let ip = settings.relay_ip.unwrap_or_else(|| if bind.ip().is_unspecified() { default_route_ip() } else { bind.ip() });
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let relay = Relay::start(bind, Some(ip), settings.relay.clone(), tx).with_context(|| format!("cannot bind the relay's UDP socket {bind}"))?;
    Ok((relay, rx))
}

/// Every connection, relayed socket and ICE-TCP stream is a descriptor, and the usual soft
/// limit (1024) seats fewer than a thousand people: raise it to the hard limit, and say both.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-files limit");
        return;
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), soft = before, hard = limit.rlim_max, "cannot raise the open-files limit");
            return;
        }
    }
    if limit.rlim_cur < 8192 {
        tracing::warn!(
            soft = limit.rlim_cur,
            hard = limit.rlim_max,
            "the open-files limit is low: each participant holds a few descriptors (raise LimitNOFILE in the service unit)"
        );
    } else {
        tracing::info!(was = before, soft = limit.rlim_cur, hard = limit.rlim_max, "open-files limit");
    }
}

/// This host's addresses, as the TURN relay must never reach them: every interface's, the
/// addresses the node listens and relays on, and the public URL's host if it is an address.
fn own_ips(public_url: &str, https: std::net::SocketAddr, relay_ip: std::net::IpAddr) -> Vec<std::net::IpAddr> {
    let mut ips = crate::turn::policy::interface_addresses();
    ips.extend([https.ip(), relay_ip]);
    let host = config::public_host(public_url);
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
        ips.push(ip);
    }
    ips.retain(|ip| !ip.is_unspecified());
    ips.sort();
    ips.dedup();
    ips
}

/// The embedded TURN relay (unless `turn_listen` is off and TLS is nowhere): its listeners,
/// and the URLs and credentials participants get for it.
async fn start_turn(
    settings: &config::Serve,
    public_url: &str,
    https: std::net::SocketAddr,
    own_media: Vec<std::net::SocketAddr>,
    withdrawn: crate::turn::Withdrawn,
    tls: &rustls::ServerConfig,
    on_https: bool,
) -> anyhow::Result<Option<(crate::turn::Issuer, crate::turn::service::Turn)>> {
    use crate::turn::{Issuer, credentials::TurnSecret, front::PeerPolicy, host_port, service};
    let turn = &settings.turn;
    if turn.listen.is_none() && turn.tls_listen.is_none() && !on_https {
        return Ok(None);
    }
    let media_ip = own_media.first().map(|a| a.ip()).unwrap_or_else(default_route_ip);
    let relay_ip = match turn.listen.map(|a| a.ip()) {
        Some(ip) if !ip.is_unspecified() => ip,
        _ => media_ip,
    };
    let with_tls = turn.tls_listen.is_some() || on_https;
    let service = service::Turn::start(
        service::TurnSettings {
            listen: turn.listen,
            tls_listen: turn.tls_listen,
            relay_ip,
            peers: PeerPolicy { allow_private: turn.allow_private, own: own_media, own_ips: own_ips(public_url, https, relay_ip), relayed: Default::default() },
            // Per process: a restart ends every allocation anyway, and reconnecting
            // participants get new credentials in their welcome.
            secret: TurnSecret::from_bytes(random_bytes::<32>()),
            withdrawn,
        },
        with_tls.then(|| std::sync::Arc::new(tls.clone())),
    )
    .await?;
    let ip = relay_ip.to_string();
    let host = config::public_host(public_url);
    let mut issuer = Issuer { secret: service.secret.clone(), stun: Vec::new(), turn: Vec::new(), ttl: turn.credential_ttl.secs() };
    if let Some(udp) = service.udp {
        issuer.stun.push(format!("stun:{}", host_port(&ip, udp.port())));
        issuer.turn.push(format!("turn:{}?transport=udp", host_port(&ip, udp.port())));
        issuer.turn.push(format!("turn:{}?transport=tcp", host_port(&ip, udp.port())));
    }
    if let Some(tls) = service.tls {
        issuer.turn.push(format!("turns:{}?transport=tcp", host_port(host, tls.port())));
    }
    if on_https {
        issuer.turn.push(format!("turns:{}?transport=tcp", host_port(host, https.port())));
    }
    tracing::info!(udp_tcp = ?service.udp, tls = ?service.tls, on_https, %relay_ip, allow_private = turn.allow_private, "TURN relay started");
    Ok(Some((issuer, service)))
}

/// The address the kernel would send from towards the Internet (no packet is sent), or
/// loopback on a machine with no route.
fn default_route_ip() -> std::net::IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect("203.0.113.1:9").map(|_| s)).and_then(|s| s.local_addr());
    match probe {
        Ok(addr) if !addr.ip().is_unspecified() => addr.ip(),
        _ => std::net::Ipv4Addr::LOCALHOST.into(),
    }
}

pub fn node_key(common: &Common) -> anyhow::Result<()> {
    let data = DataDir::open(&common.data_dir)?;
    println!("{}", hex_key(&data.node_key()?.public()));
    Ok(())
}

fn hex_key(key: &[u8; 32]) -> String {
    secrets::hex(key)
}

fn open_store(common: &Common) -> anyhow::Result<Store> {
    DataDir::open(&common.data_dir)?.store()
}

pub fn token(common: &Common, command: TokenCommand) -> anyhow::Result<()> {
    let store = open_store(common)?;
    let now = clock::now();
    match command {
        TokenCommand::Issue { note, expires } => {
            let token = secrets::new_signup_token();
            let expires_at = now + expires.secs();
            let digest = secrets::digest(&token);
            let id = store.issue_token(NewToken { digest: &digest, note: note.trim(), issued_by: None, expires_at, grants_admin: false }, now)?;
            println!("Sign-up token #{id}, valid until {}:", format_utc(expires_at));
            println!("    {token}");
            println!("It creates exactly one account at {}/create. It is shown only now.", public_url_hint(common));
        }
        TokenCommand::List => {
            let tokens = store.list_tokens(now)?;
            if tokens.is_empty() {
                println!("No sign-up tokens yet. Issue one with: confab token issue --note \"for whom\"");
                return Ok(());
            }
            println!("{:>5}  {:<8}  {:<20}  {:<22}  {:<12}  NOTE", "#", "STATUS", "USED BY", "EXPIRES / WHEN", "ISSUED BY");
            for t in tokens {
                let (used_by, when) = match &t.status {
                    TokenStatus::Unused => (String::new(), format_utc(t.expires_at)),
                    TokenStatus::Used { by, at } => (by.clone(), format_utc(*at)),
                    TokenStatus::Expired { at } | TokenStatus::Revoked { at } => (String::new(), format_utc(*at)),
                };
                let issuer = t.issued_by.clone().unwrap_or_else(|| if t.grants_admin { "first start".into() } else { "cli".into() });
                println!("{:>5}  {:<8}  {:<20}  {:<22}  {:<12}  {}", t.id, t.status.label(), used_by, when, issuer, t.note);
            }
        }
        TokenCommand::Revoke { id } => {
            store.revoke_token(id, now)?;
            println!("Token #{id} revoked.");
        }
    }
    Ok(())
}

fn public_url_hint(common: &Common) -> String {
    common.public_url.clone().unwrap_or_else(|| format!("https://localhost:{}", config::DEFAULT_LISTEN.rsplit(':').next().unwrap_or("8443")))
}

fn find_account(store: &Store, username: &str) -> anyhow::Result<Account> {
    store.account_by_name(&username.trim().to_ascii_lowercase())?.with_context(|| format!("there is no account named {username:?}"))
}

pub fn account(common: &Common, command: AccountCommand) -> anyhow::Result<()> {
    let store = open_store(common)?;
    let now = clock::now();
    let describe = |a: &Account| {
        let mut roles = vec![];
        if a.is_admin {
            roles.push("admin");
        }
        if a.is_ticketmaster {
            roles.push("ticketmaster");
        }
        if a.disabled_at.is_some() {
            roles.push("DISABLED");
        }
        format!("{:<32}  {:<28}  created {}", a.username, roles.join(","), format_utc(a.created_at))
    };
    let key = |name: &str| name.trim().to_ascii_lowercase();
    let missing = |name: &str| anyhow::anyhow!("there is no account named {name:?}");
    match command {
        AccountCommand::List => {
            for a in store.list_accounts()? {
                println!("{}", describe(&a));
            }
        }
        AccountCommand::GrantTicketmaster { username } => {
            let a = store.set_ticketmaster(&key(&username), true)?.ok_or_else(|| missing(&username))?;
            println!("{}", describe(&a));
        }
        AccountCommand::RevokeTicketmaster { username } => {
            let a = store.set_ticketmaster(&key(&username), false)?.ok_or_else(|| missing(&username))?;
            println!("{}", describe(&a));
        }
        AccountCommand::Disable { username } => {
            let a = store.disable_account(&key(&username), now)?.ok_or_else(|| missing(&username))?;
            println!("{}", describe(&a));
            println!("Its sessions are ended and every invite it signed is void.");
        }
        AccountCommand::Enable { username } => {
            let a = store.enable_account(&key(&username))?.ok_or_else(|| missing(&username))?;
            println!("{}", describe(&a));
        }
    }
    Ok(())
}

pub fn invite(common: &Common, opts: InviteOptions) -> anyhow::Result<()> {
    let data = DataDir::open(&common.data_dir)?;
    let store = data.store()?;
    let node_key = data.node_key()?;
    let now = clock::now();
    let account = find_account(&store, &opts.account)?;
    if account.disabled_at.is_some() {
        bail!("the account {:?} is disabled", account.username);
    }
    let room = RoomName::normalize(&opts.room).map_err(|e| anyhow::anyhow!("{}", e.0))?;
    match store.meeting(room.as_str())? {
        Some(m) if m.owner_id == account.id => {}
        Some(m) => bail!("the meeting {room} belongs to {}, not {}", m.owner, account.username),
        None if opts.create_meeting => {
            store.create_meeting(room.as_str(), account.id, now)?;
            eprintln!("Created the meeting {room}.");
        }
        None => bail!("there is no meeting named {room}; add --create-meeting to create it"),
    }
    if opts.expires.secs() > CERTIFICATE_LIFETIME_SECS {
        bail!("an invite lasts at most {}d (the account certificate's lifetime)", CERTIFICATE_LIFETIME_SECS / 86_400);
    }
    let key = datadir::load_or_create_account_key(&opts.key_file)?;
    let cert = certify(&store, &node_key, &account, key.public(), now)?;
    let body = InviteBody { id: CapabilityId(random_bytes()), room: room.clone(), role: opts.role, not_before: now, expires: now + opts.expires.secs() };
    let invite = key.invite(&cert, body);
    store.record_invite(&InviteRecord {
        text: Some(invite.to_text()),
        for_whom: None,
        id: invite.body().id,
        room: room.to_string(),
        account_id: account.id,
        certificate_id: cert.body().id,
        role: opts.role.to_string(),
        not_before: invite.body().not_before,
        expires_at: invite.body().expires,
        created_at: now,
        revoked: false,
    })?;
    eprintln!("Invite {} ({}, valid until {}):", invite.body().id, opts.role, format_utc(invite.body().expires));
    println!("{}/m/{room}#{}", public_url_hint(common), invite.to_text());
    Ok(())
}

//! The control plane's shell: one libp2p swarm (QUIC, identify, ping, gossipsub,
//! request-response) on its own thread and tokio runtime, never on an actix worker. The
//! node key is the peer id, and an allow-list built from the membership admits members only;
//! a newer epoch that drops a member disconnects it at once.
//!
//! What it carries: membership documents (gossip, and with every sync), "the accounts
//! node's tables changed" notices (gossip), and catch-up syncs (request-response): on every
//! new connection, whenever the accounts node says its tables changed or this node revoked
//! something, and every [`RESYNC`] in any case, since gossip alone loses what a node missed
//! while it was down or cut off.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use confab_keys::{Membership, NodeKey};
use futures_util::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, gossipsub, identify, identity, ping};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Trusted;
use super::membership::{Offer, View};
use super::placement::{Candidate, home};
use crate::clock;
use crate::store::Store;
use crate::store::replica::{Part, Snapshot};

/// How often the loop looks at the membership file, dials missing members and compares the
/// store's generation.
const TICK: Duration = Duration::from_millis(250);
/// A full catch-up with the accounts node at least this often.
const RESYNC: Duration = Duration::from_secs(10);
/// QUIC: a keep-alive every second, and a connection silent for three is dead (the
/// cluster notices a dead node within 3 s).
const KEEP_ALIVE: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT_MS: u32 = 3_000;

const TOPIC: &str = "confab/cluster/1";
const SYNC_PROTOCOL: &str = "/confab/sync/1";

/// What the control plane needs to start.
pub struct Settings {
    /// UDP address for the swarm's QUIC endpoint.
    pub listen: SocketAddr,
    /// The operator's copy of the membership, read again whenever it changes.
    pub membership_file: Option<PathBuf>,
    /// Where the highest epoch seen is kept (the data directory).
    pub persisted: PathBuf,
    /// UDP address for the media cascade's QUIC endpoint.
    pub cascade_listen: SocketAddr,
    /// Present while the node is drained (`confab drain`).
    pub drain_file: PathBuf,
    /// Participants this node takes at most (0: no limit): its weight in placement.
    pub capacity: usize,
}

#[derive(Debug, Serialize, Deserialize)]
enum Gossip {
    /// A membership document (`cfm1.…`).
    Membership(String),
    /// The accounts node's replicated tables changed: fetch a snapshot.
    Changed { generation: u64 },
    /// The members the sender is connected to (itself included), every [`LIVE_EVERY`] and
    /// when it changes.
    Live {
        members: Vec<[u8; 32]>,
        url: Option<String>,
        /// Being drained: no meeting's home any more.
        #[serde(default)]
        draining: bool,
        /// Participants it takes at most (0: no limit).
        #[serde(default)]
        capacity: usize,
        /// Its load: seats in the meetings it runs, and participants' sockets on it.
        #[serde(default)]
        seats: usize,
        #[serde(default)]
        sockets: usize,
    },
}

/// A node's weight in placement: its participant cap, or this for a node without one.
const UNCAPPED_WEIGHT: f64 = 100.0;

fn weight(capacity: usize) -> f64 {
    if capacity == 0 { UNCAPPED_WEIGHT } else { capacity as f64 }
}

/// How often each node says whom it is connected to, and how long that stays believed.
const LIVE_EVERY: Duration = Duration::from_secs(1);
const LIVE_BELIEVED: Duration = Duration::from_secs(3);

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// Here are my membership and revocations; send yours (and, from the accounts node, the
    /// whole replicated state).
    Sync { membership: String, revocations: Snapshot },
    /// Edge to home: a participant's messages, in order (the first batch starts with their
    /// join). `conn` is the edge's number for the participant's socket.
    Up { conn: u64, room: String, origin: IpAddr, frames: Vec<Up> },
    /// Home to edge: what the room sends that participant, in order.
    Down { conn: u64, frames: Vec<Down> },
}

#[derive(Debug, Serialize, Deserialize)]
enum Response {
    Sync {
        membership: String,
        snapshot: Snapshot,
    },
    /// Taken, in order: send the next batch.
    Taken,
    /// The receiver knows no such participant (it restarted, or they are gone).
    Unknown,
}

/// What an edge node passes on from a participant's socket to the meeting's home node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Up {
    /// The `join` message, as the participant sent it.
    Join(String),
    Text(String),
    /// The socket closed.
    Closed,
}

/// What the home node sends back for the participant's socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Down {
    Text(String),
    /// Close the socket with this code and reason.
    Close {
        code: u16,
        reason: String,
    },
    /// The home approved the participant's `sfu-offer`: the edge publishes it at its own
    /// relay and answers (with what the room holds of them: a share, a host's hold).
    Publish {
        participant: u64,
        sdp: String,
        sharing: bool,
        held_audio: bool,
        held_video: bool,
    },
}

/// Relayed messages that may wait for one participant, each way (on the edge for the
/// socket, on either node for the other to take them): past it the participant counts as
/// stalled, as a local socket whose queue overflows does (`meeting::hub::OUTBOUND_QUEUE`).
const RELAYED_QUEUE: usize = crate::meeting::hub::OUTBOUND_QUEUE;

/// The close code an edge uses when it loses the meeting's home node: "service restart"
/// (RFC 6455), after which the browser reconnects and resumes, and the room has a new home.
pub const CLOSE_HOME_LOST: u16 = 1012;

/// A participant's seat whose socket is on another node (on the home node's side).
pub struct RemoteSeat {
    pub room: String,
    pub origin: IpAddr,
    /// The participant's messages, starting with their join.
    pub frames: mpsc::UnboundedReceiver<Up>,
    pub back: Back,
}

/// The way back to a remote participant's socket (their edge node).
#[derive(Clone)]
pub struct Back {
    edge: PeerId,
    /// The edge's node key.
    pub edge_key: [u8; 32],
    conn: u64,
    commands: mpsc::UnboundedSender<Command>,
}

impl Back {
    pub fn send(&self, down: Down) {
        let _ = self.commands.send(Command::Down { edge: self.edge, conn: self.conn, frame: down });
    }
}

/// An edge's link to the meeting's home node for one participant's socket.
pub struct Link {
    conn: u64,
    home: PeerId,
    room: String,
    origin: IpAddr,
    commands: mpsc::UnboundedSender<Command>,
}

impl Link {
    pub fn send(&self, up: Up) {
        let _ = self.commands.send(Command::Up { home: self.home, conn: self.conn, room: self.room.clone(), origin: self.origin, frame: up });
    }
}

/// What the rest of the node asks of the swarm's loop.
enum Command {
    SetUrl(String),
    /// A member's name was resolved (off the loop).
    Resolved {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    },
    Open {
        conn: u64,
        home: PeerId,
        down: mpsc::Sender<Down>,
    },
    Up {
        home: PeerId,
        conn: u64,
        room: String,
        origin: IpAddr,
        frame: Up,
    },
    Down {
        edge: PeerId,
        conn: u64,
        frame: Down,
    },
}

/// Messages waiting for one participant in one direction: sent one batch at a time, the next
/// when the other side has taken the last, so they arrive in order.
#[derive(Default)]
struct Outgoing {
    frames: Vec<Frame>,
    in_flight: bool,
}

enum Frame {
    Up(Up),
    Down(Down),
}

/// (peer, conn, upwards)
type Stream = (PeerId, u64, bool);

#[derive(NetworkBehaviour)]
struct Behaviour {
    allowed: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::json::Behaviour<Request, Response>,
}

/// This node's load, as the HTTP side last reported it.
#[derive(Debug, Default)]
struct Load {
    seats: std::sync::atomic::AtomicUsize,
    sockets: std::sync::atomic::AtomicUsize,
}

/// What a member last said of its load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberLoad {
    pub seats: usize,
    pub sockets: usize,
    pub capacity: usize,
    pub draining: bool,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub epoch: AtomicU64,
    pub peers: AtomicU64,
    pub syncs: AtomicU64,
    pub rows_applied: AtomicU64,
    pub refused_documents: AtomicU64,
    pub refused_connections: AtomicU64,
}

/// What the rest of the node may ask of the cluster.
pub struct Cluster {
    shared: Arc<Shared>,
    /// The media cascade's links to the other members.
    pub cascade: Arc<super::cascade::Links>,
    commands: mpsc::UnboundedSender<Command>,
    next_conn: AtomicU64,
    /// Seats whose sockets are on other nodes, for the HTTP side to serve (taken once).
    seats: std::sync::Mutex<Option<mpsc::UnboundedReceiver<RemoteSeat>>>,
}

/// What the swarm's loop keeps up to date and the rest of the node reads.
struct Shared {
    own: [u8; 32],
    /// Participants this node takes at most (0: no limit).
    capacity: usize,
    counters: Counters,
    view: RwLock<View>,
    /// The members this node is connected to.
    live: RwLock<BTreeSet<[u8; 32]>>,
    /// What each member last said of itself.
    reports: RwLock<HashMap<[u8; 32], Report>>,
    /// This node's load, as the HTTP side last reported it.
    load: Load,
    draining: tokio::sync::watch::Sender<bool>,
}

impl Cluster {
    /// The control plane's counters, for `/metrics`.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The members this node is connected to, and itself.
    pub fn live(&self) -> BTreeSet<[u8; 32]> {
        let mut live = self.shared.live.read().expect("never poisoned").clone();
        live.insert(self.shared.own);
        live
    }

    pub fn view(&self) -> View {
        self.shared.view.read().expect("never poisoned").clone()
    }

    pub fn own_key(&self) -> [u8; 32] {
        self.shared.own
    }

    /// The meeting's home: by the rendezvous hash among the media members that this node and
    /// every member it has heard from lately can reach (so that while a link between two
    /// members is cut, every node still picks a home all of them reach, and after it heals
    /// every node picks the same one). This node when it finds none.
    pub fn home_of(&self, room: &str) -> [u8; 32] {
        let view = self.shared.view.read().expect("never poisoned");
        let live = self.live();
        let reports = self.shared.reports.read().expect("never poisoned");
        let believed: Vec<&BTreeSet<[u8; 32]>> =
            reports.iter().filter(|(k, r)| **k != self.shared.own && r.at.elapsed() < LIVE_BELIEVED).map(|(_, r)| &r.reaches).collect();
        let now = clock::now();
        let fresh = |k: &[u8; 32]| reports.get(k).filter(|r| r.at.elapsed() < LIVE_BELIEVED);
        let candidates: Vec<Candidate> = view
            .media_nodes(now)
            .into_iter()
            .filter(|k| live.contains(k) && believed.iter().all(|seen| seen.contains(k)))
            .filter(|k| if *k == self.shared.own { !self.draining() } else { !fresh(k).is_some_and(|r| r.draining) })
            .map(|node| {
                let capacity = if node == self.shared.own { self.shared.capacity } else { fresh(&node).map_or(0, |r| r.capacity) };
                Candidate { node, weight: weight(capacity) }
            })
            .collect();
        home(room, &candidates).unwrap_or(self.shared.own)
    }

    /// The HTTP side's figures, passed on to the other members with the next report.
    pub fn report_load(&self, seats: usize, sockets: usize) {
        self.shared.load.seats.store(seats, Ordering::Relaxed);
        self.shared.load.sockets.store(sockets, Ordering::Relaxed);
    }

    /// What each other member said of its load lately.
    pub fn loads(&self) -> HashMap<[u8; 32], MemberLoad> {
        let reports = self.shared.reports.read().expect("never poisoned");
        reports
            .iter()
            .filter(|(_, r)| r.at.elapsed() < LIVE_BELIEVED)
            .map(|(k, r)| (*k, MemberLoad { seats: r.seats, sockets: r.sockets, capacity: r.capacity, draining: r.draining }))
            .collect()
    }

    /// Whether this node is being drained (`confab drain`).
    pub fn draining(&self) -> bool {
        *self.shared.draining.borrow()
    }

    /// Told when draining starts or stops.
    pub fn draining_changes(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.draining.subscribe()
    }

    /// Where browsers reach the other members this node is connected to (`https://…`), as
    /// they said themselves.
    pub fn node_urls(&self) -> Vec<String> {
        let live = self.live();
        let reports = self.shared.reports.read().expect("never poisoned");
        let mut urls: Vec<String> = reports
            .iter()
            .filter(|(k, r)| **k != self.shared.own && live.contains(*k) && r.at.elapsed() < LIVE_BELIEVED)
            .filter_map(|(_, r)| r.url.clone())
            .collect();
        urls.sort();
        urls
    }

    /// Whether this node holds the accounts database (always, on its own; in a cluster, the
    /// member with the accounts role).
    pub fn holds_accounts(&self) -> bool {
        self.view().accounts_node(clock::now()) == Some(self.shared.own)
    }

    /// Where browsers reach the accounts node, if it said (and is reachable from here).
    pub fn accounts_url(&self) -> Option<String> {
        let accounts = self.view().accounts_node(clock::now())?;
        let reports = self.shared.reports.read().expect("never poisoned");
        reports.get(&accounts).filter(|r| r.at.elapsed() < LIVE_BELIEVED).and_then(|r| r.url.clone())
    }

    /// Where browsers reach this node, for the other members to tell theirs.
    pub fn set_public_url(&self, url: &str) {
        let _ = self.commands.send(Command::SetUrl(url.to_string()));
    }

    /// Opens the way to `home` for one participant's socket on this node: what to send it,
    /// and what it sends back (which ends with a close, also when the home node is lost).
    pub fn open_link(&self, home: [u8; 32], room: &str, origin: IpAddr) -> (Link, mpsc::Receiver<Down>) {
        let (tx, rx) = mpsc::channel(RELAYED_QUEUE);
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let home = peer_of(&home).expect("members' keys are ed25519 keys");
        let _ = self.commands.send(Command::Open { conn, home, down: tx });
        (Link { conn, home, room: room.to_string(), origin, commands: self.commands.clone() }, rx)
    }

    /// The seats other nodes relay here, once.
    pub fn take_seats(&self) -> Option<mpsc::UnboundedReceiver<RemoteSeat>> {
        self.seats.lock().expect("never poisoned").take()
    }
}

/// Starts the swarm on its own thread; returns once it listens (or why it cannot).
pub fn start(node_key: &NodeKey, view: View, settings: Settings, store: Arc<Store>, trusted: Trusted) -> anyhow::Result<Cluster> {
    let own = node_key.public();
    let keypair = identity::Keypair::ed25519_from_bytes(node_key.seed()).context("the node key is not an ed25519 key")?;
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (seats_tx, seats_rx) = mpsc::unbounded_channel();
    let cascade_links = Arc::new(super::cascade::Links::default());
    let (cascade_members, cascade_members_rx) = tokio::sync::watch::channel(super::cascade::Members::new());
    let shared = Arc::new(Shared {
        own,
        capacity: settings.capacity,
        counters: Counters::default(),
        view: RwLock::new(view.clone()),
        live: RwLock::default(),
        reports: RwLock::default(),
        load: Load::default(),
        draining: tokio::sync::watch::Sender::new(settings.drain_file.exists()),
    });
    let cluster = Cluster {
        shared: shared.clone(),
        cascade: cascade_links.clone(),
        commands: commands.clone(),
        next_conn: AtomicU64::new(1),
        seats: std::sync::Mutex::new(Some(seats_rx)),
    };
    let wiring = Wiring { commands, command_rx, seats: seats_tx, cascade_members };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("cluster".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("cluster-rt").enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(anyhow::anyhow!("cannot start the cluster's runtime: {e}")));
                return;
            }
        };
        runtime.block_on(async move {
            if let Err(e) = super::cascade::start(&keypair, settings.cascade_listen, cascade_members_rx, cascade_links) {
                let _ = ready_tx.send(Err(e));
                return;
            }
            let swarm = match build_swarm(keypair, &settings) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let mut plane = Plane::new(swarm, view, settings, store, trusted, shared, wiring);
            plane.run().await;
        });
    })?;
    ready_rx.recv().context("the cluster's thread ended before it listened")??;
    Ok(cluster)
}

fn build_swarm(keypair: identity::Keypair, settings: &Settings) -> anyhow::Result<Swarm<Behaviour>> {
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_quic_config(|mut c| {
            c.max_idle_timeout = IDLE_TIMEOUT_MS;
            c.keep_alive_interval = KEEP_ALIVE;
            c
        })
        .with_behaviour(|key| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                // Sized for 2-10 nodes: every member in the mesh, none missing for want of
                // outbound peers.
                .mesh_n_low(1)
                .mesh_n(8)
                .mesh_n_high(12)
                .mesh_outbound_min(0)
                .heartbeat_interval(Duration::from_secs(1))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .max_transmit_size(256 * 1024)
                .build()
                .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
            let gossipsub =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_config).map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
            Ok(Behaviour {
                allowed: allow_block_list::Behaviour::default(),
                identify: identify::Behaviour::new(identify::Config::new("/confab/1".into(), key.public())),
                ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(1)).with_timeout(Duration::from_secs(2))),
                gossipsub,
                sync: request_response::json::Behaviour::new(
                    [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
                ),
            })
        })?
        // Members stay connected whatever the traffic: the connection is how liveness is seen.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
        .build();
    swarm.behaviour_mut().gossipsub.subscribe(&gossipsub::IdentTopic::new(TOPIC))?;
    let addr = Multiaddr::from(settings.listen.ip()).with(Protocol::Udp(settings.listen.port())).with(Protocol::QuicV1);
    swarm.listen_on(addr).with_context(|| format!("cannot listen for the cluster on {} (UDP)", settings.listen))?;
    Ok(swarm)
}

/// The peer id of a member's node key.
pub fn peer_of(key: &[u8; 32]) -> Option<PeerId> {
    let public = identity::ed25519::PublicKey::try_from_bytes(key).ok()?;
    Some(identity::PublicKey::from(public).to_peer_id())
}

/// The node key a peer id stands for (members' peer ids are their ed25519 keys, inlined).
pub fn key_of(peer: &PeerId) -> Option<[u8; 32]> {
    let public = identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).ok()?;
    Some(public.try_into_ed25519().ok()?.to_bytes())
}

/// What a member last said of itself.
#[derive(Debug, Clone)]
struct Report {
    at: Instant,
    reaches: BTreeSet<[u8; 32]>,
    /// Where browsers reach it (`https://host[:port]`), if it said.
    url: Option<String>,
    draining: bool,
    capacity: usize,
    seats: usize,
    sockets: usize,
}

/// The channels between the swarm's loop and the rest of the node.
struct Wiring {
    commands: mpsc::UnboundedSender<Command>,
    command_rx: mpsc::UnboundedReceiver<Command>,
    seats: mpsc::UnboundedSender<RemoteSeat>,
    /// The members, for the cascade's endpoint.
    cascade_members: tokio::sync::watch::Sender<super::cascade::Members>,
}

struct Plane {
    swarm: Swarm<Behaviour>,
    wiring: Wiring,
    /// Sockets on this node whose seats are on another: where their home's messages go.
    edge_conns: HashMap<u64, (PeerId, mpsc::Sender<Down>)>,
    /// Seats here whose sockets are on another node: where their messages go.
    remote_seats: HashMap<(PeerId, u64), mpsc::UnboundedSender<Up>>,
    outgoing: HashMap<Stream, Outgoing>,
    in_flight: HashMap<request_response::OutboundRequestId, (Stream, String, IpAddr)>,
    view: View,
    settings: Settings,
    store: Arc<Store>,
    trusted: Trusted,
    shared: Arc<Shared>,
    own: [u8; 32],
    /// Member peer ids and their node keys, for the current epoch.
    members: HashMap<PeerId, [u8; 32]>,
    connections: HashMap<PeerId, usize>,
    last_dial: HashMap<PeerId, Instant>,
    /// Members' names, resolved (when, to what), and those being resolved now.
    resolved: HashMap<PeerId, (Instant, Vec<Multiaddr>)>,
    resolving: HashSet<PeerId>,
    file_stamp: Option<std::time::SystemTime>,
    /// The store's generation when this node last told the others (or the accounts node).
    told_generation: u64,
    last_resync: Instant,
    last_live: Instant,
    /// This node's public URL, once the HTTP side knows it.
    url: Option<String>,
}

impl Plane {
    fn new(swarm: Swarm<Behaviour>, view: View, settings: Settings, store: Arc<Store>, trusted: Trusted, shared: Arc<Shared>, wiring: Wiring) -> Plane {
        let told_generation = store.generation();
        let mut plane = Plane {
            swarm,
            wiring,
            edge_conns: HashMap::new(),
            remote_seats: HashMap::new(),
            outgoing: HashMap::new(),
            in_flight: HashMap::new(),
            view,
            settings,
            store,
            trusted,
            own: shared.own,
            shared,
            members: HashMap::new(),
            connections: HashMap::new(),
            last_dial: HashMap::new(),
            resolved: HashMap::new(),
            resolving: HashSet::new(),
            file_stamp: None,
            told_generation,
            last_resync: Instant::now(),
            last_live: Instant::now(),
            url: None,
        };
        plane.follow_view();
        plane
    }

    async fn run(&mut self) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                Some(command) = self.wiring.command_rx.recv() => self.on_command(command),
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    fn is_accounts_node(&self) -> bool {
        self.view.accounts_node(clock::now()) == Some(self.own)
    }

    fn accounts_peer(&self) -> Option<PeerId> {
        self.view.accounts_node(clock::now()).filter(|k| *k != self.own).and_then(|k| peer_of(&k))
    }

    /// Makes the allow-list, the trusted keys and the shared view match the current epoch,
    /// and persists it.
    fn follow_view(&mut self) {
        let now = clock::now();
        let members: HashMap<PeerId, [u8; 32]> =
            self.view.members(now).filter(|m| m.node_key != self.own).filter_map(|m| Some((peer_of(&m.node_key)?, m.node_key))).collect();
        let old: HashSet<PeerId> = self.members.keys().copied().collect();
        for gone in old.iter().filter(|p| !members.contains_key(p)) {
            // Closes its connections at once.
            self.swarm.behaviour_mut().allowed.disallow_peer(*gone);
            self.swarm.behaviour_mut().gossipsub.remove_explicit_peer(gone);
            tracing::info!(peer = %gone, "no longer a member: disconnected");
        }
        for peer in members.keys() {
            self.swarm.behaviour_mut().allowed.allow_peer(*peer);
        }
        self.members = members;
        // The cascade follows the same members, at the port after each one's control plane.
        let cascade: super::cascade::Members = self
            .view
            .members(now)
            .filter_map(|m| {
                let addresses: Vec<SocketAddr> = m
                    .addresses
                    .iter()
                    .flat_map(|a| a.to_socket_addrs().into_iter().flatten())
                    .map(|a| SocketAddr::new(a.ip(), super::cascade::port_for(a.port())))
                    .collect();
                Some((peer_of(&m.node_key)?, (m.node_key, addresses)))
            })
            .collect();
        self.wiring.cascade_members.send_replace(cascade);
        let mut keys = self.view.node_keys(now);
        if !keys.contains(&self.own) {
            keys.push(self.own);
        }
        self.trusted.set(keys);
        self.shared.counters.epoch.store(self.view.epoch(), Ordering::Relaxed);
        *self.shared.view.write().expect("never poisoned") = self.view.clone();
        let text = format!("{}\n", self.view.document().to_text());
        let tmp = self.settings.persisted.with_extension("cfm.new");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &self.settings.persisted)) {
            tracing::warn!(error = %e, path = %self.settings.persisted.display(), "cannot keep the membership in the data directory");
        }
        self.publish_live();
    }

    /// Shares whom this node is connected to: with the rest of the node and, when it changed
    /// or [`LIVE_EVERY`] passed, with the other members.
    fn publish_live(&mut self) {
        let live: BTreeSet<[u8; 32]> = self.connections.iter().filter(|(_, n)| **n > 0).filter_map(|(p, _)| self.members.get(p).copied()).collect();
        self.shared.counters.peers.store(live.len() as u64, Ordering::Relaxed);
        let changed = *self.shared.live.read().expect("never poisoned") != live;
        if changed || self.last_live.elapsed() >= LIVE_EVERY {
            self.last_live = Instant::now();
            let mut members: Vec<[u8; 32]> = live.iter().copied().collect();
            members.push(self.own);
            let (draining, capacity) = (*self.shared.draining.borrow(), self.settings.capacity);
            let (seats, sockets) = (self.shared.load.seats.load(Ordering::Relaxed), self.shared.load.sockets.load(Ordering::Relaxed));
            self.gossip(Gossip::Live { members, url: self.url.clone(), draining, capacity, seats, sockets });
        }
        *self.shared.live.write().expect("never poisoned") = live;
    }

    /// A document from anywhere: followed if newer and valid. Returns whether it was.
    fn offer(&mut self, doc: &Membership, from: &str) -> bool {
        match self.view.offer(doc, clock::now()) {
            Offer::Adopted { epoch } => {
                tracing::info!(epoch, from, "following a new membership epoch");
                self.follow_view();
                self.gossip(Gossip::Membership(self.view.document().to_text()));
                true
            }
            Offer::NotNewer => false,
            Offer::Refused(e) => {
                self.shared.counters.refused_documents.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, from, "ignored a membership document");
                false
            }
        }
    }

    fn offer_text(&mut self, text: &str, from: &str) {
        match Membership::from_text(text.trim()) {
            Ok(doc) => {
                self.offer(&doc, from);
            }
            Err(e) => {
                self.shared.counters.refused_documents.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, from, "ignored a malformed membership document");
            }
        }
    }

    fn gossip(&mut self, message: Gossip) {
        let bytes = serde_json::to_vec(&message).expect("gossip serialises");
        // With no member connected there is no one to tell: the next sync catches them up.
        let _ = self.swarm.behaviour_mut().gossipsub.publish(gossipsub::IdentTopic::new(TOPIC), bytes);
    }

    fn on_tick(&mut self) {
        self.read_membership_file();
        // A membership that ran out (its `expires` passed) ends as a removal does.
        let now = clock::now();
        let current = self.view.members(now).filter(|m| m.node_key != self.own).count();
        if current != self.members.len() {
            tracing::info!("a membership ran out");
            self.follow_view();
        }
        let draining = self.settings.drain_file.exists();
        if *self.shared.draining.borrow() != draining {
            tracing::info!(draining, "{}", if draining { "draining: handing meetings and participants to the other nodes" } else { "back in service" });
            self.shared.draining.send_replace(draining);
            // Say so at once.
            self.last_live = Instant::now() - LIVE_EVERY;
        }
        self.publish_live();
        self.dial_missing();
        let generation = self.store.generation();
        if generation != self.told_generation {
            self.told_generation = generation;
            if self.is_accounts_node() {
                self.gossip(Gossip::Changed { generation });
            } else if let Some(peer) = self.accounts_peer() {
                // Something was revoked here: the accounts node takes it and tells everyone.
                self.sync_with(peer);
            }
        }
        if self.last_resync.elapsed() >= RESYNC {
            self.last_resync = Instant::now();
            if let Some(peer) = self.accounts_peer() {
                self.sync_with(peer);
            }
        }
    }

    fn read_membership_file(&mut self) {
        let Some(path) = self.settings.membership_file.clone() else { return };
        let stamp = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if stamp.is_none() || stamp == self.file_stamp {
            return;
        }
        self.file_stamp = stamp;
        match std::fs::read_to_string(&path) {
            Ok(text) => self.offer_text(&text, "the membership file"),
            Err(e) => tracing::warn!(error = %e, path = %path.display(), "cannot read the membership file"),
        }
    }

    fn dial_missing(&mut self) {
        let now = clock::now();
        let wanted: Vec<(PeerId, Vec<String>)> = self
            .view
            .members(now)
            .filter(|m| m.node_key != self.own)
            .filter_map(|m| Some((peer_of(&m.node_key)?, m.addresses.clone())))
            .filter(|(peer, _)| !self.swarm.is_connected(peer))
            .collect();
        for (peer, addresses) in wanted {
            if self.last_dial.get(&peer).is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                continue;
            }
            self.last_dial.insert(peer, Instant::now());
            let addrs = match self.addresses_of(peer, &addresses) {
                Some(addrs) if !addrs.is_empty() => addrs,
                _ => continue,
            };
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer).addresses(addrs).build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, error = %e, "dial");
            }
        }
    }

    /// A member's addresses as multiaddrs. Addresses with IPs are read at once; names are
    /// resolved off the loop (a slow resolver must not hold up the control plane) and kept for
    /// [`RESOLVED_FOR`]; until the first answer there is nothing to dial.
    fn addresses_of(&mut self, peer: PeerId, addresses: &[String]) -> Option<Vec<Multiaddr>> {
        let literal: Option<Vec<SocketAddr>> = addresses.iter().map(|a| a.parse::<SocketAddr>().ok()).collect();
        if let Some(literal) = literal {
            return Some(literal.into_iter().map(quic_multiaddr).collect());
        }
        let cached = self.resolved.get(&peer).cloned();
        if cached.as_ref().is_none_or(|(at, _)| at.elapsed() >= RESOLVED_FOR) && self.resolving.insert(peer) {
            let (commands, addresses) = (self.wiring.commands.clone(), addresses.to_vec());
            tokio::task::spawn_blocking(move || {
                let addrs: Vec<Multiaddr> = addresses.iter().flat_map(|a| a.to_socket_addrs().into_iter().flatten()).map(quic_multiaddr).collect();
                let _ = commands.send(Command::Resolved { peer, addrs });
            });
        }
        cached.map(|(_, addrs)| addrs)
    }

    fn sync_with(&mut self, peer: PeerId) {
        let revocations = match self.store.snapshot(Part::Revocations) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the revocations to sync");
                return;
            }
        };
        let request = Request::Sync { membership: self.view.document().to_text(), revocations };
        self.swarm.behaviour_mut().sync.send_request(&peer, request);
    }

    fn apply(&mut self, snapshot: Snapshot, from: PeerId) {
        let authoritative = self.members.get(&from).is_some_and(|k| Some(*k) == self.view.accounts_node(clock::now()));
        let store = self.store.clone();
        match store.apply_snapshot(&snapshot, authoritative) {
            Ok(changed) => {
                self.shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
                self.shared.counters.rows_applied.fetch_add(changed as u64, Ordering::Relaxed);
                if changed > 0 {
                    tracing::debug!(changed, %from, authoritative, "applied a snapshot");
                }
                if !self.is_accounts_node() {
                    // What arrived from the accounts node need not go back to it.
                    self.told_generation = self.store.generation();
                }
            }
            Err(e) => tracing::warn!(error = %e, %from, "refused a snapshot"),
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::SetUrl(url) => self.url = Some(url),
            Command::Resolved { peer, addrs } => {
                self.resolving.remove(&peer);
                if addrs.is_empty() {
                    tracing::warn!(%peer, "a member's address did not resolve");
                }
                self.resolved.insert(peer, (Instant::now(), addrs));
            }
            Command::Open { conn, home, down } => {
                if !self.swarm.is_connected(&home) {
                    let _ = down.try_send(Down::Close { code: CLOSE_HOME_LOST, reason: "home_unreachable".into() });
                    return;
                }
                self.edge_conns.insert(conn, (home, down));
            }
            Command::Up { home, conn, room, origin, frame } => {
                if !self.edge_conns.contains_key(&conn) {
                    return;
                }
                if matches!(frame, Up::Closed) {
                    self.edge_conns.remove(&conn);
                }
                self.queue((home, conn, true), Frame::Up(frame), room, origin);
            }
            Command::Down { edge, conn, frame } => {
                if !self.remote_seats.contains_key(&(edge, conn)) {
                    return;
                }
                if matches!(frame, Down::Close { .. }) {
                    self.remote_seats.remove(&(edge, conn));
                }
                self.queue((edge, conn, false), Frame::Down(frame), String::new(), IpAddr::from([0, 0, 0, 0]));
            }
        }
    }

    fn queue(&mut self, stream: Stream, frame: Frame, room: String, origin: IpAddr) {
        let waiting = self.outgoing.entry(stream).or_default();
        if waiting.frames.len() >= RELAYED_QUEUE {
            // The other node does not keep up with this participant: let them go as stalled
            // (the page reconnects and resumes, as after a local socket's overflow).
            tracing::warn!(conn = stream.1, "relayed signaling stalled; treating the participant as dropped");
            self.outgoing.remove(&stream);
            let (peer, conn, upwards) = stream;
            if upwards {
                if let Some((_, down)) = self.edge_conns.remove(&conn) {
                    let _ = down.try_send(Down::Close { code: 1011, reason: "stalled".into() });
                }
            } else if let Some(frames) = self.remote_seats.remove(&(peer, conn)) {
                let _ = frames.send(Up::Closed);
            }
            return;
        }
        waiting.frames.push(frame);
        self.flush(stream, room, origin);
    }

    /// Sends what waits on `stream` as one request, unless a request of it is on its way.
    fn flush(&mut self, stream: Stream, room: String, origin: IpAddr) {
        let Some(out) = self.outgoing.get_mut(&stream) else { return };
        if out.in_flight || out.frames.is_empty() {
            return;
        }
        out.in_flight = true;
        let frames = std::mem::take(&mut out.frames);
        let (peer, conn, upwards) = stream;
        let request = if upwards {
            Request::Up {
                conn,
                room: room.clone(),
                origin,
                frames: frames.into_iter().filter_map(|f| if let Frame::Up(u) = f { Some(u) } else { None }).collect(),
            }
        } else {
            Request::Down { conn, frames: frames.into_iter().filter_map(|f| if let Frame::Down(d) = f { Some(d) } else { None }).collect() }
        };
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
        self.in_flight.insert(id, (stream, room, origin));
    }

    /// A batch was taken (or failed): the next one may go; a stream whose last frame went is
    /// forgotten.
    fn delivered(&mut self, id: request_response::OutboundRequestId, unknown: bool) {
        let Some((stream, room, origin)) = self.in_flight.remove(&id) else { return };
        let (peer, conn, upwards) = stream;
        if unknown {
            // The other side forgot the participant: end it here too.
            self.outgoing.remove(&stream);
            if upwards {
                if let Some((_, down)) = self.edge_conns.remove(&conn) {
                    let _ = down.try_send(Down::Close { code: CLOSE_HOME_LOST, reason: "home_lost".into() });
                }
            } else if let Some(frames) = self.remote_seats.remove(&(peer, conn)) {
                let _ = frames.send(Up::Closed);
            }
            return;
        }
        if let Some(out) = self.outgoing.get_mut(&stream) {
            out.in_flight = false;
            let finished = out.frames.is_empty() && if upwards { !self.edge_conns.contains_key(&conn) } else { !self.remote_seats.contains_key(&(peer, conn)) };
            if finished {
                self.outgoing.remove(&stream);
            } else {
                self.flush(stream, room, origin);
            }
        }
    }

    /// The connection to `peer` is gone: sockets here whose home it was are closed (their
    /// browsers come back and find the meeting's new home), and seats here whose sockets were
    /// there are disconnected (their grace period starts).
    fn lose_peer(&mut self, peer: PeerId) {
        let lost: Vec<u64> = self.edge_conns.iter().filter(|(_, (home, _))| *home == peer).map(|(c, _)| *c).collect();
        for conn in lost {
            if let Some((_, down)) = self.edge_conns.remove(&conn) {
                let _ = down.try_send(Down::Close { code: CLOSE_HOME_LOST, reason: "home_lost".into() });
            }
        }
        let seats: Vec<(PeerId, u64)> = self.remote_seats.keys().filter(|(edge, _)| *edge == peer).copied().collect();
        for key in seats {
            if let Some(frames) = self.remote_seats.remove(&key) {
                let _ = frames.send(Up::Closed);
            }
        }
        self.outgoing.retain(|(p, _, _), _| *p != peer);
    }

    fn on_request(&mut self, peer: PeerId, request: Request, channel: request_response::ResponseChannel<Response>) {
        let response = match request {
            Request::Sync { membership, revocations } => {
                self.offer_text(&membership, "a sync request");
                self.apply(revocations, peer);
                let part = if self.is_accounts_node() { Part::All } else { Part::Revocations };
                match self.store.snapshot(part) {
                    Ok(snapshot) => Response::Sync { membership: self.view.document().to_text(), snapshot },
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the store to answer a sync");
                        return;
                    }
                }
            }
            Request::Up { conn, room, origin, frames } => {
                let key = (peer, conn);
                if !self.remote_seats.contains_key(&key) {
                    if !matches!(frames.first(), Some(Up::Join(_))) {
                        let _ = self.swarm.behaviour_mut().sync.send_response(channel, Response::Unknown);
                        return;
                    }
                    let (tx, rx) = mpsc::unbounded_channel();
                    let Some(edge_key) = key_of(&peer) else { return };
                    let back = Back { edge: peer, edge_key, conn, commands: self.wiring.commands.clone() };
                    if self.wiring.seats.send(RemoteSeat { room, origin, frames: rx, back }).is_err() {
                        let _ = self.swarm.behaviour_mut().sync.send_response(channel, Response::Unknown);
                        return;
                    }
                    self.remote_seats.insert(key, tx);
                }
                let seat = self.remote_seats.get(&key).expect("inserted above").clone();
                for frame in frames {
                    if matches!(frame, Up::Closed) {
                        self.remote_seats.remove(&key);
                    }
                    let _ = seat.send(frame);
                }
                Response::Taken
            }
            Request::Down { conn, frames } => match self.edge_conns.get(&conn) {
                Some((home, down)) if *home == peer => {
                    let down = down.clone();
                    let mut response = Response::Taken;
                    for frame in frames {
                        if matches!(frame, Down::Close { .. }) {
                            self.edge_conns.remove(&conn);
                        }
                        if down.try_send(frame).is_err() {
                            // The socket does not take what it is sent: it goes (closed as
                            // stalled once its channel empties), and the home lets the seat wait.
                            tracing::warn!(conn, "a relayed participant's socket stalled; treating it as dropped");
                            self.edge_conns.remove(&conn);
                            response = Response::Unknown;
                            break;
                        }
                    }
                    response
                }
                _ => Response::Unknown,
            },
        };
        let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "cluster listening"),
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                *self.connections.entry(peer_id).or_default() += 1;
                self.swarm.behaviour_mut().gossipsub.add_explicit_peer(&peer_id);
                tracing::info!(peer = %peer_id, "member connected");
                self.publish_live();
                self.sync_with(peer_id);
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, .. } => {
                self.connections.insert(peer_id, num_established as usize);
                if num_established == 0 {
                    tracing::info!(peer = %peer_id, "member disconnected");
                    self.lose_peer(peer_id);
                }
                self.publish_live();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => {
                let Some(source) = message.source.filter(|s| self.members.contains_key(s)) else { return };
                match serde_json::from_slice::<Gossip>(&message.data) {
                    Ok(Gossip::Membership(text)) => self.offer_text(&text, "gossip"),
                    Ok(Gossip::Live { members, url, draining, capacity, seats, sockets }) => {
                        if let Some(key) = self.members.get(&source) {
                            let url = url.filter(|u| is_public_url(u));
                            let report = Report { at: Instant::now(), reaches: members.into_iter().collect(), url, draining, capacity, seats, sockets };
                            self.shared.reports.write().expect("never poisoned").insert(*key, report);
                        }
                    }
                    Ok(Gossip::Changed { .. }) => {
                        if self.accounts_peer() == Some(source) {
                            self.sync_with(source);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, %source, "ignored a malformed gossip message"),
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. })) => match message {
                request_response::Message::Request { request, channel, .. } => self.on_request(peer, request, channel),
                request_response::Message::Response { request_id, response } => match response {
                    Response::Sync { membership, snapshot } => {
                        self.offer_text(&membership, "a sync response");
                        self.apply(snapshot, peer);
                    }
                    Response::Taken => self.delivered(request_id, false),
                    Response::Unknown => self.delivered(request_id, true),
                },
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure { peer, request_id, error, .. })) => {
                tracing::debug!(%peer, %error, "a request to a member failed");
                self.delivered(request_id, true);
            }
            SwarmEvent::IncomingConnectionError { error: libp2p::swarm::ListenError::Denied { cause }, send_back_addr, .. } => {
                self.shared.counters.refused_connections.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%send_back_addr, %cause, "refused a connection from a node outside the membership");
            }
            SwarmEvent::IncomingConnectionError { error, send_back_addr, .. } => {
                tracing::debug!(%send_back_addr, %error, "an incoming cluster connection failed");
            }
            _ => {}
        }
    }
}

/// `https://host[:port]` and nothing that could break out of a header or a CSP source list.
fn is_public_url(url: &str) -> bool {
    crate::config::normalize_public_url(url).is_ok_and(|u| u == url) && url.len() <= 256 && !url.contains([';', ',', '\'', '"', '\\']) && url.is_ascii()
}

/// The QUIC multiaddr of a UDP address.
fn quic_multiaddr(a: SocketAddr) -> Multiaddr {
    Multiaddr::from(a.ip()).with(Protocol::Udp(a.port())).with(Protocol::QuicV1)
}

/// How long a member's resolved name is used before it is resolved again.
const RESOLVED_FOR: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    #[test]
    fn a_members_peer_id_gives_back_its_node_key() {
        let key = confab_keys::NodeKey::from_seed([9; 32]).public();
        let peer = super::peer_of(&key).expect("an ed25519 key");
        assert_eq!(super::key_of(&peer), Some(key));
        assert_eq!(super::key_of(&libp2p::PeerId::random()), None, "a random peer id holds no key");
    }
}

//! The SFU relay role: the part of `confab` that forwards media once a meeting grows past
//! the mesh threshold. It knows nothing of accounts or HTTP; the node hands it admitted
//! participants' SDP offers and passes on what it says back.
//!
//! Shards (one thread each, one per core by default) each own a UDP socket and the
//! `str0m::Rtc` of every participant placed on them; a room lives on one shard. A shard
//! routes each datagram to the `Rtc` that accepts it and forwards media frames from each
//! publisher to the receive slots its room's subscribers offered (`slots.rs`): for video,
//! the simulcast layer that fits the subscriber's tile and bandwidth, spliced into one
//! continuous stream (`layers.rs`), from the last N speakers only (`speakers.rs`). A
//! participant's offer has its own audio and video (send) and a fixed number of
//! receive-only slots per kind, so the relay only ever answers and never renegotiates. A
//! panic inside one participant's `Rtc` drops that participant alone.

pub mod layers;
mod shard;
pub mod slots;
pub mod speakers;
mod tcp;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Sender, channel};

use shard::Shard;

/// Datagrams and bytes through the relay's sockets: what `/metrics` shows.
#[derive(Debug, Default)]
pub struct Counters {
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub packets_forwarded: AtomicU64,
    pub bytes_forwarded: AtomicU64,
    pub frames_forwarded: AtomicU64,
    /// Keyframe requests (PLI/FIR) from subscribers, and those the relay sent publishers.
    pub keyframe_requests_received: AtomicU64,
    pub keyframe_requests_sent: AtomicU64,
    /// Retransmission requests from subscribers, and those the relay sent publishers.
    pub nacks_received: AtomicU64,
    pub nacks_sent: AtomicU64,
    /// Packets the subscribers reported lost (RTCP receiver reports) on what the relay sent.
    pub subscriber_packets_lost: AtomicU64,
    /// Per shard: when its loop last ran, in milliseconds since the relay started.
    pub heartbeats: Vec<AtomicU64>,
    pub started: Option<std::time::Instant>,
}

impl Counters {
    /// Shards whose loop has not run for `limit`: stuck, or dead.
    pub fn stalled_shards(&self, limit: std::time::Duration) -> usize {
        let Some(started) = self.started else { return 0 };
        let now = started.elapsed().as_millis() as u64;
        self.heartbeats.iter().filter(|h| now.saturating_sub(h.load(std::sync::atomic::Ordering::Relaxed)) > limit.as_millis() as u64).count()
    }
}

/// A participant, as the node names them: the room and the seat id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey {
    pub room: String,
    pub participant: u64,
}

/// What the relay tells the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Which source now feeds each of `peer`'s receive slots (mid → participant, kind).
    Slots { peer: PeerKey, slots: Vec<(String, u64, &'static str)> },
    /// The relay lost `peer` (ICE gave up, or its connection failed).
    Gone { peer: PeerKey },
    /// `room`'s dominant speaker is now `participant`.
    Speaker { room: String, participant: u64 },
}

/// How the relay forwards.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Videos forwarded to each subscriber at most: those of the most recent speakers.
    pub last_n: usize,
    /// Shard threads (each with its own UDP socket on consecutive ports from the bound one).
    pub shards: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig { last_n: 9, shards: 1 }
    }
}

enum Command {
    Publish { peer: PeerKey, offer: String, reply: tokio::sync::oneshot::Sender<Result<String, String>> },
    Remove { peer: PeerKey },
    /// The height at which `peer` shows each other participant's video.
    View { peer: PeerKey, tiles: Vec<(u64, u32)> },
}

/// Handle to the relay's shards. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    shards: Vec<Sender<Command>>,
    /// The first shard's advertised address (the others use the following ports).
    pub addr: SocketAddr,
    /// Every shard's advertised address.
    pub addrs: Vec<SocketAddr>,
    pub counters: Arc<Counters>,
}

impl Relay {
    /// Binds `config.shards` UDP sockets, the first on `bind` and the others on the following
    /// ports (or any free port when `bind`'s port is 0), and starts a thread for each.
    /// `advertise` is the IP put in the SDP answers (the bound one if not given).
    pub fn start(
        bind: SocketAddr,
        advertise: Option<std::net::IpAddr>,
        config: RelayConfig,
        notices: tokio::sync::mpsc::UnboundedSender<Notice>,
    ) -> std::io::Result<Relay> {
        static CRYPTO: std::sync::Once = std::sync::Once::new();
        CRYPTO.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
        let shards = config.shards.max(1);
        let counters = Arc::new(Counters { heartbeats: (0..shards).map(|_| AtomicU64::new(0)).collect(), started: Some(std::time::Instant::now()), ..Default::default() });
        let mut senders = Vec::new();
        let mut addrs = Vec::new();
        for n in 0..shards {
            let port = if bind.port() == 0 { 0 } else { bind.port() + n as u16 };
            let socket = UdpSocket::bind(SocketAddr::new(bind.ip(), port))?;
            let local = socket.local_addr()?;
            let advertised = SocketAddr::new(advertise.unwrap_or(local.ip()), local.port());
            // ICE-TCP at the same port number, or any free one (HTTPS may hold that number).
            let listener = std::net::TcpListener::bind(local).or_else(|_| std::net::TcpListener::bind(SocketAddr::new(local.ip(), 0)))?;
            let ice_tcp = listener.local_addr()?.port();
            tcp::serve(listener, local)?;
            addrs.push(advertised);
            let (tx, rx) = channel();
            let shard = Shard::new(n, socket, advertised, ice_tcp, config.clone(), rx, notices.clone(), counters.clone());
            std::thread::Builder::new().name(format!("confab-relay-{n}")).spawn(move || shard.run())?;
            senders.push(tx);
        }
        Ok(Relay { shards: senders, addr: addrs[0], addrs, counters })
    }

    /// Accepts `peer`'s SDP offer; returns the answer.
    pub async fn publish(&self, peer: PeerKey, offer: String) -> Result<String, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.shard(&peer.room).send(Command::Publish { peer, offer, reply }).map_err(|_| "the relay has stopped".to_string())?;
        answer.await.map_err(|_| "the relay has stopped".to_string())?
    }

    pub fn remove(&self, peer: PeerKey) {
        let _ = self.shard(&peer.room).send(Command::Remove { peer });
    }

    /// Tells the relay how tall `peer` shows each participant's video (device pixels).
    pub fn view(&self, peer: PeerKey, tiles: Vec<(u64, u32)>) {
        let _ = self.shard(&peer.room).send(Command::View { peer, tiles });
    }

    /// A room's participants all live on one shard, so forwarding never crosses threads.
    fn shard(&self, room: &str) -> &Sender<Command> {
        let mut h = DefaultHasher::new();
        room.hash(&mut h);
        &self.shards[(h.finish() % self.shards.len() as u64) as usize]
    }
}

//! The SFU relay role: the part of `confab` that forwards media once a meeting grows past
//! the mesh threshold. It knows nothing of accounts or HTTP; the node hands it admitted
//! participants' SDP offers and passes on what it says back.
//!
//! Shards (one thread each, one per core by default) each own a UDP socket and a
//! [`router::Router`]: the `str0m::Rtc` of every participant placed on them, in RTP mode.
//! A participant goes to the least-loaded shard, so one meeting spreads over every core: a
//! publisher's shard hands each packet once to every other shard of the room, and each
//! subscriber's copy is rewritten, encrypted and sent by the subscriber's own shard. The
//! room's decisions (speakers, last-N, slots) are made on its home shard (`plan.rs`).
//!
//! A participant's offer has its own audio and video (send) and a fixed number of
//! receive-only slots per kind, so the relay only ever answers and never renegotiates
//! (`slots.rs`). What feeds a slot is the simulcast layer that fits the subscriber's tile
//! and bandwidth (`layers.rs`), spliced into one continuous stream (`splice.rs`), from the
//! last N speakers only (`speakers.rs`). A panic inside one participant's `Rtc` drops that
//! participant alone.
//!
//! Only `shard/` (and `tcp.rs`, the ICE-TCP bridge) touch sockets; `shard::udp`, its
//! batched `recvmmsg`/`sendmmsg` with kernel arrival times, is public for the load test.

mod h264;
pub mod layers;
pub mod plan;
pub mod router;
pub mod shard;
pub mod slots;
pub mod speakers;
pub mod splice;
mod tcp;
pub mod vp8;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use router::RoomId;
use shard::{Mailbox, Shard, ShardMessage};

/// Why the relay could not take a participant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("the offer is not valid SDP: {0}")]
    BadOffer(String),
    #[error("the offer was refused: {0}")]
    Refused(String),
    #[error("the relay has stopped")]
    Stopped,
}

/// A latency histogram for `/metrics`: counts per upper bound, in milliseconds.
#[derive(Debug)]
pub struct Histogram {
    pub buckets: Vec<(f64, AtomicU64)>,
    pub count: AtomicU64,
    pub sum_us: AtomicU64,
}

impl Histogram {
    /// Bounds in milliseconds, ascending.
    pub fn new(bounds_ms: &[f64]) -> Histogram {
        Histogram { buckets: bounds_ms.iter().map(|b| (*b, AtomicU64::new(0))).collect(), count: AtomicU64::new(0), sum_us: AtomicU64::new(0) }
    }

    pub fn record_us(&self, us: u64) {
        let ms = us as f64 / 1000.0;
        if let Some((_, n)) = self.buckets.iter().find(|(b, _)| ms <= *b) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (Prometheus' `le`), then the total.
    pub fn cumulative(&self) -> (Vec<(f64, u64)>, u64) {
        let mut total = 0;
        let mut out = Vec::new();
        for (bound, n) in &self.buckets {
            total += n.load(Ordering::Relaxed);
            out.push((*bound, total));
        }
        (out, self.count.load(Ordering::Relaxed))
    }

    /// The bound under which a fraction `q` of the recorded values fall (an upper estimate).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let (buckets, count) = self.cumulative();
        if count == 0 {
            return None;
        }
        let want = (count as f64 * q).ceil() as u64;
        Some(buckets.iter().find(|(_, n)| *n >= want).map_or(f64::INFINITY, |(b, _)| *b))
    }
}

const LATENCY_BOUNDS_MS: [f64; 14] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0];

/// What `/metrics` shows of the relay.
#[derive(Debug)]
pub struct Counters {
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub packets_forwarded: AtomicU64,
    pub bytes_forwarded: AtomicU64,
    /// Audio packets and video frames (last packets) forwarded to subscribers.
    pub frames_forwarded: AtomicU64,
    /// Of those, audio packets.
    pub audio_forwarded: AtomicU64,
    /// Keyframe requests (PLI/FIR) from subscribers, and those the relay sent publishers.
    pub keyframe_requests_received: AtomicU64,
    pub keyframe_requests_sent: AtomicU64,
    /// Retransmission requests from subscribers, and those the relay sent publishers.
    pub nacks_received: AtomicU64,
    pub nacks_sent: AtomicU64,
    /// Packets the subscribers reported lost (RTCP receiver reports) on what the relay sent.
    pub subscriber_packets_lost: AtomicU64,
    /// Video packets dropped because a subscriber's send queue had gone stale.
    pub stale_drops: AtomicU64,
    /// From a packet's arrival at the relay to its departure to each subscriber.
    pub hop_latency: Histogram,
    /// Age of the oldest packet in each slot's send queue, sampled at every review.
    pub queue_age: Histogram,
    /// Per shard: when its loop last ran, in milliseconds since the relay started.
    pub heartbeats: Vec<AtomicU64>,
    /// Per shard: participants placed on it.
    pub shard_participants: Vec<AtomicUsize>,
    /// Per shard: its thread's CPU time, in microseconds (from the thread's own clock).
    pub shard_cpu_us: Vec<AtomicU64>,
    pub started: Option<std::time::Instant>,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters::new(0)
    }
}

impl Counters {
    pub fn new(shards: usize) -> Counters {
        Counters {
            packets_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            packets_forwarded: AtomicU64::new(0),
            bytes_forwarded: AtomicU64::new(0),
            frames_forwarded: AtomicU64::new(0),
            audio_forwarded: AtomicU64::new(0),
            keyframe_requests_received: AtomicU64::new(0),
            keyframe_requests_sent: AtomicU64::new(0),
            nacks_received: AtomicU64::new(0),
            nacks_sent: AtomicU64::new(0),
            subscriber_packets_lost: AtomicU64::new(0),
            stale_drops: AtomicU64::new(0),
            hop_latency: Histogram::new(&LATENCY_BOUNDS_MS),
            queue_age: Histogram::new(&LATENCY_BOUNDS_MS),
            heartbeats: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            shard_participants: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
            shard_cpu_us: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            started: Some(std::time::Instant::now()),
        }
    }

    /// Shards whose loop has not run for `limit`: stuck, or dead.
    pub fn stalled_shards(&self, limit: std::time::Duration) -> usize {
        let Some(started) = self.started else { return 0 };
        let now = started.elapsed().as_millis() as u64;
        self.heartbeats.iter().filter(|h| now.saturating_sub(h.load(Ordering::Relaxed)) > limit.as_millis() as u64).count()
    }
}

/// A participant, as the node names them: the room and the seat id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey {
    pub room: String,
    pub participant: u64,
}

/// How tall a subscriber shows one participant's camera, or their screen (device pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub participant: u64,
    pub screen: bool,
    pub height: u32,
}

/// What a host holds back of a participant: their microphone, their camera. Held media is
/// forwarded to nobody until they turn it on again themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub audio: bool,
    pub video: bool,
}

/// What the relay tells the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Which source now feeds each of `peer`'s receive slots (mid → participant, kind:
    /// `audio`, `video`, `screen` or `screen-audio`).
    Slots { peer: PeerKey, slots: Vec<(String, u64, &'static str)> },
    /// The relay lost `peer` (ICE gave up, or its connection failed).
    Gone { peer: PeerKey },
    /// `room`'s dominant speaker is now `participant`.
    Speaker { room: String, participant: u64 },
    /// `peer` should send only these simulcast layers (rids) of its track `mid`: nobody
    /// receives the others.
    Layers { peer: PeerKey, mid: String, active: Vec<String> },
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

/// Where each room lives: its id, its home shard, and where each participant is.
#[derive(Debug, Default)]
struct Directory {
    next_room: u64,
    rooms: HashMap<String, (RoomId, usize, usize)>,
    placed: HashMap<PeerKey, usize>,
}

/// Handle to the relay's shards. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    mailboxes: Arc<Vec<Mailbox>>,
    directory: Arc<Mutex<Directory>>,
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
        let counters = Arc::new(Counters::new(shards));
        let mut sockets = Vec::new();
        let mut addrs = Vec::new();
        let mut ice_tcp = Vec::new();
        for n in 0..shards {
            let port = if bind.port() == 0 { 0 } else { bind.port() + n as u16 };
            let socket = UdpSocket::bind(SocketAddr::new(bind.ip(), port))?;
            let local = socket.local_addr()?;
            let advertised = SocketAddr::new(advertise.unwrap_or(local.ip()), local.port());
            // ICE-TCP at the same port number, or any free one (HTTPS may hold that number).
            let listener = std::net::TcpListener::bind(local).or_else(|_| std::net::TcpListener::bind(SocketAddr::new(local.ip(), 0)))?;
            ice_tcp.push(SocketAddr::new(advertised.ip(), listener.local_addr()?.port()));
            tcp::serve(listener, local)?;
            addrs.push(advertised);
            sockets.push(socket);
        }
        let mailboxes: Arc<Vec<Mailbox>> = Arc::new((0..shards).map(|_| Mailbox::new()).collect::<std::io::Result<_>>()?);
        for (n, socket) in sockets.into_iter().enumerate() {
            let shard = Shard::new(n, socket, addrs[n], ice_tcp[n], config.clone(), mailboxes.clone(), notices.clone(), counters.clone())?;
            std::thread::Builder::new().name(format!("confab-relay-{n}")).spawn(move || shard.run())?;
        }
        Ok(Relay { mailboxes, directory: Arc::default(), addr: addrs[0], addrs, counters })
    }

    /// Accepts `peer`'s SDP offer; returns the answer. A participant goes to the shard with
    /// the fewest participants (and stays there if they publish again).
    pub async fn publish(&self, peer: PeerKey, offer: String) -> Result<String, RelayError> {
        let (room, home, shard) = {
            let mut directory = self.directory.lock().unwrap_or_else(|e| e.into_inner());
            let shard = match directory.placed.get(&peer) {
                Some(shard) => *shard,
                None => (0..self.mailboxes.len()).min_by_key(|s| (self.counters.shard_participants[*s].load(Ordering::Relaxed), *s)).unwrap_or(0),
            };
            let next = directory.next_room;
            let entry = directory.rooms.entry(peer.room.clone()).or_insert((RoomId(next), shard, 0));
            let (room, home) = (entry.0, entry.1);
            if !directory.placed.contains_key(&peer) {
                if let Some(entry) = directory.rooms.get_mut(&peer.room) {
                    entry.2 += 1;
                }
                directory.placed.insert(peer.clone(), shard);
            }
            if room.0 == next {
                directory.next_room += 1;
            }
            (room, home, shard)
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.mailboxes[shard].post(ShardMessage::Publish { peer, room, home, offer, reply }).map_err(|_| RelayError::Stopped)?;
        answer.await.map_err(|_| RelayError::Stopped)?
    }

    pub fn remove(&self, peer: PeerKey) {
        let placed = {
            let mut directory = self.directory.lock().unwrap_or_else(|e| e.into_inner());
            let Some(shard) = directory.placed.remove(&peer) else { return };
            let Some(entry) = directory.rooms.get_mut(&peer.room) else { return };
            let room = entry.0;
            entry.2 -= 1;
            if entry.2 == 0 {
                directory.rooms.remove(&peer.room);
            }
            (shard, room)
        };
        let _ = self.mailboxes[placed.0].post(ShardMessage::Remove { peer, room: placed.1 });
    }

    /// Tells the relay how tall `peer` shows each participant's video (device pixels).
    pub fn view(&self, peer: PeerKey, tiles: Vec<Tile>) {
        self.post_to(peer, |peer, room| ShardMessage::View { peer, room, tiles });
    }

    /// Tells the relay whether `peer` shares their screen now (their offer's second send
    /// m-lines carry it): a share goes to everyone, ahead of the last-N cameras.
    pub fn share(&self, peer: PeerKey, on: bool) {
        self.post_to(peer, |peer, room| ShardMessage::Share { peer, room, on });
    }

    /// Tells the relay what a host holds back of `peer` (muted microphone, stopped
    /// camera): held media goes to nobody until they turn it on again themselves.
    pub fn hold(&self, peer: PeerKey, held: Held) {
        self.post_to(peer, |peer, room| ShardMessage::Hold { peer, room, held });
    }

    /// Posts a message about `peer` to its shard, if the relay has them.
    fn post_to(&self, peer: PeerKey, message: impl FnOnce(PeerKey, RoomId) -> ShardMessage) {
        let placed = {
            let directory = self.directory.lock().unwrap_or_else(|e| e.into_inner());
            let Some(shard) = directory.placed.get(&peer).copied() else { return };
            let Some(room) = directory.rooms.get(&peer.room).map(|r| r.0) else { return };
            (shard, room)
        };
        let _ = self.mailboxes[placed.0].post(message(peer, placed.1));
    }
}

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

mod congestion;
mod gaps;
mod h264;
pub mod handoff;
pub mod layers;
pub mod plan;
mod red;
pub mod remote;
mod repeat;
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

use handoff::RoomId;
pub use remote::Frame;
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

/// A relay shard whose loop has not run for this long is stuck (it wakes at least every
/// 200 ms): `/healthz` fails and `/metrics` counts it.
pub const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// Audio packets sent again beside the next for subscribers whose link loses.
    pub audio_repeated: AtomicU64,
    /// Silent audio packets kept back from quiet subscribers (their downlink is thin).
    pub audio_kept_back: AtomicU64,
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
    /// Packets from other nodes the cascade lost on the way, as asked for again here (a
    /// packet asked for twice counts twice), and packets sent again to other nodes that
    /// asked.
    pub cascade_lost: AtomicU64,
    pub cascade_resent: AtomicU64,
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
            audio_repeated: AtomicU64::new(0),
            audio_kept_back: AtomicU64::new(0),
            cascade_lost: AtomicU64::new(0),
            cascade_resent: AtomicU64::new(0),
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

    /// Shards whose loop has not run for `limit` (in the node: [`STALL_LIMIT`]): stuck, or
    /// dead.
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
    /// Which of `peer`'s video slots forward nothing although they have a source, and why
    /// (`bandwidth`: their downlink does not fit even the smallest layer; `hidden`: they
    /// show no video for it). Sent whenever that set changes; empty when none is paused.
    Paused { peer: PeerKey, slots: Vec<(String, &'static str)> },
}

/// How the relay forwards.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Videos forwarded to each subscriber at most: those of the most recent speakers.
    pub last_n: usize,
    /// Shard threads (each with its own UDP socket on consecutive ports from the bound one).
    pub shards: usize,
    /// This node, in a cluster (0 on its own).
    pub node: NodeId,
    /// Where frames for other nodes go (in a cluster).
    pub cascade: Option<Cascade>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig { last_n: 9, shards: 1, node: NodeId::default(), cascade: None }
    }
}

/// A node of the cluster, as the relay names it: the first eight bytes of its node key (0
/// on a node on its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct NodeId(pub u64);

impl NodeId {
    pub fn of_key(key: &[u8; 32]) -> NodeId {
        NodeId(u64::from_be_bytes(key[..8].try_into().expect("eight bytes")))
    }
}

/// A shard anywhere in the cluster: its node, and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ShardId {
    pub node: NodeId,
    pub index: usize,
}

/// Where frames for another node go: the cluster's cascade (`remote.rs` says what they hold).
#[derive(Clone)]
pub struct Cascade(pub Arc<dyn Fn(NodeId, Frame) + Send + Sync>);

impl std::fmt::Debug for Cascade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cascade")
    }
}

/// One room as this node's relay knows it.
#[derive(Debug)]
struct RoomEntry {
    id: RoomId,
    /// The shard whose planner decides for the room: here, or on the meeting's home node.
    home: ShardId,
    /// Participants whose media ends here, and their shards.
    local: HashMap<u64, usize>,
    /// On the home node: participants whose media ends on another node.
    remote: std::collections::HashSet<u64>,
}

/// Where each room lives: its id here, its home shard, where each participant is. Sans-IO:
/// it also decides which shards a frame from another node goes to.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub(crate) node: NodeId,
    pub(crate) next_room: u64,
    rooms: HashMap<String, RoomEntry>,
}

impl Directory {
    fn entry(&mut self, room: &str, home: ShardId) -> &mut RoomEntry {
        let next = &mut self.next_room;
        self.rooms.entry(room.to_string()).or_insert_with(|| {
            *next += 1;
            RoomEntry { id: RoomId(*next - 1), home, local: HashMap::new(), remote: Default::default() }
        })
    }

    /// Places `peer` (on the shard it has, or on `least_loaded`) in a room whose home is
    /// `home_node`; returns the room's id, its home shard and the peer's shard.
    pub(crate) fn place(&mut self, peer: &PeerKey, least_loaded: usize, home_node: NodeId) -> (RoomId, ShardId, usize) {
        let node = self.node;
        // Here, the planner's shard; elsewhere, that node picks its own (index unused).
        let home_at = |index| ShardId { node: home_node, index: if home_node == node { index } else { 0 } };
        let entry = self.entry(&peer.room, home_at(least_loaded));
        let shard = entry.local.get(&peer.participant).copied().unwrap_or(least_loaded);
        entry.local.insert(peer.participant, shard);
        if entry.home.node != home_node {
            // The meeting moved (its home node died, or came back).
            entry.home = home_at(shard);
        }
        (entry.id, entry.home, shard)
    }

    pub(crate) fn find(&self, peer: &PeerKey) -> Option<(usize, RoomId)> {
        let entry = self.rooms.get(&peer.room)?;
        Some((*entry.local.get(&peer.participant)?, entry.id))
    }

    pub(crate) fn remove(&mut self, peer: &PeerKey) -> Option<(usize, RoomId)> {
        let entry = self.rooms.get_mut(&peer.room)?;
        let shard = entry.local.remove(&peer.participant)?;
        let id = entry.id;
        self.forget_if_empty(&peer.room);
        Some((shard, id))
    }

    fn forget_if_empty(&mut self, room: &str) {
        if self.rooms.get(room).is_some_and(|e| e.local.is_empty() && e.remote.is_empty()) {
            self.rooms.remove(room);
        }
    }

    /// `peer`, whose media ended at another node, left a meeting homed here: where its
    /// planner is, if it knew them.
    pub(crate) fn left_elsewhere(&mut self, peer: &PeerKey) -> Option<(usize, RoomId)> {
        let node = self.node;
        let entry = self.rooms.get_mut(&peer.room)?;
        if !entry.remote.remove(&peer.participant) || entry.home.node != node {
            return None;
        }
        let found = (entry.home.index, entry.id);
        self.forget_if_empty(&peer.room);
        Some(found)
    }

    /// Each local shard with participants in `room`, once.
    fn shards_of(entry: &RoomEntry) -> Vec<usize> {
        let mut shards: Vec<usize> = entry.local.values().copied().collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }

    /// Where a control message from another node goes here, and what it says.
    pub(crate) fn control(&mut self, control: remote::Control, least_loaded: usize, now: std::time::Instant) -> Vec<(usize, handoff::Handoff)> {
        let node = self.node;
        let room = control.room().to_string();
        let targets = if control.to_home() {
            // Whoever sends it counts this node as the meeting's home (the placement says so).
            let entry = self.entry(&room, ShardId { node, index: least_loaded });
            if entry.home.node != node {
                entry.home = ShardId { node, index: entry.local.values().next().copied().unwrap_or(least_loaded) };
            }
            match &control {
                remote::Control::Joined { participant, .. } => {
                    entry.remote.insert(*participant);
                }
                remote::Control::Left { participant, .. } => {
                    entry.remote.remove(participant);
                }
                _ => {}
            }
            vec![entry.home.index]
        } else {
            let Some(entry) = self.rooms.get(&room) else { return Vec::new() };
            match &control {
                remote::Control::KeyframeRequest { publisher, .. } | remote::Control::Loss { publisher, .. } | remote::Control::Resend { publisher, .. } => {
                    entry.local.get(publisher).copied().into_iter().collect()
                }
                _ => Self::shards_of(entry),
            }
        };
        let Some(id) = self.rooms.get(&room).map(|e| e.id) else { return Vec::new() };
        let handoff = remote::handoff(control, id, now);
        let out = targets.into_iter().map(|t| (t, handoff.clone())).collect();
        self.forget_if_empty(&room);
        out
    }

    /// Where a media packet from another node goes here: every shard with participants in
    /// its room (each serves its own subscribers).
    pub(crate) fn media(&self, bytes: &[u8], now: std::time::Instant) -> Option<(Vec<usize>, Arc<handoff::MediaPacket>)> {
        let entry = self.rooms.get(remote::media_room(bytes)?)?;
        let packet = remote::decode_media(bytes, entry.id, now)?;
        Some((Self::shards_of(entry), Arc::new(packet)))
    }
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
        let directory = Directory { node: config.node, ..Directory::default() };
        Ok(Relay { mailboxes, directory: Arc::new(Mutex::new(directory)), addr: addrs[0], addrs, counters })
    }

    fn least_loaded(&self) -> usize {
        (0..self.mailboxes.len()).min_by_key(|s| (self.counters.shard_participants[*s].load(Ordering::Relaxed), *s)).unwrap_or(0)
    }

    fn directory(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.directory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Accepts `peer`'s SDP offer; returns the answer. A participant goes to the shard with
    /// the fewest participants (and stays there if they publish again).
    pub async fn publish(&self, peer: PeerKey, offer: String) -> Result<String, RelayError> {
        let own = self.directory().node;
        self.publish_homed(peer, offer, own).await
    }

    /// The same, in a meeting whose home (whose planner decides for the room) is the node
    /// `home`: this node is the participant's edge, and exchanges the room's media with the
    /// others over the cascade.
    pub async fn publish_homed(&self, peer: PeerKey, offer: String, home: NodeId) -> Result<String, RelayError> {
        let least_loaded = self.least_loaded();
        let (room, home, shard) = self.directory().place(&peer, least_loaded, home);
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.mailboxes[shard].post(ShardMessage::Publish { peer, room, home, offer, reply }).map_err(|_| RelayError::Stopped)?;
        answer.await.map_err(|_| RelayError::Stopped)?
    }

    pub fn remove(&self, peer: PeerKey) {
        let placed = self.directory().remove(&peer);
        if let Some((shard, room)) = placed {
            let _ = self.mailboxes[shard].post(ShardMessage::Remove { peer, room });
        }
    }

    /// `peer`, whose media ended at another node (their edge), has left the meeting homed
    /// here for good: the room's planner forgets them (their edge, if it died, cannot say).
    pub fn left_elsewhere(&self, peer: &PeerKey) {
        let found = self.directory().left_elsewhere(peer);
        if let Some((shard, room)) = found {
            let _ = self.mailboxes[shard].post(ShardMessage::Handoff(handoff::Handoff::Left { room, participant: peer.participant }));
        }
    }

    /// Media packets from another node's relay (`Frame::Media`) that arrived together: each
    /// goes to the shards concerned here, all posted in one go (a shard woken once for them).
    /// Malformed packets, and packets for rooms this node has no part in, are dropped.
    pub fn deliver_media(&self, packets: Vec<Vec<u8>>) {
        let now = std::time::Instant::now();
        let routed: Vec<(Vec<usize>, Arc<handoff::MediaPacket>)> = {
            let directory = self.directory();
            packets.iter().filter_map(|bytes| directory.media(bytes, now)).collect()
        };
        for (shards, packet) in routed {
            for shard in shards {
                let _ = self.mailboxes[shard].post(ShardMessage::Handoff(handoff::Handoff::Media(packet.clone())));
            }
        }
    }

    /// A control frame from another node's relay (`Frame::Control`), for the shards
    /// concerned here. A malformed frame, or one for a room this node has no part in, is
    /// dropped. (Media frames go through [`Relay::deliver_media`].)
    pub fn deliver_control(&self, bytes: &[u8]) {
        let control = match remote::decode_control(bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "a malformed control frame from another node's relay");
                return;
            }
        };
        let least_loaded = self.least_loaded();
        let targets = self.directory().control(control, least_loaded, std::time::Instant::now());
        for (shard, handoff) in targets {
            let _ = self.mailboxes[shard].post(ShardMessage::Handoff(handoff));
        }
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
        let Some((shard, room)) = self.directory().find(&peer) else { return };
        let _ = self.mailboxes[shard].post(message(peer, room));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(participant: u64) -> PeerKey {
        PeerKey { room: "r".into(), participant }
    }

    /// Joins from another node make this node the room's home; media and plans from other
    /// nodes go to the shards with participants of the room; a participant whose edge died
    /// is forgotten by their planner; malformed frames and unknown rooms route nowhere.
    #[test]
    fn the_directory_routes_what_other_nodes_send() {
        let now = std::time::Instant::now();
        let here = NodeId(1);
        let mut d = Directory { node: here, ..Directory::default() };
        let (room, home, shard) = d.place(&peer(1), 1, NodeId(1));
        assert_eq!((home, shard), (ShardId { node: here, index: 1 }, 1));
        d.place(&peer(2), 0, NodeId(1));
        let left = remote::Control::Left { room: "r".into(), participant: 9 };
        assert_eq!(d.control(left, 0, now).iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1], "to the planner's shard");
        let keyframe = remote::decode_control(
            &remote::encode_control(
                "r",
                &handoff::Handoff::KeyframeRequest { room, feed: splice::Feed { publisher: 2, mid: str0m::media::Mid::from("0"), layer: None } },
                now,
                here,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(d.control(keyframe, 0, now).iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![0], "a keyframe request to the publisher's shard");
        assert!(d.media(b"\x01\x00\x01x", now).is_none(), "a truncated packet");
        assert!(d.media(b"", now).is_none());

        // A remote participant joins; their edge dies; the home forgets them.
        let mut d = Directory { node: here, ..Directory::default() };
        let member = remote::decode_control(
            &remote::encode_control(
                "r",
                &handoff::Handoff::Joined {
                    room,
                    name: "r".into(),
                    participant: 7,
                    member: plan::Member {
                        shard: ShardId { node: NodeId(2), index: 0 },
                        tracks: vec![],
                        rids: vec![],
                        slots: vec![],
                        screen: vec![],
                        sharing: false,
                        held: Held::default(),
                    },
                },
                now,
                here,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(d.control(member, 3, now).len(), 1);
        assert_eq!(d.rooms["r"].home, ShardId { node: here, index: 3 }, "the joiner's node counts this one as home");
        assert!(d.left_elsewhere(&peer(7)).is_some());
        assert!(d.rooms.is_empty(), "nobody left: the room is forgotten");
        assert!(d.left_elsewhere(&peer(7)).is_none());
    }
}

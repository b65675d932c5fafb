//! The SFU's brain on one shard, sans-IO in str0m's shape: datagrams, messages from other
//! shards and the time go in (`handle_*`), transmits, messages, notices and the next
//! timeout come out (`poll_output`). Nothing here touches a socket or reads a clock.
//!
//! The router owns the `str0m::Rtc` (in RTP mode) of every participant placed on its shard.
//! An RTP packet from a publisher is read once (`MediaPacket`, its payload shared), handed
//! to every other shard with participants in the room, and forwarded to the local receive
//! slots the routing table lists for its track: each slot's [`Splicer`] decides whether the
//! packet goes out and renumbers it, and str0m encrypts and paces it per subscriber.
//!
//! A room's decisions (speaker order, last-N, which source feeds which slot) are made by
//! the [`Planner`] on its home shard; every shard of the room follows the [`Plan`] it
//! publishes. Everything the home needs (who joined with which media, speech, layer sizes,
//! what each shard forwards) reaches it as a [`Handoff`], the same way whether the home is
//! this shard or another.

mod peer;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Vp8Descriptor};
use str0m::{Candidate, Event, IceConnectionState, Input, PacerReason, Reason, Rtc};

use crate::gaps::Gaps;
use crate::handoff::{Handoff, MediaPacket, RoomId};
use crate::layers::{RESUME_HEADROOM, Share, SlotDemand, allocate, choose, priority};
use crate::plan::{Demand, Member, Plan, Planner};
use crate::remote::{self, Frame};
use crate::repeat::Repeat;
use crate::slots::Source;
use crate::speakers::SPEECH_LEVEL;
use crate::splice::{Feed, Incoming, Rewritten, Verdict};
use crate::vp8;
use crate::{Counters, Held, NodeId, Notice, PeerKey, RelayError, ShardId, Tile};
use peer::{LayerBook, Pause, Peer, Slot, Track};

/// How often speakers, plans, layers and bandwidth targets are reviewed.
pub const REVIEW_EVERY: Duration = Duration::from_millis(200);
/// Media sections an offer may have: the web client sends four (microphone, camera, screen,
/// screen sound) and receives on two per slot (it has 11: last-N and two shares; last-N may
/// be raised); more is only cost.
pub const MAX_M_LINES: usize = 64;
/// A slot keeps its layer at least this long unless that layer stops.
const LAYER_HOLD: Duration = Duration::from_secs(1);
/// Keyframe requests for one layer, at most one per this.
const KEYFRAME_REQUEST_EVERY: Duration = Duration::from_millis(300);
/// A layer not seen for this long is gone (the publisher's encoder dropped or paused it).
const LAYER_STALE: Duration = Duration::from_secs(1);
/// Video that waited longer than this between reaching our socket and being forwarded (the
/// shard fell behind) is not worth delivering: its slots drop it and restart on a keyframe.
const STALE_INGRESS: Duration = Duration::from_millis(300);
/// How often str0m reports each stream's NACK, PLI and loss figures (for `/metrics`, and
/// the loss a subscriber reports, passed on to its publisher).
const STATS_EVERY: Duration = Duration::from_secs(1);
/// How often our receiver reports go to a publisher for its audio (str0m's default, 5 s,
/// would take that long to tell it what its subscribers lose).
const AUDIO_REPORTS_EVERY: Duration = Duration::from_secs(1);
/// How long the worst audio loss a subscriber reports is passed on to the publisher: the
/// subscribers' receiver reports for audio come about every 5 s (browsers' interval),
/// str0m's figures every [`STATS_EVERY`], and the publisher's encoder smooths what it
/// hears over ~10 s.
const HEARD_LOSS_FOR: Duration = Duration::from_secs(12);
/// The most loss passed on to a publisher, in RTCP's 256ths (a quarter). libwebrtc's Opus
/// encoder knows steps of 1, 5, 10 and 20 % (at 22 % and over, the top one): a subscriber
/// who loses more asks for no more than that. The publisher's bandwidth estimate reads the cumulative
/// count of lost packets, which stays true (docs/decisions.md, "The loss a publisher
/// hears").
const HEARD_LOSS_MAX: u8 = 64;
/// What a node keeps of each feed it sent other nodes, to send again what the cascade lost
/// on the way: half a second (as a subscriber's retransmission history), at most this many
/// packets.
const CROSSED_FOR: Duration = Duration::from_millis(500);
const CROSSED_MAX: usize = 512;
/// How long a subscriber's downlink must stay short of a slot's smallest layer before the
/// slot pauses.
const PAUSE_AFTER: Duration = Duration::from_secs(2);
/// What one forwarded audio stream is reckoned to need before its packets were measured,
/// bit/s of payload (as BWE counts, and the video layers' rates). Once measured, its
/// payloads' size times [`AUDIO_PACKETS_PER_SECOND`]: a RED stream from Chromium costs
/// about twice as much.
const AUDIO_RATE: u64 = 40_000;
/// Opus in 20 ms frames, as every browser sends it.
const AUDIO_PACKETS_PER_SECOND: u64 = 50;
/// A subscriber whose downlink cannot carry everyone's audio beside the smallest video is
/// *quiet*: of a source that does not speak (its packets' voice-activity flag says so), one
/// DTX frame (the Opus TOC alone, which a decoder takes for discontinuous transmission and
/// fills with comfort noise) goes every [`DTX_EVERY`] instead of 50 packets a second, as
/// Opus' own DTX sends. Such a source is reckoned at [`QUIET_AUDIO_RATE`]; one that spoke in
/// the last [`SPOKE_FOR`] at [`AUDIO_RATE`]. Quiet mode ends once the downlink has had room
/// for everything, with a quarter to spare, for [`QUIET_HOLD`].
const DTX_EVERY: Duration = Duration::from_millis(400);
const QUIET_AUDIO_RATE: u64 = 4_000;
const SPOKE_FOR: Duration = Duration::from_secs(1);
const QUIET_HOLD: Duration = Duration::from_secs(5);
/// What BWE starts from for each subscriber.
const INITIAL_ESTIMATE_KBPS: u64 = 1_000;
/// The height assumed for a participant's tile until the subscriber says otherwise.
pub const DEFAULT_TILE_HEIGHT: u32 = 360;
/// The same for a shared screen (shown large by default).
pub const DEFAULT_SCREEN_HEIGHT: u32 = 720;
/// Publishers at the front of the speaking order keep all their layers on, so that the
/// one who just started to talk is already sending full size when the slots move to them.
const KEEP_SPEAKERS_LAYERS: usize = 2;
/// Pacer timeouts str0m asks for a microsecond ahead ("immediate") are fed at once, at
/// most this many per peer per drain.
const IMMEDIATE_TIMEOUTS: usize = 4096;

/// What the router asks its shell to do.
#[derive(Debug)]
pub enum Output {
    Transmit {
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    /// To another shard of this node.
    Handoff {
        shard: usize,
        message: Handoff,
    },
    /// To another node of the cluster, through the cascade.
    Remote {
        node: NodeId,
        frame: Frame,
    },
    Notice(Notice),
    /// Nothing more until this time (or new input).
    Timeout(Instant),
}

/// Where the router's shard listens, and how it forwards.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub shard: ShardId,
    pub last_n: usize,
    /// Our address as datagrams reach it (str0m checks their destination against it).
    pub local: SocketAddr,
    /// The address announced in answers (the host candidate).
    pub advertise: SocketAddr,
    /// The passive ICE-TCP candidate bridged to our socket, if any.
    pub ice_tcp: Option<SocketAddr>,
}

/// A receive slot of a local subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SlotRef {
    peer: usize,
    slot: usize,
}

/// What this shard keeps of a room.
struct Room {
    name: Arc<str>,
    home: ShardId,
    /// On the home shard only.
    planner: Option<Planner>,
    plan: Arc<Plan>,
    /// Local peers in the room.
    local: Vec<usize>,
    /// The other shards of this node with participants in the room.
    remote_shards: Vec<usize>,
    /// The other nodes with participants in the room.
    remote_nodes: Vec<NodeId>,
    /// (publisher, track) → the local slots fed (or about to be fed) by it.
    routes: HashMap<(u64, Mid), Vec<SlotRef>>,
    /// On the home shard: the layers each publisher was last told to send.
    active: HashMap<(u64, Mid), Vec<Option<Rid>>>,
    /// The demand this shard last reported.
    demand: Demand,
    /// Packets of this shard's publishers sent to other nodes, per feed, oldest first (for
    /// [`Handoff::Resend`]).
    crossed: HashMap<Feed, VecDeque<Arc<MediaPacket>>>,
    /// Per feed from another node: what the cascade lost of it ([`crate::gaps`]).
    seen: HashMap<Feed, Gaps>,
}

impl Room {
    fn new(name: Arc<str>, home: ShardId, shard: ShardId, last_n: usize) -> Room {
        Room {
            name,
            home,
            planner: (home == shard).then(|| Planner::new(last_n)),
            plan: Arc::default(),
            local: Vec::new(),
            remote_shards: Vec::new(),
            remote_nodes: Vec::new(),
            routes: HashMap::new(),
            active: HashMap::new(),
            demand: Demand::new(),
            crossed: HashMap::new(),
            seen: HashMap::new(),
        }
    }
}

pub struct Router {
    config: RouterConfig,
    counters: Arc<Counters>,
    now: Instant,
    peers: Vec<Option<Peer>>,
    free: Vec<usize>,
    by_source: HashMap<SocketAddr, usize>,
    by_key: HashMap<(RoomId, u64), usize>,
    rooms: HashMap<RoomId, Room>,
    outputs: VecDeque<Output>,
    /// Messages to this shard itself, handled before the next output.
    inbox: VecDeque<Handoff>,
    dirty: Vec<usize>,
    next_review: Instant,
    /// Keyframe requests this shard sent for each feed, for throttling.
    asked: HashMap<(RoomId, Feed), Instant>,
    /// Packets received from local publishers, waiting to be forwarded.
    arrived: Vec<Arc<MediaPacket>>,
}

impl Router {
    pub fn new(config: RouterConfig, counters: Arc<Counters>, now: Instant) -> Router {
        Router {
            config,
            counters,
            now,
            peers: Vec::new(),
            free: Vec::new(),
            by_source: HashMap::new(),
            by_key: HashMap::new(),
            rooms: HashMap::new(),
            outputs: VecDeque::new(),
            inbox: VecDeque::new(),
            dirty: Vec::new(),
            next_review: now + REVIEW_EVERY,
            asked: HashMap::new(),
            arrived: Vec::new(),
        }
    }

    /// Participants on this shard.
    pub fn participants(&self) -> usize {
        self.by_key.len()
    }

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    // ---- inputs -------------------------------------------------------------------

    /// Accepts `key`'s SDP offer for `room` (homed on shard `home`, of this node or
    /// another); returns the answer.
    pub fn publish(&mut self, now: Instant, key: PeerKey, room: RoomId, home: ShardId, offer: &str) -> Result<String, RelayError> {
        self.advance(now);
        let m_lines = offer.lines().filter(|l| l.starts_with("m=")).count();
        if m_lines > MAX_M_LINES {
            return Err(RelayError::BadOffer(format!("{m_lines} media sections; the relay takes at most {MAX_M_LINES}")));
        }
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| RelayError::BadOffer(e.to_string()))?;
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            // What the relay can splice (keyframes it can find): Opus, VP8, H.264.
            .clear_codecs()
            // Opus with RED (RFC 2198), which browsers send when it is offered first.
            .enable_opus(true, true)
            .enable_vp8(true)
            .enable_h264(true)
            .enable_bwe(Some(Bitrate::kbps(INITIAL_ESTIMATE_KBPS)))
            .set_stats_interval(Some(STATS_EVERY))
            .set_rtcp_report_interval_audio(AUDIO_REPORTS_EVERY)
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(self.config.advertise, "udp").map_err(|e| RelayError::Refused(e.to_string()))?);
        if let Some(tcp) = self.config.ice_tcp {
            // ICE-TCP, bridged to our UDP socket (tcp.rs): str0m sees its packets as UDP.
            let candidate =
                Candidate::builder().tcp().host(tcp).tcptype(str0m::net::TcpType::Passive).build().map_err(|e| RelayError::Refused(e.to_string()))?;
            rtc.add_local_candidate(candidate);
        }
        let answer = catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(offer)))
            .map_err(|_| RelayError::Refused("the offer could not be handled".into()))?
            .map_err(|e| RelayError::Refused(e.to_string()))?;
        self.remove(now, &key, room);
        let room_state = self.rooms.entry(room).or_insert_with(|| Room::new(key.room.as_str().into(), home, self.config.shard, self.config.last_n));
        if room_state.home != home {
            // The meeting has a new home (its old one died, or came back).
            room_state.home = home;
            room_state.planner = (home == self.config.shard).then(|| Planner::new(self.config.last_n));
        }
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.peers.push(None);
                self.peers.len() - 1
            }
        };
        room_state.local.push(index);
        self.by_key.insert((room, key.participant), index);
        let mut peer = Peer::new(key, room, rtc, self.now);
        peer.learn_codecs();
        self.peers[index] = Some(peer);
        // The media events of the offer come out now: tracks and slots.
        self.drain(index);
        self.announce(index);
        Ok(answer.to_sdp_string())
    }

    /// `key` leaves (the node removed them, or they published again).
    pub fn remove(&mut self, now: Instant, key: &PeerKey, room: RoomId) {
        self.advance(now);
        if let Some(index) = self.by_key.get(&(room, key.participant)).copied() {
            self.drop_peer(index, false);
        }
    }

    /// How tall `key` shows each other participant's video (device pixels).
    pub fn view(&mut self, key: &PeerKey, room: RoomId, tiles: Vec<Tile>) {
        if let Some(peer) = self.by_key.get(&(room, key.participant)).and_then(|i| self.peers[*i].as_mut()) {
            peer.wanted = tiles.into_iter().map(|t| ((t.participant, t.screen), t.height)).collect();
        }
    }

    /// Whether `key` shares their screen now: their screen's tracks go to everyone, ahead
    /// of the cameras, or to nobody.
    pub fn share(&mut self, key: &PeerKey, room: RoomId, on: bool) {
        self.update_member(key, room, |peer| std::mem::replace(&mut peer.sharing, on) != on);
    }

    /// What a host holds back of `key` (microphone, camera): held media goes to nobody.
    pub fn hold(&mut self, key: &PeerKey, room: RoomId, held: Held) {
        self.update_member(key, room, |peer| std::mem::replace(&mut peer.held, held) != held);
    }

    /// Changes what the home knows of `key` (`change` says whether it changed) and tells it.
    fn update_member(&mut self, key: &PeerKey, room: RoomId, change: impl FnOnce(&mut Peer) -> bool) {
        let Some(index) = self.by_key.get(&(room, key.participant)).copied() else { return };
        let Some(peer) = self.peers[index].as_mut() else { return };
        if change(peer) {
            peer.announced = false;
            self.announce(index);
        }
    }

    /// A datagram from `source`, read at `now`, that reached the socket at `arrival`.
    pub fn handle_datagram(&mut self, now: Instant, arrival: Instant, source: SocketAddr, contents: &[u8]) {
        self.advance(now);
        let arrival = arrival.min(self.now);
        self.counters.packets_received.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_received.fetch_add(contents.len() as u64, Ordering::Relaxed);
        let Ok(contents) = contents.try_into() else { return };
        let input = Input::Receive(arrival, Receive { proto: Protocol::Udp, source, destination: self.config.local, contents });
        let index = match self.by_source.get(&source) {
            Some(i) => Some(*i),
            None => {
                let found = self.peers.iter().position(|p| p.as_ref().is_some_and(|p| p.rtc.accepts(&input)));
                if let Some(i) = found {
                    self.by_source.insert(source, i);
                }
                found
            }
        };
        let Some(index) = index else { return };
        let Some(peer) = self.peers[index].as_mut() else { return };
        peer.clock = peer.clock.max(arrival);
        guarded(peer, |p| p.rtc.handle_input(input));
        // In RTP mode str0m holds one received packet at a time: poll before the next input.
        self.drain(index);
        self.forward_arrived();
    }

    /// A message from another shard (or from this one, through the inbox).
    pub fn handle_handoff(&mut self, now: Instant, message: Handoff) {
        self.advance(now);
        match message {
            Handoff::Media(packet) => {
                self.watch_cascade(&packet);
                self.fan_out(&packet);
            }
            Handoff::Joined { room, name, participant, member } => {
                let shard = self.config.shard;
                let last_n = self.config.last_n;
                let state = self.rooms.entry(room).or_insert_with(|| Room::new(name, shard, shard, last_n));
                // Joins come to the home: if this shard did not know it was, it is now.
                state.home = shard;
                state.planner.get_or_insert_with(|| Planner::new(last_n)).join(participant, member);
                self.publish_plan(room);
            }
            Handoff::Left { room, participant } => {
                if let Some(planner) = self.rooms.get_mut(&room).and_then(|r| r.planner.as_mut()) {
                    planner.leave(participant);
                    self.publish_plan(room);
                }
            }
            Handoff::Speech { room, participant, level, at } => {
                if let Some(planner) = self.rooms.get_mut(&room).and_then(|r| r.planner.as_mut()) {
                    planner.speech(participant, level, at);
                }
            }
            Handoff::Layers { room, participant, mid, layers } => {
                let Some(state) = self.rooms.get_mut(&room) else { return };
                let Some(planner) = state.planner.as_mut() else { return };
                // A layer appearing or changing size is worth a plan at once; rates wait.
                let known = state.plan.layers.get(&(participant, mid));
                let reshaped = known.is_none_or(|k| k.len() != layers.len() || k.iter().zip(&layers).any(|(a, b)| a.rid != b.rid || a.height != b.height));
                planner.layers(participant, mid, layers);
                if reshaped {
                    self.publish_plan(room);
                }
            }
            Handoff::Demand { room, shard, demand } => {
                if let Some(planner) = self.rooms.get_mut(&room).and_then(|r| r.planner.as_mut()) {
                    planner.demand(shard, demand);
                }
            }
            Handoff::Plan { room, name, home, plan } => self.apply_plan(room, name, home, plan),
            Handoff::KeyframeRequest { room, feed } => {
                if let Some(index) = self.by_key.get(&(room, feed.publisher)).copied() {
                    self.request_keyframe(index, feed.mid, feed.layer);
                }
            }
            Handoff::Loss { room, feed, fraction } => {
                if let Some(index) = self.by_key.get(&(room, feed.publisher)).copied() {
                    self.hear_loss(index, feed.mid, fraction);
                }
            }
            Handoff::Resend { room, feed, seqs, to } => self.resend(room, feed, &seqs, to),
        }
    }

    /// Time has come to `now`: str0m's timers for the peers due, and the periodic review.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        for index in 0..self.peers.len() {
            let Some(peer) = self.peers[index].as_mut() else { continue };
            if peer.next_timeout <= self.now {
                tick(peer, self.now);
                self.mark_dirty(index);
            }
        }
        if self.now >= self.next_review {
            self.review();
        }
    }

    // ---- outputs ------------------------------------------------------------------

    /// The next thing to do: transmits and messages first, then the time to come back.
    pub fn poll_output(&mut self) -> Output {
        loop {
            if let Some(output) = self.outputs.pop_front() {
                return output;
            }
            if let Some(message) = self.inbox.pop_front() {
                let now = self.now;
                self.handle_handoff(now, message);
                continue;
            }
            if let Some(index) = self.dirty.pop() {
                if let Some(peer) = self.peers[index].as_mut() {
                    peer.dirty = false;
                    // What was written reaches str0m's pacer on its next timeout.
                    if std::mem::take(&mut peer.written) {
                        tick(peer, self.now);
                    }
                }
                self.drain(index);
                self.forward_arrived();
                continue;
            }
            let next = self.peers.iter().flatten().map(|p| p.next_timeout).fold(self.next_review, Instant::min);
            return Output::Timeout(next);
        }
    }

    fn mark_dirty(&mut self, index: usize) {
        if let Some(peer) = self.peers[index].as_mut()
            && !peer.dirty
        {
            peer.dirty = true;
            self.dirty.push(index);
        }
    }

    fn send(&mut self, shard: ShardId, message: Handoff) {
        let own = self.config.shard;
        if shard == own {
            self.inbox.push_back(message);
        } else if shard.node == own.node {
            self.outputs.push_back(Output::Handoff { shard: shard.index, message });
        } else {
            // Rooms cross by name: the other node numbers its own.
            let name = match &message {
                Handoff::Joined { name, .. } | Handoff::Plan { name, .. } => Some(name.clone()),
                other => self.rooms.get(&other.room()).map(|r| r.name.clone()),
            };
            if let Some(bytes) = name.and_then(|name| remote::encode_control(&name, &message, self.now, shard.node)) {
                self.outputs.push_back(Output::Remote { node: shard.node, frame: Frame::Control(bytes) });
            }
        }
    }

    /// Polls one peer until str0m has nothing more before a future time: transmits go out,
    /// events are handled, and pacer timeouts asked for "immediately" are fed at once, so a
    /// burst leaves as far as the pacer's budget allows in one turn.
    fn drain(&mut self, index: usize) {
        let mut fed = 0;
        let mut packets = Vec::new();
        let mut events = Vec::new();
        loop {
            let Some(peer) = self.peers[index].as_mut() else { return };
            if !peer.rtc.is_alive() {
                break;
            }
            let output = match catch_unwind(AssertUnwindSafe(|| peer.rtc.poll_output())) {
                Ok(Ok(output)) => output,
                Ok(Err(e)) => {
                    tracing::warn!(peer = ?peer.key, error = %e, "relay peer failed");
                    peer.rtc.disconnect();
                    break;
                }
                Err(_) => {
                    tracing::error!(peer = ?peer.key, "relay peer panicked; dropping it");
                    peer.rtc.disconnect();
                    break;
                }
            };
            match output {
                str0m::Output::Timeout(t) => {
                    // Due now, or "immediately" (a pacer releasing its next packet a
                    // microsecond on): feed that time, as long as it moves str0m's clock.
                    let pacer = matches!(peer.rtc.last_timeout_reason(), Reason::Pacer(PacerReason::Immediate));
                    if t > peer.clock && (t <= self.now || pacer) && fed < IMMEDIATE_TIMEOUTS {
                        fed += 1;
                        tick(peer, t.max(self.now));
                        continue;
                    }
                    // str0m reports a timer already past as due at its own clock; feeding
                    // that time again changes nothing, so come back a little later.
                    peer.next_timeout = if t <= peer.clock { self.now + Duration::from_millis(1) } else { t };
                    break;
                }
                str0m::Output::Transmit(t) => {
                    self.counters.packets_forwarded.fetch_add(1, Ordering::Relaxed);
                    self.counters.bytes_forwarded.fetch_add(t.contents.len() as u64, Ordering::Relaxed);
                    self.outputs.push_back(Output::Transmit { destination: t.destination, contents: t.contents.into() });
                }
                str0m::Output::Event(Event::RtpPacket(packet)) => packets.push(packet),
                str0m::Output::Event(event) => events.push(event),
            }
        }
        for event in events {
            self.event(index, event);
        }
        if self.peers[index].as_ref().is_some_and(|p| !p.announced) {
            self.announce(index);
        }
        for packet in packets {
            if let Some(packet) = self.ingest(index, packet) {
                self.arrived.push(packet);
            }
        }
        if self.peers[index].as_ref().is_some_and(|p| !p.rtc.is_alive()) {
            self.drop_peer(index, true);
        }
    }

    fn event(&mut self, index: usize, event: Event) {
        let Some(peer) = self.peers[index].as_mut() else { return };
        match event {
            Event::MediaAdded(m) => {
                match m.direction {
                    Direction::RecvOnly | Direction::SendRecv => {
                        let layers =
                            m.simulcast.map(|s| s.recv.iter().map(|l| Some(l.rid)).collect::<Vec<_>>()).filter(|l| !l.is_empty()).unwrap_or_else(|| vec![None]);
                        let books = layers.into_iter().map(LayerBook::new).collect();
                        let screen = peer.tracks.iter().any(|t| t.kind == m.kind);
                        peer.tracks.push(Track { mid: m.mid, kind: m.kind, layers: books, screen });
                    }
                    _ => peer.slots.push(Slot::new(m.mid, m.kind, self.now)),
                }
                peer.find_streams();
                // The home hears of the new media once this drain is over.
                peer.announced = false;
            }
            Event::Connected => {
                peer.learn_codecs();
                peer.find_streams();
            }
            Event::KeyframeRequest(request) => {
                self.counters.keyframe_requests_received.fetch_add(1, Ordering::Relaxed);
                let room = peer.room;
                let feed = peer.slot(request.mid).and_then(|s| peer.slots[s].splicer.current());
                tracing::debug!(subscriber = peer.key.participant, slot = %request.mid, ?feed, "subscriber asks for a keyframe");
                if let Some(feed) = feed {
                    self.ask_keyframe(room, feed);
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => peer.estimate = Some(estimate.as_u64()),
            Event::MediaEgressStats(s) => {
                let lost = s.remote.map_or(0, |r| r.packets_lost);
                let last = peer.reported.insert((s.mid, s.rid, true), (s.nacks, lost)).unwrap_or_default();
                self.counters.nacks_received.fetch_add(s.nacks.saturating_sub(last.0), Ordering::Relaxed);
                self.counters.subscriber_packets_lost.fetch_add(lost.saturating_sub(last.1), Ordering::Relaxed);
                // Audio this subscriber loses is passed on to its publisher (only loss: no
                // report at all is the same as none lost, once `HEARD_LOSS_FOR` is over).
                // str0m gives the report's fraction in 256ths divided by 255.
                let fraction = (s.loss.unwrap_or(0.0).clamp(0.0, 1.0) * 255.0).round() as u8;
                let audio = peer.slot(s.mid).map(|i| &peer.slots[i]).filter(|slot| slot.kind == MediaKind::Audio);
                if let Some(loss) = s.loss {
                    peer.congestion.reported(self.now, loss);
                    // Any stream's loss is the downlink's; repeated audio's is what the copies left.
                    let repeated = peer.copies(self.now) > 0 && audio.is_some_and(|slot| slot.recent[0].is_some());
                    let before = peer.repeat.copies();
                    // Loss under a ceiling is our own overload ([`crate::congestion`]): copies
                    // would only add to it, and they are not counted up for it.
                    if !peer.limited(self.now) {
                        peer.repeat.report(self.now, fraction, repeated);
                    }
                    if peer.repeat.copies() != before {
                        tracing::debug!(subscriber = peer.key.participant, fraction, copies = peer.repeat.copies(), "audio copies for a lossy downlink");
                    }
                }
                if let Some(feed) = audio.and_then(|slot| slot.splicer.current()).filter(|_| fraction > 0) {
                    let room = peer.room;
                    self.pass_loss(room, feed, fraction);
                }
            }
            Event::MediaIngressStats(s) => {
                let last = peer.reported.insert((s.mid, s.rid, false), (s.nacks, 0)).unwrap_or_default();
                self.counters.nacks_sent.fetch_add(s.nacks.saturating_sub(last.0), Ordering::Relaxed);
                if peer.heard_loss.get(&s.mid).is_some_and(|(_, at)| self.now.saturating_duration_since(*at) >= HEARD_LOSS_FOR) {
                    self.hear_loss(index, s.mid, 0);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => peer.rtc.disconnect(),
            _ => {}
        }
    }

    /// Tells the room's home who `index` is and what media they have (again when it grows).
    fn announce(&mut self, index: usize) {
        let Some(peer) = self.peers[index].as_mut() else { return };
        if peer.announced {
            return;
        }
        peer.announced = true;
        let member = Member {
            shard: self.config.shard,
            tracks: peer.tracks.iter().map(|t| (t.mid, t.kind)).collect(),
            rids: peer.tracks.iter().map(|t| (t.mid, t.layers.iter().filter_map(|l| l.rid).collect())).collect(),
            slots: peer.slots.iter().map(|s| (s.mid, s.kind)).collect(),
            screen: peer.tracks.iter().filter(|t| t.screen).map(|t| t.mid).collect(),
            sharing: peer.sharing,
            held: peer.held,
        };
        let (room, participant) = (peer.room, peer.key.participant);
        let Some(state) = self.rooms.get(&room) else { return };
        let message = Handoff::Joined { room, name: state.name.clone(), participant, member };
        let home = state.home;
        self.send(home, message);
    }

    fn drop_peer(&mut self, index: usize, gone: bool) {
        let Some(peer) = self.peers[index].take() else { return };
        self.free.push(index);
        self.by_key.remove(&(peer.room, peer.key.participant));
        self.by_source.retain(|_, i| *i != index);
        self.dirty.retain(|i| *i != index);
        if gone {
            tracing::info!(peer = ?peer.key, "relay peer gone");
            self.outputs.push_back(Output::Notice(Notice::Gone { peer: peer.key.clone() }));
        }
        let Some(state) = self.rooms.get_mut(&peer.room) else { return };
        state.local.retain(|i| *i != index);
        for refs in state.routes.values_mut() {
            refs.retain(|r| r.peer != index);
        }
        // What they sent other nodes is no longer anyone's to ask for.
        state.crossed.retain(|feed, _| feed.publisher != peer.key.participant);
        let home = state.home;
        let empty = state.local.is_empty() && state.planner.as_ref().is_none_or(|p| p.is_empty());
        self.send(home, Handoff::Left { room: peer.room, participant: peer.key.participant });
        if empty && home != self.config.shard {
            self.rooms.remove(&peer.room);
        }
    }

    // ---- the data path ------------------------------------------------------------

    /// Reads one packet from a local publisher: its feed, what it starts, its layer's
    /// figures and its speech level.
    fn ingest(&mut self, index: usize, packet: RtpPacket) -> Option<Arc<MediaPacket>> {
        let now = self.now;
        let peer = self.peers[index].as_mut()?;
        let ssrc = packet.header.ssrc;
        let (track, layer) = match peer.rx.get(&ssrc) {
            Some(known) => *known,
            None => {
                let mut api = peer.rtc.direct_api();
                let stream = api.stream_rx(&ssrc)?;
                let (mid, rid) = (stream.mid(), stream.rid());
                let track = peer.track(mid)?;
                peer.rx.insert(ssrc, (track, rid));
                (track, rid)
            }
        };
        let codec = peer.codec(packet.header.payload_type)?;
        let track_state = &mut peer.tracks[track];
        let kind = track_state.kind;
        let screen = track_state.screen;
        let payload = packet.payload;
        let (vp8, vp8_descriptor) = if codec == Codec::Vp8 { (vp8::inspect(&payload), Vp8Descriptor::parse(&payload).ok()) } else { (None, None) };
        let start = match codec {
            _ if kind == MediaKind::Audio => true,
            Codec::Vp8 => vp8.is_some_and(|v| v.keyframe),
            Codec::H264 => crate::h264::starts_keyframe(&payload),
            _ => false,
        };
        let room = peer.room;
        let participant = peer.key.participant;
        let mid = track_state.mid;
        let mut reshaped = false;
        if kind == MediaKind::Video {
            let book = match track_state.layers.iter_mut().position(|b| b.rid == layer) {
                Some(i) => &mut track_state.layers[i],
                None => {
                    track_state.layers.push(LayerBook::new(layer));
                    track_state.layers.last_mut().expect("just pushed")
                }
            };
            book.bytes += payload.len() as u64;
            if book.last_seen.is_none() {
                reshaped = true;
            }
            book.last_seen = Some(now);
            if let Some((_, height)) = vp8.and_then(|v| v.size)
                && book.height != Some(height)
            {
                book.height = Some(height);
                reshaped = true;
            }
        }
        let ext = &packet.header.ext_vals;
        let (audio_level, voice_activity) = (ext.audio_level, ext.voice_activity);
        if reshaped {
            let layers = track_state.known_layers(now, LAYER_STALE);
            self.tell_home(room, Handoff::Layers { room, participant, mid, layers });
        }
        if kind == MediaKind::Audio
            && !screen
            && let Some(level) = audio_level
            && level >= SPEECH_LEVEL
        {
            self.tell_home(room, Handoff::Speech { room, participant, level, at: now });
        }
        Some(Arc::new(MediaPacket {
            room,
            feed: Feed { publisher: participant, mid, layer },
            kind,
            codec,
            seq: *packet.seq_no,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            start,
            vp8,
            vp8_descriptor,
            audio_level,
            voice_activity,
            arrival: packet.timestamp,
            payload,
        }))
    }

    fn tell_home(&mut self, room: RoomId, message: Handoff) {
        if let Some(home) = self.rooms.get(&room).map(|r| r.home) {
            self.send(home, message);
        }
    }

    /// Hands each packet from a local publisher to the room's other shards here, once to
    /// each other node whose subscribers need it (that feed, that layer), and to the local
    /// subscribers.
    fn forward_arrived(&mut self) {
        while let Some(packet) = self.arrived.pop() {
            let Router { rooms, outputs, now, .. } = self;
            if let Some(state) = rooms.get_mut(&packet.room) {
                for &shard in &state.remote_shards {
                    outputs.push_back(Output::Handoff { shard, message: Handoff::Media(packet.clone()) });
                }
                let mut encoded: Option<Vec<u8>> = None;
                for &node in &state.remote_nodes {
                    if state.plan.wanted_by(node, packet.feed.publisher, packet.feed.mid, packet.feed.layer) {
                        let bytes = encoded.get_or_insert_with(|| remote::encode_media(&state.name, &packet, *now)).clone();
                        outputs.push_back(Output::Remote { node, frame: Frame::Media(bytes) });
                    }
                }
                if encoded.is_some() {
                    // Kept a while, in case the cascade loses it (`Handoff::Resend`).
                    let history = state.crossed.entry(packet.feed).or_default();
                    while history.front().is_some_and(|p| now.saturating_duration_since(p.arrival) > CROSSED_FOR) || history.len() >= CROSSED_MAX {
                        history.pop_front();
                    }
                    history.push_back(packet.clone());
                }
            }
            self.fan_out(&packet);
        }
    }

    /// A packet from another node: if the feed's numbering jumped, the packets between were
    /// lost on the way, and its node is asked for them again. One shard of this node asks
    /// for the room (the lowest-numbered with participants in it): all of them get the same
    /// packets.
    fn watch_cascade(&mut self, packet: &MediaPacket) {
        let (own, now) = (self.config.shard, self.now);
        let Some(state) = self.rooms.get_mut(&packet.room) else { return };
        let Some(publisher) = state.plan.shard_of(packet.feed.publisher) else { return };
        if publisher.node == own.node || state.remote_shards.iter().any(|s| *s < own.index) {
            return;
        }
        let seqs = state.seen.entry(packet.feed).or_default().arrived(packet.seq, now);
        if seqs.is_empty() {
            return;
        }
        self.counters.cascade_lost.fetch_add(seqs.len() as u64, Ordering::Relaxed);
        tracing::debug!(feed = ?packet.feed, ?seqs, "the cascade lost packets: asking for them again");
        let (room, feed) = (packet.room, packet.feed);
        self.send(publisher, Handoff::Resend { room, feed, seqs, to: own.node });
    }

    /// Sends node `to` again the packets of `feed` it missed, those still kept.
    fn resend(&mut self, room: RoomId, feed: Feed, seqs: &[u64], to: NodeId) {
        let Some(state) = self.rooms.get(&room) else { return };
        let Some(history) = state.crossed.get(&feed) else { return };
        for seq in seqs.iter().take(crate::gaps::GAP_MAX as usize) {
            let Some(packet) = history.iter().rev().find(|p| p.seq == *seq) else { continue };
            // Sent as just arrived: a copy that took a round trip is still no stale packet.
            let bytes = remote::encode_media(&state.name, packet, packet.arrival);
            self.outputs.push_back(Output::Remote { node: to, frame: Frame::Media(bytes) });
            self.counters.cascade_resent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forwards `packet` to every local slot its track feeds: renumbered by each slot's
    /// splicer, encrypted and handed out at once. Video that waited in our socket longer
    /// than [`STALE_INGRESS`] is not worth delivering: its slots wait for a keyframe.
    fn fan_out(&mut self, packet: &MediaPacket) {
        let Router { rooms, peers, counters, now, dirty, outputs, .. } = self;
        let Some(state) = rooms.get(&packet.room) else { return };
        let Some(routes) = state.routes.get(&(packet.feed.publisher, packet.feed.mid)) else { return };
        let incoming =
            Incoming { feed: packet.feed, seq: packet.seq, timestamp: packet.timestamp, start: packet.start, arrival: packet.arrival, vp8: packet.vp8 };
        let stale = packet.kind == MediaKind::Video && now.saturating_duration_since(packet.arrival) > STALE_INGRESS;
        // Audio whose voice-activity flag says silence (a shared screen's sound never is).
        let silent =
            packet.kind == MediaKind::Audio && packet.voice_activity == Some(false) && !state.plan.screens.contains(&(packet.feed.publisher, packet.feed.mid));
        let payloads = Payloads::new(packet);
        let mut keyframes: Vec<Feed> = Vec::new();
        for route in routes {
            let Some(sub) = peers[route.peer].as_mut() else { continue };
            let Some(slot) = sub.slots.get_mut(route.slot) else { continue };
            if stale {
                if slot.splicer.current() == Some(packet.feed) && slot.splicer.waiting().is_none() {
                    tracing::debug!(subscriber = sub.key.participant, slot = %slot.mid, "stale video: waiting for a keyframe");
                    counters.stale_drops.fetch_add(1, Ordering::Relaxed);
                    slot.splicer.resync();
                    if !keyframes.contains(&packet.feed) {
                        keyframes.push(packet.feed);
                    }
                }
                continue;
            }
            let out = match slot.splicer.packet(&incoming) {
                Verdict::Forward(out) => out,
                Verdict::NeedKeyframe(feed) => {
                    if !keyframes.contains(&feed) {
                        keyframes.push(feed);
                    }
                    continue;
                }
                Verdict::Drop => continue,
            };
            if packet.kind == MediaKind::Audio {
                if !silent {
                    slot.spoke_at = Some(*now);
                    slot.dtx_at = None;
                } else if sub.quiet_since.is_some() {
                    // Silence for a quiet subscriber: a DTX frame now and then, nothing between.
                    if slot.dtx_at.is_some_and(|t| now.saturating_duration_since(t) < DTX_EVERY) {
                        slot.splicer.withdraw(&out);
                        counters.audio_kept_back.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    slot.dtx_at = Some(*now);
                    let written = write_dtx(sub, route.slot, &payloads, out, *now);
                    deliver(written, sub, route.peer, packet.arrival, *now, counters, outputs, dirty);
                    continue;
                }
            }
            if packet.marker || packet.kind == MediaKind::Audio {
                counters.frames_forwarded.fetch_add(1, Ordering::Relaxed);
            }
            if packet.kind == MediaKind::Audio {
                counters.audio_forwarded.fetch_add(1, Ordering::Relaxed);
            }
            for copy in 0..sub.copies(*now) {
                let written = repeat(sub, route.slot, copy, *now);
                if !matches!(written, Written::Unsendable) {
                    counters.audio_repeated.fetch_add(1, Ordering::Relaxed);
                }
                deliver(written, sub, route.peer, packet.arrival, *now, counters, outputs, dirty);
            }
            let written = write(sub, route.slot, &payloads, out, *now);
            deliver(written, sub, route.peer, packet.arrival, *now, counters, outputs, dirty);
        }
        for feed in keyframes {
            self.ask_keyframe(packet.room, feed);
        }
    }

    /// Asks `feed`'s publisher for a keyframe, through its shard, at most once per
    /// [`KEYFRAME_REQUEST_EVERY`] from this shard.
    fn ask_keyframe(&mut self, room: RoomId, feed: Feed) {
        let now = self.now;
        if self.asked.get(&(room, feed)).is_some_and(|t| now.saturating_duration_since(*t) < KEYFRAME_REQUEST_EVERY) {
            return;
        }
        self.asked.insert((room, feed), now);
        if self.asked.len() > 4096 {
            self.asked.retain(|_, t| now.saturating_duration_since(*t) < KEYFRAME_REQUEST_EVERY);
        }
        match self.publisher(room, feed.publisher) {
            Some(Ok(index)) => self.request_keyframe(index, feed.mid, feed.layer),
            Some(Err(shard)) => self.send(shard, Handoff::KeyframeRequest { room, feed }),
            None => {}
        }
    }

    /// Where `publisher` is: a peer of this shard (its index), or on another shard.
    fn publisher(&self, room: RoomId, publisher: u64) -> Option<Result<usize, ShardId>> {
        match self.by_key.get(&(room, publisher)) {
            Some(index) => Some(Ok(*index)),
            None => self.rooms.get(&room).and_then(|r| r.plan.shard_of(publisher)).map(Err),
        }
    }

    /// A subscriber lost `fraction` (in 256ths) of `feed`, an audio track: its publisher hears.
    fn pass_loss(&mut self, room: RoomId, feed: Feed, fraction: u8) {
        match self.publisher(room, feed.publisher) {
            Some(Ok(index)) => self.hear_loss(index, feed.mid, fraction),
            Some(Err(shard)) => self.send(shard, Handoff::Loss { room, feed, fraction }),
            None => {}
        }
    }

    /// The publisher at `index` hears that a subscriber lost `fraction` of `mid`: our
    /// receiver reports for it carry the worst fraction heard in the last
    /// [`HEARD_LOSS_FOR`] (at most [`HEARD_LOSS_MAX`]), so that its Opus encoder adds in-band
    /// FEC for them; 0 when nothing was heard for that long. The publisher's own leg is
    /// reported as it is when it loses more.
    fn hear_loss(&mut self, index: usize, mid: Mid, fraction: u8) {
        let now = self.now;
        let Some(peer) = self.peers[index].as_mut() else { return };
        // A worse loss heard lately stands.
        if peer.heard_loss.get(&mid).is_some_and(|(worst, at)| fraction < *worst && now.saturating_duration_since(*at) < HEARD_LOSS_FOR) {
            return;
        }
        if fraction == 0 {
            peer.heard_loss.remove(&mid);
        } else {
            peer.heard_loss.insert(mid, (fraction, now));
        }
        if let Some(stream) = peer.rtc.direct_api().stream_rx_by_mid(mid, None) {
            stream.set_reported_loss_floor(fraction.min(HEARD_LOSS_MAX));
        }
    }

    /// Sends a PLI to the local publisher at `index` for `layer` of `mid`, throttled.
    fn request_keyframe(&mut self, index: usize, mid: Mid, layer: Option<Rid>) {
        let now = self.now;
        let Some(peer) = self.peers[index].as_mut() else { return };
        if peer.keyframe_requested.get(&(mid, layer)).is_some_and(|t| now.saturating_duration_since(*t) < KEYFRAME_REQUEST_EVERY) {
            return;
        }
        let mut api = peer.rtc.direct_api();
        let Some(stream) = api.stream_rx_by_mid(mid, layer) else { return };
        tracing::debug!(publisher = peer.key.participant, %mid, ?layer, "keyframe requested");
        stream.request_keyframe(KeyframeRequestKind::Pli);
        peer.keyframe_requested.insert((mid, layer), now);
        self.counters.keyframe_requests_sent.fetch_add(1, Ordering::Relaxed);
        self.mark_dirty(index);
    }

    // ---- plans and reviews --------------------------------------------------------

    /// On the home shard: recomputes `room`'s plan and sends it to every shard of the room.
    fn publish_plan(&mut self, room: RoomId) {
        let shard = self.config.shard;
        let Some(state) = self.rooms.get_mut(&room) else { return };
        let Some(planner) = state.planner.as_mut() else { return };
        let plan = Arc::new(planner.plan());
        let name = state.name.clone();
        // Every shard of this node in the room, and one of each other node's (the node hands
        // it to its own).
        let mut shards: Vec<ShardId> = vec![shard];
        for to in plan.shards() {
            if !shards.iter().any(|s| *s == to || (s.node == to.node && to.node != shard.node)) {
                shards.push(to);
            }
        }
        for to in shards {
            self.send(to, Handoff::Plan { room, name: name.clone(), home: shard, plan: plan.clone() });
        }
    }

    /// Follows a plan from the room's home: slot sources, routes, the other shards.
    fn apply_plan(&mut self, room: RoomId, name: Arc<str>, home: ShardId, plan: Arc<Plan>) {
        let shard = self.config.shard;
        let last_n = self.config.last_n;
        let now = self.now;
        let state = self.rooms.entry(room).or_insert_with(|| Room::new(name, home, shard, last_n));
        state.plan = plan.clone();
        if state.home != home {
            state.home = home;
            if home != shard {
                state.planner = None;
            }
        }
        let shards = plan.shards();
        state.remote_shards = shards.iter().filter(|s| s.node == shard.node && **s != shard).map(|s| s.index).collect();
        state.remote_nodes.clear();
        for s in shards {
            if s.node != shard.node && !state.remote_nodes.contains(&s.node) {
                state.remote_nodes.push(s.node);
            }
        }
        let mut notices = Vec::new();
        for &index in &state.local {
            let Some(peer) = self.peers[index].as_mut() else { continue };
            let assigned = plan.assignments.get(&peer.key.participant);
            let mut changed = false;
            for slot in &mut peer.slots {
                let source = assigned.and_then(|a| a.iter().find(|(m, _, _)| *m == slot.mid)).map(|(_, _, s)| *s);
                if source != slot.source {
                    changed = true;
                    slot.source = source;
                }
                let Some(source) = source else {
                    slot.splicer.clear();
                    continue;
                };
                // A new source, or a layer the plan does not (yet) know: choose now.
                let layers = plan.layers.get(&(source.participant, source.mid));
                let targeted = slot.splicer.targeted().filter(|f| f.publisher == source.participant && f.mid == source.mid);
                let settled = targeted.is_some_and(|f| slot.kind == MediaKind::Audio || layers.is_some_and(|l| l.iter().any(|l| l.rid == f.layer)));
                // A paused slot stays paused until the next review decides for its new source.
                if !settled && slot.paused.is_none() {
                    let wanted = peer.wanted.get(&(source.participant, plan.screens.contains(&(source.participant, source.mid)))).copied();
                    let layer = if slot.kind == MediaKind::Audio { None } else { pick_layer(&plan, source, wanted, slot.share.budget()) };
                    let feed = Feed { publisher: source.participant, mid: source.mid, layer };
                    if targeted != Some(feed) {
                        slot.splicer.target(feed);
                        slot.layer_since = now;
                        slot.chosen_for = wanted;
                    }
                }
            }
            if changed {
                let slots = peer
                    .slots
                    .iter()
                    .filter_map(|s| {
                        let source = s.source?;
                        Some((s.mid.to_string(), source.participant, kind_name(s.kind, plan.screens.contains(&(source.participant, source.mid)))))
                    })
                    .collect();
                tracing::debug!(subscriber = peer.key.participant, ?slots, "slots reassigned");
                notices.push(Notice::Slots { peer: peer.key.clone(), slots });
            }
        }
        self.outputs.extend(notices.into_iter().map(Output::Notice));
        self.rebuild_routes(room);
    }

    fn rebuild_routes(&mut self, room: RoomId) {
        let Some(state) = self.rooms.get_mut(&room) else { return };
        state.routes.clear();
        for &index in &state.local {
            let Some(peer) = self.peers[index].as_ref() else { continue };
            for (s, slot) in peer.slots.iter().enumerate() {
                for feed in [slot.splicer.current(), slot.splicer.targeted()].into_iter().flatten() {
                    let refs = state.routes.entry((feed.publisher, feed.mid)).or_default();
                    let route = SlotRef { peer: index, slot: s };
                    if !refs.contains(&route) {
                        refs.push(route);
                    }
                }
            }
        }
    }

    /// Every [`REVIEW_EVERY`]: layer figures to the homes; on the home, speakers and plans;
    /// for every local subscriber, layer choice and BWE targets; demand to the homes.
    fn review(&mut self) {
        let now = self.now;
        self.next_review = now + REVIEW_EVERY;
        // What local publishers send.
        let mut reports = Vec::new();
        for peer in self.peers.iter_mut().flatten() {
            for track in &mut peer.tracks {
                if track.kind != MediaKind::Video {
                    continue;
                }
                for book in &mut track.layers {
                    book.rotate();
                }
                let layers = track.known_layers(now, LAYER_STALE);
                reports.push((peer.room, Handoff::Layers { room: peer.room, participant: peer.key.participant, mid: track.mid, layers }));
            }
        }
        for (room, message) in reports {
            self.tell_home(room, message);
        }
        // Rooms homed here: the dominant speaker, the plan, and which layers to send.
        let homed: Vec<RoomId> = self.rooms.iter().filter(|(_, r)| r.planner.is_some()).map(|(id, _)| *id).collect();
        for room in homed {
            let state = self.rooms.get_mut(&room).expect("listed above");
            let planner = state.planner.as_mut().expect("homed here");
            if planner.is_empty() && state.local.is_empty() {
                self.rooms.remove(&room);
                continue;
            }
            if let Some(p) = planner.update_dominant(now) {
                self.outputs.push_back(Output::Notice(Notice::Speaker { room: state.name.to_string(), participant: p }));
            }
            self.publish_plan(room);
            self.pause_unwatched(room);
        }
        // Local subscribers: layers and bandwidth.
        let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
        for room in rooms {
            self.choose_layers(room);
            self.rebuild_routes(room);
            self.report_demand(room);
        }
        self.sample_queues();
    }

    /// For each local subscriber in `room`: share its downlink among its video slots, move
    /// each slot to the layer that fits or pause it when none does (or its tile is hidden),
    /// and ask BWE to probe for what the tiles want.
    fn choose_layers(&mut self, room: RoomId) {
        let now = self.now;
        let Some(state) = self.rooms.get(&room) else { return };
        let plan = state.plan.clone();
        let mut notices = Vec::new();
        let mut drained = Vec::new();
        for &index in &state.local {
            let Some(peer) = self.peers[index].as_mut() else { continue };
            let (mut all_audio, mut audio) = audio_need(peer, now);
            let video: Vec<usize> = (0..peer.slots.len()).filter(|i| peer.slots[*i].kind == MediaKind::Video && peer.slots[*i].source.is_some()).collect();
            // Whose audio spoke in the last moment, for the order among tiles alike.
            let spoke: Vec<u64> = peer
                .slots
                .iter()
                .filter(|s| s.kind == MediaKind::Audio && s.spoke_at.is_some_and(|t| now.saturating_duration_since(t) < SPOKE_FOR))
                .filter_map(|s| Some(s.source?.participant))
                .collect();
            let demands: Vec<SlotDemand> = video
                .iter()
                .map(|&i| {
                    let slot = &peer.slots[i];
                    let source = slot.source.expect("filtered");
                    let layers = plan.layers.get(&(source.participant, source.mid)).map(|l| l.to_vec()).unwrap_or_default();
                    let screen = plan.screens.contains(&(source.participant, source.mid));
                    let default = if screen { DEFAULT_SCREEN_HEIGHT } else { DEFAULT_TILE_HEIGHT };
                    let wanted_height = peer.wanted.get(&(source.participant, screen)).copied().unwrap_or(default);
                    let speaking = if plan.dominant == Some(source.participant) {
                        0
                    } else if spoke.contains(&source.participant) {
                        1
                    } else {
                        2
                    };
                    SlotDemand { layers, wanted_height, paused: slot.paused == Some(Pause::Bandwidth), speaking }
                })
                .collect();
            // Hidden tiles take no part; a paused slot asks BWE only for room for its
            // smallest layer.
            let shown: Vec<usize> = (0..video.len()).filter(|&k| demands[k].wanted_height > 0).collect();
            let desired: u64 = shown
                .iter()
                .map(|&k| {
                    let d = &demands[k];
                    let smallest = d.layers.iter().map(|l| l.bitrate).min().unwrap_or(0);
                    if d.paused {
                        smallest * RESUME_HEADROOM.0 / RESUME_HEADROOM.1
                    } else {
                        choose(&d.layers, d.wanted_height, None).map_or(0, |i| d.layers[i].bitrate)
                    }
                })
                .sum::<u64>()
                + audio;
            let mut paused_changed = false;
            // What the last allocation had to share, for the log: (estimate, budget, audio).
            let mut shared = None;
            if let Some(estimate) = peer.estimate {
                let competing: Vec<SlotDemand> = shown.iter().map(|&k| demands[k].clone()).collect();
                // Layers follow the whole estimate; a pause needs the delay-based part to
                // agree (random loss lowers the loss-based part, and video that arrives,
                // however lossy, must not stop for it: the smallest layer plays on).
                // Unless we overload the link ([`crate::congestion`]): then what it carried
                // rules both (the loss-based part fell far below it, reading our overload as
                // the link's loss; the delay-based part did not fall).
                let delay = catch_unwind(AssertUnwindSafe(|| peer.rtc.bwe().delay_estimate())).ok().flatten().map_or(estimate, |d| d.as_u64());
                let queue = catch_unwind(AssertUnwindSafe(|| peer.rtc.bwe().standing_queue())).ok().flatten();
                let acked = catch_unwind(AssertUnwindSafe(|| peer.rtc.bwe().acked_bitrate())).ok().flatten().map(|a| a.as_u64());
                let was = peer.congestion.standing();
                let standing = peer.congestion.review(now, queue, acked);
                if standing && !was {
                    // From now on, no copies and RED's primary alone: the audio costs less.
                    (all_audio, audio) = audio_need(peer, now);
                    tracing::debug!(subscriber = peer.key.participant, ?queue, estimate, delay, carried = ?acked, "congested downlink: a queue stands");
                } else if was && !standing {
                    // The queue drained: what played through it lost packets while it stood,
                    // and a browser takes seconds to ask again for a keyframe that was lost
                    // too. Every slot still playing starts afresh.
                    drained.extend(peer.slots.iter().filter(|s| s.kind == MediaKind::Video && s.paused.is_none()).filter_map(|s| s.splicer.current()));
                }
                let budget = |estimate: u64| (estimate * 85 / 100).saturating_sub(audio);
                if peer.congestion.release(now, delay.max(estimate)) {
                    // What the queue paused is BWE's again: it resumes as the estimate allows,
                    // one slot after another. Only when that would leave the subscriber with no
                    // video at all does the first in line resume at once, if the estimate has
                    // room for it as for a slot playing: BWE, which fell while little went,
                    // might not resume any under jitter (a subscriber 150 ± 50 ms away saw
                    // none again). Resuming them all at once overloaded the link anew (ten
                    // people at 400 kbit/s: everything paused again 1-2 s later, the speaker
                    // frozen for 4.7 s).
                    let first = if shown.iter().any(|&k| peer.slots[video[k]].paused.is_none()) {
                        None
                    } else {
                        let as_playing: Vec<SlotDemand> = competing.iter().map(|d| SlotDemand { paused: false, ..d.clone() }).collect();
                        let fits = allocate(&as_playing, budget(delay.max(estimate)));
                        let first = priority(&competing).into_iter().find(|&k| peer.slots[video[shown[k]]].paused_by_queue);
                        first.filter(|&k| fits[k] != Share::Paused).map(|k| video[shown[k]])
                    };
                    tracing::debug!(subscriber = peer.key.participant, estimate, delay, resumes = ?first.map(|i| peer.slots[i].mid.to_string()), "ceiling forgotten: what the queue paused is BWE's again");
                    for slot in peer.slots.iter_mut() {
                        slot.paused_by_queue = false;
                    }
                    // Copies counted up from the overload's loss would overload it again at
                    // once (ten people at 400 kbit/s: twice the audio, the queue back 2 s
                    // later); a link that loses at random asks for them afresh.
                    peer.repeat = Repeat::default();
                    if let Some(i) = first {
                        peer.slots[i].paused = None;
                        peer.slots[i].short_since = None;
                        paused_changed = true;
                    }
                }
                let (estimate, delay) = match peer.congestion.ceiling(now) {
                    Some(ceiling) => (ceiling.min(delay), ceiling.min(delay)),
                    None => (estimate, delay),
                };
                // Quiet while everyone's audio and the smallest video do not fit.
                let smallest: u64 = competing.iter().map(|d| d.layers.iter().map(|l| l.bitrate).min().unwrap_or(0)).sum();
                let room = delay.max(estimate) * 85 / 100;
                let need = all_audio + smallest;
                if room < need {
                    peer.roomy_since = None;
                    if peer.quiet_since.is_none() {
                        peer.quiet_since = Some(now);
                        tracing::debug!(subscriber = peer.key.participant, room, need, "quiet: silence kept back");
                    }
                } else if peer.quiet_since.is_some() && room >= need * 5 / 4 && !peer.congestion.congested(now) {
                    let since = *peer.roomy_since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= QUIET_HOLD {
                        tracing::debug!(subscriber = peer.key.participant, room, need, "quiet no more");
                        peer.quiet_since = None;
                        peer.roomy_since = None;
                    }
                } else {
                    peer.roomy_since = None;
                }
                shared = Some((estimate, budget(estimate), audio));
                let pausable = allocate(&competing, budget(delay.max(estimate)));
                for ((&k, share), pausable) in shown.iter().zip(allocate(&competing, budget(estimate))).zip(pausable) {
                    let share = if share == Share::Paused && pausable != Share::Paused { Share::Rate(0) } else { share };
                    peer.slots[video[k]].share = share;
                }
            }
            for (&i, demand) in video.iter().zip(&demands) {
                let slot = &mut peer.slots[i];
                let source = slot.source.expect("filtered");
                // A playing slot pauses for bandwidth only once the shortfall has lasted
                // [`PAUSE_AFTER`]: an estimate that dips (random loss lowers it for a moment)
                // must not stop video that arrives.
                let short = slot.share == Share::Paused;
                if !short {
                    slot.short_since = None;
                } else if slot.paused.is_none() && slot.short_since.is_none() {
                    slot.short_since = Some(now);
                }
                // On a congested downlink at once: there the shortfall is no dip, and every
                // moment of it costs everyone's audio.
                let lasting = slot.paused == Some(Pause::Bandwidth)
                    || peer.congestion.standing()
                    || slot.short_since.is_some_and(|t| now.saturating_duration_since(t) >= PAUSE_AFTER);
                let pause = if demand.wanted_height == 0 {
                    Some(Pause::Hidden)
                } else if short && lasting {
                    Some(Pause::Bandwidth)
                } else {
                    None
                };
                if pause != slot.paused {
                    let smallest = demand.layers.iter().map(|l| l.bitrate).min();
                    tracing::debug!(subscriber = peer.key.participant, slot = %slot.mid, from = source.participant, ?pause, ?smallest, ?shared, "slot paused or resumed");
                    slot.paused = pause;
                    slot.paused_by_queue = pause == Some(Pause::Bandwidth) && peer.congestion.standing();
                    paused_changed = true;
                }
                if pause.is_some() {
                    slot.splicer.clear();
                    continue;
                }
                let Some(best) = choose(&demand.layers, demand.wanted_height, slot.share.budget()).map(|b| demand.layers[b].rid) else { continue };
                let targeted = slot.splicer.targeted().map(|f| f.layer);
                if targeted == Some(best) {
                    continue;
                }
                let stale = targeted.is_none_or(|t| !demand.layers.iter().any(|l| l.rid == t));
                // The hold keeps a choice from flapping with the measured rates; a tile that
                // changed size (a new speaker) is a new choice.
                let resized = slot.chosen_for != Some(demand.wanted_height);
                if stale || resized || now.saturating_duration_since(slot.layer_since) >= LAYER_HOLD {
                    tracing::debug!(subscriber = peer.key.participant, slot = %slot.mid, from = source.participant, layer = ?best, "slot retargeted");
                    slot.splicer.target(Feed { publisher: source.participant, mid: source.mid, layer: best });
                    slot.layer_since = now;
                }
                slot.chosen_for = Some(demand.wanted_height);
            }
            // A slot that lost its source is no longer paused, nor on its way to.
            for slot in peer.slots.iter_mut().filter(|s| s.source.is_none()) {
                slot.short_since = None;
                paused_changed |= slot.paused.take().is_some();
            }
            if paused_changed {
                let slots = peer.slots.iter().filter_map(|s| Some((s.mid.to_string(), s.paused?.reason()))).collect();
                notices.push(Notice::Paused { peer: peer.key.clone(), slots });
            }
            if desired > 0 {
                // No padding to sustain while video is paused for bandwidth: the link is
                // full already, and padding would cost the audio. Probes still look for room.
                let starved = peer.slots.iter().any(|s| s.paused == Some(Pause::Bandwidth));
                let minimum = if starved { 0 } else { desired / 2 };
                // Nor probes above the ceiling of a downlink congested lately: they would
                // overflow it again (its ceiling rises by itself; probes resume after).
                let desired = match peer.congestion.ceiling(now) {
                    Some(ceiling) if peer.congestion.congested(now) => desired.min(ceiling),
                    _ => desired,
                };
                let minimum = minimum.min(desired);
                let _ = catch_unwind(AssertUnwindSafe(|| peer.rtc.bwe().set_bitrate(Bitrate::bps(minimum), Bitrate::bps(desired))));
                if !peer.dirty {
                    peer.dirty = true;
                    self.dirty.push(index);
                }
            }
        }
        for feed in drained {
            self.ask_keyframe(room, feed);
        }
        self.outputs.extend(notices.into_iter().map(Output::Notice));
    }

    /// Tells the home which layers this shard's slots forward or wait for, when it changed.
    fn report_demand(&mut self, room: RoomId) {
        let shard = self.config.shard;
        let Some(state) = self.rooms.get_mut(&room) else { return };
        let mut demand = Demand::new();
        for &index in &state.local {
            let Some(peer) = self.peers[index].as_ref() else { continue };
            for slot in &peer.slots {
                for feed in [slot.splicer.current(), slot.splicer.targeted()].into_iter().flatten() {
                    let layers = demand.entry((feed.publisher, feed.mid)).or_default();
                    if !layers.contains(&feed.layer) {
                        layers.push(feed.layer);
                    }
                }
            }
        }
        if demand == state.demand {
            return;
        }
        state.demand = demand.clone();
        let home = state.home;
        self.send(home, Handoff::Demand { room, shard, demand });
    }

    /// On the home shard: tells each publisher which of its layers someone wants, when that
    /// changes (the lowest layer is always wanted, so every tile has something to show).
    fn pause_unwatched(&mut self, room: RoomId) {
        let Some(state) = self.rooms.get_mut(&room) else { return };
        let Some(planner) = state.planner.as_ref() else { return };
        let mut notices = Vec::new();
        for (key, layers) in state.plan.layers.iter() {
            if layers.len() < 2 {
                continue;
            }
            let lowest = layers.iter().min_by_key(|l| (l.height, l.bitrate)).map(|l| l.rid);
            let mut wanted = planner.wanted_layers(key.0, key.1, KEEP_SPEAKERS_LAYERS);
            if let Some(lowest) = lowest
                && !wanted.contains(&lowest)
            {
                wanted.push(lowest);
            }
            let mut active: Vec<Option<Rid>> = wanted.into_iter().filter(|r| r.is_some()).collect();
            active.sort_by_key(|r| r.map(|r| r.to_string()));
            if state.active.get(key) != Some(&active) {
                state.active.insert(*key, active.clone());
                if let Some((participant, _)) = state.plan.members.iter().find(|(p, _)| *p == key.0) {
                    notices.push(Notice::Layers {
                        peer: PeerKey { room: state.name.to_string(), participant: *participant },
                        mid: key.1.to_string(),
                        active: active.iter().flatten().map(|r| r.to_string()).collect(),
                    });
                }
            }
        }
        self.outputs.extend(notices.into_iter().map(Output::Notice));
    }

    /// Records the age of the oldest packet in each local slot's send queue.
    fn sample_queues(&mut self) {
        let now = self.now;
        for peer in self.peers.iter_mut().flatten() {
            let mut api = peer.rtc.direct_api();
            for slot in &peer.slots {
                let Some(ssrc) = slot.ssrc else { continue };
                let Some(info) = api.stream_tx(&ssrc).and_then(|s| s.queue_info()) else { continue };
                let age = info.first_unsent().map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                self.counters.queue_age.record_us(age.as_micros() as u64);
            }
        }
    }
}

/// The layer of `source` a slot starts with: what its tile and allotment call for, or,
/// before any layer has been seen, the first its SDP lists (the smallest, by browsers'
/// convention: a quick keyframe, and the review moves it up from there).
fn pick_layer(plan: &Plan, source: Source, wanted: Option<u32>, allotted: Option<u64>) -> Option<Rid> {
    let layers = plan.layers.get(&(source.participant, source.mid))?;
    if layers.iter().all(|l| l.height == 0 && l.bitrate == 0) {
        return layers.first()?.rid;
    }
    choose(layers, wanted.unwrap_or(DEFAULT_TILE_HEIGHT), allotted).map(|i| layers[i].rid)?
}

/// A slot's kind as `sfu-slots` names it.
fn kind_name(kind: MediaKind, screen: bool) -> &'static str {
    match (kind, screen) {
        (MediaKind::Audio, false) => "audio",
        (MediaKind::Audio, true) => "screen-audio",
        (_, false) => "video",
        (_, true) => "screen",
    }
}

enum Written {
    /// Out at once: the datagram.
    Sent(str0m::net::Transmit),
    /// Queued in str0m (the connection is not up yet): leaves on its next timeout.
    Queued,
    /// No stream or no payload type for it (yet).
    Unsendable,
}

/// What one packet goes out with, per subscriber: its payload as it came, shared by every
/// copy; or, for a RED packet and a subscriber that did not negotiate RED, its primary Opus
/// frame, cut once for all such subscribers.
struct Payloads<'a> {
    packet: &'a MediaPacket,
    primary: std::cell::OnceCell<Option<Arc<[u8]>>>,
}

impl<'a> Payloads<'a> {
    fn new(packet: &'a MediaPacket) -> Payloads<'a> {
        Payloads { packet, primary: std::cell::OnceCell::new() }
    }

    /// The payload type and payload for `sub`, or `None` if it negotiated neither.
    /// A subscriber whose downlink is limited gets RED's primary alone, too: the
    /// redundancy would only add to what it cannot carry.
    fn for_subscriber(&self, sub: &Peer, now: Instant) -> Option<(Pt, Arc<[u8]>)> {
        let packet = self.packet;
        let plain = packet.codec == Codec::Red && sub.limited(now) && sub.pt(Codec::Opus).is_some();
        match sub.pt(packet.codec) {
            Some(pt) if !plain => Some((pt, packet.payload.clone())),
            _ if packet.codec == Codec::Red => {
                let pt = sub.pt(Codec::Opus)?;
                let primary = self.primary.get_or_init(|| crate::red::primary(&packet.payload).map(Arc::from)).clone()?;
                Some((pt, primary))
            }
            _ => None,
        }
    }
}

/// Hands out what [`write`] or [`repeat`] made of one packet for subscriber `sub` (peer
/// `index`): a transmit at once, or a drain to come.
#[allow(clippy::too_many_arguments)]
fn deliver(
    written: Written,
    sub: &mut Peer,
    index: usize,
    arrival: Instant,
    now: Instant,
    counters: &Counters,
    outputs: &mut VecDeque<Output>,
    dirty: &mut Vec<usize>,
) {
    match written {
        Written::Sent(t) => {
            counters.packets_forwarded.fetch_add(1, Ordering::Relaxed);
            counters.bytes_forwarded.fetch_add(t.contents.len() as u64, Ordering::Relaxed);
            counters.hop_latency.record_us(now.saturating_duration_since(arrival).as_micros() as u64);
            outputs.push_back(Output::Transmit { destination: t.destination, contents: t.contents.into() });
        }
        Written::Queued => {
            sub.written = true;
            if !sub.dirty {
                sub.dirty = true;
                dirty.push(index);
            }
        }
        Written::Unsendable => {}
    }
}

/// What subscriber `peer`'s audio costs its downlink (bit/s of payload): all of it, and what
/// it gets now (for a quiet subscriber, a source that does not speak costs its DTX frames
/// only). Audio sent again for a lossy link ([`crate::repeat`]) costs its copies too; under a
/// ceiling ([`crate::congestion`]) there are none, and RED goes as its primary alone.
fn audio_need(peer: &Peer, now: Instant) -> (u64, u64) {
    let copies = peer.copies(now) as u64;
    let limited = peer.limited(now);
    let full = |s: &Slot| {
        let rate = if s.audio_size > 0 { s.audio_size * 8 * AUDIO_PACKETS_PER_SECOND } else { AUDIO_RATE };
        let rate = if limited && s.red { rate / 2 } else { rate };
        if s.recent[0].is_some() { rate * (1 + copies) } else { rate }
    };
    let sounding = peer.slots.iter().filter(|s| s.kind == MediaKind::Audio && s.source.is_some());
    let all_audio = sounding.clone().map(full).sum::<u64>();
    let audio = if peer.quiet_since.is_some() {
        sounding.map(|s| if s.spoke_at.is_some_and(|t| now.saturating_duration_since(t) < SPOKE_FOR) { full(s) } else { QUIET_AUDIO_RATE }).sum::<u64>()
    } else {
        all_audio
    };
    (all_audio, audio)
}

/// Writes, in place of a silent audio packet, a DTX frame: its Opus TOC byte alone (RED's
/// primary's for RED), with frame count code 0, as plain Opus.
fn write_dtx(sub: &mut Peer, slot: usize, payloads: &Payloads, out: Rewritten, now: Instant) -> Written {
    let packet = payloads.packet;
    let Some(ssrc) = sub.slots[slot].ssrc else { return Written::Unsendable };
    let Some(pt) = sub.pt(Codec::Opus) else { return Written::Unsendable };
    let toc = if packet.codec == Codec::Red { crate::red::primary(&packet.payload).and_then(|p| p.first()) } else { packet.payload.first() };
    // Code 0 (one frame), of no bytes: what libopus' own DTX sends (a bare TOC with code 3
    // would be malformed: it needs a frame count).
    let Some(toc) = toc.map(|t| t & !0x03) else { return Written::Unsendable };
    sub.slots[slot].recent = Default::default();
    let ext = ExtensionValues { audio_level: packet.audio_level, voice_activity: packet.voice_activity, ..Default::default() };
    let rtp = RtpWrite::new(pt, SeqNo::from(out.seq), out.timestamp, packet.arrival, Arc::<[u8]>::from(&[toc][..]))
        .marker(out.switched)
        .nackable(false)
        .ext_vals(ext);
    send(sub, ssrc, rtp, now)
}

/// Sends again the `copy`-th latest plain audio packet of subscriber `sub`'s slot, as it was
/// (same sequence number: [`crate::repeat`]), before the next one goes.
fn repeat(sub: &mut Peer, slot: usize, copy: usize, now: Instant) -> Written {
    let Some(ssrc) = sub.slots[slot].ssrc else { return Written::Unsendable };
    let Some(said) = sub.slots[slot].recent.get(copy).cloned().flatten() else { return Written::Unsendable };
    let rtp = RtpWrite::new(said.pt, SeqNo::from(said.seq), said.timestamp, said.arrival, said.payload).marker(said.marker).nackable(false).ext_vals(said.ext);
    send(sub, ssrc, rtp, now)
}

/// Writes one renumbered packet on subscriber `sub`'s slot and, if it can, sends it now.
fn write(sub: &mut Peer, slot: usize, payloads: &Payloads, out: Rewritten, now: Instant) -> Written {
    let packet = payloads.packet;
    let Some(ssrc) = sub.slots[slot].ssrc else { return Written::Unsendable };
    let Some((pt, payload)) = payloads.for_subscriber(sub, now) else { return Written::Unsendable };
    let video = packet.kind == MediaKind::Video;
    let ext = ExtensionValues { audio_level: packet.audio_level, voice_activity: packet.voice_activity, ..Default::default() };
    let marker = packet.marker || (!video && out.switched);
    if !video {
        // Plain Opus is kept to be sent again; RED carries its own redundancy.
        let red = Some(pt) == sub.pt(Codec::Red);
        sub.slots[slot].red = red;
        let size = payload.len() as u64;
        let known = &mut sub.slots[slot].audio_size;
        *known = if *known == 0 { size } else { (*known * 7 + size) / 8 };
        let recent = &mut sub.slots[slot].recent;
        if red {
            *recent = Default::default();
        } else {
            recent.rotate_right(1);
            recent[0] =
                Some(peer::Said { pt, seq: out.seq, timestamp: out.timestamp, marker, ext: ext.clone(), arrival: packet.arrival, payload: payload.clone() });
        }
    }
    if video && out.switched {
        // A new feed starts on a keyframe: nothing before it is worth resending, and a fresh
        // history is sized for the new feed's rate (str0m's never shrinks: a slot that once
        // carried a speaker's 720p would keep that much history for every thumbnail after).
        let mut api = sub.rtc.direct_api();
        let Some(stream) = api.stream_tx(&ssrc) else { return Written::Unsendable };
        peer::reset_history(stream);
    }
    let mut rtp = RtpWrite::new(pt, SeqNo::from(out.seq), out.timestamp, packet.arrival, payload).marker(marker).nackable(video).ext_vals(ext);
    if let (Some(descriptor), Some(vp8)) = (packet.vp8_descriptor, packet.vp8) {
        let renumbered = out.picture_id != vp8.picture_id.map(|p| p.value) || out.tl0_pic_idx != vp8.tl0_pic_idx;
        if renumbered {
            let mut patch = descriptor.patch();
            if let Some(pid) = out.picture_id {
                patch = patch.picture_id(pid);
            }
            if let Some(tl0) = out.tl0_pic_idx {
                patch = patch.tl0_pic_idx(tl0);
            }
            if let Ok(patch) = patch.build() {
                rtp = rtp.vp8_patch(patch);
            }
        }
    }
    send(sub, ssrc, rtp, now)
}

/// Has str0m write `rtp` on stream `ssrc` of `sub` and send it at once if it can.
fn send(sub: &mut Peer, ssrc: str0m::rtp::Ssrc, rtp: RtpWrite, now: Instant) -> Written {
    let sent = catch_unwind(AssertUnwindSafe(|| sub.rtc.send_rtp_now(ssrc, rtp, now)));
    match sent {
        Ok(Some(t)) => Written::Sent(t),
        Ok(None) => Written::Queued,
        Err(_) => {
            tracing::error!(peer = ?sub.key, "relay peer panicked on a write; dropping it");
            sub.rtc.disconnect();
            Written::Unsendable
        }
    }
}

/// Moves `peer`'s clock to `now`, or keeps it where it is if immediate pacer timeouts have
/// already taken it (a few microseconds) further: str0m ignores a timeout in its past, and
/// media just written would then wait for the next one.
fn tick(peer: &mut Peer, now: Instant) {
    let at = now.max(peer.clock);
    peer.clock = at;
    guarded(peer, |p| p.rtc.handle_input(Input::Timeout(at)));
}

/// Runs `f` on `peer`, disconnecting it (alone) if it fails or panics.
fn guarded(peer: &mut Peer, f: impl FnOnce(&mut Peer) -> Result<(), str0m::RtcError>) {
    if !peer.rtc.is_alive() {
        return;
    }
    match catch_unwind(AssertUnwindSafe(|| f(peer))) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(peer = ?peer.key, error = %e, "relay peer input failed");
            peer.rtc.disconnect();
        }
        Err(_) => {
            tracing::error!(peer = ?peer.key, "relay peer panicked on input; dropping it");
            peer.rtc.disconnect();
        }
    }
}

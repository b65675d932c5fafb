//! One relay shard: a thread owning a UDP socket and the `Rtc`s of the rooms placed on it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::SdpOffer;
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use crate::layers::{Layer, SlotDemand, Splicer, Verdict, allocate, choose, vp8_keyframe_size};
use crate::slots::{Assignment, Source, assign};
use crate::speakers::Speakers;
use crate::{Command, Counters, Notice, PeerKey, RelayConfig};

/// The height assumed for a participant's tile until the subscriber says otherwise.
pub const DEFAULT_TILE_HEIGHT: u32 = 360;
/// How often speakers, slots and bandwidth targets are reviewed.
const REVIEW_EVERY: Duration = Duration::from_millis(200);
/// A slot keeps its layer at least this long unless that layer stops.
const LAYER_HOLD: Duration = Duration::from_secs(1);
/// Keyframe requests to one publisher's layer, at most one per this.
const KEYFRAME_REQUEST_EVERY: Duration = Duration::from_millis(300);
/// A layer not seen for this long is gone (the publisher's encoder dropped it).
const LAYER_STALE: Duration = Duration::from_secs(1);
/// Packets each video slot holds: str0m's ring is both the queue between a write and the
/// pacer sending it, and the history for retransmission (NACK) and BWE probing. A browser's
/// 720p keyframe alone can be 100+ packets, queued behind the pacer when the estimate is low;
/// at 100 packets such keyframes overflowed and broke the subscribers' decoders (a PLI loop).
/// str0m's default of 1000 kept up to ~1 MiB per slot.
const SEND_BUFFER_VIDEO: usize = 400;
/// How often str0m reports each stream's NACK, PLI and loss figures (for `/metrics`).
const STATS_EVERY: Duration = Duration::from_secs(5);
/// What one forwarded audio stream is reckoned to need, bit/s.
const AUDIO_RATE: u64 = 40_000;
/// What BWE starts from for each subscriber.
const INITIAL_ESTIMATE_KBPS: u64 = 1_000;

/// One simulcast layer (or the only stream) of a publisher's video, as received.
#[derive(Debug)]
struct LayerBook {
    height: Option<u32>,
    /// (arrival, bytes) of the frames of the last second.
    recent: VecDeque<(Instant, usize)>,
}

impl LayerBook {
    fn bitrate(&self) -> u64 {
        self.recent.iter().map(|(_, n)| *n as u64 * 8).sum()
    }

    fn last_seen(&self) -> Option<Instant> {
        self.recent.back().map(|(t, _)| *t)
    }
}

struct Peer {
    key: PeerKey,
    rtc: Rtc,
    /// What this participant publishes: its send m-lines, by kind.
    inbound: Vec<(Mid, MediaKind)>,
    /// The layers it publishes per video m-line (rid → book).
    published: BTreeMap<Mid, HashMap<Option<Rid>, LayerBook>>,
    /// Its receive slots, by kind, in m-line order.
    slots: BTreeMap<&'static str, Vec<Mid>>,
    assigned: BTreeMap<&'static str, Assignment>,
    splicers: BTreeMap<Mid, (Splicer, Instant)>,
    /// How tall it shows each other participant's video.
    wanted: BTreeMap<u64, u32>,
    /// Its downlink estimate from str0m's BWE (TWCC), bit/s.
    estimate: Option<u64>,
    last_keyframe_request: HashMap<(Mid, Option<Rid>), Instant>,
    /// The cumulative (NACKs, packets lost) str0m last reported per stream (mid, rid,
    /// egress), so that `/metrics` counts only what is new.
    reported: HashMap<(Mid, Option<Rid>, bool), (u64, u64)>,
    /// Each video slot's share of the downlink estimate (`layers::allocate`), bit/s.
    allotted: HashMap<Mid, Option<u64>>,
    /// When str0m next needs the time (its `Output::Timeout`).
    next_timeout: Instant,
    /// It received or was given something since it was last polled.
    dirty: bool,
}

fn kind_name(kind: MediaKind) -> &'static str {
    if kind == MediaKind::Audio { "audio" } else { "video" }
}

pub(crate) struct Shard {
    index: usize,
    socket: UdpSocket,
    local: SocketAddr,
    advertise: SocketAddr,
    /// The TCP port that bridges ICE-TCP to our socket (tcp.rs), announced at our IP.
    ice_tcp: u16,
    config: RelayConfig,
    peers: Vec<Peer>,
    speakers: BTreeMap<String, Speakers>,
    commands: Receiver<Command>,
    notices: tokio::sync::mpsc::UnboundedSender<Notice>,
    counters: Arc<Counters>,
    next_review: Instant,
    /// Which peer (index) each remote address belongs to, learned from `Rtc::accepts`;
    /// cleared whenever a peer leaves and the indices shift.
    sources: HashMap<SocketAddr, usize>,
}

impl Shard {
    #[allow(clippy::too_many_arguments, reason = "a shard's sockets, settings and channels, each set once")]
    pub(crate) fn new(
        index: usize,
        socket: UdpSocket,
        advertise: SocketAddr,
        ice_tcp: u16,
        config: RelayConfig,
        commands: Receiver<Command>,
        notices: tokio::sync::mpsc::UnboundedSender<Notice>,
        counters: Arc<Counters>,
    ) -> Shard {
        let local = socket.local_addr().expect("a bound socket has an address");
        Shard { index, socket, local, advertise, ice_tcp, config, peers: Vec::new(), speakers: BTreeMap::new(), commands, notices, counters, next_review: Instant::now(), sources: HashMap::new() }
    }

    pub(crate) fn run(mut self) {
        let mut buf = vec![0u8; 2000];
        let mut frames = Vec::new();
        loop {
            if let (Some(started), Some(beat)) = (self.counters.started, self.counters.heartbeats.get(self.index)) {
                beat.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            while let Ok(command) = self.commands.try_recv() {
                self.command(command);
            }
            // str0m's timers: only for the peers whose time has come.
            let now = Instant::now();
            for peer in &mut self.peers {
                if peer.next_timeout <= now {
                    guarded(peer, |p| p.rtc.handle_input(Input::Timeout(now)).map_err(|e| e.to_string()));
                    peer.dirty = true;
                }
            }
            self.settle(&mut frames);
            self.drop_dead();
            if Instant::now() >= self.next_review {
                self.review();
                self.settle(&mut frames);
            }
            let deadline = self.peers.iter().map(|p| p.next_timeout).min().unwrap_or(self.next_review).min(self.next_review);
            self.receive(deadline, &mut buf, &mut frames);
        }
    }

    /// Polls every peer with something to do until none has: what one peer received may be
    /// forwarded to others, whose output then has to be polled in turn.
    fn settle(&mut self, frames: &mut Vec<(usize, MediaData)>) {
        loop {
            let mut any = false;
            for i in 0..self.peers.len() {
                if std::mem::take(&mut self.peers[i].dirty) {
                    any = true;
                    self.peers[i].next_timeout = self.poll(i, frames).unwrap_or_else(|| Instant::now() + Duration::from_millis(50));
                }
            }
            if !any {
                return;
            }
            // Peers are only added or dropped outside this loop, so the indices hold.
            for (from, data) in frames.drain(..) {
                self.forward(from, &data);
            }
        }
    }

    /// Waits until `deadline` for a datagram, hands it to the peer it belongs to, and
    /// settles. One datagram per turn of the loop, timers included: reading a batch of 64
    /// before the next turn (even settling after each) starved six Chromium subscribers in
    /// `meeting_sfu`'s last-N test, whose decoders then asked for keyframes in a loop.
    fn receive(&mut self, deadline: Instant, buf: &mut [u8], frames: &mut Vec<(usize, MediaData)>) {
        let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let _ = self.socket.set_read_timeout(Some(wait));
        match self.socket.recv_from(buf) {
            Ok((len, source)) => {
                self.datagram(&buf[..len], source);
                self.settle(frames);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => tracing::warn!(error = %e, "relay socket read failed"),
        }
    }

    fn datagram(&mut self, contents: &[u8], source: SocketAddr) {
        self.counters.packets_received.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_received.fetch_add(contents.len() as u64, Ordering::Relaxed);
        let Ok(contents) = contents.try_into() else { return };
        // str0m matches the destination against our candidate: with a wildcard bind, that
        // is the advertised address.
        let destination = if self.local.ip().is_unspecified() { self.advertise } else { self.local };
        let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination, contents });
        // A known source goes straight to its peer; anything else is offered to each peer.
        let at = match self.sources.get(&source) {
            Some(at) => Some(*at),
            None => {
                let at = self.peers.iter().position(|p| p.rtc.accepts(&input));
                if let Some(at) = at {
                    self.sources.insert(source, at);
                }
                at
            }
        };
        if let Some(peer) = at.and_then(|at| self.peers.get_mut(at)) {
            guarded(peer, |p| p.rtc.handle_input(input).map_err(|e| e.to_string()));
            peer.dirty = true;
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Publish { peer, offer, reply } => {
                let _ = reply.send(self.publish(peer, &offer));
            }
            Command::Remove { peer } => {
                let before = self.peers.len();
                self.peers.retain(|p| p.key != peer);
                if self.peers.len() != before {
                    self.sources.clear();
                    self.forget(&peer);
                }
            }
            Command::View { peer, tiles } => {
                if let Some(p) = self.peers.iter_mut().find(|p| p.key == peer) {
                    p.wanted = tiles.into_iter().collect();
                }
            }
        }
    }

    fn publish(&mut self, key: PeerKey, offer: &str) -> Result<String, String> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| format!("the offer is not valid SDP: {e}"))?;
        let mut rtc = Rtc::builder()
            .enable_bwe(Some(Bitrate::kbps(INITIAL_ESTIMATE_KBPS)))
            .set_send_buffer_video(SEND_BUFFER_VIDEO)
            .set_stats_interval(Some(STATS_EVERY))
            .build(Instant::now());
        let candidate = Candidate::host(self.advertise, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate);
        // ICE-TCP, bridged to our UDP socket (tcp.rs): str0m sees its packets as UDP.
        let tcp = SocketAddr::new(self.advertise.ip(), self.ice_tcp);
        rtc.add_local_candidate(Candidate::builder().tcp().host(tcp).tcptype(str0m::net::TcpType::Passive).build().map_err(|e| e.to_string())?);
        let answer = catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(offer)))
            .map_err(|_| "the offer could not be handled".to_string())?
            .map_err(|e| format!("the offer was refused: {e}"))?;
        if let Some(old) = self.peers.iter().position(|p| p.key == key) {
            self.peers.remove(old);
            self.sources.clear();
            self.forget(&key);
        }
        self.speakers.entry(key.room.clone()).or_default();
        self.peers.push(Peer {
            key,
            rtc,
            inbound: Vec::new(),
            published: BTreeMap::new(),
            slots: BTreeMap::new(),
            assigned: BTreeMap::new(),
            splicers: BTreeMap::new(),
            wanted: BTreeMap::new(),
            estimate: None,
            last_keyframe_request: HashMap::new(),
            allotted: HashMap::new(),
            reported: HashMap::new(),
            next_timeout: Instant::now(),
            dirty: true,
        });
        Ok(answer.to_sdp_string())
    }

    /// Drains one peer's output: sends datagrams, collects media frames, notes tracks.
    fn poll(&mut self, i: usize, frames: &mut Vec<(usize, MediaData)>) -> Option<Instant> {
        let mut changed = false;
        let mut keyframe_requests = Vec::new();
        let deadline = loop {
            let peer = &mut self.peers[i];
            if !peer.rtc.is_alive() {
                break None;
            }
            let output = match catch_unwind(AssertUnwindSafe(|| peer.rtc.poll_output())) {
                Ok(Ok(output)) => output,
                Ok(Err(e)) => {
                    tracing::warn!(peer = ?peer.key, error = %e, "relay peer failed");
                    peer.rtc.disconnect();
                    break None;
                }
                Err(_) => {
                    tracing::error!(peer = ?peer.key, "relay peer panicked; dropping it");
                    peer.rtc.disconnect();
                    break None;
                }
            };
            match output {
                Output::Timeout(t) => break Some(t),
                Output::Transmit(t) => {
                    self.counters.packets_forwarded.fetch_add(1, Ordering::Relaxed);
                    self.counters.bytes_forwarded.fetch_add(t.contents.len() as u64, Ordering::Relaxed);
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::MediaAdded(m)) => {
                    let kind = kind_name(m.kind);
                    match m.direction {
                        Direction::RecvOnly | Direction::SendRecv => peer.inbound.push((m.mid, m.kind)),
                        _ => peer.slots.entry(kind).or_default().push(m.mid),
                    }
                    changed = true;
                }
                Output::Event(Event::MediaData(data)) => frames.push((i, data)),
                Output::Event(Event::KeyframeRequest(req)) => {
                    self.counters.keyframe_requests_received.fetch_add(1, Ordering::Relaxed);
                    keyframe_requests.push(req.mid);
                }
                Output::Event(Event::MediaEgressStats(s)) => {
                    let lost = s.remote.map_or(0, |r| r.packets_lost);
                    let last = peer.reported.insert((s.mid, s.rid, true), (s.nacks, lost)).unwrap_or_default();
                    self.counters.nacks_received.fetch_add(s.nacks.saturating_sub(last.0), Ordering::Relaxed);
                    self.counters.subscriber_packets_lost.fetch_add(lost.saturating_sub(last.1), Ordering::Relaxed);
                }
                Output::Event(Event::MediaIngressStats(s)) => {
                    let last = peer.reported.insert((s.mid, s.rid, false), (s.nacks, 0)).unwrap_or_default();
                    self.counters.nacks_sent.fetch_add(s.nacks.saturating_sub(last.0), Ordering::Relaxed);
                }
                Output::Event(Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. })) => peer.estimate = Some(estimate.as_u64()),
                Output::Event(Event::IceConnectionStateChange(IceConnectionState::Disconnected)) => {
                    peer.rtc.disconnect();
                }
                Output::Event(_) => {}
            }
        };
        if changed {
            let room = self.peers[i].key.room.clone();
            self.reassign(&room);
        }
        // A subscriber's decoder needs a keyframe: ask the publisher of what that slot shows.
        for slot in keyframe_requests {
            let peer = &self.peers[i];
            let source = peer.assigned.get("video").and_then(|a| a.get(&*slot));
            let layer = peer.splicers.get(&slot).and_then(|(s, _)| s.current().map(|(_, rid)| rid.as_deref().map(Rid::from)));
            let publisher = source.and_then(|s| {
                let at = self.peers.iter().position(|p| p.key.room == peer.key.room && p.key.participant == s.participant)?;
                Some((at, self.peers[at].inbound.iter().map(|(m, _)| *m).find(|m| **m == *s.mid)?))
            });
            tracing::debug!(subscriber = self.peers[i].key.participant, %slot, source = ?source.map(|s| s.participant), ?layer, "subscriber asks for a keyframe");
            if let (Some((at, mid)), Some(layer)) = (publisher, layer) {
                self.request_keyframe_at(at, mid, layer);
            }
        }
        deadline
    }

    /// Forwards one frame from the publisher at index `from` to its room's subscribers.
    fn forward(&mut self, from: usize, data: &MediaData) {
        let now = Instant::now();
        // The publisher apart from everyone else, so that subscribers can be changed while
        // it is read, without copying its key per frame.
        let (before, rest) = self.peers.split_at_mut(from);
        let (publisher, after) = rest.split_first_mut().expect("from is an index into peers");
        let Some(kind) = publisher.inbound.iter().find(|(m, _)| *m == data.mid).map(|(_, k)| *k) else { return };
        let video = kind == MediaKind::Video;
        let participant = publisher.key.participant;
        // What the publisher sends: audio levels for the speakers, layer sizes and rates.
        let layers = if video {
            let books = publisher.published.entry(data.mid).or_default();
            let book = books.entry(data.rid).or_insert_with(|| LayerBook { height: None, recent: VecDeque::new() });
            book.recent.push_back((now, data.data.len()));
            while book.recent.front().is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(1)) {
                book.recent.pop_front();
            }
            if data.is_keyframe()
                && let Some((_, height)) = vp8_keyframe_size(&data.data)
            {
                book.height = Some(height);
            }
            current_layers(books, now)
        } else {
            if let Some(level) = data.ext_vals.audio_level
                && let Some(speakers) = self.speakers.get_mut(&publisher.key.room)
            {
                tracing::trace!(participant, level, "audio level");
                speakers.observe(participant, level, now);
            }
            vec![Layer { rid: None, height: 0, bitrate: 0 }]
        };
        let rid = data.rid.map(|r| r.to_string());
        let mut forwarded = 0;
        let mut needs_keyframe = Vec::new();
        for peer in before.iter_mut().chain(after.iter_mut()).filter(|p| p.key.room == publisher.key.room) {
            let Some(slot) = peer.assigned.values().find_map(|a| {
                a.iter().find(|(_, s)| s.participant == participant && *s.mid == *data.mid).map(|(slot, _)| slot.as_str())
            }) else {
                continue;
            };
            let Some(mid) = peer.slots.values().flatten().find(|m| ***m == *slot).copied() else { continue };
            let video_slots = peer.assigned.get("video").map_or(1, |a| a.len().max(1)) as u64;
            // The slot's share from the last review; an equal share until there is one.
            let wanted = peer.wanted.get(&participant).copied().unwrap_or(DEFAULT_TILE_HEIGHT);
            let budget = match peer.allotted.get(&mid) {
                Some(allotted) => *allotted,
                None => peer.estimate.map(|e| e * 85 / 100 / video_slots),
            };
            let (splicer, since) = peer.splicers.entry(mid).or_insert_with(|| (Splicer::new(data.time.frequency().get()), now));
            // Retarget when the slot changed hands, its layer went away, or the hold is over.
            if let Some(best) = choose(&layers, wanted, budget) {
                let best = &layers[best].rid;
                let (retarget, stale) = match splicer.targeted() {
                    Some((p, r)) => (*p != participant || r != best, *p != participant || !layers.iter().any(|l| l.rid == *r)),
                    None => (true, true),
                };
                if retarget && (stale || now.duration_since(*since) >= LAYER_HOLD) {
                    tracing::debug!(subscriber = peer.key.participant, %mid, from = participant, layer = ?best, "slot retargeted");
                    splicer.target(participant, best.clone());
                    *since = now;
                }
            }
            let keyframe = !video || data.is_keyframe();
            match splicer.frame(participant, rid.as_deref(), data.time.numer(), keyframe, now) {
                Verdict::Forward(time) => {
                    if video && keyframe {
                        tracing::debug!(subscriber = peer.key.participant, %mid, from = participant, ?rid, "keyframe forwarded");
                    }
                    let Some(writer) = peer.rtc.writer(mid) else { continue };
                    let Some(pt) = writer.match_params(data.params) else { continue };
                    if writer.write(pt, data.network_time, MediaTime::new(time, data.time.frequency()), data.data.clone()).is_ok() {
                        forwarded += 1;
                        peer.dirty = true;
                    }
                }
                Verdict::NeedKeyframe => {
                    if let Some((_, layer)) = splicer.targeted() {
                        needs_keyframe.push(layer.as_deref().map(Rid::from));
                    }
                }
                Verdict::Drop => {}
            }
        }
        self.counters.frames_forwarded.fetch_add(forwarded, Ordering::Relaxed);
        for layer in needs_keyframe {
            self.request_keyframe_at(from, data.mid, layer);
        }
    }

    /// Every [`REVIEW_EVERY`]: the dominant speaker, last-N, and each subscriber's BWE target.
    fn review(&mut self) {
        let now = Instant::now();
        self.next_review = now + REVIEW_EVERY;
        let rooms: Vec<String> = self.speakers.keys().cloned().collect();
        for room in rooms {
            if let Some(p) = self.speakers.get_mut(&room).and_then(|s| s.update_dominant(now)) {
                let _ = self.notices.send(Notice::Speaker { room: room.clone(), participant: p });
            }
            self.reassign(&room);
        }
        // Ask BWE to probe up to what the subscriber's tiles would use at full quality.
        let desired: Vec<u64> = self
            .peers
            .iter()
            .map(|sub| {
                let video = sub.assigned.get("video").map(|a| a.values().map(|s| self.wanted_rate(sub, s, now)).sum::<u64>()).unwrap_or(0);
                let audio = sub.assigned.get("audio").map_or(0, |a| a.len() as u64 * AUDIO_RATE);
                video + audio
            })
            .collect();
        let allotments: Vec<HashMap<Mid, Option<u64>>> = self.peers.iter().map(|sub| self.allot(sub, now)).collect();
        for (peer, allotted) in self.peers.iter_mut().zip(allotments) {
            peer.allotted = allotted;
        }
        for (peer, desired) in self.peers.iter_mut().zip(desired) {
            if desired > 0 {
                let _ = catch_unwind(AssertUnwindSafe(|| peer.rtc.bwe().set_bitrate(Bitrate::bps(desired / 2), Bitrate::bps(desired))));
                peer.dirty = true;
            }
        }
    }

    /// Shares `sub`'s downlink estimate (less its audio) among its video slots.
    fn allot(&self, sub: &Peer, now: Instant) -> HashMap<Mid, Option<u64>> {
        let Some(estimate) = sub.estimate else { return HashMap::new() };
        let audio = sub.assigned.get("audio").map_or(0, |a| a.len() as u64 * AUDIO_RATE);
        let budget = (estimate * 85 / 100).saturating_sub(audio);
        let Some(video) = sub.assigned.get("video") else { return HashMap::new() };
        let mut mids = Vec::new();
        let mut demands = Vec::new();
        for (slot, source) in video {
            let Some(mid) = sub.slots.get("video").and_then(|s| s.iter().find(|m| ***m == **slot)) else { continue };
            mids.push(*mid);
            demands.push(SlotDemand { layers: self.source_layers(sub, source, now), wanted_height: sub.wanted.get(&source.participant).copied().unwrap_or(DEFAULT_TILE_HEIGHT) });
        }
        mids.into_iter().zip(allocate(&demands, budget)).collect()
    }

    /// The layers `source` publishes now, as seen in `sub`'s room.
    fn source_layers(&self, sub: &Peer, source: &Source, now: Instant) -> Vec<Layer> {
        let Some(publisher) = self.peers.iter().find(|p| p.key.room == sub.key.room && p.key.participant == source.participant) else { return Vec::new() };
        publisher.published.iter().find(|(m, _)| ***m == *source.mid).map(|(_, b)| current_layers(b, now)).unwrap_or_default()
    }

    /// The bitrate of the layer `sub` would take from `source` with unlimited bandwidth.
    fn wanted_rate(&self, sub: &Peer, source: &Source, now: Instant) -> u64 {
        let layers = self.source_layers(sub, source, now);
        let wanted = sub.wanted.get(&source.participant).copied().unwrap_or(DEFAULT_TILE_HEIGHT);
        choose(&layers, wanted, None).map_or(0, |i| layers[i].bitrate)
    }

    /// Recomputes every subscriber's slots in `room` (last-N by speaking order) and tells
    /// the node what changed.
    fn reassign(&mut self, room: &str) {
        let members: Vec<u64> = self.peers.iter().filter(|p| p.key.room == room).map(|p| p.key.participant).collect();
        let speakers = self.speakers.get(room);
        let order = speakers.map(|s| s.order(&members)).unwrap_or(members);
        let publishers: BTreeMap<u64, Vec<(Mid, MediaKind)>> =
            self.peers.iter().filter(|p| p.key.room == room).map(|p| (p.key.participant, p.inbound.clone())).collect();
        let last_n = self.config.last_n;
        for peer in self.peers.iter_mut().filter(|p| p.key.room == room) {
            let mut changed = false;
            for kind in ["audio", "video"] {
                let limit = if kind == "video" { last_n } else { usize::MAX };
                let sources: Vec<Source> = order
                    .iter()
                    .filter(|who| **who != peer.key.participant)
                    .flat_map(|who| {
                        publishers[who].iter().filter(|(_, k)| kind_name(*k) == kind).map(|(mid, _)| Source { participant: *who, mid: mid.to_string() })
                    })
                    .take(limit)
                    .collect();
                let slots: Vec<String> = peer.slots.get(kind).map(|s| s.iter().map(|m| m.to_string()).collect()).unwrap_or_default();
                let previous = peer.assigned.get(kind).cloned().unwrap_or_default();
                let next = assign(&previous, &slots, &sources);
                if next != previous {
                    changed = true;
                    for (mid, (splicer, _)) in peer.splicers.iter_mut() {
                        if !next.contains_key(&mid.to_string()) && previous.contains_key(&mid.to_string()) {
                            splicer.clear();
                        }
                    }
                    peer.assigned.insert(kind, next);
                }
            }
            if changed {
                tracing::debug!(subscriber = peer.key.participant, assigned = ?peer.assigned, "slots reassigned");
                let slots = peer
                    .assigned
                    .iter()
                    .flat_map(|(kind, a)| a.iter().map(|(mid, s)| (mid.clone(), s.participant, *kind)))
                    .collect();
                let _ = self.notices.send(Notice::Slots { peer: peer.key.clone(), slots });
            }
        }
    }

    /// Asks the publisher at index `publisher` for a keyframe of `layer` on `mid`, at most
    /// once per [`KEYFRAME_REQUEST_EVERY`].
    fn request_keyframe_at(&mut self, publisher: usize, mid: Mid, layer: Option<Rid>) {
        let publisher = &mut self.peers[publisher];
        let now = Instant::now();
        if publisher.last_keyframe_request.get(&(mid, layer)).is_some_and(|t| now.duration_since(*t) < KEYFRAME_REQUEST_EVERY) {
            return;
        }
        if let Some(mut writer) = publisher.rtc.writer(mid) {
            tracing::debug!(publisher = publisher.key.participant, %mid, ?layer, "keyframe requested");
            let _ = writer.request_keyframe(layer, KeyframeRequestKind::Pli);
            self.counters.keyframe_requests_sent.fetch_add(1, Ordering::Relaxed);
            publisher.dirty = true;
            publisher.last_keyframe_request.insert((mid, layer), now);
        }
    }

    /// After `key` left: its speaking record goes, and its room's slots are reassigned.
    fn forget(&mut self, key: &PeerKey) {
        if !self.peers.iter().any(|p| p.key.room == key.room) {
            self.speakers.remove(&key.room);
            return;
        }
        if let Some(s) = self.speakers.get_mut(&key.room) {
            s.forget(key.participant);
        }
        self.reassign(&key.room);
    }

    fn drop_dead(&mut self) {
        let dead: Vec<PeerKey> = self.peers.iter().filter(|p| !p.rtc.is_alive()).map(|p| p.key.clone()).collect();
        if dead.is_empty() {
            return;
        }
        self.peers.retain(|p| p.rtc.is_alive());
        self.sources.clear();
        for key in dead {
            let _ = self.notices.send(Notice::Gone { peer: key.clone() });
            self.forget(&key);
        }
    }
}

/// The layers of one video m-line seen in the last second.
fn current_layers(books: &HashMap<Option<Rid>, LayerBook>, now: Instant) -> Vec<Layer> {
    books
        .iter()
        .filter(|(_, b)| b.last_seen().is_some_and(|t| now.duration_since(t) < LAYER_STALE))
        .map(|(rid, b)| Layer { rid: rid.map(|r| r.to_string()), height: b.height.unwrap_or(0), bitrate: b.bitrate() })
        .collect()
}

/// Runs `f` on `peer`, disconnecting it (alone) if it fails or panics.
fn guarded(peer: &mut Peer, f: impl FnOnce(&mut Peer) -> Result<(), String>) {
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

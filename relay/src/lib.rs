//! The SFU relay role: the part of `confab` that forwards media once a meeting grows past
//! the mesh threshold. It knows nothing of accounts or HTTP; the node hands it admitted
//! participants' SDP offers and passes on what it says back.
//!
//! One shard thread owns one UDP socket and every participant's `str0m::Rtc`, routes each
//! datagram to the `Rtc` that accepts it, and forwards media frames from each publisher to
//! the receive slots its room's subscribers offered (`slots.rs`). A participant's offer has
//! its own audio and video (send) and a fixed number of receive-only slots per kind, so the
//! relay only ever answers and never renegotiates. A panic inside one participant's `Rtc`
//! drops that participant alone.

pub mod slots;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use slots::{Assignment, Source, assign};

/// Datagrams and bytes through the relay's socket: what `/metrics` shows.
#[derive(Debug, Default)]
pub struct Counters {
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub packets_forwarded: AtomicU64,
    pub bytes_forwarded: AtomicU64,
    pub frames_forwarded: AtomicU64,
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
}

enum Command {
    Publish { peer: PeerKey, offer: String, reply: tokio::sync::oneshot::Sender<Result<String, String>> },
    Remove { peer: PeerKey },
}

/// Handle to the relay's shard. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    commands: Sender<Command>,
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
}

impl Relay {
    /// Binds `bind` (UDP) and starts the shard. `advertise` is the IP put in the SDP answers
    /// (the bound one if not given), with the bound port.
    pub fn start(bind: SocketAddr, advertise: Option<std::net::IpAddr>, notices: tokio::sync::mpsc::UnboundedSender<Notice>) -> std::io::Result<Relay> {
        static CRYPTO: std::sync::Once = std::sync::Once::new();
        CRYPTO.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
        let socket = UdpSocket::bind(bind)?;
        let local = socket.local_addr()?;
        let addr = SocketAddr::new(advertise.unwrap_or(local.ip()), local.port());
        let counters = Arc::new(Counters::default());
        let (commands, rx) = channel();
        let shard = Shard { socket, local, advertise: addr, peers: Vec::new(), commands: rx, notices, counters: counters.clone() };
        std::thread::Builder::new().name("confab-relay".into()).spawn(move || shard.run())?;
        Ok(Relay { commands, addr, counters })
    }

    /// Accepts `peer`'s SDP offer; returns the answer.
    pub async fn publish(&self, peer: PeerKey, offer: String) -> Result<String, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.commands.send(Command::Publish { peer, offer, reply }).map_err(|_| "the relay has stopped".to_string())?;
        answer.await.map_err(|_| "the relay has stopped".to_string())?
    }

    pub fn remove(&self, peer: PeerKey) {
        let _ = self.commands.send(Command::Remove { peer });
    }
}

struct Peer {
    key: PeerKey,
    rtc: Rtc,
    /// What this participant publishes: its send m-lines, by kind.
    inbound: Vec<(Mid, MediaKind)>,
    /// Its receive slots, by kind, in m-line order.
    slots: BTreeMap<&'static str, Vec<Mid>>,
    assigned: BTreeMap<&'static str, Assignment>,
    last_keyframe_request: BTreeMap<Mid, Instant>,
}

fn kind_name(kind: MediaKind) -> &'static str {
    if kind == MediaKind::Audio { "audio" } else { "video" }
}

struct Shard {
    socket: UdpSocket,
    local: SocketAddr,
    advertise: SocketAddr,
    peers: Vec<Peer>,
    commands: Receiver<Command>,
    notices: tokio::sync::mpsc::UnboundedSender<Notice>,
    counters: Arc<Counters>,
}

impl Shard {
    fn run(mut self) {
        let mut buf = vec![0u8; 2000];
        loop {
            while let Ok(command) = self.commands.try_recv() {
                self.command(command);
            }
            let mut frames = Vec::new();
            let mut deadline = Instant::now() + Duration::from_millis(50);
            for i in 0..self.peers.len() {
                if let Some(t) = self.poll(i, &mut frames) {
                    deadline = deadline.min(t);
                }
            }
            for (from, data) in frames {
                self.forward(&from, &data);
            }
            self.drop_dead();
            let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            let _ = self.socket.set_read_timeout(Some(wait));
            match self.socket.recv_from(&mut buf) {
                Ok((n, source)) => {
                    self.counters.packets_received.fetch_add(1, Ordering::Relaxed);
                    self.counters.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                    let Ok(contents) = buf[..n].try_into() else { continue };
                    // str0m matches the destination against our candidate: with a wildcard
                    // bind, that is the advertised address.
                    let destination = if self.local.ip().is_unspecified() { self.advertise } else { self.local };
                    let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination, contents });
                    if let Some(peer) = self.peers.iter_mut().find(|p| p.rtc.accepts(&input)) {
                        guarded(peer, |p| p.rtc.handle_input(input).map_err(|e| e.to_string()));
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => tracing::warn!(error = %e, "relay socket read failed"),
            }
            let now = Instant::now();
            for peer in &mut self.peers {
                guarded(peer, |p| p.rtc.handle_input(Input::Timeout(now)).map_err(|e| e.to_string()));
            }
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
                    self.reassign(&peer.room);
                }
            }
        }
    }

    fn publish(&mut self, key: PeerKey, offer: &str) -> Result<String, String> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| format!("the offer is not valid SDP: {e}"))?;
        let mut rtc = Rtc::builder().build(Instant::now());
        let candidate = Candidate::host(self.advertise, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate);
        let answer = catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(offer)))
            .map_err(|_| "the offer could not be handled".to_string())?
            .map_err(|e| format!("the offer was refused: {e}"))?;
        self.peers.retain(|p| p.key != key);
        self.peers.push(Peer {
            key,
            rtc,
            inbound: Vec::new(),
            slots: BTreeMap::new(),
            assigned: BTreeMap::new(),
            last_keyframe_request: BTreeMap::new(),
        });
        Ok(answer.to_sdp_string())
    }

    /// Drains one peer's output: sends datagrams, collects media frames, notes tracks.
    fn poll(&mut self, i: usize, frames: &mut Vec<(PeerKey, MediaData)>) -> Option<Instant> {
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
                Output::Event(Event::MediaData(data)) => frames.push((peer.key.clone(), data)),
                Output::Event(Event::KeyframeRequest(req)) => keyframe_requests.push(req.mid),
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
        for slot in keyframe_requests {
            let source = self.peers[i].assigned.get("video").and_then(|a| a.get(&slot.to_string())).cloned();
            if let Some(source) = source {
                self.request_keyframe(&self.peers[i].key.room.clone(), &source);
            }
        }
        deadline
    }

    fn forward(&mut self, from: &PeerKey, data: &MediaData) {
        let source = Source { participant: from.participant, mid: data.mid.to_string() };
        let mut forwarded = 0;
        for peer in self.peers.iter_mut().filter(|p| p.key.room == from.room && p.key != *from) {
            let Some(slot) = peer.assigned.values().find_map(|a| a.iter().find(|(_, s)| **s == source).map(|(slot, _)| slot.clone())) else {
                continue;
            };
            let Some(mid) = peer.slots.values().flatten().find(|m| m.to_string() == slot).copied() else { continue };
            let Some(writer) = peer.rtc.writer(mid) else { continue };
            let Some(pt) = writer.match_params(data.params) else { continue };
            if writer.write(pt, data.network_time, data.time, data.data.clone()).is_ok() {
                forwarded += 1;
            }
        }
        self.counters.frames_forwarded.fetch_add(forwarded, Ordering::Relaxed);
    }

    /// Recomputes every subscriber's slots in `room` and tells the node what changed.
    fn reassign(&mut self, room: &str) {
        let publishers: Vec<(u64, Vec<(Mid, MediaKind)>)> =
            self.peers.iter().filter(|p| p.key.room == room).map(|p| (p.key.participant, p.inbound.clone())).collect();
        let mut new_video_sources = Vec::new();
        for peer in self.peers.iter_mut().filter(|p| p.key.room == room) {
            let mut changed = false;
            for kind in ["audio", "video"] {
                let sources: Vec<Source> = publishers
                    .iter()
                    .filter(|(who, _)| *who != peer.key.participant)
                    .flat_map(|(who, tracks)| {
                        tracks.iter().filter(|(_, k)| kind_name(*k) == kind).map(|(mid, _)| Source { participant: *who, mid: mid.to_string() })
                    })
                    .collect();
                let slots: Vec<String> = peer.slots.get(kind).map(|s| s.iter().map(|m| m.to_string()).collect()).unwrap_or_default();
                let previous = peer.assigned.get(kind).cloned().unwrap_or_default();
                let next = assign(&previous, &slots, &sources);
                if next != previous {
                    changed = true;
                    if kind == "video" {
                        new_video_sources.extend(next.values().filter(|s| !previous.values().any(|p| p == *s)).cloned());
                    }
                    peer.assigned.insert(kind, next);
                }
            }
            if changed {
                let slots = peer
                    .assigned
                    .iter()
                    .flat_map(|(kind, a)| a.iter().map(|(mid, s)| (mid.clone(), s.participant, *kind)))
                    .collect();
                let _ = self.notices.send(Notice::Slots { peer: peer.key.clone(), slots });
            }
        }
        // A subscriber that starts receiving a video needs a keyframe to show it.
        for source in new_video_sources {
            self.request_keyframe(room, &source);
        }
    }

    fn request_keyframe(&mut self, room: &str, source: &Source) {
        let Some(publisher) = self.peers.iter_mut().find(|p| p.key.room == room && p.key.participant == source.participant) else { return };
        let Some(mid) = publisher.inbound.iter().map(|(m, _)| *m).find(|m| m.to_string() == source.mid) else { return };
        let now = Instant::now();
        if publisher.last_keyframe_request.get(&mid).is_some_and(|t| now.duration_since(*t) < Duration::from_millis(300)) {
            return;
        }
        if let Some(mut writer) = publisher.rtc.writer(mid) {
            let _ = writer.request_keyframe(None, KeyframeRequestKind::Pli);
            publisher.last_keyframe_request.insert(mid, now);
        }
    }

    fn drop_dead(&mut self) {
        let dead: Vec<PeerKey> = self.peers.iter().filter(|p| !p.rtc.is_alive()).map(|p| p.key.clone()).collect();
        if dead.is_empty() {
            return;
        }
        self.peers.retain(|p| p.rtc.is_alive());
        for key in dead {
            let _ = self.notices.send(Notice::Gone { peer: key.clone() });
            self.reassign(&key.room);
        }
    }
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

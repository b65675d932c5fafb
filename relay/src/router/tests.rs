//! The router with real WebRTC peers (str0m clients in RTP mode) over an in-memory network
//! with explicit time: no sockets, no sleeps, every run the same.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};

use super::*;

/// A packet as a client received it: when, its sequence number, its payload.
type Received = (Instant, u64, Arc<[u8]>);

/// What a client writes: the m-line and layer, codec, RTP timestamp and marker.
struct Packet {
    mid: Mid,
    rid: Option<Rid>,
    codec: Codec,
    timestamp: u32,
    marker: bool,
}

/// One participant's browser, reduced to what the tests look at.
struct Client {
    participant: u64,
    addr: SocketAddr,
    rtc: Rtc,
    shard: usize,
    /// Their send m-lines: audio, video.
    audio: Option<Mid>,
    video: Option<Mid>,
    /// What arrived, per receive m-line: (when, sequence number, payload).
    received: HashMap<Mid, Vec<Received>>,
    /// Keyframe requests that reached them, per layer.
    keyframe_requests: Vec<Option<Rid>>,
    /// What the latest receiver report about each of their send m-lines said was lost.
    reported_loss: HashMap<Mid, f32>,
    /// Sequence numbers for what they send, per layer.
    next_seq: HashMap<Option<Rid>, u64>,
}

impl Client {
    fn pt(&self, codec: Codec) -> str0m::media::Pt {
        let params = self.rtc.codec_config().params();
        match codec {
            // RED is folded onto Opus: its payload type is the Opus parameters' `red`.
            Codec::Red => params.iter().find_map(|p| p.red()).expect("RED negotiated"),
            _ => params.iter().find(|p| p.spec().codec == codec).expect("negotiated").pt(),
        }
    }

    /// Writes one RTP packet on `mid`/`rid`.
    fn send(&mut self, p: Packet, payload: Vec<u8>, level: Option<i8>, now: Instant) {
        let Packet { mid, rid, codec, timestamp, marker } = p;
        let pt = self.pt(codec);
        let seq = self.next_seq.entry(rid).or_insert(1000);
        *seq += 1;
        let ext = ExtensionValues { audio_level: level, voice_activity: level.map(|l| l > -127), ..Default::default() };
        let mut api = self.rtc.direct_api();
        let stream = api.stream_tx_by_mid(mid, rid).expect("a send stream for the layer");
        stream.write_rtp(RtpWrite::new(pt, SeqNo::from(*seq), timestamp, now, payload).marker(marker).ext_vals(ext).nackable(codec == Codec::Vp8));
    }

    /// A video frame of `packets` packets of `size` bytes on layer `rid`.
    fn frame(&mut self, rid: &str, picture: u16, keyframe: bool, packets: usize, size: usize, now: Instant) {
        let height = match rid {
            "l" => 180,
            "m" => 360,
            _ => 720,
        };
        for i in 0..packets {
            let payload = vp8_payload(picture, i == 0, keyframe, height, size);
            let timestamp = u32::from(picture) * 3000;
            let packet =
                Packet { mid: self.video.expect("publishes video"), rid: Some(Rid::from(rid)), codec: Codec::Vp8, timestamp, marker: i + 1 == packets };
            self.send(packet, payload, None, now);
        }
    }

    fn audio(&mut self, count: u32, level: i8, now: Instant) {
        let payload = vec![0xfc; 80];
        let packet = Packet { mid: self.audio.expect("publishes audio"), rid: None, codec: Codec::Opus, timestamp: count * 960, marker: false };
        self.send(packet, payload, Some(level), now);
    }

    /// Everything received on the slot that carries `kind` from `from` (by payload marker).
    fn on(&self, mid: Mid) -> &[Received] {
        self.received.get(&mid).map_or(&[], |v| v.as_slice())
    }
}

/// A VP8 RTP payload: descriptor with a 15-bit PictureID, then the frame's bytes (a
/// keyframe's start carries the frame size, `height` at 16:9).
fn vp8_payload(picture: u16, start: bool, keyframe: bool, height: u16, size: usize) -> Vec<u8> {
    let mut p = vec![0x80 | if start { 0x10 } else { 0 }, 0x80, 0x80 | (picture >> 8) as u8, picture as u8];
    if start {
        let tag: u32 = u32::from(!keyframe) | (1 << 4) | (100 << 5);
        p.extend_from_slice(&tag.to_le_bytes()[..3]);
        if keyframe {
            p.extend_from_slice(&[0x9d, 0x01, 0x2a]);
            p.extend_from_slice(&(height * 16 / 9).to_le_bytes());
            p.extend_from_slice(&height.to_le_bytes());
        }
    }
    p.resize(size.max(p.len() + 1), 0x55);
    p
}

/// Routers (one per shard, on one node or several) and clients on an in-memory network.
struct Net {
    now: Instant,
    routers: Vec<Router>,
    /// Each router's node: an index into `directories`.
    nodes: Vec<usize>,
    /// Each node's directory: it routes what comes from other nodes, as `Relay` does.
    directories: Vec<crate::Directory>,
    /// Media frames and bytes sent from one node to another: (from, to) → (frames, bytes).
    media_crossed: HashMap<(usize, usize), (u64, u64)>,
    clients: Vec<Client>,
    notices: Vec<Notice>,
    /// One-way delay of every datagram, and those on their way.
    latency: Duration,
    wire: Vec<(Instant, Datagram)>,
    /// How long datagrams waited in the router's socket before it read them.
    ingress_delay: Duration,
    /// Router transmits per turn in which it sent anything (for pacing checks).
    turns: Vec<usize>,
    /// Every n-th datagram towards this client is lost: (participant, n, counted so far).
    lossy: Option<(u64, u32, u32)>,
    /// Every n-th media frame between nodes is lost: (n, counted so far).
    cascade_lossy: Option<(u32, u32)>,
}

const ROOM: RoomId = RoomId(1);

fn router_addr(shard: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 5000 + shard as u16))
}

impl Net {
    fn new(shards: usize, last_n: usize) -> Net {
        Net::cluster(&[shards], last_n)
    }

    /// Nodes with these many shards each; the meeting's home is the first node.
    fn cluster(shards_per_node: &[usize], last_n: usize) -> Net {
        let now = Instant::now();
        let counters = Arc::new(Counters::new(shards_per_node.iter().sum()));
        let mut routers = Vec::new();
        let mut nodes = Vec::new();
        for (node, shards) in shards_per_node.iter().enumerate() {
            for index in 0..*shards {
                let addr = router_addr(routers.len());
                let shard = ShardId { node: NodeId(node as u64), index };
                routers.push(Router::new(RouterConfig { shard, last_n, local: addr, advertise: addr, ice_tcp: None }, counters.clone(), now));
                nodes.push(node);
            }
        }
        // Rooms are numbered from 1 on every node, so that ROOM names the test's everywhere.
        let directories = (0..shards_per_node.len()).map(|n| crate::Directory { node: NodeId(n as u64), next_room: 1, ..Default::default() }).collect();
        Net {
            now,
            routers,
            nodes,
            directories,
            media_crossed: HashMap::new(),
            clients: Vec::new(),
            notices: Vec::new(),
            latency: Duration::from_millis(5),
            wire: Vec::new(),
            ingress_delay: Duration::ZERO,
            turns: Vec::new(),
            lossy: None,
            cascade_lossy: None,
        }
    }

    /// A participant joins on `shard`, publishing audio and `layers` of video (none: not
    /// publishing), with `slots` receive slots of each kind.
    fn join(&mut self, participant: u64, shard: usize, layers: &[&str], slots: usize) -> usize {
        self.join_with(participant, shard, layers, slots, false)
    }

    /// As [`Net::join`], offering Opus with RED (RFC 2198) if `red`, as browsers do.
    fn join_with(&mut self, participant: u64, shard: usize, layers: &[&str], slots: usize, red: bool) -> usize {
        let addr = SocketAddr::from(([10, 0, 1, participant as u8], 6000));
        let mut rtc = Rtc::builder().set_rtp_mode(true).enable_opus(true, red).set_stats_interval(Some(Duration::from_millis(500))).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let (mut audio, mut video) = (None, None);
        if !layers.is_empty() {
            audio = Some(api.add_media(MediaKind::Audio, Direction::SendOnly, Some("s".into()), Some("a".into()), None));
            let mut simulcast = Simulcast::new();
            for rid in layers {
                simulcast.add_send_layer(SimulcastLayer::new(rid));
            }
            video = Some(api.add_media(MediaKind::Video, Direction::SendOnly, Some("s".into()), Some("v".into()), Some(simulcast)));
        }
        for _ in 0..slots {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api.apply().unwrap();
        let key = PeerKey { room: "room".into(), participant };
        let node = self.nodes[shard];
        let index = shard - self.base(node);
        let (room, home, placed) = self.directories[node].place(&key, index, NodeId(0));
        assert_eq!((room, placed), (ROOM, index));
        let answer = self.routers[shard].publish(self.now, key, ROOM, home, &offer.to_sdp_string()).expect("the router accepts the offer");
        rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
        self.clients.push(Client {
            participant,
            addr,
            rtc,
            shard,
            audio,
            video,
            received: HashMap::new(),
            keyframe_requests: Vec::new(),
            reported_loss: HashMap::new(),
            next_seq: HashMap::new(),
        });
        self.clients.len() - 1
    }

    /// The first router of `node`.
    fn base(&self, node: usize) -> usize {
        self.nodes.iter().position(|n| *n == node).expect("a node with shards")
    }

    /// What a router sent another node, delivered as `Relay::deliver` does.
    fn cross(&mut self, from: usize, to: NodeId, frame: crate::Frame) {
        let now = self.now;
        let node = to.0 as usize;
        let base = self.base(node);
        let deliveries: Vec<(usize, Handoff)> = match frame {
            crate::Frame::Media(bytes) => {
                if let Some((n, count)) = self.cascade_lossy.as_mut() {
                    *count += 1;
                    if (*count).is_multiple_of(*n) {
                        return;
                    }
                }
                let counted = self.media_crossed.entry((self.nodes[from], node)).or_default();
                counted.0 += 1;
                counted.1 += bytes.len() as u64;
                self.directories[node]
                    .media(&bytes, now)
                    .map(|(shards, p)| shards.into_iter().map(|s| (s, Handoff::Media(p.clone()))).collect())
                    .unwrap_or_default()
            }
            crate::Frame::Control(bytes) => {
                let control = remote::decode_control(&bytes).expect("control frames decode");
                self.directories[node].control(control, 0, now)
            }
        };
        for (shard, message) in deliveries {
            self.routers[base + shard].handle_handoff(now, message);
        }
    }

    fn client(&mut self, participant: u64) -> &mut Client {
        self.clients.iter_mut().find(|c| c.participant == participant).expect("a client")
    }

    /// Moves time on by `dt` and lets everything happen that can at the new time.
    fn step(&mut self, dt: Duration) {
        self.now += dt;
        let now = self.now;
        let due = now + self.latency;
        for c in &mut self.clients {
            c.rtc.handle_input(Input::Timeout(now)).unwrap();
            drain_client(c, now, due, &mut self.wire);
        }
        loop {
            let mut moved = false;
            while let Some(i) = self.wire.iter().position(|d| d.0 <= now) {
                moved = true;
                match self.wire.remove(i).1 {
                    Datagram::ToRouter { shard, from, contents } => {
                        let arrival = now.checked_sub(self.ingress_delay).unwrap_or(now);
                        self.routers[shard].handle_datagram(now, arrival, from, &contents);
                    }
                    Datagram::ToClient { from, to, contents } => {
                        let c = self.clients.iter_mut().find(|c| c.addr == to).expect("a client at the destination");
                        if let Some((_, n, count)) = self.lossy.as_mut().filter(|(who, _, _)| *who == c.participant) {
                            *count += 1;
                            if (*count).is_multiple_of(*n) {
                                continue;
                            }
                        }
                        let receive = Receive { proto: Protocol::Udp, source: from, destination: to, contents: contents.as_slice().try_into().unwrap() };
                        c.rtc.handle_input(Input::Receive(now, receive)).unwrap();
                        // RTP mode holds one received packet: poll before the next.
                        drain_client(c, now, due, &mut self.wire);
                    }
                }
            }
            for shard in 0..self.routers.len() {
                self.routers[shard].handle_timeout(now);
                let mut sent = 0;
                loop {
                    match self.routers[shard].poll_output() {
                        Output::Timeout(_) => break,
                        Output::Transmit { destination, contents } => {
                            moved = true;
                            sent += 1;
                            self.wire.push((due, Datagram::ToClient { from: router_addr(shard), to: destination, contents }));
                        }
                        Output::Handoff { shard: to, message } => {
                            moved = true;
                            let base = self.base(self.nodes[shard]);
                            self.routers[base + to].handle_handoff(now, message);
                        }
                        Output::Remote { node, frame } => {
                            moved = true;
                            self.cross(shard, node, frame);
                        }
                        Output::Notice(n) => self.notices.push(n),
                    }
                }
                if sent > 0 {
                    self.turns.push(sent);
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn run(&mut self, total: Duration) {
        let end = self.now + total;
        while self.now < end {
            self.step(Duration::from_millis(1));
        }
    }

    /// Joins are done: ICE and DTLS up everywhere.
    fn connect(&mut self) {
        for _ in 0..3000 {
            if self.clients.iter().all(|c| c.rtc.is_connected()) {
                self.run(Duration::from_millis(50));
                return;
            }
            self.step(Duration::from_millis(1));
        }
        panic!("the clients did not connect");
    }
}

/// A datagram on its way.
enum Datagram {
    ToRouter { shard: usize, from: SocketAddr, contents: Vec<u8> },
    ToClient { from: SocketAddr, to: SocketAddr, contents: Vec<u8> },
}

/// Polls a client until it waits: its datagrams go on the wire, to arrive at `due`.
fn drain_client(c: &mut Client, now: Instant, due: Instant, wire: &mut Vec<(Instant, Datagram)>) {
    loop {
        match c.rtc.poll_output().unwrap() {
            RtcOutput::Timeout(_) => return,
            RtcOutput::Transmit(t) => wire.push((due, Datagram::ToRouter { shard: c.shard, from: c.addr, contents: t.contents.into() })),
            RtcOutput::Event(e) => record(c, e, now),
        }
    }
}

fn record(c: &mut Client, event: Event, now: Instant) {
    match event {
        Event::RtpPacket(p) => {
            let mid = c.rtc.direct_api().stream_rx(&p.header.ssrc).map(|s| s.mid());
            if let Some(mid) = mid {
                c.received.entry(mid).or_default().push((now, *p.seq_no, p.payload.clone()));
            }
        }
        Event::KeyframeRequest(r) => c.keyframe_requests.push(r.rid),
        Event::MediaEgressStats(s) => {
            if let Some(loss) = s.loss {
                c.reported_loss.insert(s.mid, loss);
            }
        }
        _ => {}
    }
}

/// The slot `subscriber` receives `from`'s `kind` on, per the latest `sfu-slots` notice.
fn slot_of(net: &Net, subscriber: u64, from: u64, kind: &str) -> Option<Mid> {
    net.notices.iter().rev().find_map(|n| match n {
        Notice::Slots { peer, slots } if peer.participant == subscriber => {
            Some(slots.iter().find(|(_, p, k)| *p == from && *k == kind).map(|(m, _, _)| Mid::from(m.as_str())))
        }
        _ => None,
    })?
}

fn assert_contiguous(packets: &[Received]) {
    for pair in packets.windows(2) {
        assert_eq!(pair[1].1, pair[0].1 + 1, "sequence numbers jump from {} to {}", pair[0].1, pair[1].1);
    }
}

/// Frames of `count` at 30 fps from `who` on `rid`, with a keyframe first.
fn video(net: &mut Net, who: u64, rid: &str, first_picture: u16, count: u16, packets: usize, size: usize) {
    for i in 0..count {
        let now = net.now;
        net.client(who).frame(rid, first_picture + i, i == 0, packets, size, now);
        net.run(Duration::from_millis(33));
    }
}

/// Delta frames, as `video` without its keyframe.
fn video_on(net: &mut Net, who: u64, rid: &str, first_picture: u16, count: u16, packets: usize, size: usize) {
    for i in 0..count {
        let now = net.now;
        net.client(who).frame(rid, first_picture + i, false, packets, size, now);
        net.run(Duration::from_millis(33));
    }
}

#[test]
fn media_from_a_publisher_reaches_a_subscriber_renumbered_as_one_stream() {
    let mut net = Net::new(1, 9);
    net.join(1, 0, &["l"], 0);
    net.join(2, 0, &[], 9);
    net.connect();
    for i in 0..10 {
        let now = net.now;
        net.client(1).audio(i, -30, now);
        net.client(1).frame("l", 100 + i as u16, i == 0, 2, 300, now);
        net.run(Duration::from_millis(20));
    }
    let audio = slot_of(&net, 2, 1, "audio").expect("an audio slot for 1");
    let video = slot_of(&net, 2, 1, "video").expect("a video slot for 1");
    let sub = net.client(2);
    assert_eq!(sub.on(audio).len(), 10);
    assert_contiguous(sub.on(audio));
    assert_eq!(sub.on(video).len(), 20);
    assert_contiguous(sub.on(video));
    // The payload is the publisher's, PictureID and all (the first source needs no renumbering).
    assert_eq!(&sub.on(video)[0].2[..4], &vp8_payload(100, true, true, 180, 300)[..4]);
}

/// A RED payload: one redundant block (the previous frame, 960 samples back), then `primary`.
fn red_payload(previous: &[u8], primary: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | 111, (960u16 >> 6) as u8, 0, previous.len() as u8, 111];
    out.extend_from_slice(previous);
    out.extend_from_slice(primary);
    out
}

#[test]
fn red_audio_reaches_a_red_subscriber_whole_and_the_others_as_its_primary_opus_frame() {
    let mut net = Net::new(1, 9);
    net.join_with(1, 0, &["l"], 0, true);
    net.join_with(2, 0, &[], 9, true);
    net.join_with(3, 0, &[], 9, false);
    net.connect();
    let frame = |i: u32| vec![i as u8; 40];
    for i in 1..=10 {
        let now = net.now;
        let packet = Packet { mid: net.client(1).audio.expect("publishes audio"), rid: None, codec: Codec::Red, timestamp: i * 960, marker: false };
        net.client(1).send(packet, red_payload(&frame(i - 1), &frame(i)), Some(-30), now);
        net.run(Duration::from_millis(20));
    }
    let with_red = slot_of(&net, 2, 1, "audio").expect("an audio slot for 1 at 2");
    let without = slot_of(&net, 3, 1, "audio").expect("an audio slot for 1 at 3");
    let red: Vec<Vec<u8>> = net.client(2).on(with_red).iter().map(|r| r.2.to_vec()).collect();
    let plain: Vec<Vec<u8>> = net.client(3).on(without).iter().map(|r| r.2.to_vec()).collect();
    assert_eq!(red, (1..=10).map(|i| red_payload(&frame(i - 1), &frame(i))).collect::<Vec<_>>(), "RED as it was sent");
    assert_eq!(plain, (1..=10).map(frame).collect::<Vec<_>>(), "the primary frames alone");
    assert_contiguous(net.client(3).on(without));
}

#[test]
fn a_150_packet_keyframe_leaves_within_its_pacing_budget_not_one_packet_per_turn() {
    let mut net = Net::new(1, 9);
    net.join(1, 0, &["h"], 0);
    net.join(2, 0, &[], 9);
    net.connect();
    let before = net.turns.len();
    let start = net.now;
    let now = net.now;
    net.client(1).frame("h", 1, true, 150, 1100, now);
    let video = loop {
        net.step(Duration::from_millis(1));
        if let Some(v) = slot_of(&net, 2, 1, "video") {
            break v;
        }
    };
    for _ in 0..3000 {
        if net.client(2).on(video).len() == 150 {
            break;
        }
        net.step(Duration::from_millis(1));
    }
    let took = net.now - start;
    let turns = net.turns[before..].to_vec();
    let sent: usize = turns.iter().sum();
    assert_eq!(net.client(2).on(video).len(), 150, "the whole keyframe arrives");
    println!("150 packets left in {} router turns over {took:?} (largest turn {})", turns.len(), turns.iter().max().unwrap());
    assert!(sent >= 150 && turns.len() * 4 <= sent, "{} turns for {sent} packets: the pacer released about one packet per turn", turns.len());
    // 165 kB at the pacing rate (1.1 × the 1 Mbit/s starting estimate) is about 1.2 s.
    assert!(took < Duration::from_millis(1500), "the keyframe took {took:?}");
    assert_contiguous(net.client(2).on(video));
}

#[test]
fn audio_queued_behind_a_video_burst_departs_first() {
    let mut net = Net::new(1, 9);
    net.join(1, 0, &["h"], 0);
    net.join(2, 0, &[], 9);
    net.connect();
    // Slots are assigned; a first keyframe starts the video slot.
    video(&mut net, 1, "h", 1, 2, 1, 500);
    let (audio, video) = (slot_of(&net, 2, 1, "audio").unwrap(), slot_of(&net, 2, 1, "video").unwrap());
    let now = net.now;
    let before = net.client(2).on(video).len();
    net.client(1).frame("h", 10, true, 150, 1100, now);
    net.client(1).audio(1, -30, now);
    net.run(Duration::from_millis(2000));
    let sub = net.client(2);
    let spoken = sub.on(audio).last().expect("the audio packet arrived").0;
    let burst = &sub.on(video)[before..];
    assert_eq!(burst.len(), 150);
    let behind = burst.iter().filter(|(t, _, _)| *t < spoken).count();
    println!("the audio packet arrived {:?} after it was sent, after {behind} of the 150 video packets", spoken - now);
    assert!(behind < 20, "{behind} video packets went before the audio packet");
    assert!(spoken - now <= net.latency * 2 + Duration::from_millis(2), "the audio took {:?}", spoken - now);
}

/// Frames `pictures` of publisher 1 in both layers ("l" 150-byte, "h" 220-byte packets),
/// keyframes in the first.
fn both_layers(net: &mut Net, pictures: std::ops::Range<u16>) {
    for i in pictures {
        let now = net.now;
        net.client(1).frame("l", 1000 + i, i == 0, 1, 150, now);
        net.client(1).frame("h", 5000 + i, i == 0, 1, 220, now);
        net.run(Duration::from_millis(33));
    }
}

/// Publisher 1 sends "l" and "h"; subscriber 2 shows it in a small tile: the low layer.
fn two_layers_in_a_small_tile() -> Net {
    let mut net = Net::new(1, 9);
    net.join(1, 0, &["l", "h"], 0);
    net.join(2, 0, &[], 9);
    net.connect();
    net.routers[0].view(&PeerKey { room: "room".into(), participant: 2 }, ROOM, vec![Tile { participant: 1, screen: false, height: 180 }]);
    both_layers(&mut net, 0..40);
    net
}

#[test]
fn a_layer_switch_waits_for_a_keyframe_and_sequence_numbers_stay_contiguous() {
    let mut net = two_layers_in_a_small_tile();
    let video = slot_of(&net, 2, 1, "video").unwrap();
    let before = net.client(2).on(video).len();
    assert!(before >= 30, "the low layer flows ({before} packets)");
    assert!(net.client(2).on(video).iter().all(|(_, _, p)| p.len() == 150), "only the low layer");
    // A large tile: the relay moves the slot to "h" and asks for its keyframe; "l" goes on
    // until one arrives.
    net.routers[0].view(&PeerKey { room: "room".into(), participant: 2 }, ROOM, vec![Tile { participant: 1, screen: false, height: 720 }]);
    net.client(1).keyframe_requests.clear();
    both_layers(&mut net, 40..80);
    assert!(net.client(1).keyframe_requests.contains(&Some(Rid::from("h"))), "the relay asked for a keyframe of h: {:?}", net.client(1).keyframe_requests);
    assert!(net.client(2).on(video).iter().all(|(_, _, p)| p.len() == 150), "still the low layer, without a keyframe of h");
    let now = net.now;
    net.client(1).frame("h", 5080, true, 1, 220, now);
    net.client(1).frame("l", 1080, false, 1, 150, now);
    net.run(Duration::from_millis(100));
    let sub = net.client(2);
    let after: Vec<usize> = sub.on(video)[before..].iter().map(|(_, _, p)| p.len()).collect();
    let switched = after.iter().position(|n| *n == 220).expect("h arrives");
    assert!(after[switched..].iter().all(|n| *n == 220), "nothing of l after the switch: {after:?}");
    let picture = |p: &[u8]| crate::vp8::inspect(p).and_then(|v| v.picture_id).map(|p| p.value);
    let (last_l, first_h) = (&sub.on(video)[before + switched - 1].2, &sub.on(video)[before + switched].2);
    assert_eq!(crate::vp8::inspect(first_h).map(|v| v.keyframe), Some(true), "the switch happens on h's keyframe");
    assert_eq!(picture(first_h), picture(last_l).map(|p| p + 1), "PictureID continues from l's");
    assert_contiguous(sub.on(video));
}

#[test]
fn the_routing_table_follows_reassignments_and_the_old_source_stays_until_the_new_keyframe() {
    let mut net = Net::new(1, 1);
    net.join(1, 0, &["l"], 1);
    net.join(2, 0, &["l"], 1);
    net.join(3, 0, &[], 1);
    net.connect();
    for i in 0..10u16 {
        let now = net.now;
        net.client(1).frame("l", 100 + i, i == 0, 1, 300, now);
        net.client(2).frame("l", 200 + i, i == 0, 1, 301, now);
        net.run(Duration::from_millis(33));
    }
    // Last-N of one: 3 sees 1 (joined first), and the routes say so.
    let slot = slot_of(&net, 3, 1, "video").expect("3 sees 1");
    let video_of = |net: &mut Net, who: u64| net.client(who).video.unwrap();
    let (v1, v2) = (video_of(&mut net, 1), video_of(&mut net, 2));
    let routes = |net: &Net, from: u64| net.routers[0].rooms[&ROOM].routes.get(&(from, if from == 1 { v1 } else { v2 })).map_or(0, |r| r.len());
    assert_eq!(routes(&net, 2), 1, "2's video feeds only 1's slot");
    // 2 speaks: 3's slot is reassigned to 2; until 2's next keyframe, 1 stays on it.
    for i in 0..30u32 {
        let now = net.now;
        net.client(2).audio(i, -20, now);
        net.run(Duration::from_millis(20));
    }
    assert_eq!(slot_of(&net, 3, 2, "video"), Some(slot), "the same slot now carries 2");
    assert_eq!(routes(&net, 2), 2, "2's video now also feeds 3's slot");
    let before = net.client(3).on(slot).len();
    for i in 10..20u16 {
        let now = net.now;
        net.client(1).frame("l", 100 + i, false, 1, 300, now);
        net.client(2).frame("l", 200 + i, false, 1, 301, now);
        net.run(Duration::from_millis(33));
    }
    let sizes: Vec<usize> = net.client(3).on(slot)[before..].iter().map(|(_, _, p)| p.len()).collect();
    assert!(!sizes.is_empty() && sizes.iter().all(|n| *n == 300), "1 stays on the slot until 2's keyframe: {sizes:?}");
    let now = net.now;
    net.client(2).frame("l", 220, true, 1, 301, now);
    net.client(1).frame("l", 120, false, 1, 300, now);
    net.run(Duration::from_millis(300));
    let sub = net.client(3);
    assert_eq!(sub.on(slot).last().map(|p| p.2.len()), Some(301), "2 after its keyframe");
    assert_contiguous(sub.on(slot));
    assert_eq!(routes(&net, 1), 1, "1's video feeds only 2's slot once the switch is done");
}

#[test]
fn a_room_spans_shards_each_subscriber_served_by_its_own() {
    let mut net = Net::new(2, 9);
    net.join(1, 0, &["l"], 9);
    net.join(2, 1, &["l"], 9);
    net.join(3, 1, &[], 9);
    net.connect();
    for i in 0..10u16 {
        let now = net.now;
        net.client(1).frame("l", 100 + i, i == 0, 1, 300, now);
        net.client(2).frame("l", 200 + i, i == 0, 1, 301, now);
        net.client(1).audio(u32::from(i), -40, now);
        net.run(Duration::from_millis(33));
    }
    for (sub, from, size) in [(2, 1, 300), (3, 1, 300), (3, 2, 301), (1, 2, 301)] {
        let slot = slot_of(&net, sub, from, "video").unwrap_or_else(|| panic!("{sub} has a slot for {from}"));
        let got = net.client(sub).on(slot);
        assert!(got.len() >= 9 && got.iter().all(|p| p.2.len() == size), "{sub} receives {from}'s video: {} packets", got.len());
        assert_contiguous(got);
    }
    let audio = slot_of(&net, 3, 1, "audio").unwrap();
    assert_eq!(net.client(3).on(audio).len(), 10, "audio crosses shards too");
    assert_eq!((net.routers[0].participants(), net.routers[1].participants()), (1, 2));
}

#[test]
fn layers_nobody_watches_are_paused_at_the_source_and_resumed_when_wanted() {
    let mut net = two_layers_in_a_small_tile();
    let last_layers = |net: &Net| {
        net.notices.iter().rev().find_map(|n| match n {
            Notice::Layers { peer, active, .. } if peer.participant == 1 => Some(active.clone()),
            _ => None,
        })
    };
    assert_eq!(last_layers(&net), Some(vec!["l".to_string()]), "only the low layer is watched");
    net.routers[0].view(&PeerKey { room: "room".into(), participant: 2 }, ROOM, vec![Tile { participant: 1, screen: false, height: 720 }]);
    net.run(Duration::from_millis(1500));
    assert_eq!(last_layers(&net), Some(vec!["h".to_string(), "l".to_string()]), "a large tile wants h again");
}

#[test]
fn a_tile_reported_without_height_gets_no_video_until_it_has_one_again() {
    let mut net = two_layers_in_a_small_tile();
    let video = slot_of(&net, 2, 1, "video").unwrap();
    let audio = slot_of(&net, 2, 1, "audio").unwrap();
    let paused = |net: &Net| {
        net.notices.iter().rev().find_map(|n| match n {
            Notice::Paused { peer, slots } if peer.participant == 2 => Some(slots.clone()),
            _ => None,
        })
    };
    assert_eq!(paused(&net), None, "nothing was paused so far");
    // Low-bandwidth mode: the tile shows no video.
    net.routers[0].view(&PeerKey { room: "room".into(), participant: 2 }, ROOM, vec![Tile { participant: 1, screen: false, height: 0 }]);
    both_layers(&mut net, 40..50);
    assert_eq!(paused(&net), Some(vec![(video.to_string(), "hidden")]));
    let before = net.client(2).on(video).len();
    both_layers(&mut net, 50..80);
    assert_eq!(net.client(2).on(video).len(), before, "no video while hidden");
    let heard = net.client(2).on(audio).len();
    for i in 0..10 {
        let now = net.now;
        net.client(1).audio(i, -30, now);
        net.run(Duration::from_millis(20));
    }
    assert_eq!(net.client(2).on(audio).len(), heard + 10, "audio goes on");
    // Shown again: the slot resumes on the next keyframe, numbered on from where it stopped.
    net.routers[0].view(&PeerKey { room: "room".into(), participant: 2 }, ROOM, vec![Tile { participant: 1, screen: false, height: 180 }]);
    net.client(1).keyframe_requests.clear();
    both_layers(&mut net, 80..90);
    assert_eq!(paused(&net), Some(vec![]));
    assert!(net.client(1).keyframe_requests.contains(&Some(Rid::from("l"))), "the relay asked for a keyframe: {:?}", net.client(1).keyframe_requests);
    let now = net.now;
    net.client(1).frame("l", 1090, true, 1, 150, now);
    both_layers(&mut net, 91..100);
    assert!(net.client(2).on(video).len() > before, "video is back");
    assert_contiguous(net.client(2).on(video));
}

#[test]
fn video_that_waited_too_long_is_dropped_and_the_slot_restarts_on_a_keyframe() {
    let mut net = Net::new(1, 9);
    net.join(1, 0, &["h"], 0);
    net.join(2, 0, &[], 9);
    net.connect();
    video(&mut net, 1, "h", 1, 10, 2, 500);
    let slot = slot_of(&net, 2, 1, "video").unwrap();
    let before = net.client(2).on(slot).len();
    assert_eq!(before, 20);
    // The shard falls behind: what the publisher sends reaches the router half a second
    // after it reached the socket. None of it is delivered.
    net.ingress_delay = Duration::from_millis(500);
    net.client(1).keyframe_requests.clear();
    video_on(&mut net, 1, "h", 11, 5, 2, 500);
    assert_eq!(net.client(2).on(slot).len(), before, "stale video went out");
    assert!(net.routers[0].counters.stale_drops.load(Ordering::Relaxed) > 0);
    // Caught up: deltas still wait, a keyframe is asked for and restarts the slot.
    net.ingress_delay = Duration::ZERO;
    video_on(&mut net, 1, "h", 16, 3, 2, 500);
    assert_eq!(net.client(2).on(slot).len(), before, "deltas after the gap went out");
    assert!(net.client(1).keyframe_requests.contains(&Some(Rid::from("h"))));
    let now = net.now;
    net.client(1).frame("h", 19, true, 2, 500, now);
    net.run(Duration::from_millis(50));
    let got = net.client(2).on(slot);
    assert_eq!(got.len(), before + 2);
    assert_eq!(crate::vp8::inspect(&got[before].2).map(|v| v.keyframe), Some(true));
    assert_contiguous(got);
}

/// Two nodes and the meeting's home on a third with nobody on it: the home decides, each
/// edge serves its own, and a publisher's node sends the other one copy of each feed its
/// subscribers need, however many they are; the home, with no subscriber, gets no media.
#[test]
fn a_meeting_spans_nodes_one_copy_to_each_node_whatever_its_subscribers() {
    // Node 0 is the home (nobody on it); the publisher is on node 1, subscribers on node 2.
    let crossed = |subscribers: u64| {
        let mut net = Net::cluster(&[1, 1, 2], 9);
        net.join(1, 1, &["l", "h"], 9);
        for s in 0..subscribers {
            net.join(10 + s, 2 + (s as usize % 2), &[], 9);
        }
        net.connect();
        for i in 0..30u16 {
            let now = net.now;
            // A publisher answers keyframe requests, as a browser does.
            let asked = std::mem::take(&mut net.client(1).keyframe_requests);
            let (l, h) = (Some(Rid::from("l")), Some(Rid::from("h")));
            net.client(1).frame("l", 100 + i, i == 0 || asked.contains(&l), 1, 300, now);
            net.client(1).frame("h", 500 + i, i == 0 || asked.contains(&h), 3, 900, now);
            net.client(1).audio(u32::from(i), -40, now);
            net.run(Duration::from_millis(33));
        }
        for s in 0..subscribers {
            let audio = slot_of(&net, 10 + s, 1, "audio").unwrap_or_else(|| panic!("{} hears 1", 10 + s));
            assert!(net.client(10 + s).on(audio).len() >= 20, "{} hears 1 across nodes", 10 + s);
            let video = slot_of(&net, 10 + s, 1, "video").unwrap_or_else(|| panic!("{} sees 1", 10 + s));
            let got = net.client(10 + s).on(video);
            assert!(got.len() >= 20, "{} sees 1 across nodes: {} packets", 10 + s, got.len());
            assert_contiguous(got);
        }
        assert_eq!(net.routers[0].participants(), 0, "nobody's media ends at the home");
        assert_eq!(net.media_crossed.keys().filter(|(_, to)| *to == 0).count(), 0, "the home receives no media");
        net.media_crossed.get(&(1, 2)).copied().unwrap_or_default()
    };
    let (one, eight) = (crossed(1), crossed(8));
    assert!(one.0 > 0, "media crossed");
    let ratio = eight.1 as f64 / one.1 as f64;
    assert!((0.9..=1.1).contains(&ratio), "bytes to the subscribers' node: {} for one, {} for eight (×{ratio:.2})", one.1, eight.1);
}

#[test]
fn audio_a_subscriber_loses_is_passed_on_to_its_publisher_bounded_and_then_forgotten() {
    // The publisher on one shard, the subscriber on the other: the figure crosses shards.
    // RED both ways, so that the relay sends no copies of its own and the loss stays.
    let mut net = Net::new(2, 9);
    net.join_with(1, 0, &["l"], 0, true);
    net.join_with(2, 1, &[], 9, true);
    net.connect();
    let mic = net.client(1).audio.expect("publishes audio");
    let speak = |net: &mut Net, from: u32, seconds: u32| {
        for i in from..from + seconds * 50 {
            let now = net.now;
            let packet = Packet { mid: mic, rid: None, codec: Codec::Red, timestamp: i * 960, marker: false };
            net.client(1).send(packet, red_payload(&[7; 40], &[8; 40]), Some(-30), now);
            net.run(Duration::from_millis(20));
        }
    };
    speak(&mut net, 0, 3);
    assert_eq!(net.client(1).reported_loss.get(&mic).copied().unwrap_or(0.0), 0.0, "nothing lost yet");

    // Half of what reaches the subscriber is lost: the publisher hears of it, bounded at
    // HEARD_LOSS_MAX, though its own leg loses nothing.
    net.lossy = Some((2, 2, 0));
    speak(&mut net, 150, 25);
    let heard = net.client(1).reported_loss.get(&mic).copied().unwrap_or(0.0);
    let bound = f32::from(HEARD_LOSS_MAX) / 256.0;
    assert!((bound - 0.01..=bound + 0.01).contains(&heard), "the publisher's receiver reports say {heard}");

    // The link heals: once HEARD_LOSS_FOR has passed without loss, the reports say none.
    net.lossy = None;
    speak(&mut net, 1400, 30);
    let heard = net.client(1).reported_loss.get(&mic).copied().unwrap_or(1.0);
    assert_eq!(heard, 0.0, "forgotten once the subscriber loses nothing");
}

#[test]
fn a_subscriber_back_from_an_outage_asks_for_a_stretch_the_history_no_longer_holds_and_gets_a_keyframe_asked_for() {
    let mut net = Net::new(1, 9);
    net.join(1, 0, &["h"], 0);
    net.join(2, 0, &[], 9);
    net.connect();
    video(&mut net, 1, "h", 1, 10, 2, 500);
    net.client(1).keyframe_requests.clear();
    // Every datagram to the subscriber lost for a second: more than the history holds.
    net.lossy = Some((2, 1, 0));
    video_on(&mut net, 1, "h", 11, 30, 2, 500);
    assert!(net.client(1).keyframe_requests.is_empty(), "nothing asked during the outage: {:?}", net.client(1).keyframe_requests);
    // Back: the subscriber asks for the packets it missed; the oldest have left the
    // history, so the publisher is asked for a keyframe at once.
    net.lossy = None;
    video_on(&mut net, 1, "h", 41, 3, 2, 500);
    assert!(net.client(1).keyframe_requests.contains(&Some(Rid::from("h"))), "no keyframe asked for after the outage");
}

#[test]
fn a_subscriber_without_red_whose_link_loses_gets_each_audio_packet_twice_and_misses_none() {
    let mut net = Net::new(1, 9);
    net.join(1, 0, &["l"], 0);
    net.join(2, 0, &[], 9);
    net.connect();
    let speak = |net: &mut Net, from: u32, count: u32| {
        for i in from..from + count {
            let now = net.now;
            net.client(1).audio(i, -30, now);
            net.run(Duration::from_millis(20));
        }
    };
    speak(&mut net, 0, 150);
    let counters = net.routers[0].counters.clone();
    assert_eq!(counters.audio_repeated.load(Ordering::Relaxed), 0, "a clean link gets no copies");

    // Every fifth datagram towards the subscriber is lost. Once its receiver reports say
    // so, each audio packet also carries the one before it, and nothing is missed.
    net.lossy = Some((2, 5, 0));
    speak(&mut net, 150, 400);
    assert!(counters.audio_repeated.load(Ordering::Relaxed) > 0, "no audio repeated for a subscriber losing 20 %");
    let slot = slot_of(&net, 2, 1, "audio").expect("an audio slot for 1");
    let from = net.client(2).on(slot).len();
    speak(&mut net, 550, 150);
    let mut seqs: Vec<u64> = net.client(2).on(slot)[from..].iter().map(|r| r.1).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let (first, last) = (seqs[0], seqs[seqs.len() - 1]);
    assert!(last - first >= 140, "audio flowed: {first}..{last}");
    assert_eq!(seqs.len() as u64, last - first + 1, "packets missing between {first} and {last}");
}

#[test]
fn a_packet_the_cascade_loses_is_sent_again_by_the_publishers_node() {
    // The publisher on node 0 (the home), the subscriber on node 1; every seventh media frame
    // between them is lost.
    let mut net = Net::cluster(&[1, 1], 9);
    net.join(1, 0, &["l"], 0);
    net.join(2, 1, &[], 9);
    net.connect();
    let send = |net: &mut Net, first: u16, count: u16| {
        for i in first..first + count {
            let now = net.now;
            let asked = std::mem::take(&mut net.client(1).keyframe_requests);
            net.client(1).frame("l", 100 + i, i == 0 || !asked.is_empty(), 3, 300, now);
            net.client(1).audio(u32::from(i), -40, now);
            net.run(Duration::from_millis(33));
        }
    };
    send(&mut net, 0, 10);
    net.cascade_lossy = Some((7, 0));
    send(&mut net, 10, 60);
    let counters = net.routers[0].counters.clone();
    let (lost, resent) = (counters.cascade_lost.load(Ordering::Relaxed), counters.cascade_resent.load(Ordering::Relaxed));
    assert!(lost > 0, "the cascade lost nothing");
    assert!(resent > 0, "nothing was sent again");
    // Every video packet reached the subscriber: those the cascade lost came again (a copy
    // lost too was asked for again).
    let video = slot_of(&net, 2, 1, "video").expect("2 sees 1");
    let mut seqs: Vec<u64> = net.client(2).on(video).iter().map(|r| r.1).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let missing = (seqs[0]..=seqs[seqs.len() - 1]).filter(|s| seqs.binary_search(s).is_err()).count();
    assert_eq!(missing, 0, "{missing} packets missing; {lost} asked for again, {resent} sent again");
    let audio = slot_of(&net, 2, 1, "audio").expect("2 hears 1");
    assert!(net.client(2).on(audio).len() >= 60, "audio crossed too");
}

#[test]
fn a_subscriber_whose_downlink_is_too_thin_gets_the_silence_of_those_who_do_not_speak_as_dtx_frames() {
    let mut net = Net::new(1, 9);
    net.join(1, 0, &["l"], 0);
    net.join(3, 0, &["l"], 0);
    net.join(2, 0, &[], 9);
    net.connect();
    // 1 is silent and sends heavy video (its smallest layer alone is ~2.4 Mbit/s, more than
    // the subscriber's estimate); 3 speaks.
    for i in 0..150u32 {
        let now = net.now;
        let asked = std::mem::take(&mut net.client(1).keyframe_requests);
        if i % 2 == 0 {
            net.client(1).frame("l", 100 + i as u16, i == 0 || !asked.is_empty(), 10, 1000, now);
        }
        net.client(1).audio(i, -127, now);
        net.client(3).audio(i, -30, now);
        net.run(Duration::from_millis(20));
    }
    let counters = net.routers[0].counters.clone();
    assert!(counters.audio_kept_back.load(Ordering::Relaxed) > 0, "nothing kept back");
    let (silent, speaking) = (slot_of(&net, 2, 1, "audio").expect("2 hears 1"), slot_of(&net, 2, 3, "audio").expect("2 hears 3"));
    let end = net.now;
    let sub = net.client(2);
    let last = |mid: Mid, n: usize| -> Vec<Received> { sub.on(mid).iter().rev().take(n).rev().cloned().collect() };
    // The last second: 3's packets, every one of them, whole; of 1's, a DTX frame (the TOC
    // alone) every 400 ms, numbered on without a gap.
    let spoken = last(speaking, 50);
    assert!(spoken.iter().all(|r| r.2.len() == 80), "3 speaks: whole packets");
    assert_contiguous(&spoken);
    let quiet: Vec<Received> = sub.on(silent).iter().filter(|r| r.0 + Duration::from_secs(1) >= end).cloned().collect();
    assert!((2..=4).contains(&quiet.len()), "{} packets of 1's silence in the last second", quiet.len());
    assert!(quiet.iter().all(|r| r.2.len() == 1), "DTX frames: {:?}", quiet.iter().map(|r| r.2.len()).collect::<Vec<_>>());
    assert_contiguous(&quiet);
}

//! What crosses between the nodes of a cluster: a router's handoffs to another node's
//! shards. Each node numbers its own rooms and keeps its own clock, so rooms travel by name
//! and times as ages. Media goes in datagrams, in a compact binary form read back without
//! allocation beyond the payload; everything else (joins, speech, layers, demand, plans,
//! keyframe requests) as JSON on an ordered stream. Sans-IO: bytes in, handoffs out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Rid};
use str0m::rtp::Vp8Descriptor;

use crate::handoff::{Handoff, MediaPacket, RoomId};
use crate::layers::Layer;
use crate::plan::{Member, Plan};
use crate::slots::Source;
use crate::splice::Feed;
use crate::{Held, NodeId, ShardId};

/// What a node hands the cascade for another node: bytes, and how they must travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One media packet: unreliable and unordered is right (a datagram).
    Media(Vec<u8>),
    /// Anything else: reliable and in order (a stream).
    Control(Vec<u8>),
}

/// The media encoding's version (the first byte of each datagram).
const MEDIA_VERSION: u8 = 1;

/// A control message between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Control {
    Joined { room: String, participant: u64, member: WireMember },
    Left { room: String, participant: u64 },
    Speech { room: String, participant: u64, level: i8, age_us: u64 },
    Layers { room: String, participant: u64, mid: String, layers: Vec<WireLayer> },
    Demand { room: String, shard: ShardId, demand: Vec<(u64, String, Vec<Option<String>>)> },
    Plan { room: String, home: ShardId, plan: WirePlan },
    KeyframeRequest { room: String, publisher: u64, mid: String, layer: Option<String> },
    Loss { room: String, publisher: u64, mid: String, fraction: u8 },
    Resend { room: String, publisher: u64, mid: String, layer: Option<String>, seqs: Vec<u64>, to: u64 },
}

impl Control {
    pub(crate) fn room(&self) -> &str {
        match self {
            Control::Joined { room, .. }
            | Control::Left { room, .. }
            | Control::Speech { room, .. }
            | Control::Layers { room, .. }
            | Control::Demand { room, .. }
            | Control::Plan { room, .. }
            | Control::KeyframeRequest { room, .. }
            | Control::Loss { room, .. }
            | Control::Resend { room, .. } => room,
        }
    }

    /// Whether it goes to the room's planner (on its home node).
    pub(crate) fn to_home(&self) -> bool {
        matches!(self, Control::Joined { .. } | Control::Left { .. } | Control::Speech { .. } | Control::Layers { .. } | Control::Demand { .. })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireLayer {
    rid: Option<String>,
    height: u32,
    bitrate: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireMember {
    shard: ShardId,
    tracks: Vec<(String, bool)>,
    rids: Vec<(String, Vec<String>)>,
    slots: Vec<(String, bool)>,
    screen: Vec<String>,
    sharing: bool,
    held_audio: bool,
    held_video: bool,
}

/// A slot's source on the wire: (slot mid, video?, source participant, source mid).
type WireSlot = (String, bool, u64, String);
/// A feed on the wire: (publisher, mid, rid).
type WireFeed = (u64, String, Option<String>);

/// A plan as one node needs it: every member, but only that node's subscribers' slots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WirePlan {
    members: Vec<(u64, ShardId)>,
    dominant: Option<u64>,
    assignments: Vec<(u64, Vec<WireSlot>)>,
    layers: Vec<(u64, String, Vec<WireLayer>)>,
    screens: Vec<(u64, String)>,
    wanted: Vec<(NodeId, Vec<WireFeed>)>,
}

fn video(kind: MediaKind) -> bool {
    kind == MediaKind::Video
}

fn kind(video: bool) -> MediaKind {
    if video { MediaKind::Video } else { MediaKind::Audio }
}

fn mid(s: &str) -> Mid {
    Mid::from(s)
}

fn rid(s: &Option<String>) -> Option<Rid> {
    s.as_deref().map(Rid::from)
}

fn rid_name(r: Option<Rid>) -> Option<String> {
    r.map(|r| r.to_string())
}

fn wire_layers(layers: &[Layer]) -> Vec<WireLayer> {
    layers.iter().map(|l| WireLayer { rid: rid_name(l.rid), height: l.height, bitrate: l.bitrate }).collect()
}

fn layers(wire: &[WireLayer]) -> Vec<Layer> {
    wire.iter().map(|l| Layer { rid: rid(&l.rid), height: l.height, bitrate: l.bitrate }).collect()
}

/// Encodes `message` for another node; `None` if it is not meant to cross (the packet
/// handoff goes through [`encode_media`]). `to` is the node it goes to (a plan carries only
/// that node's subscribers).
pub(crate) fn encode_control(name: &str, message: &Handoff, now: Instant, to: NodeId) -> Option<Vec<u8>> {
    let room = name.to_string();
    let control = match message {
        Handoff::Media(_) => return None,
        Handoff::Joined { participant, member, .. } => Control::Joined {
            room,
            participant: *participant,
            member: WireMember {
                shard: member.shard,
                tracks: member.tracks.iter().map(|(m, k)| (m.to_string(), video(*k))).collect(),
                rids: member.rids.iter().map(|(m, r)| (m.to_string(), r.iter().map(|r| r.to_string()).collect())).collect(),
                slots: member.slots.iter().map(|(m, k)| (m.to_string(), video(*k))).collect(),
                screen: member.screen.iter().map(|m| m.to_string()).collect(),
                sharing: member.sharing,
                held_audio: member.held.audio,
                held_video: member.held.video,
            },
        },
        Handoff::Left { participant, .. } => Control::Left { room, participant: *participant },
        Handoff::Speech { participant, level, at, .. } => {
            Control::Speech { room, participant: *participant, level: *level, age_us: now.saturating_duration_since(*at).as_micros() as u64 }
        }
        Handoff::Layers { participant, mid, layers, .. } => {
            Control::Layers { room, participant: *participant, mid: mid.to_string(), layers: wire_layers(layers) }
        }
        Handoff::Demand { shard, demand, .. } => Control::Demand {
            room,
            shard: *shard,
            demand: demand.iter().map(|((p, m), l)| (*p, m.to_string(), l.iter().map(|r| rid_name(*r)).collect())).collect(),
        },
        Handoff::Plan { home, plan, .. } => {
            let theirs = |p: &u64| plan.shard_of(*p).is_some_and(|s| s.node == to);
            Control::Plan {
                room,
                home: *home,
                plan: WirePlan {
                    members: plan.members.clone(),
                    dominant: plan.dominant,
                    assignments: plan
                        .assignments
                        .iter()
                        .filter(|(p, _)| theirs(p))
                        .map(|(p, a)| (*p, a.iter().map(|(m, k, s)| (m.to_string(), video(*k), s.participant, s.mid.to_string())).collect()))
                        .collect(),
                    layers: plan.layers.iter().map(|((p, m), l)| (*p, m.to_string(), wire_layers(l))).collect(),
                    screens: plan.screens.iter().map(|(p, m)| (*p, m.to_string())).collect(),
                    wanted: plan
                        .wanted
                        .iter()
                        .map(|(node, feeds)| (*node, feeds.iter().map(|(p, m, r)| (*p, m.to_string(), rid_name(*r))).collect()))
                        .collect(),
                },
            }
        }
        Handoff::KeyframeRequest { feed, .. } => {
            Control::KeyframeRequest { room, publisher: feed.publisher, mid: feed.mid.to_string(), layer: rid_name(feed.layer) }
        }
        Handoff::Loss { feed, fraction, .. } => Control::Loss { room, publisher: feed.publisher, mid: feed.mid.to_string(), fraction: *fraction },
        Handoff::Resend { feed, seqs, to, .. } => {
            Control::Resend { room, publisher: feed.publisher, mid: feed.mid.to_string(), layer: rid_name(feed.layer), seqs: seqs.clone(), to: to.0 }
        }
    };
    Some(serde_json::to_vec(&control).expect("control messages always serialize"))
}

pub(crate) fn decode_control(bytes: &[u8]) -> Result<Control, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// The handoff a control message from another node stands for, in `room` (this node's id
/// for its name).
pub(crate) fn handoff(control: Control, room: RoomId, now: Instant) -> Handoff {
    match control {
        Control::Joined { room: name, participant, member: m } => Handoff::Joined {
            room,
            name: name.into(),
            participant,
            member: Member {
                shard: m.shard,
                tracks: m.tracks.iter().map(|(x, v)| (mid(x), kind(*v))).collect(),
                rids: m.rids.iter().map(|(x, r)| (mid(x), r.iter().map(|r| Rid::from(r.as_str())).collect())).collect(),
                slots: m.slots.iter().map(|(x, v)| (mid(x), kind(*v))).collect(),
                screen: m.screen.iter().map(|x| mid(x)).collect(),
                sharing: m.sharing,
                held: Held { audio: m.held_audio, video: m.held_video },
            },
        },
        Control::Left { participant, .. } => Handoff::Left { room, participant },
        Control::Speech { participant, level, age_us, .. } => {
            Handoff::Speech { room, participant, level, at: now.checked_sub(Duration::from_micros(age_us)).unwrap_or(now) }
        }
        Control::Layers { participant, mid: m, layers: l, .. } => Handoff::Layers { room, participant, mid: mid(&m), layers: layers(&l) },
        Control::Demand { shard, demand, .. } => {
            Handoff::Demand { room, shard, demand: demand.into_iter().map(|(p, m, l)| ((p, mid(&m)), l.iter().map(rid).collect())).collect() }
        }
        Control::Plan { room: name, home, plan: w } => Handoff::Plan {
            room,
            name: name.into(),
            home,
            plan: Arc::new(Plan {
                members: w.members,
                dominant: w.dominant,
                assignments: w
                    .assignments
                    .into_iter()
                    .map(|(p, a)| (p, a.into_iter().map(|(m, v, sp, sm)| (mid(&m), kind(v), Source { participant: sp, mid: mid(&sm) })).collect()))
                    .collect(),
                layers: w.layers.into_iter().map(|(p, m, l)| ((p, mid(&m)), layers(&l).into())).collect(),
                screens: w.screens.into_iter().map(|(p, m)| (p, mid(&m))).collect(),
                wanted: w.wanted.into_iter().map(|(n, feeds)| (n, feeds.into_iter().map(|(p, m, r)| (p, mid(&m), rid(&r))).collect())).collect(),
            }),
        },
        Control::KeyframeRequest { publisher, mid: m, layer, .. } => {
            Handoff::KeyframeRequest { room, feed: Feed { publisher, mid: mid(&m), layer: rid(&layer) } }
        }
        Control::Loss { publisher, mid: m, fraction, .. } => Handoff::Loss { room, feed: Feed { publisher, mid: mid(&m), layer: None }, fraction },
        Control::Resend { publisher, mid: m, layer, seqs, to, .. } => {
            Handoff::Resend { room, feed: Feed { publisher, mid: mid(&m), layer: rid(&layer) }, seqs, to: NodeId(to) }
        }
    }
}

fn codec_byte(codec: Codec) -> u8 {
    match codec {
        Codec::Opus => 0,
        Codec::Vp8 => 1,
        Codec::H264 => 2,
        Codec::Red => 3,
        _ => 255,
    }
}

/// One packet for another node: `name` is its room's name there.
pub(crate) fn encode_media(name: &str, packet: &MediaPacket, now: Instant) -> Vec<u8> {
    let mid = packet.feed.mid.to_string();
    let rid = packet.feed.layer.map(|r| r.to_string()).unwrap_or_default();
    let mut out = Vec::with_capacity(40 + name.len() + packet.payload.len());
    out.push(MEDIA_VERSION);
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&packet.feed.publisher.to_be_bytes());
    out.push(mid.len() as u8);
    out.extend_from_slice(mid.as_bytes());
    out.push(rid.len() as u8);
    out.extend_from_slice(rid.as_bytes());
    out.push(u8::from(packet.kind == MediaKind::Video));
    out.push(codec_byte(packet.codec));
    out.extend_from_slice(&packet.seq.to_be_bytes());
    out.extend_from_slice(&packet.timestamp.to_be_bytes());
    let flags = u8::from(packet.marker)
        | u8::from(packet.start) << 1
        | u8::from(packet.audio_level.is_some()) << 2
        | u8::from(packet.voice_activity.is_some()) << 3
        | u8::from(packet.voice_activity == Some(true)) << 4;
    out.push(flags);
    out.push(packet.audio_level.unwrap_or(0) as u8);
    let age = now.saturating_duration_since(packet.arrival).as_micros().min(u32::MAX as u128) as u32;
    out.extend_from_slice(&age.to_be_bytes());
    out.extend_from_slice(&packet.payload);
    out
}

/// Reads bytes in order; `None` once they run out.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn text(&mut self, n: usize) -> Option<&'a str> {
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// The room's name in a media datagram, then a reader to finish it with [`decode_media`].
pub(crate) fn media_room(bytes: &[u8]) -> Option<&str> {
    let mut r = Reader(bytes);
    if r.u8()? != MEDIA_VERSION {
        return None;
    }
    let n = u16::from_be_bytes(r.take(2)?.try_into().ok()?) as usize;
    r.text(n)
}

/// A media datagram from another node, as a packet of `room` (this node's id for its name)
/// that reached this node `now`; `None` if it is malformed.
pub(crate) fn decode_media(bytes: &[u8], room: RoomId, now: Instant) -> Option<MediaPacket> {
    let mut r = Reader(bytes);
    if r.u8()? != MEDIA_VERSION {
        return None;
    }
    let n = u16::from_be_bytes(r.take(2)?.try_into().ok()?) as usize;
    r.take(n)?;
    let publisher = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
    let n = r.u8()? as usize;
    let mid = Mid::from(r.text(n)?);
    let n = r.u8()? as usize;
    let layer = match r.text(n)? {
        "" => None,
        rid => Some(Rid::from(rid)),
    };
    let kind = kind(r.u8()? == 1);
    let codec = match r.u8()? {
        0 => Codec::Opus,
        1 => Codec::Vp8,
        2 => Codec::H264,
        3 => Codec::Red,
        _ => return None,
    };
    let seq = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
    let timestamp = u32::from_be_bytes(r.take(4)?.try_into().ok()?);
    let flags = r.u8()?;
    let level = r.u8()? as i8;
    let age = u32::from_be_bytes(r.take(4)?.try_into().ok()?);
    let payload: Arc<[u8]> = r.0.into();
    let (vp8, vp8_descriptor) = if codec == Codec::Vp8 { (crate::vp8::inspect(&payload), Vp8Descriptor::parse(&payload).ok()) } else { (None, None) };
    Some(MediaPacket {
        room,
        feed: Feed { publisher, mid, layer },
        kind,
        codec,
        seq,
        timestamp,
        marker: flags & 1 != 0,
        start: flags & 2 != 0,
        vp8,
        vp8_descriptor,
        audio_level: (flags & 4 != 0).then_some(level),
        voice_activity: (flags & 8 != 0).then_some(flags & 16 != 0),
        arrival: now.checked_sub(Duration::from_micros(age.into())).unwrap_or(now),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_packet_crosses_as_it_left() {
        let now = Instant::now();
        let packet = MediaPacket {
            room: RoomId(7),
            feed: Feed { publisher: 42, mid: Mid::from("1"), layer: Some(Rid::from("h")) },
            kind: MediaKind::Video,
            codec: Codec::Vp8,
            seq: 1 << 40,
            timestamp: 90_000,
            marker: true,
            start: false,
            vp8: None,
            vp8_descriptor: None,
            audio_level: Some(-30),
            voice_activity: Some(true),
            arrival: now - Duration::from_millis(3),
            payload: Arc::from(&[0x10u8, 0, 0, 1, 2, 3][..]),
        };
        let bytes = encode_media("weekly-sync", &packet, now);
        assert_eq!(media_room(&bytes), Some("weekly-sync"));
        let back = decode_media(&bytes, RoomId(3), now).expect("decodes");
        assert_eq!(
            (back.room, back.feed, back.kind, back.codec, back.seq, back.timestamp),
            (RoomId(3), packet.feed, packet.kind, packet.codec, packet.seq, 90_000)
        );
        assert_eq!((back.marker, back.start, back.audio_level, back.voice_activity), (true, false, Some(-30), Some(true)));
        assert_eq!(now - back.arrival, Duration::from_millis(3));
        assert_eq!(&back.payload[..], &packet.payload[..]);
        assert!(back.vp8.is_some(), "VP8 details are read again from the payload");
        // Every truncation is refused, never misread.
        for n in 0..bytes.len() - packet.payload.len() {
            assert!(decode_media(&bytes[..n], RoomId(3), now).is_none(), "{n} bytes");
        }
    }

    #[test]
    fn a_plan_carries_only_the_receiving_nodes_slots() {
        let (a, b) = (NodeId(1), NodeId(2));
        let s = |p: u64| (Mid::from("3"), MediaKind::Audio, Source { participant: p, mid: Mid::from("0") });
        let plan = Plan {
            members: vec![(1, ShardId { node: a, index: 0 }), (2, ShardId { node: b, index: 1 })],
            assignments: [(1, vec![s(2)]), (2, vec![s(1)])].into(),
            wanted: [(b, [(1, Mid::from("0"), None)].into())].into(),
            ..Plan::default()
        };
        let message = Handoff::Plan { room: RoomId(1), name: "r".into(), home: ShardId { node: a, index: 0 }, plan: Arc::new(plan) };
        let bytes = encode_control("r", &message, Instant::now(), b).expect("a plan crosses");
        let control = decode_control(&bytes).unwrap();
        assert!(!control.to_home());
        let Handoff::Plan { plan, home, .. } = handoff(control, RoomId(9), Instant::now()) else { panic!("a plan") };
        assert_eq!(home, ShardId { node: a, index: 0 });
        assert_eq!(plan.members.len(), 2);
        assert_eq!(plan.assignments.keys().collect::<Vec<_>>(), vec![&2], "only node b's subscriber");
        assert!(plan.wanted[&b].contains(&(1, Mid::from("0"), None)));
        assert!(decode_control(b"{\"Left\":{}}").is_err());
    }
}

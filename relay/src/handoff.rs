//! What the relay's shards (and, through [`crate::remote`], other nodes) pass each other: a
//! room's name among them, a publisher's packet as it arrived, and the messages between a
//! room's shards. Plain data, shared by the router and the cascade's encoding.

use std::sync::Arc;
use std::time::Instant;

use str0m::format::Codec;
use str0m::media::{MediaKind, Mid};
use str0m::rtp::Vp8Descriptor;

use crate::layers::Layer;
use crate::plan::{Demand, Member, Plan};
use crate::splice::Feed;
use crate::vp8::Vp8Info;
use crate::{NodeId, ShardId};

/// A room, as every shard names it (given by [`crate::Relay`] when its first participant
/// arrives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub u64);

/// One RTP packet as it arrived from a publisher. Every subscriber's copy, on every shard,
/// shares it; only the numbering is rewritten per slot.
#[derive(Debug)]
pub struct MediaPacket {
    pub room: RoomId,
    pub feed: Feed,
    pub kind: MediaKind,
    pub codec: Codec,
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    /// A decoder can start here.
    pub start: bool,
    pub vp8: Option<Vp8Info>,
    pub vp8_descriptor: Option<Vp8Descriptor>,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    pub arrival: Instant,
    pub payload: Arc<[u8]>,
}

/// What one shard tells another.
#[derive(Debug, Clone)]
pub enum Handoff {
    /// A publisher's packet, for the receiving shard's subscribers.
    Media(Arc<MediaPacket>),
    /// To the home shard: a participant (now) on `member.shard` with this media.
    Joined { room: RoomId, name: Arc<str>, participant: u64, member: Member },
    /// To the home shard: a participant left the sending shard.
    Left { room: RoomId, participant: u64 },
    /// To the home shard: a loud audio packet.
    Speech { room: RoomId, participant: u64, level: i8, at: Instant },
    /// To the home shard: the layers a publisher's video track sends now.
    Layers { room: RoomId, participant: u64, mid: Mid, layers: Vec<Layer> },
    /// To the home shard: the layers the sending shard forwards (or waits for).
    Demand { room: RoomId, shard: ShardId, demand: Demand },
    /// From the home shard to every shard of the room.
    Plan { room: RoomId, name: Arc<str>, home: ShardId, plan: Arc<Plan> },
    /// To the publisher's shard: a subscriber needs a keyframe of `feed`.
    KeyframeRequest { room: RoomId, feed: Feed },
    /// To the publisher's shard: a subscriber of `feed` (audio) lost `fraction` (in 256ths,
    /// as RTCP counts it) of it in their latest receiver report.
    Loss { room: RoomId, feed: Feed, fraction: u8 },
    /// To the publisher's shard, from another node: the cascade lost these packets of `feed`
    /// (by the publisher's numbering) on the way to node `to`; send them again.
    Resend { room: RoomId, feed: Feed, seqs: Vec<u64>, to: NodeId },
}

impl Handoff {
    pub fn room(&self) -> RoomId {
        match self {
            Handoff::Media(packet) => packet.room,
            Handoff::Joined { room, .. }
            | Handoff::Left { room, .. }
            | Handoff::Speech { room, .. }
            | Handoff::Layers { room, .. }
            | Handoff::Demand { room, .. }
            | Handoff::Plan { room, .. }
            | Handoff::KeyframeRequest { room, .. }
            | Handoff::Loss { room, .. }
            | Handoff::Resend { room, .. } => *room,
        }
    }
}

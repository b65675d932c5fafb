//! One participant on a shard: their `str0m::Rtc` (RTP mode), what they publish (tracks and
//! the layers seen on each) and their receive slots (each with its splicer).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, Ssrc};

use crate::PeerKey;
use crate::congestion::Congestion;
use crate::layers::{Layer, Share};
use crate::repeat::{MAX_COPIES, Repeat};
use crate::slots::Source;
use crate::splice::Splicer;

use super::RoomId;

/// How long a subscriber's video stays available for retransmission (NACK) at least, and at
/// most how many packets of it. str0m (patch 9) keeps it four round trips when that is longer
/// (at most 2 s), so a far subscriber can ask again for a retransmission lost too; on a short
/// path half a second answers every NACK. Each packet kept costs ~430 bytes per subscriber
/// (str0m keeps the whole packet beside the shared payload): at 50 participants 1 s of
/// history cost 1,060 KiB of server memory per participant, 500 ms 930-945 KiB, 250 ms 856
/// KiB (docs/benchmarks.md).
const RTX_HISTORY: Duration = Duration::from_millis(500);
const RTX_PACKETS: usize = 1024;

/// The largest share of a slot's bytes over the last second that may be retransmissions;
/// past it str0m drops the NACKs queued. On a link that loses a share `p` of packets at
/// random, answering every NACK makes that share about `p`, so a cap of `c` leaves every
/// loss above `c` unrepaired: with str0m's default (0.15) a subscriber at 20 % loss lost
/// whole frames until the next keyframe (39-49 % of frames decoded, docs/benchmarks.md "On
/// real networks"). Half is libwebrtc's own bound (retransmissions may not exceed the
/// media), and still stops a storm of NACKs from doubling a slot's rate.
const RTX_SHARE_CAP: f32 = 0.5;

/// Starts a video slot's retransmission history afresh (it holds only shared payloads and
/// their headers).
pub(crate) fn reset_history(stream: &mut str0m::rtp::StreamTx) {
    stream.set_rtx_cache(RTX_PACKETS, RTX_HISTORY, Some(RTX_SHARE_CAP));
}

/// One simulcast layer (or the only stream) of a published video track, as received.
#[derive(Debug, Clone)]
pub(crate) struct LayerBook {
    pub rid: Option<Rid>,
    pub height: Option<u32>,
    /// Bytes received in each of the last few review periods, newest last.
    pub periods: [u64; 5],
    /// Bytes received since the last review.
    pub bytes: u64,
    pub last_seen: Option<Instant>,
    /// The rate it had when it last flowed: what it costs again once resumed.
    pub nominal: u64,
}

impl LayerBook {
    pub fn new(rid: Option<Rid>) -> LayerBook {
        LayerBook { rid, height: None, periods: [0; 5], bytes: 0, last_seen: None, nominal: 0 }
    }

    /// Bit rate over the last second (the five periods of [`super::REVIEW_EVERY`]).
    pub fn bitrate(&self) -> u64 {
        self.periods.iter().sum::<u64>() * 8
    }

    /// Closes a review period.
    pub fn rotate(&mut self) {
        self.periods.rotate_left(1);
        self.periods[4] = std::mem::take(&mut self.bytes);
        if self.periods.iter().all(|p| *p > 0) {
            self.nominal = self.bitrate();
        }
    }
}

/// Something the participant publishes (one send m-line).
#[derive(Debug)]
pub(crate) struct Track {
    pub mid: Mid,
    pub kind: MediaKind,
    pub layers: Vec<LayerBook>,
    /// It carries the participant's screen share: after the first send m-line of each kind
    /// (microphone, camera), the next ones do. Its sound is not their speech.
    pub screen: bool,
}

impl Track {
    /// Every layer ever seen, with its rate now, or its rate when it last flowed if the
    /// publisher has paused it for longer than `stale` (a subscriber can still choose it,
    /// which asks the publisher to resume it).
    pub fn known_layers(&self, now: Instant, stale: Duration) -> Vec<Layer> {
        self.layers
            .iter()
            .filter_map(|b| {
                let flowing = now.saturating_duration_since(b.last_seen?) < stale;
                let bitrate = if flowing { b.bitrate().max(b.nominal) } else { b.nominal };
                Some(Layer { rid: b.rid, height: b.height.unwrap_or(0), bitrate })
            })
            .collect()
    }
}

/// One receive slot of the participant: a send m-line of ours.
#[derive(Debug)]
pub(crate) struct Slot {
    pub mid: Mid,
    pub kind: MediaKind,
    /// Our stream on it (found once negotiation is done).
    pub ssrc: Option<Ssrc>,
    pub source: Option<Source>,
    pub splicer: Splicer,
    /// When the layer was last changed (a layer is held for a while).
    pub layer_since: Instant,
    /// The tile height the layer was chosen for.
    pub chosen_for: Option<u32>,
    /// This slot's share of the downlink estimate (`layers::allocate`).
    pub share: Share,
    /// Why this video slot forwards nothing although it has a source, if it does not.
    pub paused: Option<Pause>,
    /// Since when `layers::allocate` has wanted this playing slot paused for bandwidth.
    pub short_since: Option<Instant>,
    /// It was paused while a queue stood on the downlink (`crate::congestion`).
    pub paused_by_queue: bool,
    /// The last plain audio packets written on it, newest first: what goes again beside
    /// the next one when the subscriber's link loses ([`Repeat`]).
    pub recent: [Option<Said>; MAX_COPIES],
    /// Audio: the size of the payloads it sends (bytes, smoothed over the last few): what
    /// it costs the downlink, as BWE counts.
    pub audio_size: u64,
    /// Audio: the last packet went as RED (its primary alone costs about half).
    pub red: bool,
    /// Audio: when its source last spoke, and, while it is silent for a quiet subscriber,
    /// when the last DTX frame went in place of its packets.
    pub spoke_at: Option<Instant>,
    pub dtx_at: Option<Instant>,
}

/// An audio packet as a slot sent it, to send again.
#[derive(Debug, Clone)]
pub(crate) struct Said {
    pub pt: Pt,
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub ext: ExtensionValues,
    pub arrival: Instant,
    pub payload: Arc<[u8]>,
}

/// Why a video slot with a source forwards nothing (`Notice::Paused` tells the subscriber).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pause {
    /// The subscriber's downlink does not fit even the smallest layer beside audio.
    Bandwidth,
    /// The subscriber shows no video for this source (its tile reports height 0).
    Hidden,
}

impl Pause {
    pub fn reason(self) -> &'static str {
        match self {
            Pause::Bandwidth => "bandwidth",
            Pause::Hidden => "hidden",
        }
    }
}

impl Slot {
    pub fn new(mid: Mid, kind: MediaKind, now: Instant) -> Slot {
        let clock_rate = if kind == MediaKind::Audio { 48_000 } else { 90_000 };
        Slot {
            mid,
            kind,
            ssrc: None,
            source: None,
            splicer: Splicer::new(clock_rate),
            layer_since: now,
            chosen_for: None,
            share: Share::Unknown,
            paused: None,
            short_since: None,
            paused_by_queue: false,
            recent: Default::default(),
            audio_size: 0,
            red: false,
            spoke_at: None,
            dtx_at: None,
        }
    }
}

pub(crate) struct Peer {
    pub key: PeerKey,
    pub room: RoomId,
    pub rtc: Rtc,
    pub tracks: Vec<Track>,
    pub slots: Vec<Slot>,
    /// Incoming SSRC → (track index, layer), learned from str0m's receive streams.
    pub rx: HashMap<Ssrc, (usize, Option<Rid>)>,
    /// Payload type → codec, for what they send; codec → payload type, for what we send.
    pub codec_of: Vec<(Pt, Codec)>,
    pub pt_for: Vec<(Codec, Pt)>,
    /// How tall they show each other participant's video: (participant, their screen
    /// rather than their camera) → device pixels.
    pub wanted: HashMap<(u64, bool), u32>,
    /// They share their screen now (the node says so).
    pub sharing: bool,
    /// What a host holds back of them (the node says so): forwarded to nobody.
    pub held: crate::Held,
    /// Their downlink estimate from str0m's BWE (TWCC), bit/s.
    pub estimate: Option<u64>,
    /// When str0m next needs the time.
    pub next_timeout: Instant,
    /// The latest time given to str0m.
    pub clock: Instant,
    pub dirty: bool,
    /// Media was queued for them (not sent at once) since their last timeout.
    pub written: bool,
    /// Keyframe requests sent to them, per layer, for throttling.
    pub keyframe_requested: HashMap<(Mid, Option<Rid>), Instant>,
    /// The cumulative (NACKs, packets lost) str0m last reported per stream (mid, rid,
    /// egress), so that `/metrics` counts only what is new.
    pub reported: HashMap<(Mid, Option<Rid>, bool), (u64, u64)>,
    /// The worst loss their subscribers report of each audio track they publish, and
    /// when it was heard: passed on in our receiver reports (`super::HEARD_LOSS_FOR`).
    pub heard_loss: HashMap<Mid, (u8, Instant)>,
    /// How many copies their plain audio gets, from the loss they report.
    pub repeat: Repeat,
    /// Since when their downlink cannot carry everyone's audio beside the smallest video:
    /// the silence of those who do not speak is kept back (`super::QUIET_*`).
    pub quiet_since: Option<Instant>,
    /// When their downlink last had room for everything (to leave quiet mode).
    pub roomy_since: Option<Instant>,
    /// Whether we overload their downlink, and the ceiling it then gets.
    pub congestion: Congestion,
    /// The home shard has been told who this is.
    pub announced: bool,
}

impl Peer {
    /// Whether their downlink is held under a ceiling, or was congested lately: it lost
    /// because we sent more than it carries, and redundancy would add to that.
    pub fn limited(&self, now: Instant) -> bool {
        self.congestion.congested(now) || self.congestion.ceiling(now).is_some()
    }

    /// How many copies their plain audio gets now: none on a limited downlink.
    pub fn copies(&self, now: Instant) -> usize {
        if self.limited(now) { 0 } else { self.repeat.copies() }
    }

    pub fn new(key: PeerKey, room: RoomId, rtc: Rtc, now: Instant) -> Peer {
        Peer {
            key,
            room,
            rtc,
            tracks: Vec::new(),
            slots: Vec::new(),
            rx: HashMap::new(),
            codec_of: Vec::new(),
            pt_for: Vec::new(),
            wanted: HashMap::new(),
            sharing: false,
            held: crate::Held::default(),
            estimate: None,
            next_timeout: now,
            clock: now,
            dirty: false,
            written: false,
            keyframe_requested: HashMap::new(),
            heard_loss: HashMap::new(),
            reported: HashMap::new(),
            repeat: Repeat::default(),
            quiet_since: None,
            roomy_since: None,
            congestion: Congestion::default(),
            announced: false,
        }
    }

    /// Learns the payload types negotiated: which codec each of theirs carries, and which
    /// of ours to send each codec with.
    pub fn learn_codecs(&mut self) {
        self.codec_of.clear();
        self.pt_for.clear();
        for params in self.rtc.codec_config().params() {
            let codec = params.spec().codec;
            // RED is folded onto the codec it carries (Opus): its payload type is its own.
            let red = params.red().map(|pt| (pt, Codec::Red));
            for (pt, codec) in std::iter::once((params.pt(), codec)).chain(red) {
                self.codec_of.push((pt, codec));
                if !self.pt_for.iter().any(|(c, _)| *c == codec) {
                    self.pt_for.push((codec, pt));
                }
            }
        }
    }

    pub fn codec(&self, pt: Pt) -> Option<Codec> {
        self.codec_of.iter().find(|(p, _)| *p == pt).map(|(_, c)| *c)
    }

    pub fn pt(&self, codec: Codec) -> Option<Pt> {
        self.pt_for.iter().find(|(c, _)| *c == codec).map(|(_, p)| *p)
    }

    /// Finds our stream on each slot once negotiation has made them.
    pub fn find_streams(&mut self) {
        for slot in &mut self.slots {
            if slot.ssrc.is_some() {
                continue;
            }
            let mut api = self.rtc.direct_api();
            if let Some(stream) = api.stream_tx_by_mid(slot.mid, None) {
                // Forwarded media is not held back by str0m's pacer: each packet leaves in
                // the turn it arrived in, as Janus, Jitsi and LiveKit forward. The pacer
                // still paces BWE probes; BWE still estimates, to choose layers.
                stream.set_unpaced(true);
                if slot.kind == MediaKind::Video {
                    reset_history(stream);
                }
                slot.ssrc = Some(stream.ssrc());
            }
        }
    }

    pub fn slot(&self, mid: Mid) -> Option<usize> {
        self.slots.iter().position(|s| s.mid == mid)
    }

    pub fn track(&self, mid: Mid) -> Option<usize> {
        self.tracks.iter().position(|t| t.mid == mid)
    }
}

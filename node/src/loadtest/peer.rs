//! One WebRTC connection of a bot: a `str0m::Rtc` in RTP mode on its own UDP socket, read
//! and written in batches (`confab_relay::shard::udp`: `recvmmsg` with the kernel's arrival
//! times, `sendmmsg`). It publishes the media of `media.rs` as RTP packets it cuts itself,
//! and measures what it receives packet by packet (`stats.rs`), never decoding. The bot's
//! signaling (Confab's or Janus') decides what is offered; this part only moves media.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use confab_relay::shard::udp::{self, Batch};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::media::{self, Frames, LayerSpec};
use super::stats::{Histogram, StreamReceipt};

/// The largest RTP payload a bot writes.
const MAX_PAYLOAD: usize = 1100;

/// What a bot publishes and how.
#[derive(Debug, Clone)]
pub struct Publish {
    pub layers: Vec<LayerSpec>,
    pub fps: u32,
    pub audio_kbps: u32,
    /// Real VP8 from the embedded clips, or synthetic frames at `layers`' rates.
    pub clips: bool,
}

/// The instant every bot's audio timestamps count from (all bots share the process clock).
pub fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn since_epoch_us(now: Instant) -> u64 {
    now.saturating_duration_since(epoch()).as_micros() as u64
}

/// What one connection received and sent while measuring.
#[derive(Debug, Default, Clone)]
pub struct Receipts {
    /// Per receive m-line.
    pub streams: std::collections::BTreeMap<Mid, StreamReceipt>,
    pub audio_latency: Histogram,
    /// Keyframe requests (PLI/FIR) the far end sent us.
    pub keyframe_requests: u64,
    /// How long our own paths held packets: from an audio packet being due to its
    /// datagram leaving, and from a datagram reaching our socket to its being handled.
    pub send_hold: Histogram,
    pub receive_hold: Histogram,
}

/// One simulcast layer we send.
struct OutLayer {
    rid: Rid,
    frames: Frames,
    seq: u64,
    picture_id: u16,
    active: bool,
    keyframe_due: bool,
}

struct Sending {
    audio: Mid,
    video: Mid,
    audio_seq: u64,
    audio_kbps: u32,
    fps: u32,
    layers: Vec<OutLayer>,
}

pub struct Peer {
    pub rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    sending: Option<Sending>,
    /// Our receive m-lines and their kinds.
    pub receiving: HashMap<Mid, MediaKind>,
    mids: HashMap<Ssrc, Mid>,
    pts: Option<(Pt, Pt)>,
    pub connected_at: Option<Instant>,
    pub first_video_at: Option<Instant>,
    pub failed: Option<String>,
    pub receipts: Receipts,
    next_audio: Instant,
    next_video: Instant,
    /// An audio packet written and due at this time, not yet on the wire.
    audio_due: Option<Instant>,
    batch: Batch,
    outgoing: Vec<(SocketAddr, Vec<u8>)>,
    measuring: bool,
}

impl Peer {
    /// A connection with a host candidate on `ip` (an ephemeral UDP port).
    pub async fn bind(ip: std::net::IpAddr) -> anyhow::Result<Peer> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        udp::configure(socket.as_raw_fd(), 1 << 20)?;
        let local = socket.local_addr()?;
        let mut rtc = Rtc::builder().set_rtp_mode(true).clear_codecs().enable_opus(true, false).enable_vp8(true).set_stats_interval(None).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        let now = Instant::now();
        Ok(Peer {
            rtc,
            socket,
            local,
            sending: None,
            receiving: HashMap::new(),
            mids: HashMap::new(),
            pts: None,
            connected_at: None,
            first_video_at: None,
            failed: None,
            receipts: Receipts::default(),
            next_audio: now,
            next_video: now,
            audio_due: None,
            batch: Batch::new(),
            outgoing: Vec::new(),
            measuring: false,
        })
    }

    /// Our offer: audio, and video in `publish`'s simulcast layers, if publishing; then
    /// `slots` receive-only m-lines of each kind.
    pub fn offer(&mut self, publish: Option<Publish>, slots: usize) -> (SdpOffer, SdpPendingOffer) {
        let mut api = self.rtc.sdp_api();
        let sending = publish.map(|p| {
            let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, Some("bot".into()), Some("bot-audio".into()), None);
            let mut simulcast = Simulcast::new();
            for layer in &p.layers {
                simulcast.add_send_layer(SimulcastLayer::new(layer.rid));
            }
            let video = api.add_media(MediaKind::Video, Direction::SendOnly, Some("bot".into()), Some("bot-video".into()), Some(simulcast));
            let layers = p
                .layers
                .iter()
                .map(|spec| OutLayer {
                    rid: Rid::from(spec.rid),
                    frames: if p.clips {
                        Frames::clip(spec.rid).unwrap_or_else(|| Frames::synthetic(spec.clone(), p.fps))
                    } else {
                        Frames::synthetic(spec.clone(), p.fps)
                    },
                    seq: 1,
                    picture_id: 0,
                    active: true,
                    keyframe_due: true,
                })
                .collect();
            Sending { audio, video, audio_seq: 1, audio_kbps: p.audio_kbps, fps: p.fps, layers }
        });
        let mut receiving = Vec::new();
        for _ in 0..slots {
            receiving.push((api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None), MediaKind::Audio));
            receiving.push((api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None), MediaKind::Video));
        }
        let (offer, pending) = api.apply().expect("an offer with media");
        self.sending = sending;
        self.receiving.extend(receiving);
        (offer, pending)
    }

    pub fn accept_answer(&mut self, pending: SdpPendingOffer, sdp: &str) -> anyhow::Result<()> {
        let answer = SdpAnswer::from_sdp_string(sdp)?;
        self.rtc.sdp_api().accept_answer(pending, answer)?;
        Ok(())
    }

    /// Answers a far end's offer (Janus offers the streams a subscriber asked for).
    pub fn answer(&mut self, sdp: &str) -> anyhow::Result<String> {
        let offer = SdpOffer::from_sdp_string(sdp)?;
        let answer = self.rtc.sdp_api().accept_offer(offer)?;
        Ok(answer.to_sdp_string())
    }

    pub fn alive(&self) -> bool {
        self.rtc.is_alive() && self.failed.is_none()
    }

    /// Sends only these simulcast layers (rids), as a browser does when the SFU says nobody
    /// receives the others; a resumed layer starts with a keyframe.
    pub fn set_active_layers(&mut self, active: &[String]) {
        let Some(sending) = self.sending.as_mut() else { return };
        for layer in &mut sending.layers {
            let on = active.iter().any(|r| *r == *layer.rid);
            if on && !layer.active {
                layer.keyframe_due = true;
            }
            layer.active = on;
        }
    }

    /// Sends what is due, handles str0m's timers, and returns when to come back. `speaking`
    /// sets the audio level; `measuring` says whether receipts count yet.
    pub fn drive(&mut self, speaking: bool, measuring: bool) -> Instant {
        self.measuring = measuring;
        let now = Instant::now();
        if self.connected_at.is_some() {
            self.send_media(now, speaking);
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        let deadline = self.drain();
        self.flush();
        let mut next = deadline.min(now + Duration::from_millis(100));
        if self.sending.is_some() && self.connected_at.is_some() {
            next = next.min(self.next_audio).min(self.next_video);
        }
        next
    }

    /// Waits for datagrams and hands in every one waiting (each followed by a poll: in RTP
    /// mode str0m holds one received packet at a time).
    pub async fn receive(&mut self) -> std::io::Result<()> {
        loop {
            self.socket.readable().await?;
            let fd = self.socket.as_raw_fd();
            let batch = &mut self.batch;
            let read = self.socket.try_io(Interest::READABLE, || match batch.recv(fd)? {
                0 => Err(std::io::ErrorKind::WouldBlock.into()),
                n => Ok(n),
            });
            match read {
                Ok(n) => {
                    let now = Instant::now();
                    for i in 0..n {
                        let datagram = self.batch.get(i);
                        if self.measuring {
                            self.receipts.receive_hold.record(now.saturating_duration_since(datagram.arrival).as_secs_f64() * 1000.0);
                        }
                        let Ok(contents) = datagram.contents.try_into() else { continue };
                        let input =
                            Input::Receive(datagram.arrival, Receive { proto: Protocol::Udp, source: datagram.source, destination: self.local, contents });
                        if let Err(e) = self.rtc.handle_input(input) {
                            self.failed = Some(format!("input refused: {e}"));
                            return Ok(());
                        }
                        self.drain();
                    }
                    self.flush();
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn flush(&mut self) {
        if self.outgoing.is_empty() {
            return;
        }
        udp::send_batch(self.socket.as_raw_fd(), &mut self.outgoing);
        if let Some(due) = self.audio_due.take()
            && self.measuring
        {
            self.receipts.send_hold.record(Instant::now().saturating_duration_since(due).as_secs_f64() * 1000.0);
        }
    }

    fn payload_types(&mut self) -> Option<(Pt, Pt)> {
        if self.pts.is_none() {
            let params = self.rtc.codec_config().params();
            let pt = |codec| params.iter().find(|p| p.spec().codec == codec).map(|p| p.pt());
            self.pts = pt(Codec::Opus).zip(pt(Codec::Vp8));
        }
        self.pts
    }

    fn send_media(&mut self, now: Instant, speaking: bool) {
        let Some((opus, vp8)) = self.payload_types() else { return };
        let Some(sending) = self.sending.as_mut() else { return };
        let mut api = self.rtc.direct_api();
        if now >= self.next_audio {
            let level = if speaking { media::SPEAKING_LEVEL } else { media::SILENT_LEVEL };
            let packet = media::audio_packet(sending.audio_kbps, since_epoch_us(now));
            // Stamped on the 20 ms grid it was due on, not when this loop got to it: a
            // browser's microphone clock does that, and a receiver conceals every
            // millisecond a late send would otherwise add between two timestamps.
            let rtp_time = (since_epoch_us(self.next_audio) * 48 / 1000) as u32;
            if let Some(stream) = api.stream_tx_by_mid(sending.audio, None) {
                let ext = ExtensionValues { audio_level: Some(level), voice_activity: Some(speaking), ..Default::default() };
                stream.write_rtp(RtpWrite::new(opus, SeqNo::from(sending.audio_seq), rtp_time, now, packet).ext_vals(ext));
                sending.audio_seq += 1;
                self.audio_due = Some(self.next_audio);
            }
            self.next_audio += media::AUDIO_EVERY;
            if self.next_audio < now {
                self.next_audio = now + media::AUDIO_EVERY;
            }
        }
        if now >= self.next_video {
            let rtp_time = (since_epoch_us(now) * 9 / 100) as u32;
            for layer in sending.layers.iter_mut().filter(|l| l.active) {
                let Some(stream) = api.stream_tx_by_mid(sending.video, Some(layer.rid)) else { continue };
                let (frame, _) = layer.frames.next(std::mem::take(&mut layer.keyframe_due));
                let payloads = media::vp8_payloads(&frame, layer.picture_id, MAX_PAYLOAD);
                let last = payloads.len() - 1;
                for (i, payload) in payloads.into_iter().enumerate() {
                    stream.write_rtp(RtpWrite::new(vp8, SeqNo::from(layer.seq), rtp_time, now, payload).marker(i == last).nackable(true));
                    layer.seq += 1;
                }
                layer.picture_id = (layer.picture_id + 1) & 0x7fff;
            }
            let every = Duration::from_secs(1) / sending.fps.max(1);
            self.next_video += every;
            if self.next_video < now {
                self.next_video = now + every;
            }
        }
    }

    /// Polls str0m until it waits: datagrams queue for the socket, events are handled.
    fn drain(&mut self) -> Instant {
        loop {
            let output = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    self.failed = Some(format!("WebRTC failed: {e}"));
                    return Instant::now() + Duration::from_secs(1);
                }
            };
            match output {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => self.outgoing.push((t.destination, t.contents.into())),
                Output::Event(event) => self.event(event),
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.failed = Some("ICE disconnected".into());
            }
            Event::MediaAdded(m) if m.direction == Direction::RecvOnly => {
                self.receiving.insert(m.mid, m.kind);
            }
            Event::Connected => {
                let now = Instant::now();
                self.connected_at = Some(now);
                self.next_audio = now;
                self.next_video = now;
            }
            Event::KeyframeRequest(request) => {
                if let Some(sending) = self.sending.as_mut()
                    && request.mid == sending.video
                {
                    for layer in &mut sending.layers {
                        if request.rid.is_none_or(|rid| rid == layer.rid) {
                            layer.keyframe_due = true;
                        }
                    }
                    if self.measuring {
                        self.receipts.keyframe_requests += 1;
                    }
                }
            }
            Event::RtpPacket(packet) => self.received(packet),
            _ => {}
        }
    }

    fn received(&mut self, packet: RtpPacket) {
        let ssrc = packet.header.ssrc;
        let mid = match self.mids.get(&ssrc) {
            Some(mid) => *mid,
            None => {
                let Some(mid) = self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid()) else { return };
                self.mids.insert(ssrc, mid);
                mid
            }
        };
        let kind = self.receiving.get(&mid).copied();
        if kind == Some(MediaKind::Video) && self.first_video_at.is_none() {
            self.first_video_at = Some(packet.timestamp);
        }
        if !self.measuring {
            return;
        }
        let arrival = packet.timestamp.saturating_duration_since(epoch()).as_secs_f64();
        let audio = kind == Some(MediaKind::Audio);
        self.receipts.streams.entry(mid).or_default().packet(
            *packet.seq_no,
            packet.payload.len(),
            packet.header.marker || audio,
            packet.time.numer(),
            packet.time.frequency().get() as u64,
            arrival,
        );
        if audio && let Some(sent) = media::audio_sent_us(&packet.payload) {
            let latency_us = since_epoch_us(packet.timestamp).saturating_sub(sent);
            self.receipts.audio_latency.record(latency_us as f64 / 1000.0);
        }
    }
}

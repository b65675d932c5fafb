//! One WebRTC connection of a bot: a `str0m::Rtc` on its own UDP socket, publishing the
//! synthetic media of `media.rs` and measuring what it receives (`stats.rs`). The bot's
//! signaling (Confab's or Janus') decides what is offered; this part only moves media.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;

use super::media::{self, LayerSpec};
use super::stats::{Histogram, StreamReceipt};

/// What a bot publishes and how.
#[derive(Debug, Clone)]
pub struct Publish {
    pub layers: Vec<LayerSpec>,
    pub fps: u32,
    pub audio_kbps: u32,
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
    pub streams: BTreeMap<Mid, StreamReceipt>,
    pub audio_latency: Histogram,
    /// Keyframe requests (PLI/FIR) the far end sent us, per layer.
    pub keyframe_requests: u64,
    pub datagrams_dropped: u64,
}

pub struct Peer {
    pub rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    publish: Option<(Mid, Mid, Publish)>,
    /// Our receive m-lines and their kinds.
    pub receiving: HashMap<Mid, MediaKind>,
    pub connected_at: Option<Instant>,
    pub first_video_at: Option<Instant>,
    pub failed: Option<String>,
    pub receipts: Receipts,
    /// Layers owed a keyframe (a PLI came, or we just started).
    keyframe_due: Vec<bool>,
    frame_count: u64,
    next_audio: Instant,
    next_video: Instant,
    buf: Vec<u8>,
}

impl Peer {
    /// A connection with a host candidate on `ip` (an ephemeral UDP port).
    pub async fn bind(ip: std::net::IpAddr) -> anyhow::Result<Peer> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = socket.local_addr()?;
        let mut rtc = Rtc::builder().set_stats_interval(None).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        let now = Instant::now();
        Ok(Peer {
            rtc,
            socket,
            local,
            publish: None,
            receiving: HashMap::new(),
            connected_at: None,
            first_video_at: None,
            failed: None,
            receipts: Receipts::default(),
            keyframe_due: Vec::new(),
            frame_count: 0,
            next_audio: now,
            next_video: now,
            buf: vec![0; 2000],
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
            (audio, video, p)
        });
        let mut receiving = Vec::new();
        for _ in 0..slots {
            receiving.push((api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None), MediaKind::Audio));
            receiving.push((api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None), MediaKind::Video));
        }
        let (offer, pending) = api.apply().expect("an offer with media");
        if let Some((_, _, p)) = &sending {
            self.keyframe_due = vec![true; p.layers.len()];
        }
        self.publish = sending;
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

    /// Sends what is due, handles what came, and returns when to come back. `speaking` sets
    /// the audio level; `measuring` says whether receipts count yet.
    pub fn drive(&mut self, speaking: bool, measuring: bool) -> Instant {
        let now = Instant::now();
        if self.connected_at.is_some() {
            self.send_media(now, speaking);
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        let deadline = self.drain(measuring);
        let mut next = deadline.min(now + Duration::from_millis(100));
        if self.publish.is_some() && self.connected_at.is_some() {
            next = next.min(self.next_audio).min(self.next_video);
        }
        next
    }

    /// Waits for the next datagram and hands it (and any others already queued) in.
    pub async fn receive(&mut self) -> std::io::Result<()> {
        self.socket.readable().await?;
        loop {
            match self.socket.try_recv_from(&mut self.buf) {
                Ok((n, source)) => {
                    let Ok(contents) = self.buf[..n].try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: self.local, contents });
                    if let Err(e) = self.rtc.handle_input(input) {
                        self.failed = Some(format!("input refused: {e}"));
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    fn send_media(&mut self, now: Instant, speaking: bool) {
        let Some((audio_mid, video_mid, publish)) = self.publish.clone() else { return };
        if now >= self.next_audio {
            let level = if speaking { media::SPEAKING_LEVEL } else { media::SILENT_LEVEL };
            let packet = media::audio_packet(publish.audio_kbps, since_epoch_us(now));
            let rtp_time = MediaTime::new(now.duration_since(epoch()).as_micros() as u64 * 48 / 1000, Frequency::FORTY_EIGHT_KHZ);
            if let Some(pt) = self.payload_type(audio_mid, Codec::Opus)
                && let Some(writer) = self.rtc.writer(audio_mid)
            {
                let _ = writer.audio_level(level, speaking).write(pt, now, rtp_time, packet);
            }
            self.next_audio += media::AUDIO_EVERY;
            if self.next_audio < now {
                self.next_audio = now + media::AUDIO_EVERY;
            }
        }
        if now >= self.next_video {
            let rtp_time = MediaTime::new(now.duration_since(epoch()).as_micros() as u64 * 9 / 100, Frequency::NINETY_KHZ);
            self.frame_count += 1;
            let pt = self.payload_type(video_mid, Codec::Vp8);
            for (i, layer) in publish.layers.iter().enumerate() {
                let keyframe = std::mem::take(&mut self.keyframe_due[i]);
                let frame: Arc<[u8]> = media::vp8_frame(layer, publish.fps, keyframe, self.frame_count).into();
                if let Some(pt) = pt
                    && let Some(writer) = self.rtc.writer(video_mid)
                {
                    let _ = writer.rid(Rid::from(layer.rid)).write(pt, now, rtp_time, frame);
                }
            }
            let every = Duration::from_secs(1) / publish.fps.max(1);
            self.next_video += every;
            if self.next_video < now {
                self.next_video = now + every;
            }
        }
    }

    fn payload_type(&mut self, mid: Mid, codec: Codec) -> Option<str0m::media::Pt> {
        self.rtc.writer(mid)?.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt())
    }

    fn drain(&mut self, measuring: bool) -> Instant {
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
                Output::Transmit(t) => {
                    if self.socket.try_send_to(&t.contents, t.destination).is_err() {
                        self.receipts.datagrams_dropped += 1;
                    }
                }
                Output::Event(event) => self.event(event, measuring),
            }
        }
    }

    fn event(&mut self, event: Event, measuring: bool) {
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
                if let Some((_, video, publish)) = &self.publish
                    && request.mid == *video
                {
                    let layer = request.rid.and_then(|rid| publish.layers.iter().position(|l| *rid == *l.rid));
                    match layer {
                        Some(i) => self.keyframe_due[i] = true,
                        None => self.keyframe_due.iter_mut().for_each(|k| *k = true),
                    }
                    if measuring {
                        self.receipts.keyframe_requests += 1;
                    }
                }
            }
            Event::MediaData(data) => {
                let now = Instant::now();
                let kind = self.receiving.get(&data.mid).copied();
                if kind == Some(MediaKind::Video) && self.first_video_at.is_none() {
                    self.first_video_at = Some(now);
                }
                if !measuring {
                    return;
                }
                let arrival = data.network_time.saturating_duration_since(epoch()).as_secs_f64();
                let (start, end) = (**data.seq_range.start(), **data.seq_range.end());
                self.receipts.streams.entry(data.mid).or_default().frame(
                    start..=end,
                    data.data.len(),
                    data.time.numer(),
                    data.time.frequency().get() as u64,
                    arrival,
                );
                if kind == Some(MediaKind::Audio)
                    && let Some(sent) = media::audio_sent_us(&data.data)
                {
                    let latency_us = since_epoch_us(data.network_time).saturating_sub(sent);
                    self.receipts.audio_latency.record(latency_us as f64 / 1000.0);
                }
            }
            _ => {}
        }
    }
}

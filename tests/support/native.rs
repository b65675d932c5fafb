//! A native participant on webrtc-rs (the `webrtc` crate): an independent WebRTC
//! implementation that speaks our signaling, joins a meeting in SFU mode, publishes
//! synthetic media and counts what it receives. It checks the relay's interop with something
//! that is not a browser, and the load generator can reuse it.
//!
//! What it sends: Opus silence frames every 20 ms, and a real VP8 stream (320×180, 15 fps, a
//! keyframe every second) encoded once per machine by `vpxenc` (Debian `vpx-tools`, which
//! `tests/run.sh` installs) from frames this module draws, played in a loop. What it counts:
//! RTP packets, bytes and frames (marker bits) per receive slot, and through `sfu-slots`, per
//! participant.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::media::Sample;
use rtc::media::io::ivf_reader::IVFReader;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState,
    RTCSessionDescription, Registry, register_default_interceptors,
};

use crate::signaling::{Heard, Signaling};

/// Receive slots per kind, as the browser client offers (`sfu.js`).
const SLOTS: usize = 9;
/// An Opus packet of 20 ms of silence (TOC: CELT fullband 20 ms, one frame).
const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];
const VIDEO_WIDTH: u32 = 320;
const VIDEO_HEIGHT: u32 = 180;
const VIDEO_FPS: u32 = 15;

/// What arrived on one receive slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    pub packets: u64,
    pub bytes: u64,
    /// RTP packets with the marker bit: the last packet of a video frame.
    pub frames: u64,
}

/// What arrived from one participant, over all the slots that carried them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FromParticipant {
    pub audio: Received,
    pub video: Received,
}

pub struct NativeParticipant {
    pub name: String,
    pub id: String,
    pc: Arc<dyn PeerConnection>,
    /// Slot mid → counts.
    received: Arc<Mutex<BTreeMap<String, Received>>>,
    /// Audio RTP packets received on any slot, whoever they came from.
    audio_packets: Arc<std::sync::atomic::AtomicU64>,
    /// Slot mid → (participant, kind), from the latest `sfu-slots`.
    slots: Arc<Mutex<BTreeMap<String, (String, String)>>>,
    connection: watch::Receiver<RTCPeerConnectionState>,
    /// To the signaling task: a message to send.
    outgoing: mpsc::UnboundedSender<Value>,
    /// The signaling task; it ends with the node's close code.
    signaling: Option<tokio::task::JoinHandle<Option<u16>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Handler {
    gathered: mpsc::UnboundedSender<()>,
    state: watch::Sender<RTCPeerConnectionState>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec { mime_type: "audio/opus".into(), clock_rate: 48_000, channels: 2, sdp_fmtp_line: "minptime=10;useinbandfec=1".into(), rtcp_feedback: vec![] }
}

fn vp8() -> RTCRtpCodec {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback { typ: typ.into(), parameter: parameter.into() };
    RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![feedback("nack", ""), feedback("nack", "pli"), feedback("ccm", "fir")],
    }
}

fn local_track(kind: RtpCodecKind, codec: RTCRtpCodec, name: &str) -> Arc<TrackLocalStaticSample> {
    let mut ssrc = [0u8; 4];
    getrandom::fill(&mut ssrc).unwrap();
    let track = MediaStreamTrack::new(
        format!("confab-native-{name}"),
        format!("confab-native-{name}-{kind}"),
        format!("{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(u32::from_le_bytes(ssrc)), ..Default::default() },
            codec,
            ..Default::default()
        }],
    );
    Arc::new(TrackLocalStaticSample::new(Instant::now(), track).expect("a track with a registered codec"))
}

impl NativeParticipant {
    /// Joins the meeting behind `link` (`https://HOST/m/ROOM#INVITE`) as `name`. The room must
    /// be in SFU mode: this client speaks only to the relay.
    pub async fn join(link: &str, name: &str) -> NativeParticipant {
        NativeParticipant::join_from(link, name, "127.0.0.1:0").await
    }

    /// `join`, with its media socket on `udp` (an address on a link the test made, for a
    /// relay in another network namespace, which cannot reach this one's loopback).
    pub async fn join_from(link: &str, name: &str, udp: &str) -> NativeParticipant {
        NativeParticipant::join_with(link, name, udp, true).await
    }

    /// `join_from`, but sending nothing: a participant who only watches (their camera and
    /// microphone offered, no media on them).
    pub async fn watch_from(link: &str, name: &str, udp: &str) -> NativeParticipant {
        NativeParticipant::join_with(link, name, udp, false).await
    }

    async fn join_with(link: &str, name: &str, udp: &str, publish: bool) -> NativeParticipant {
        let (base, rest) = link.split_once("/m/").expect("a meeting link");
        let (room, invite) = rest.split_once('#').expect("a meeting link with an invite");
        let mut signaling = Signaling::connect_to(base, room).await;
        signaling.send(json!({"type": "join", "v": 1, "invite": invite, "name": name, "audio": true, "video": true})).await;
        let welcome = signaling.expect("welcome").await;
        assert_eq!(welcome["mode"], "sfu", "the native client joins rooms in SFU mode only: {welcome}");
        let id = welcome["you"]["id"].as_str().expect("welcome names our seat").to_string();

        let mut media = MediaEngine::default();
        media.register_codec(RTCRtpCodecParameters { rtp_codec: opus(), payload_type: 111 }, RtpCodecKind::Audio).unwrap();
        media.register_codec(RTCRtpCodecParameters { rtp_codec: vp8(), payload_type: 96 }, RtpCodecKind::Video).unwrap();
        let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
        let (gathered_tx, mut gathered) = mpsc::unbounded_channel();
        let (state_tx, connection) = watch::channel(RTCPeerConnectionState::New);
        let (tracks_tx, mut tracks) = mpsc::unbounded_channel();
        let handler = Arc::new(Handler { gathered: gathered_tx, state: state_tx, tracks: tracks_tx });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec![udp.to_string()])
            .build()
            .await
            .expect("a webrtc-rs peer connection");
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        // The same shape as the browser's offer: our audio and video, then the receive slots.
        let audio = local_track(RtpCodecKind::Audio, opus(), name);
        let video = local_track(RtpCodecKind::Video, vp8(), name);
        let send_only = || Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendonly, ..Default::default() });
        let receive_only = || Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() });
        let audio_sender = pc.add_transceiver_from_track(audio.clone() as Arc<dyn TrackLocal>, send_only()).await.unwrap();
        let video_sender = pc.add_transceiver_from_track(video.clone() as Arc<dyn TrackLocal>, send_only()).await.unwrap();
        for _ in 0..SLOTS {
            pc.add_transceiver_from_kind(RtpCodecKind::Audio, receive_only()).await.unwrap();
            pc.add_transceiver_from_kind(RtpCodecKind::Video, receive_only()).await.unwrap();
        }
        let offer = pc.create_offer(None).await.expect("an offer");
        pc.set_local_description(offer).await.expect("our own offer applies");
        // Send the offer with our candidates in it (no trickling to the relay).
        tokio::time::timeout(Duration::from_secs(10), gathered.recv()).await.expect("ICE gathering finishes within 10 s");
        let sdp = pc.local_description().await.expect("a local description").sdp;
        signaling.send(json!({"type": "sfu-offer", "sdp": sdp})).await;
        let answer = loop {
            match signaling.next().await {
                Heard::Message(m) if m["type"] == "sfu-answer" => break m["sdp"].as_str().unwrap().to_string(),
                Heard::Message(m) if m["type"] == "error" => panic!("the node refused our SFU offer: {m}"),
                Heard::Message(_) => continue,
                Heard::Closed(code) => panic!("the node closed ({code:?}) before answering our SFU offer"),
            }
        };
        pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap()).await.expect("the relay's answer applies");

        let received = Arc::new(Mutex::new(BTreeMap::new()));
        let slots = Arc::new(Mutex::new(BTreeMap::new()));
        let (outgoing, mut to_send) = mpsc::unbounded_channel::<Value>();
        // Signaling: slot assignments in, our messages and a ping every 10 s out, until the
        // node closes the connection (after our `leave`, with 1000).
        let slot_map = slots.clone();
        let signaling = tokio::spawn(async move {
            let mut ping = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    heard = signaling.receive() => match heard {
                        Heard::Message(m) if m["type"] == "sfu-slots" => {
                            let mut map = slot_map.lock().unwrap();
                            map.clear();
                            for s in m["slots"].as_array().into_iter().flatten() {
                                let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                                map.insert(text("mid"), (text("participant"), text("kind")));
                            }
                        }
                        Heard::Message(_) => {}
                        Heard::Closed(code) => return code,
                    },
                    Some(message) = to_send.recv() => signaling.send(message).await,
                    _ = ping.tick() => signaling.send(json!({"type": "ping"})).await,
                }
            }
        });
        let mut tasks = Vec::new();

        // Each remote track: which slot it is (by its receiver's transceiver), then count.
        let audio_packets = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (counts, peer, audio_total) = (received.clone(), pc.clone(), audio_packets.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(track) = tracks.recv().await {
                let track_id = track.track_id().await;
                let audio = track.kind().await == RtpCodecKind::Audio;
                let mut mid = None;
                for transceiver in peer.get_transceivers().await {
                    if let Ok(Some(receiver)) = transceiver.receiver().await
                        && receiver.track().track_id().await == track_id
                    {
                        mid = transceiver.mid().await.ok().flatten();
                    }
                }
                let Some(mid) = mid else { continue };
                let (counts, audio_total) = (counts.clone(), audio_total.clone());
                tokio::spawn(async move {
                    while let Some(event) = track.poll().await {
                        if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                            if audio {
                                audio_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            let mut counts = counts.lock().unwrap();
                            let c: &mut Received = counts.entry(mid.clone()).or_default();
                            c.packets += 1;
                            c.bytes += packet.payload.len() as u64;
                            c.frames += packet.header.marker as u64;
                        }
                    }
                });
            }
        }));

        // Media, once connected: Opus silence every 20 ms, the VP8 loop at 15 fps.
        let frames = synthetic_video_frames();
        let mut state = connection.clone();
        tasks.push(tokio::spawn(async move {
            if !publish || state.wait_for(|s| *s == RTCPeerConnectionState::Connected).await.is_err() {
                return;
            }
            let payload_type = |sender: &Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>| {
                let sender = sender.clone();
                async move { sender.sender().await.ok().flatten()?.get_parameters().await.ok()?.rtp_parameters.codecs.first().map(|c| c.payload_type) }
            };
            let (Some(audio_pt), Some(video_pt)) = (payload_type(&audio_sender).await, payload_type(&video_sender).await) else { return };
            let (audio_ssrc, video_ssrc) = (audio.ssrcs().await[0], video.ssrcs().await[0]);
            let mut audio_tick = tokio::time::interval(Duration::from_millis(20));
            let mut video_tick = tokio::time::interval(Duration::from_secs(1) / VIDEO_FPS);
            let mut next_frame = 0;
            loop {
                let sent = tokio::select! {
                    _ = audio_tick.tick() => {
                        let sample = Sample { data: Bytes::from_static(&OPUS_SILENCE), duration: Duration::from_millis(20), ..Sample::new(Instant::now()) };
                        audio.sample_writer(audio_ssrc, audio_pt).write_sample(&sample).await
                    }
                    _ = video_tick.tick() => {
                        let sample = Sample { data: frames[next_frame].clone(), duration: Duration::from_secs(1) / VIDEO_FPS, ..Sample::new(Instant::now()) };
                        next_frame = (next_frame + 1) % frames.len();
                        video.sample_writer(video_ssrc, video_pt).write_sample(&sample).await
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        }));

        NativeParticipant { name: name.to_string(), id, pc, received, audio_packets, slots, connection, outgoing, signaling: Some(signaling), tasks }
    }

    /// Audio RTP packets received so far on any slot, from anyone.
    pub fn audio_packets(&self) -> u64 {
        self.audio_packets.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends a signaling message of our own (e.g. `media`).
    pub fn send(&self, message: Value) {
        let _ = self.outgoing.send(message);
    }

    /// The connection to the relay, as webrtc-rs sees it.
    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.connection.borrow()
    }

    /// What has arrived so far from each participant, by the current slot assignment.
    pub fn received(&self) -> BTreeMap<String, FromParticipant> {
        let counts = self.received.lock().unwrap().clone();
        let slots = self.slots.lock().unwrap().clone();
        let mut by_participant: BTreeMap<String, FromParticipant> = BTreeMap::new();
        for (mid, (participant, kind)) in slots {
            let c = counts.get(&mid).copied().unwrap_or_default();
            let entry = by_participant.entry(participant).or_default();
            let sum = if kind == "audio" { &mut entry.audio } else { &mut entry.video };
            sum.packets += c.packets;
            sum.bytes += c.bytes;
            sum.frames += c.frames;
        }
        by_participant
    }

    /// Waits until audio packets and video frames from each of `from` keep arriving (more in
    /// the last second than before it); returns what arrived in that second from each.
    pub async fn wait_receiving(&self, from: &[&str]) -> BTreeMap<String, FromParticipant> {
        crate::eventually_or(&format!("{} (webrtc-rs) to receive from {from:?}", self.name), Duration::from_secs(30), || async {
            let before = self.received();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let after = self.received();
            let mut rates = BTreeMap::new();
            for id in from {
                let (a, b) = (before.get(*id).copied().unwrap_or_default(), after.get(*id).copied().unwrap_or_default());
                let rate = FromParticipant {
                    audio: Received { packets: b.audio.packets.saturating_sub(a.audio.packets), bytes: b.audio.bytes.saturating_sub(a.audio.bytes), frames: 0 },
                    video: Received {
                        packets: b.video.packets.saturating_sub(a.video.packets),
                        bytes: b.video.bytes.saturating_sub(a.video.bytes),
                        frames: b.video.frames.saturating_sub(a.video.frames),
                    },
                };
                if rate.audio.packets == 0 || rate.video.frames == 0 {
                    return Err(format!(
                        "connection {:?}, in the last second from {id}: {rate:?}; slots {:?}",
                        self.connection_state(),
                        self.slots.lock().unwrap()
                    ));
                }
                rates.insert(id.to_string(), rate);
            }
            Ok(rates)
        })
        .await
    }

    /// Leaves the meeting: sends `leave`, waits for the node to close the signaling
    /// connection (closing it first, with unread messages from the node still arriving, could
    /// reset the TCP connection and lose the `leave`), then closes the peer connection.
    pub async fn leave(mut self) {
        let _ = self.outgoing.send(json!({"type": "leave"}));
        let signaling = self.signaling.take().expect("the signaling task runs until leave");
        let code = tokio::time::timeout(Duration::from_secs(10), signaling).await;
        assert!(matches!(code, Ok(Ok(Some(1000)))), "{}: the node did not close with 1000 after leave: {code:?}", self.name);
        let _ = self.pc.close().await;
    }
}

impl Drop for NativeParticipant {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(task) = &self.signaling {
            task.abort();
        }
    }
}

/// Three seconds of VP8 at 320×180 and 15 fps with a keyframe every second, as frames:
/// a gradient with a bar sweeping across, drawn here and encoded by `vpxenc` once per
/// machine (the file is reused while the frames it would draw are the same).
pub fn synthetic_video_frames() -> Arc<Vec<Bytes>> {
    static FRAMES: std::sync::OnceLock<Arc<Vec<Bytes>>> = std::sync::OnceLock::new();
    FRAMES
        .get_or_init(|| {
            let path = synthetic_video_file();
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let (mut reader, _) = IVFReader::new(std::io::BufReader::new(file)).expect("vpxenc wrote an IVF file");
            let mut frames = Vec::new();
            while let Ok((frame, _)) = reader.parse_next_frame() {
                frames.push(frame.freeze());
            }
            assert_eq!(frames.len(), 3 * VIDEO_FPS as usize, "vpxenc encoded every frame of {}", path.display());
            Arc::new(frames)
        })
        .clone()
}

fn synthetic_video_file() -> PathBuf {
    let (w, h, n) = (VIDEO_WIDTH as usize, VIDEO_HEIGHT as usize, 3 * VIDEO_FPS as usize);
    let path = std::env::temp_dir().join(format!("confab-test-video-{w}x{h}-{n}.ivf"));
    if path.exists() {
        return path;
    }
    // I420: a luma plane, then quarter-size chroma planes.
    let mut raw = Vec::with_capacity(n * w * h * 3 / 2);
    for f in 0..n {
        let bar = f * w / n;
        for y in 0..h {
            for x in 0..w {
                let near_bar = x.abs_diff(bar) < 12;
                raw.push(if near_bar { 235 } else { (16 + (x + y) * 200 / (w + h)) as u8 });
            }
        }
        for plane in [90u8, 160] {
            raw.extend(std::iter::repeat_n(plane.wrapping_add(f as u8), w * h / 4));
        }
    }
    let id = std::process::id();
    let (input, partial) = (std::env::temp_dir().join(format!("confab-test-video-{id}.yuv")), std::env::temp_dir().join(format!("confab-test-video-{id}.ivf")));
    std::fs::write(&input, raw).expect("writing raw video");
    let status = std::process::Command::new("vpxenc")
        .args(["--codec=vp8", "--ivf", "--i420", "--rt", "--cpu-used=8", "--lag-in-frames=0", "--end-usage=cbr", "--target-bitrate=250"])
        .arg(format!("--width={w}"))
        .arg(format!("--height={h}"))
        .arg(format!("--fps={VIDEO_FPS}/1"))
        .arg(format!("--kf-min-dist={VIDEO_FPS}"))
        .arg(format!("--kf-max-dist={VIDEO_FPS}"))
        .arg("--quiet")
        .arg("-o")
        .arg(&partial)
        .arg(&input)
        .status()
        .unwrap_or_else(|e| panic!("cannot run vpxenc ({e}): tests/run.sh installs it (Debian package vpx-tools)"));
    let _ = std::fs::remove_file(&input);
    assert!(status.success(), "vpxenc failed: {status}");
    std::fs::rename(&partial, &path).expect("moving the encoded video into place");
    path
}

//! What a bot publishes, sans-IO: real VP8 (a pre-encoded two-second loop per simulcast
//! layer, `clips/`, restarted at its keyframe when someone asks for one), or synthetic frames
//! sized to a bitrate; cut into RTP payloads; and Opus packets that a browser decodes (as
//! silence) and whose padding carries their send time, for the one-way latency.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// One simulcast layer a bot publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    pub rid: &'static str,
    pub width: u16,
    pub height: u16,
    pub kbps: u32,
}

/// The browser client's layers (`l`, `m`, `h` at ¼, ½ and full size of 1280×720), at the
/// given bitrates in kbit/s (for synthetic video; the clips have their own).
pub fn layers(kbps: [u32; 3]) -> Vec<LayerSpec> {
    vec![
        LayerSpec { rid: "l", width: 320, height: 180, kbps: kbps[0] },
        LayerSpec { rid: "m", width: 640, height: 360, kbps: kbps[1] },
        LayerSpec { rid: "h", width: 1280, height: 720, kbps: kbps[2] },
    ]
}

/// A clip's frames, shared by every bot.
type ClipFrames = Arc<[Arc<[u8]>]>;

/// Where a layer's frames come from.
#[derive(Debug, Clone)]
pub enum Frames {
    /// A VP8 clip, looped.
    Clip { frames: ClipFrames, at: usize },
    /// Frames of the right size whose keyframes carry a real VP8 header, the rest filler
    /// (an SFU reads them as it reads a browser's; a browser cannot decode them).
    Synthetic { spec: LayerSpec, fps: u32, count: u64 },
}

impl Frames {
    /// The embedded clip for `rid` (`l`, `m` or `h`).
    pub fn clip(rid: &str) -> Option<Frames> {
        let frames = clips().iter().find(|(r, _)| *r == rid)?.1.clone();
        Some(Frames::Clip { frames, at: 0 })
    }

    pub fn synthetic(spec: LayerSpec, fps: u32) -> Frames {
        Frames::Synthetic { spec, fps, count: 0 }
    }

    /// The next frame (and whether it is a keyframe); `keyframe` asks for one now.
    pub fn next(&mut self, keyframe: bool) -> (Arc<[u8]>, bool) {
        match self {
            Frames::Clip { frames, at } => {
                if keyframe || *at >= frames.len() {
                    *at = 0;
                }
                let frame = frames[*at].clone();
                *at += 1;
                let key = frame.first().is_some_and(|b| b & 1 == 0);
                (frame, key)
            }
            Frames::Synthetic { spec, fps, count } => {
                *count += 1;
                (vp8_frame(spec, *fps, keyframe, *count).into(), keyframe)
            }
        }
    }
}

/// The embedded clips, read once: (rid, frames).
fn clips() -> &'static [(&'static str, ClipFrames)] {
    static CLIPS: OnceLock<Vec<(&'static str, ClipFrames)>> = OnceLock::new();
    CLIPS.get_or_init(|| {
        [("l", &include_bytes!("clips/l.ivf")[..]), ("m", &include_bytes!("clips/m.ivf")[..]), ("h", &include_bytes!("clips/h.ivf")[..])]
            .into_iter()
            .map(|(rid, ivf)| (rid, ivf_frames(ivf).expect("the embedded clips are IVF").into_iter().map(Arc::from).collect()))
            .collect()
    })
}

/// The frames of an IVF file (a 32-byte header, then per frame a 12-byte header whose first
/// four bytes are its size, little-endian).
pub fn ivf_frames(ivf: &[u8]) -> Option<Vec<&[u8]>> {
    if ivf.get(..4)? != b"DKIF" {
        return None;
    }
    let mut at = usize::from(u16::from_le_bytes([*ivf.get(6)?, *ivf.get(7)?]));
    let mut frames = Vec::new();
    while at < ivf.len() {
        let size = u32::from_le_bytes(ivf.get(at..at + 4)?.try_into().ok()?) as usize;
        frames.push(ivf.get(at + 12..at + 12 + size)?);
        at += 12 + size;
    }
    Some(frames)
}

/// The RTP payloads for one VP8 frame (RFC 7741): each starts with a descriptor carrying
/// the 15-bit `picture_id`, the first with the start bit; at most `max` bytes each.
pub fn vp8_payloads(frame: &[u8], picture_id: u16, max: usize) -> Vec<Vec<u8>> {
    const DESCRIPTOR: usize = 4;
    let chunk = max.saturating_sub(DESCRIPTOR).max(1);
    frame
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let mut payload = Vec::with_capacity(DESCRIPTOR + part.len());
            // X=1, S on the first packet, partition 0; I=1; M=1 with the 15-bit PictureID.
            payload.extend_from_slice(&[if i == 0 { 0x90 } else { 0x80 }, 0x80, 0x80 | (picture_id >> 8) as u8 & 0x7f, picture_id as u8]);
            payload.extend_from_slice(part);
            payload
        })
        .collect()
}

/// A keyframe is this many times the size of a delta frame, as with real encoders.
pub const KEYFRAME_FACTOR: usize = 4;

/// The bytes of one synthetic frame of `layer` at `fps`: a VP8 frame tag (and for a
/// keyframe the start code and size), then filler. `count` varies the filler.
pub fn vp8_frame(layer: &LayerSpec, fps: u32, keyframe: bool, count: u64) -> Vec<u8> {
    let delta = (layer.kbps as usize * 1000 / 8 / fps.max(1) as usize).max(16);
    let size = if keyframe { delta * KEYFRAME_FACTOR } else { delta };
    let mut frame = Vec::with_capacity(size);
    // Frame tag (RFC 6386 §9.1): bit 0 is 0 for a keyframe, version 0, show_frame set, and
    // the first partition's size (19 bits), here the whole frame.
    let partition = (size as u32 - 3).min((1 << 19) - 1);
    let tag = u32::from(!keyframe) | (1 << 4) | (partition << 5);
    frame.extend_from_slice(&tag.to_le_bytes()[..3]);
    if keyframe {
        frame.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        frame.extend_from_slice(&(layer.width & 0x3fff).to_le_bytes());
        frame.extend_from_slice(&(layer.height & 0x3fff).to_le_bytes());
    }
    let mut x = count.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while frame.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        frame.push(x as u8);
    }
    frame
}

/// Audio packets go out every 20 ms, as Opus in browsers.
pub const AUDIO_EVERY: Duration = Duration::from_millis(20);
/// The first byte of the send time's record at the end of a packet's padding.
const AUDIO_MAGIC: u8 = 0xcf;
/// Opus TOC: config 31 (CELT, fullband, 20 ms), mono, code 3 (a frame count byte follows).
const OPUS_TOC_CODE3: u8 = 0xfb;
/// Frame count byte: constant bitrate, padding present, one frame.
const OPUS_ONE_PADDED_FRAME: u8 = 0x41;
/// A 20 ms CELT frame of silence (the frame of Opus' 3-byte silence packet `f8 ff fe`).
const OPUS_SILENT_FRAME: [u8; 2] = [0xff, 0xfe];

/// An Opus packet of the size `kbps` calls for (RFC 6716 §3.2.5: one silent frame, then
/// padding, which decoders skip), whose padding ends with `sent_us` (µs since the load test
/// started, big-endian).
pub fn audio_packet(kbps: u32, sent_us: u64) -> Vec<u8> {
    let size = (kbps as usize * 1000 / 8 / 50).max(14);
    // TOC, count byte, one padding-length byte (≤ 254), the frame, the padding.
    let padding = (size - 3 - OPUS_SILENT_FRAME.len()).min(254);
    let mut packet = vec![OPUS_TOC_CODE3, OPUS_ONE_PADDED_FRAME, padding as u8];
    packet.extend_from_slice(&OPUS_SILENT_FRAME);
    packet.resize(packet.len() + padding - 9, 0);
    packet.push(AUDIO_MAGIC);
    packet.extend_from_slice(&sent_us.to_be_bytes());
    packet
}

/// The send time a bot's audio packet carries, if it is one.
pub fn audio_sent_us(packet: &[u8]) -> Option<u64> {
    if packet.len() < 14 || packet[0] != OPUS_TOC_CODE3 || packet[1] != OPUS_ONE_PADDED_FRAME {
        return None;
    }
    let record = &packet[packet.len() - 9..];
    (record[0] == AUDIO_MAGIC).then(|| u64::from_be_bytes(record[1..].try_into().expect("8 bytes")))
}

/// Who speaks when: bots take turns of `every`, in join order. Only the speaker's audio
/// carries a speech level, as a speaking browser's would.
pub fn speaker_at(elapsed: Duration, every: Duration, bots: usize) -> usize {
    if bots == 0 || every.is_zero() {
        return 0;
    }
    ((elapsed.as_millis() / every.as_millis()) % bots as u128) as usize
}

/// RFC 6464 levels (dBov): a voice, and silence.
pub const SPEAKING_LEVEL: i8 = -20;
pub const SILENT_LEVEL: i8 = -127;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clips_are_vp8_loops_that_start_on_their_only_keyframe() {
        for (rid, height) in [("l", 180), ("m", 360), ("h", 720)] {
            let Some(Frames::Clip { frames, .. }) = Frames::clip(rid) else { panic!("no clip for {rid}") };
            assert_eq!(frames.len(), 60, "two seconds at 30 fps");
            assert_eq!(confab_relay::vp8::keyframe_size(&frames[0]).map(|s| s.1), Some(height));
            assert!(frames[1..].iter().all(|f| f[0] & 1 == 1), "{rid}: one keyframe, at the start");
            // About the layer's nominal rate over the loop.
            let kbps = frames.iter().map(|f| f.len()).sum::<usize>() * 8 * 30 / 60 / 1000;
            println!("{rid}: {kbps} kbit/s");
            assert!((120..=1700).contains(&kbps));
        }
        let mut l = Frames::clip("l").unwrap();
        assert!(l.next(false).1, "the loop starts with its keyframe");
        assert!(!l.next(false).1);
        assert!(l.next(true).1, "asked for a keyframe: back to the start");
    }

    #[test]
    fn a_frame_is_cut_into_payloads_a_depacketizer_reads_back() {
        let frame: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let payloads = vp8_payloads(&frame, 0x1234, 1000);
        assert_eq!(payloads.len(), 3);
        assert!(payloads.iter().all(|p| p.len() <= 1000));
        for (i, p) in payloads.iter().enumerate() {
            let info = confab_relay::vp8::inspect(p).unwrap();
            assert_eq!(info.frame_start, i == 0);
            assert_eq!(info.picture_id.map(|p| (p.value, p.wide)), Some((0x1234, true)));
        }
        let joined: Vec<u8> = payloads.iter().flat_map(|p| p[4..].to_vec()).collect();
        assert_eq!(joined, frame);
    }

    #[test]
    fn synthetic_keyframes_carry_the_layer_size_an_sfu_reads() {
        for layer in layers([150, 500, 1500]) {
            let key = vp8_frame(&layer, 30, true, 0);
            assert_eq!(confab_relay::vp8::keyframe_size(&key), Some((layer.width as u32, layer.height as u32)));
            let delta = vp8_frame(&layer, 30, false, 1);
            assert_eq!(confab_relay::vp8::keyframe_size(&delta), None, "a delta frame is not a keyframe");
            assert_eq!(key.len(), delta.len() * KEYFRAME_FACTOR);
        }
        // 1.5 Mbit/s at 30 fps is 6250 bytes a frame.
        assert_eq!(vp8_frame(&layers([150, 500, 1500])[2], 30, false, 7).len(), 6250);
    }

    #[test]
    fn audio_packets_are_opus_and_carry_their_send_time() {
        let packet = audio_packet(32, 123_456_789);
        assert_eq!(packet.len(), 80);
        // Code 3, one frame, the padding length in one byte: the frame fits what is left.
        assert_eq!((packet[0] & 0x03, packet[1] & 0x3f, packet[1] & 0x40 != 0), (3, 1, true));
        assert_eq!(packet.len() - 3 - usize::from(packet[2]), OPUS_SILENT_FRAME.len());
        assert_eq!(audio_sent_us(&packet), Some(123_456_789));
        assert_eq!(audio_sent_us(&[0xf8, 0xff, 0xfe]), None, "a real Opus silence frame is not ours");
    }

    #[test]
    fn speakers_take_turns_in_join_order() {
        let every = Duration::from_secs(5);
        assert_eq!(speaker_at(Duration::from_secs(0), every, 3), 0);
        assert_eq!(speaker_at(Duration::from_millis(5_001), every, 3), 1);
        assert_eq!(speaker_at(Duration::from_secs(16), every, 3), 0);
        assert_eq!(speaker_at(Duration::from_secs(16), Duration::ZERO, 3), 0);
    }
}

//! What a bot publishes, sans-IO: synthetic VP8 frames sized to a layer's bitrate, whose
//! keyframes carry a real VP8 header (so an SFU reads the size as it would a browser's), and
//! Opus-sized audio packets that carry their send time for one-way latency.
//!
//! Nothing here is decodable video: bots never decode, and neither does an SFU.

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
/// given bitrates in kbit/s.
pub fn layers(kbps: [u32; 3]) -> Vec<LayerSpec> {
    vec![
        LayerSpec { rid: "l", width: 320, height: 180, kbps: kbps[0] },
        LayerSpec { rid: "m", width: 640, height: 360, kbps: kbps[1] },
        LayerSpec { rid: "h", width: 1280, height: 720, kbps: kbps[2] },
    ]
}

/// A keyframe is this many times the size of a delta frame, as with real encoders.
pub const KEYFRAME_FACTOR: usize = 4;

/// The bytes of one frame of `layer` at `fps`: a VP8 frame tag (and for a keyframe the start
/// code and size), then filler. `count` varies the filler so that frames differ.
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
/// The audio packet's marker byte, then the send time (µs since the load test started, u64
/// big-endian): what a receiving bot reads back for the one-way latency.
const AUDIO_MAGIC: u8 = 0xcf;

/// An Opus-sized packet for `kbps` of audio carrying `sent_us`.
pub fn audio_packet(kbps: u32, sent_us: u64) -> Vec<u8> {
    let size = (kbps as usize * 1000 / 8 / 50).max(9);
    let mut packet = Vec::with_capacity(size);
    packet.push(AUDIO_MAGIC);
    packet.extend_from_slice(&sent_us.to_be_bytes());
    packet.resize(size, 0);
    packet
}

/// The send time a bot's audio packet carries, if it is one.
pub fn audio_sent_us(packet: &[u8]) -> Option<u64> {
    if packet.len() < 9 || packet[0] != AUDIO_MAGIC {
        return None;
    }
    Some(u64::from_be_bytes(packet[1..9].try_into().ok()?))
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
    fn keyframes_carry_the_layer_size_an_sfu_reads() {
        for layer in layers([150, 500, 1500]) {
            let key = vp8_frame(&layer, 30, true, 0);
            assert_eq!(confab_relay::vp8::keyframe_size(&key), Some((layer.width as u32, layer.height as u32)));
            let delta = vp8_frame(&layer, 30, false, 1);
            assert_eq!(confab_relay::vp8::keyframe_size(&delta), None, "a delta frame is not a keyframe");
            assert_eq!(key.len(), delta.len() * KEYFRAME_FACTOR);
        }
    }

    #[test]
    fn frames_are_sized_to_the_bitrate() {
        let h = &layers([150, 500, 1500])[2];
        // 1.5 Mbit/s at 30 fps is 6250 bytes a frame.
        assert_eq!(vp8_frame(h, 30, false, 7).len(), 6250);
        assert_ne!(vp8_frame(h, 30, false, 7), vp8_frame(h, 30, false, 8));
    }

    #[test]
    fn audio_packets_carry_their_send_time() {
        let packet = audio_packet(32, 123_456_789);
        assert_eq!(packet.len(), 80);
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

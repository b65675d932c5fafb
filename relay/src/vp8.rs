//! What the relay reads from a VP8 RTP payload (RFC 7741): where a frame starts, whether it
//! is a keyframe and how large, and the picture numbering it must keep continuous when a
//! slot changes source or layer. Sans-IO; nothing here allocates.

/// The payload descriptor fields the relay uses, read from one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Info {
    /// The packet starts a frame (S set, partition index 0).
    pub frame_start: bool,
    /// It starts a keyframe.
    pub keyframe: bool,
    /// The keyframe's size (width, height), when it starts one.
    pub size: Option<(u32, u32)>,
    pub picture_id: Option<PictureId>,
    pub tl0_pic_idx: Option<u8>,
}

/// A VP8 PictureID and its width on the wire (7 or 15 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureId {
    pub value: u16,
    pub wide: bool,
}

impl PictureId {
    pub fn modulus(self) -> u16 {
        if self.wide { 1 << 15 } else { 1 << 7 }
    }
}

/// Reads the descriptor of one VP8 RTP payload; `None` when it is too short or malformed.
pub fn inspect(payload: &[u8]) -> Option<Vp8Info> {
    let first = *payload.first()?;
    let mut at = 1;
    let mut info = Vp8Info { frame_start: first & 0x10 != 0 && first & 0x07 == 0, ..Default::default() };
    if first & 0x80 != 0 {
        let extension = *payload.get(at)?;
        at += 1;
        if extension & 0x80 != 0 {
            let high = *payload.get(at)?;
            at += 1;
            info.picture_id = Some(if high & 0x80 != 0 {
                let low = *payload.get(at)?;
                at += 1;
                PictureId { value: (u16::from(high & 0x7f) << 8) | u16::from(low), wide: true }
            } else {
                PictureId { value: u16::from(high), wide: false }
            });
        }
        if extension & 0x40 != 0 {
            info.tl0_pic_idx = Some(*payload.get(at)?);
            at += 1;
        }
        if extension & 0x30 != 0 {
            at += 1;
        }
    }
    let frame = payload.get(at..).filter(|f| !f.is_empty())?;
    if info.frame_start && frame[0] & 0x01 == 0 {
        info.keyframe = true;
        info.size = keyframe_size(frame);
    }
    Some(info)
}

/// Reads the frame size from the start of a VP8 keyframe (RFC 6386 §9.1): 3-byte frame tag,
/// start code 9d 01 2a, then 14-bit width and height.
pub fn keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((u32::from(width), u32::from(height)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keyframe's start: frame tag, start code, 640 × 360.
    const KEY: [u8; 10] = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];

    fn with_descriptor(descriptor: &[u8], frame: &[u8]) -> Vec<u8> {
        [descriptor, frame].concat()
    }

    #[test]
    fn a_browser_keyframe_start_is_read_whole() {
        // X=1, S=1, PID=0; I, L, T present; 15-bit PictureID 0x1234, TL0PICIDX 7, TID byte.
        let payload = with_descriptor(&[0x90, 0xe0, 0x92, 0x34, 0x07, 0x20], &KEY);
        let info = inspect(&payload).unwrap();
        assert!(info.frame_start && info.keyframe);
        assert_eq!(info.size, Some((640, 360)));
        assert_eq!(info.picture_id, Some(PictureId { value: 0x1234, wide: true }));
        assert_eq!(info.tl0_pic_idx, Some(7));
    }

    #[test]
    fn continuation_and_delta_packets_are_not_keyframes() {
        // S=0: the middle of a frame whose bytes happen to look like a keyframe tag.
        let middle = with_descriptor(&[0x80, 0x80, 0x05], &KEY);
        let info = inspect(&middle).unwrap();
        assert!(!info.frame_start && !info.keyframe);
        assert_eq!(info.picture_id, Some(PictureId { value: 5, wide: false }));
        let mut delta = KEY;
        delta[0] |= 1;
        let info = inspect(&with_descriptor(&[0x10], &delta)).unwrap();
        assert!(info.frame_start && !info.keyframe && info.size.is_none());
    }

    #[test]
    fn truncated_descriptors_are_refused() {
        assert_eq!(inspect(&[]), None);
        assert_eq!(inspect(&[0x90]), None, "extension byte missing");
        assert_eq!(inspect(&[0x90, 0x80, 0x92]), None, "second PictureID byte missing");
        assert_eq!(inspect(&[0x90, 0x80, 0x12]), None, "no frame bytes after the descriptor");
        assert_eq!(keyframe_size(&KEY[..9]), None);
        assert_eq!(keyframe_size(&[0u8; 16]), None);
    }
}

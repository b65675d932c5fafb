//! Where an H.264 stream can be decoded from (RFC 6184 packetization): the first packet of
//! an IDR picture, or one carrying the sequence parameters that precede it. Sans-IO.

const IDR: u8 = 5;
const SPS: u8 = 7;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// Whether this RTP payload starts a keyframe.
pub fn starts_keyframe(payload: &[u8]) -> bool {
    let Some(first) = payload.first() else { return false };
    match first & 0x1f {
        IDR | SPS => true,
        STAP_A => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let Some(nal) = rest.get(2..2 + size) else { return false };
                if nal.first().is_some_and(|h| matches!(h & 0x1f, IDR | SPS)) {
                    return true;
                }
                rest = &rest[2 + size..];
            }
            false
        }
        FU_A => payload.get(1).is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == IDR),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idr_starts_are_keyframes_and_the_rest_are_not() {
        assert!(starts_keyframe(&[0x65, 0x88]), "a single IDR NAL");
        assert!(starts_keyframe(&[0x67, 0x42]), "SPS");
        assert!(!starts_keyframe(&[0x41, 0x9a]), "a non-IDR slice");
        // STAP-A holding SPS and PPS.
        assert!(starts_keyframe(&[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]));
        assert!(!starts_keyframe(&[0x78, 0x00, 0x02, 0x68, 0xce]));
        assert!(!starts_keyframe(&[0x78, 0x00, 0x09, 0x67]), "truncated");
        // FU-A: the start fragment of an IDR, then a middle one.
        assert!(starts_keyframe(&[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe(&[0x7c, 0x05, 0x00]));
        assert!(!starts_keyframe(&[]));
    }
}

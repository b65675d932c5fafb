//! RED (RFC 2198) audio payloads: a packet carrying, before its own ("primary") Opus frame,
//! copies of earlier ones, so that a receiver who lost those recovers them from this one.
//! Browsers send it (Chromium's `red/48000/2`, one earlier frame) when the connection lists
//! it first. The relay forwards RED as it came to a subscriber that negotiated it, and the
//! primary frame alone to one that did not. Sans-IO.

/// The primary block of a RED payload: what follows the block headers and every redundant
/// block. `None` when the payload is not well-formed RED (cut short, lengths past its end).
pub fn primary(payload: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    let mut redundant = 0usize;
    loop {
        let first = *payload.get(at)?;
        if first & 0x80 == 0 {
            // The last header: one byte, F = 0 and the primary's payload type.
            at += 1;
            break;
        }
        // F = 1: payload type (7 bits), timestamp offset (14), block length (10).
        let header = payload.get(at..at + 4)?;
        redundant += (usize::from(header[2] & 0x03) << 8) | usize::from(header[3]);
        at += 4;
    }
    payload.get(at + redundant..)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A RED payload with `blocks` (timestamp offset, data) before `primary`.
    fn red(blocks: &[(u16, &[u8])], primary: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (offset, data) in blocks {
            let len = data.len() as u16;
            out.push(0x80 | 111);
            out.push((offset >> 6) as u8);
            out.push(((offset & 0x3f) << 2) as u8 | (len >> 8) as u8);
            out.push(len as u8);
        }
        out.push(111);
        for (_, data) in blocks {
            out.extend_from_slice(data);
        }
        out.extend_from_slice(primary);
        out
    }

    #[test]
    fn the_primary_follows_the_headers_and_the_redundant_blocks() {
        assert_eq!(primary(&red(&[], b"now")), Some(&b"now"[..]));
        assert_eq!(primary(&red(&[(960, b"before")], b"now")), Some(&b"now"[..]));
        assert_eq!(primary(&red(&[(1920, &[7; 300]), (960, b"before")], b"now")), Some(&b"now"[..]));
    }

    #[test]
    fn a_block_of_more_than_255_bytes_is_measured_with_its_high_bits() {
        let long = vec![9; 700];
        assert_eq!(primary(&red(&[(960, &long)], b"now")), Some(&b"now"[..]));
    }

    #[test]
    fn a_primary_may_be_empty_and_a_cut_payload_is_refused() {
        assert_eq!(primary(&red(&[(960, b"before")], b"")), Some(&b""[..]));
        let whole = red(&[(960, b"before")], b"now");
        assert_eq!(primary(&whole[..3]), None, "cut inside a header");
        assert_eq!(primary(&whole[..7]), None, "cut inside the redundant block");
        assert_eq!(primary(&[]), None);
        assert_eq!(primary(&[0x80, 0, 0, 200, 111, 1, 2]), None, "a block longer than the payload");
    }
}

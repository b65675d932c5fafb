//! The text form: a short prefix naming kind and version, a dot, then the bytes in URL-safe
//! base64 without padding. Decoding is strict (no padding, no stray trailing bits) so that
//! each capability has exactly one text form and any changed character is noticed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::DecodeError;

/// Longest text accepted, well above any real capability (~400 characters), so that a
/// hostile input cannot make the decoder allocate much.
pub const MAX_TEXT_LEN: usize = 2048;

pub(crate) fn encode(prefix: &'static str, bytes: &[u8]) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub(crate) fn decode(prefix: &'static str, text: &str) -> Result<Vec<u8>, DecodeError> {
    decode_up_to(prefix, text, MAX_TEXT_LEN)
}

/// `decode` with another bound on the text's length (a membership lists many nodes).
pub(crate) fn decode_up_to(prefix: &'static str, text: &str, max_len: usize) -> Result<Vec<u8>, DecodeError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DecodeError::Empty);
    }
    let body = text.strip_prefix(prefix).ok_or(DecodeError::WrongPrefix { expected: prefix })?;
    if body.len() > max_len {
        return Err(DecodeError::TrailingBytes(body.len() - max_len));
    }
    URL_SAFE_NO_PAD.decode(body).map_err(|_| DecodeError::BadBase64)
}

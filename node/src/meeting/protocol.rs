//! The signaling protocol, version 1: what browsers and the node say to each other over the
//! WebSocket. `docs/signaling.md` is the reference for people; this file is the one for the
//! compiler. Parsing is strict (unknown fields and types are refused) and every field is
//! bounded, so that a malformed message gets a precise error reply and nothing else happens.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub const PROTOCOL_VERSION: u32 = 1;

/// Largest message accepted, in bytes. A Chromium offer with audio, video and simulcast is
/// about 8 KiB; this leaves room for many codecs without letting one client make the node
/// buffer much.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
pub const MAX_SDP_BYTES: usize = 60 * 1024;
pub const MAX_CANDIDATE_BYTES: usize = 1024;
pub const MAX_NAME_CHARS: usize = 64;
/// Longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 2000;

/// A seat in one room. Ids are never reused within a room's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantId(pub u64);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

impl FromStr for ParticipantId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix('p')
            .filter(|n| !n.is_empty() && n.len() <= 19 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse().ok())
            .map(ParticipantId)
            .ok_or_else(|| format!("{s:?} is not a participant id (p followed by digits)"))
    }
}

impl Serialize for ParticipantId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ParticipantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaMode {
    /// Browsers send media to each other directly; the node only signals.
    Mesh,
    /// Everyone sends to and receives from the node's SFU.
    Sfu,
}

// ---------------------------------------------------------------------------------------
// Browser → node

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Must be the first message, and only the first.
    Join {
        v: u32,
        invite: String,
        name: String,
        audio: bool,
        video: bool,
        #[serde(default)]
        resume: Option<Resume>,
    },
    /// For one other participant: a session description or an ICE candidate.
    Signal {
        to: ParticipantId,
        #[serde(default)]
        description: Option<SessionDescription>,
        #[serde(default)]
        candidate: Option<IceCandidate>,
    },
    /// What this participant currently sends: shown to the others.
    Media {
        audio: bool,
        video: bool,
        /// Whether they share their screen (absent: no).
        #[serde(default)]
        screen: bool,
    },
    /// A chat message to everyone, or privately to `to`.
    Chat {
        text: String,
        #[serde(default)]
        to: Option<ParticipantId>,
    },
    /// Raises or lowers this participant's own hand.
    Hand {
        raised: bool,
    },
    /// Lowers someone's hand (one's own, or as a host anyone's, or everyone's).
    LowerHand {
        participant: Target,
    },
    /// Hosts only: remove another participant from the meeting; with `revoke`, also revoke
    /// the invite they came with (only a personal one).
    Remove {
        participant: ParticipantId,
        #[serde(default)]
        revoke: bool,
    },
    /// Hosts only: ask one participant, or everyone but the host, to mute (`kind` audio,
    /// the default) or to stop their camera (`video`). The node marks it off and (in SFU
    /// mode) forwards none of it until they turn it on again themselves; nobody's
    /// microphone or camera is ever turned on by someone else.
    Mute {
        participant: Target,
        #[serde(default)]
        kind: MuteKind,
    },
    /// Hosts only: lock the meeting (nobody new gets a seat but hosts) or unlock it.
    Lock {
        locked: bool,
    },
    /// Hosts only: end the meeting for everyone.
    End {},
    /// Hosts only: make another participant a host for the rest of this meeting.
    MakeHost {
        participant: ParticipantId,
    },
    /// Hosts only: let one guest waiting in the lobby, or all of them, into the meeting.
    Admit {
        participant: Target,
    },
    /// Hosts only: turn a guest waiting in the lobby away.
    Deny {
        participant: ParticipantId,
    },
    Leave {},
    Ping {},
    /// In SFU mode: the offer for this participant's one connection to the node's relay
    /// (its own audio and video to send, and receive-only slots for the others').
    SfuOffer {
        sdp: String,
    },
    /// In SFU mode: how tall (in device pixels) each other participant's video is shown, so
    /// that the relay forwards the simulcast layer that fills it and no more. Participants
    /// left out get the default (360).
    SfuView {
        tiles: Vec<TileView>,
    },
    /// In mesh mode: the direct connection to `participant` did not come up in time; the
    /// room moves to the SFU, which every browser can reach.
    MeshFailed {
        participant: ParticipantId,
    },
}

/// A guest waiting in the lobby, as hosts see them: the id they will have once admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitingView {
    pub id: ParticipantId,
    pub name: String,
}

/// What a host's `mute` turns off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MuteKind {
    #[default]
    Audio,
    Video,
}

/// One participant, or everyone (`"all"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    One(ParticipantId),
    All,
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if text == "all" {
            return Ok(Target::All);
        }
        text.parse().map(Target::One).map_err(|e: String| serde::de::Error::custom(format!("{e}, or \"all\"")))
    }
}

/// One tile's size, as `sfu-view` reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileView {
    pub participant: ParticipantId,
    /// The tile shows their screen share rather than their camera (absent: camera).
    #[serde(default)]
    pub screen: bool,
    pub height: u32,
}

/// At most this many tiles in one `sfu-view` (more than any screen shows).
pub const MAX_TILES: usize = 256;

/// Presented on reconnection to take back a seat kept for the grace period.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    pub participant: ParticipantId,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionDescription {
    #[serde(rename = "type")]
    pub kind: SdpKind,
    pub sdp: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpKind {
    Offer,
    Answer,
}

/// `RTCIceCandidate.toJSON()`. An empty `candidate` is the end-of-candidates marker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(default)]
    pub sdp_mid: Option<String>,
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_m_line_index: Option<u16>,
    #[serde(default)]
    pub username_fragment: Option<String>,
}

/// What a signal carries: exactly one of a description or a candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalPayload {
    Description(SessionDescription),
    Candidate(IceCandidate),
}

/// Why a message was refused: a stable code and a sentence for the person debugging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: &'static str,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ProtocolError {
        ProtocolError { code, message: message.into() }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Parses and validates one text message.
pub fn parse(text: &str) -> Result<ClientMessage, ProtocolError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(too_large(text.len()));
    }
    let message: ClientMessage =
        serde_json::from_str(text).map_err(|e| ProtocolError::new("bad_message", format!("This message is not valid signaling: {e}.")))?;
    match &message {
        ClientMessage::Join { v, invite, .. } => {
            if *v != PROTOCOL_VERSION {
                return Err(ProtocolError::new(
                    "unsupported_version",
                    format!("This node speaks signaling version {PROTOCOL_VERSION}, not {v}. Reload the page."),
                ));
            }
            if invite.len() > 4096 {
                return Err(ProtocolError::new("bad_message", "The invite is far longer than any real invite."));
            }
        }
        ClientMessage::Signal { description, candidate, .. } => {
            signal_payload(description.clone(), candidate.clone())?;
        }
        ClientMessage::SfuOffer { sdp } if sdp.len() > MAX_SDP_BYTES || sdp.contains('\0') => {
            return Err(ProtocolError::new("bad_signal", "The session description is too long or contains a NUL character."));
        }
        ClientMessage::SfuView { tiles } if tiles.len() > MAX_TILES => {
            return Err(ProtocolError::new("bad_message", format!("An sfu-view lists at most {MAX_TILES} tiles.")));
        }
        ClientMessage::Chat { text, .. } => {
            chat_text(text)?;
        }
        _ => {}
    }
    Ok(message)
}

pub fn too_large(len: usize) -> ProtocolError {
    ProtocolError::new("message_too_large", format!("A signaling message may be at most {} KiB; this one is {} bytes.", MAX_MESSAGE_BYTES / 1024, len))
}

/// Checks a signal's contents: one description or one candidate, each within bounds.
pub fn signal_payload(description: Option<SessionDescription>, candidate: Option<IceCandidate>) -> Result<SignalPayload, ProtocolError> {
    let bad = |m: &str| Err(ProtocolError::new("bad_signal", m.to_string()));
    match (description, candidate) {
        (Some(d), None) => {
            if d.sdp.len() > MAX_SDP_BYTES {
                return bad("The session description is too long.");
            }
            if d.sdp.contains('\0') {
                return bad("The session description contains a NUL character.");
            }
            Ok(SignalPayload::Description(d))
        }
        (None, Some(c)) => {
            let fields = [Some(&c.candidate), c.sdp_mid.as_ref(), c.username_fragment.as_ref()];
            if fields.into_iter().flatten().any(|f| f.len() > MAX_CANDIDATE_BYTES || f.contains(['\r', '\n', '\0'])) {
                return bad("The ICE candidate is too long or contains line breaks.");
            }
            Ok(SignalPayload::Candidate(c))
        }
        _ => bad("A signal carries exactly one of `description` or `candidate`."),
    }
}

/// Checks a chat message: some visible text, at most [`MAX_CHAT_CHARS`] characters. The text
/// is passed on as it is (line breaks included); clients render it only as text.
pub fn chat_text(text: &str) -> Result<(), ProtocolError> {
    let chars = text.chars().count();
    if chars > MAX_CHAT_CHARS {
        return Err(ProtocolError::new("chat_too_long", format!("A chat message may be at most {MAX_CHAT_CHARS} characters; this one has {chars}.")));
    }
    if !text.chars().any(is_visible) {
        return Err(ProtocolError::new("chat_empty", "This chat message has nothing to show."));
    }
    if text.contains('\0') {
        return Err(ProtocolError::new("bad_message", "A chat message may not contain a NUL character."));
    }
    Ok(())
}

/// Cleans a display name: trims, drops control and bidirectional-override characters (which
/// could make a name render over its neighbours), collapses runs of whitespace. HTML-like
/// text is kept as it is: clients only ever render names as text.
pub fn display_name(raw: &str) -> Result<String, ProtocolError> {
    let mut name = String::new();
    for c in raw.chars().filter(|c| !is_invisible_control(*c)) {
        if c.is_whitespace() {
            if !name.is_empty() && !name.ends_with(' ') {
                name.push(' ');
            }
        } else {
            name.push(c);
        }
    }
    let name = name.trim_end().to_string();
    let chars = name.chars().count();
    if !name.chars().any(is_visible) {
        return Err(ProtocolError::new("bad_name", "Enter a name so that others know who you are."));
    }
    if chars > MAX_NAME_CHARS {
        return Err(ProtocolError::new("bad_name", format!("A name may be at most {MAX_NAME_CHARS} characters; this one has {chars}.")));
    }
    Ok(name)
}

/// Whether `c` puts ink on the screen by itself: not a space, not a default-ignorable code
/// point (zero-width spaces and joiners, fillers, variation selectors, tags), not a
/// combining mark. A name needs at least one such character; the others may stay (a joiner
/// belongs in an emoji sequence or in Persian text) but cannot make a name on their own.
fn is_visible(c: char) -> bool {
    !c.is_whitespace()
        && !is_invisible_control(c)
        && !matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202F}' | '\u{205F}'..='\u{206F}' | '\u{2800}' | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}'
            // Combining marks (the common blocks).
            | '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

fn is_invisible_control(c: char) -> bool {
    (c.is_control() && !c.is_whitespace()) || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

// ---------------------------------------------------------------------------------------
// Node → browser

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    /// The seat is taken (or taken back, when `resumed`).
    Welcome {
        v: u32,
        room: String,
        you: ParticipantView,
        resumed: bool,
        /// Present this with the invite to take the seat back after a dropped connection.
        resume_secret: String,
        participants: Vec<ParticipantView>,
        mode: MediaMode,
        mesh_threshold: usize,
        reconnect_grace_secs: u64,
        ice_servers: Vec<IceServer>,
        /// The room's recent public chat, oldest first.
        chat: Vec<ServerMessage>,
        /// Whether the meeting is locked (only hosts get new seats).
        locked: bool,
        /// Whether guests wait in the lobby until a host admits them.
        lobby: bool,
        /// Who may share a screen: `everyone` or `hosts`.
        share: &'static str,
        /// Newcomers join muted once the meeting has more than this many participants (0:
        /// never).
        muted_above: u32,
        /// For hosts: who waits in the lobby now (empty for guests).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        waiting: Vec<WaitingView>,
    },
    /// Instead of `welcome`: the meeting has a lobby and this guest waits in it until a host
    /// admits them (then `welcome`) or turns them away (`denied`, and the connection closes
    /// with 4005). Sent again whenever `host_present` changes. The guest gets nothing else
    /// of the meeting meanwhile.
    Lobby {
        /// Whether a host is in the meeting to let people in.
        host_present: bool,
    },
    /// Right after `welcome`: the meeting has more than `above` participants, so this
    /// newcomer's microphone starts off (the client turns it off; they may turn it on).
    JoinedMuted {
        above: u32,
    },
    /// For hosts: the guests waiting in the lobby, oldest first (after every change).
    Waiting {
        guests: Vec<WaitingView>,
    },
    /// A host (named) turned this guest away from the lobby.
    Denied {
        by: String,
    },
    Joined {
        participant: ParticipantView,
    },
    Updated {
        participant: ParticipantView,
    },
    Left {
        participant: ParticipantId,
        reason: LeftReason,
    },
    Signal {
        from: ParticipantId,
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<SessionDescription>,
        #[serde(skip_serializing_if = "Option::is_none")]
        candidate: Option<IceCandidate>,
    },
    Mode {
        mode: MediaMode,
    },
    /// Sent to a participant a host removed, just before the node closes the connection.
    Removed {
        by: String,
    },
    /// A host (named) muted you (`audio`) or stopped your camera (`video`): it is off for
    /// the others until you turn it on again.
    Muted {
        by: String,
        kind: MuteKind,
    },
    /// A host (named) locked or unlocked the meeting.
    Locked {
        locked: bool,
        by: String,
    },
    Error {
        code: &'static str,
        message: String,
    },
    Pong {},
    /// In a cluster, right after the seat: the other nodes the page may reconnect through if
    /// this one stops answering.
    Nodes {
        urls: Vec<String>,
    },
    /// The relay's answer to `sfu-offer`.
    SfuAnswer {
        sdp: String,
    },
    /// Which participant's audio or video each receive slot (m-line `mid`) now carries.
    SfuSlots {
        slots: Vec<SlotView>,
    },
    /// The dominant speaker changed (SFU mode; from audio levels).
    Speaker {
        participant: ParticipantId,
    },
    /// A chat message: to everyone, or (with `to`) privately between `from` and `to`; the
    /// sender gets it back too. `at` is the node's wall clock in Unix milliseconds; `id`
    /// orders a room's messages (a history replayed in a welcome repeats ids).
    Chat {
        id: u64,
        from: ParticipantId,
        /// The sender's name when they sent it (they may have left since).
        name: String,
        text: String,
        at: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<ParticipantId>,
    },
    /// SFU mode: send only these simulcast encodings (rids) of the video track `mid`;
    /// nobody receives the others. Pause the rest (`RTCRtpEncodingParameters.active`).
    SfuLayers {
        mid: String,
        active: Vec<String>,
    },
    /// SFU mode: the receive slots (video m-lines `mid`) that carry nothing although
    /// `sfu-slots` gives them a source, and why: `bandwidth` (the downlink does not fit even
    /// the smallest layer beside audio) or `hidden` (the tile reported height 0). Sent
    /// whenever the set changes; empty when nothing is paused.
    SfuPaused {
        slots: Vec<PausedSlot>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PausedSlot {
    pub mid: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotView {
    pub mid: String,
    pub participant: ParticipantId,
    pub kind: &'static str,
}

impl ServerMessage {
    pub fn error(e: &ProtocolError) -> ServerMessage {
        ServerMessage::Error { code: e.code, message: e.message.clone() }
    }

    pub fn signal(from: ParticipantId, payload: SignalPayload) -> ServerMessage {
        match payload {
            SignalPayload::Description(d) => ServerMessage::Signal { from, description: Some(d), candidate: None },
            SignalPayload::Candidate(c) => ServerMessage::Signal { from, description: None, candidate: Some(c) },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantView {
    pub id: ParticipantId,
    pub name: String,
    pub role: &'static str,
    pub audio: bool,
    pub video: bool,
    /// False while the participant's signaling connection is down (the seat is kept for the
    /// grace period; their media may well still be flowing).
    pub connected: bool,
    /// While the hand is up: its place in the room's queue (lower was raised earlier).
    pub hand: Option<u64>,
    /// Whether they share their screen.
    pub screen: bool,
    /// They came with an invite made for them alone (a host may revoke it with a removal).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub personal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeftReason {
    Left,
    Removed,
    TimedOut,
    /// A host ended the meeting for everyone.
    Ended,
}

/// `RTCIceServer`, as the browser's `RTCPeerConnection` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participant_ids_round_trip_and_refuse_junk() {
        assert_eq!("p42".parse::<ParticipantId>().unwrap(), ParticipantId(42));
        assert_eq!(ParticipantId(7).to_string(), "p7");
        for bad in ["", "p", "42", "p-1", "p1x", "P1", "p99999999999999999999"] {
            assert!(bad.parse::<ParticipantId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_each_client_message() {
        let join = parse(r#"{"type":"join","v":1,"invite":"cfi1.x","name":"Ana","audio":true,"video":false}"#).unwrap();
        assert!(matches!(join, ClientMessage::Join { audio: true, video: false, resume: None, .. }));
        let offer = parse(r#"{"type":"signal","to":"p2","description":{"type":"offer","sdp":"v=0"}}"#).unwrap();
        assert!(matches!(offer, ClientMessage::Signal { to: ParticipantId(2), .. }));
        let cand = parse(r#"{"type":"signal","to":"p2","candidate":{"candidate":"candidate:1 1 udp 1 10.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}}"#).unwrap();
        assert!(matches!(cand, ClientMessage::Signal { candidate: Some(_), .. }));
        assert_eq!(parse(r#"{"type":"mute","participant":"all"}"#).unwrap(), ClientMessage::Mute { participant: Target::All, kind: MuteKind::Audio });
        assert_eq!(
            parse(r#"{"type":"mute","participant":"p3"}"#).unwrap(),
            ClientMessage::Mute { participant: Target::One(ParticipantId(3)), kind: MuteKind::Audio }
        );
        assert_eq!(
            parse(r#"{"type":"mute","participant":"p3","kind":"video"}"#).unwrap(),
            ClientMessage::Mute { participant: Target::One(ParticipantId(3)), kind: MuteKind::Video }
        );
        assert_eq!(parse(r#"{"type":"mute","participant":"p3","kind":"screen"}"#).unwrap_err().code, "bad_message");
        assert_eq!(parse(r#"{"type":"lock","locked":true}"#).unwrap(), ClientMessage::Lock { locked: true });
        assert_eq!(parse(r#"{"type":"end"}"#).unwrap(), ClientMessage::End {});
        assert_eq!(parse(r#"{"type":"make-host","participant":"p2"}"#).unwrap(), ClientMessage::MakeHost { participant: ParticipantId(2) });
        assert_eq!(parse(r#"{"type":"admit","participant":"all"}"#).unwrap(), ClientMessage::Admit { participant: Target::All });
        assert_eq!(parse(r#"{"type":"admit","participant":"p5"}"#).unwrap(), ClientMessage::Admit { participant: Target::One(ParticipantId(5)) });
        assert_eq!(parse(r#"{"type":"deny","participant":"p5"}"#).unwrap(), ClientMessage::Deny { participant: ParticipantId(5) });
        assert_eq!(parse(r#"{"type":"mute"}"#).unwrap_err().code, "bad_message");
        assert_eq!(parse(r#"{"type":"media","audio":false,"video":true}"#).unwrap(), ClientMessage::Media { audio: false, video: true, screen: false });
        assert_eq!(parse(r#"{"type":"remove","participant":"p3"}"#).unwrap(), ClientMessage::Remove { participant: ParticipantId(3), revoke: false });
        assert_eq!(parse(r#"{"type":"leave"}"#).unwrap(), ClientMessage::Leave {});
        assert_eq!(parse(r#"{"type":"ping"}"#).unwrap(), ClientMessage::Ping {});
        assert_eq!(parse(r#"{"type":"chat","text":"hi"}"#).unwrap(), ClientMessage::Chat { text: "hi".into(), to: None });
        assert_eq!(parse(r#"{"type":"chat","text":"hi","to":"p2"}"#).unwrap(), ClientMessage::Chat { text: "hi".into(), to: Some(ParticipantId(2)) });
        assert_eq!(parse(r#"{"type":"hand","raised":true}"#).unwrap(), ClientMessage::Hand { raised: true });
        assert_eq!(parse(r#"{"type":"lower-hand","participant":"p4"}"#).unwrap(), ClientMessage::LowerHand { participant: Target::One(ParticipantId(4)) });
        assert_eq!(parse(r#"{"type":"lower-hand","participant":"all"}"#).unwrap(), ClientMessage::LowerHand { participant: Target::All });
    }

    #[test]
    fn chat_messages_are_bounded_and_need_something_visible() {
        let at_limit = serde_json::json!({"type": "chat", "text": "é".repeat(MAX_CHAT_CHARS)}).to_string();
        assert!(parse(&at_limit).is_ok());
        let over = serde_json::json!({"type": "chat", "text": "x".repeat(MAX_CHAT_CHARS + 1)}).to_string();
        assert_eq!(parse(&over).unwrap_err().code, "chat_too_long");
        for blank in ["", "   ", r"\n\t", r"\u200b\u200d"] {
            assert_eq!(parse(&format!(r#"{{"type":"chat","text":"{blank}"}}"#)).unwrap_err().code, "chat_empty", "{blank:?}");
        }
        assert_eq!(parse(r#"{"type":"chat","text":"a\u0000b"}"#).unwrap_err().code, "bad_message");
        assert_eq!(
            parse(r#"{"type":"chat","text":"<img src=x onerror=alert(1)>"}"#).unwrap(),
            ClientMessage::Chat { text: "<img src=x onerror=alert(1)>".into(), to: None }
        );
        assert_eq!(parse(r#"{"type":"lower-hand","participant":"everyone"}"#).unwrap_err().code, "bad_message");
    }

    #[test]
    fn refuses_malformed_messages_with_a_code() {
        let cases = [
            ("not json", "bad_message"),
            ("[]", "bad_message"),
            (r#"{"type":"dance"}"#, "bad_message"),
            (r#"{"type":"media","audio":true}"#, "bad_message"),
            (r#"{"type":"media","audio":true,"video":true,"extra":1}"#, "bad_message"),
            (r#"{"type":"join","v":2,"invite":"x","name":"A","audio":true,"video":true}"#, "unsupported_version"),
            (r#"{"type":"signal","to":"p2"}"#, "bad_signal"),
            (r#"{"type":"signal","to":"bob","candidate":{"candidate":""}}"#, "bad_message"),
            (r#"{"type":"signal","to":"p2","description":{"type":"pranswer","sdp":""}}"#, "bad_message"),
            (r#"{"type":"signal","to":"p2","candidate":{"candidate":"a\r\nb"}}"#, "bad_signal"),
            (r#"{"type":"signal","to":"p2","description":{"type":"offer","sdp":""},"candidate":{"candidate":""}}"#, "bad_signal"),
        ];
        for (text, code) in cases {
            assert_eq!(parse(text).unwrap_err().code, code, "{text}");
        }
        let tiles: Vec<String> = (0..=MAX_TILES).map(|i| format!(r#"{{"participant":"p{i}","height":1}}"#)).collect();
        let too_many = format!(r#"{{"type":"sfu-view","tiles":[{}]}}"#, tiles.join(","));
        assert_eq!(parse(&too_many).unwrap_err().code, "bad_message");
        assert_eq!(parse(r#"{"type":"sfu-view","tiles":[{"participant":"p1","height":-5}]}"#).unwrap_err().code, "bad_message");
        assert_eq!(parse(r#"{"type":"mesh-failed","participant":"nobody"}"#).unwrap_err().code, "bad_message");
        assert!(matches!(
            parse(r#"{"type":"sfu-view","tiles":[{"participant":"p1","height":540}]}"#).unwrap(),
            ClientMessage::SfuView { tiles } if tiles == vec![TileView { participant: ParticipantId(1), screen: false, height: 540 }]
        ));
        assert!(matches!(parse(r#"{"type":"mesh-failed","participant":"p3"}"#).unwrap(), ClientMessage::MeshFailed { participant: ParticipantId(3) }));
        let huge = format!(r#"{{"type":"signal","to":"p2","description":{{"type":"offer","sdp":"{}"}}}}"#, "a".repeat(MAX_MESSAGE_BYTES));
        assert_eq!(parse(&huge).unwrap_err().code, "message_too_large");
    }

    #[test]
    fn display_names_are_cleaned_not_escaped() {
        assert_eq!(display_name("  Ana   María \t ").unwrap(), "Ana María");
        assert_eq!(display_name("<img src=x onerror=alert(1)>").unwrap(), "<img src=x onerror=alert(1)>");
        assert_eq!(display_name("evil\u{202E}gnp.exe\u{0007}").unwrap(), "evilgnp.exe");
        assert!(display_name(" \u{200F} ").is_err());
        // Names made only of zero-width characters, fillers or marks show as nothing.
        for blank in ["\u{200B}\u{200D}\u{2060}", "\u{3164}\u{3164}", "\u{FEFF}", "\u{0301}\u{0301}", "\u{2800}", "\u{E0041}\u{FE0F}"] {
            assert!(display_name(blank).is_err(), "{blank:?}");
        }
        assert_eq!(display_name("Zo\u{0308}e").unwrap(), "Zo\u{0308}e");
        assert_eq!(display_name("\u{1F469}\u{200D}\u{1F4BB}").unwrap(), "\u{1F469}\u{200D}\u{1F4BB}");
        assert!(display_name(&"x".repeat(65)).is_err());
        assert_eq!(display_name(&"é".repeat(64)).unwrap().chars().count(), 64);
    }

    #[test]
    fn server_messages_have_the_documented_shape() {
        let left = serde_json::to_value(ServerMessage::Left { participant: ParticipantId(3), reason: LeftReason::TimedOut }).unwrap();
        assert_eq!(left, serde_json::json!({"type": "left", "participant": "p3", "reason": "timed-out"}));
        let signal = ServerMessage::signal(
            ParticipantId(1),
            SignalPayload::Candidate(IceCandidate { candidate: String::new(), sdp_mid: Some("0".into()), sdp_m_line_index: Some(0), username_fragment: None }),
        );
        assert_eq!(
            serde_json::to_value(signal).unwrap(),
            serde_json::json!({"type": "signal", "from": "p1", "candidate": {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": null}})
        );
    }
}

//! Where each participant's media ends. On a node on its own, at its relay. In a cluster, a
//! participant connected through another node (their edge) publishes at the edge's relay:
//! the meeting's home node, which runs the room, approves the offer and the edge answers it
//! (`Down::Publish`); from then on what the room decides about their media (a share, a host's
//! hold, their tiles, their leaving) goes to the edge as a [`MediaCall`] on the cascade, and
//! what the edge's relay says about them (`sfu-slots`) comes back the same way, for the room
//! to pass on. The relays exchange the media itself (`confab_relay::remote`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use confab_relay::{Held, Notice, PeerKey, Relay, Tile};
use serde::{Deserialize, Serialize};

use super::cascade::Links;

/// What one node tells another about a participant's media.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MediaCall {
    /// Home → edge: as `Relay::share`, `hold`, `view`, `remove`.
    Share {
        room: String,
        participant: u64,
        on: bool,
    },
    Hold {
        room: String,
        participant: u64,
        audio: bool,
        video: bool,
    },
    View {
        room: String,
        participant: u64,
        tiles: Vec<(u64, bool, u32)>,
    },
    Remove {
        room: String,
        participant: u64,
    },
    /// Edge → home: which source feeds each of the participant's slots now (mid,
    /// participant, kind).
    Slots {
        room: String,
        participant: u64,
        slots: Vec<(String, u64, String)>,
    },
    /// Edge → home: which of the participant's video slots are paused, and why (mid,
    /// reason).
    Paused {
        room: String,
        participant: u64,
        slots: Vec<(String, String)>,
    },
}

/// The home's record of whose media ends at which edge, and the calls that follow it.
pub struct Edges {
    relay: Relay,
    cascade: Option<Arc<Links>>,
    at: Mutex<HashMap<PeerKey, [u8; 32]>>,
}

impl Edges {
    pub fn new(relay: Relay, cascade: Option<Arc<Links>>) -> Edges {
        Edges { relay, cascade, at: Mutex::new(HashMap::new()) }
    }

    fn at(&self) -> std::sync::MutexGuard<'_, HashMap<PeerKey, [u8; 32]>> {
        self.at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the edge `key` can take a participant's media (the cascade links us).
    pub fn reaches(&self, key: &[u8; 32]) -> bool {
        self.cascade.as_ref().is_some_and(|c| c.linked(key))
    }

    /// `peer` publishes at `edge`'s relay from now on, or (`None`) at this node's: wherever
    /// they published before lets go of them.
    pub fn publishes_at(&self, peer: &PeerKey, edge: Option<[u8; 32]>) {
        let before = match edge {
            Some(edge) => self.at().insert(peer.clone(), edge),
            None => self.at().remove(peer),
        };
        match before {
            Some(old) if Some(old) != edge => self.call(&old, MediaCall::Remove { room: peer.room.clone(), participant: peer.participant }),
            None if edge.is_some() => self.relay.remove(peer.clone()),
            _ => {}
        }
    }

    fn edge_of(&self, peer: &PeerKey) -> Option<[u8; 32]> {
        self.at().get(peer).copied()
    }

    /// Sends `call` to the edge, now or when the cascade links us again.
    fn call(&self, edge: &[u8; 32], call: MediaCall) {
        if let Some(cascade) = &self.cascade {
            cascade.send_node(edge, serde_json::to_vec(&call).expect("calls always serialize"));
        }
    }

    pub fn share(&self, peer: PeerKey, on: bool) {
        match self.edge_of(&peer) {
            Some(edge) => self.call(&edge, MediaCall::Share { room: peer.room, participant: peer.participant, on }),
            None => self.relay.share(peer, on),
        }
    }

    pub fn hold(&self, peer: PeerKey, held: Held) {
        match self.edge_of(&peer) {
            Some(edge) => self.call(&edge, MediaCall::Hold { room: peer.room, participant: peer.participant, audio: held.audio, video: held.video }),
            None => self.relay.hold(peer, held),
        }
    }

    pub fn view(&self, peer: PeerKey, tiles: Vec<Tile>) {
        match self.edge_of(&peer) {
            Some(edge) => self.call(
                &edge,
                MediaCall::View { room: peer.room, participant: peer.participant, tiles: tiles.iter().map(|t| (t.participant, t.screen, t.height)).collect() },
            ),
            None => self.relay.view(peer, tiles),
        }
    }

    /// The participant has left for good.
    pub fn remove(&self, peer: PeerKey) {
        let edge = self.at().remove(&peer);
        match edge {
            Some(edge) => {
                // The room's planner (here) forgets them even if their edge is gone.
                self.relay.left_elsewhere(&peer);
                self.call(&edge, MediaCall::Remove { room: peer.room, participant: peer.participant });
            }
            None => self.relay.remove(peer),
        }
    }

    /// On an edge: tells the meeting's home what this node's relay said about one of its
    /// participants.
    pub fn slots_to_home(&self, home: &[u8; 32], peer: PeerKey, slots: Vec<(String, u64, &'static str)>) {
        let slots = slots.into_iter().map(|(mid, p, kind)| (mid, p, kind.to_string())).collect();
        self.call(home, MediaCall::Slots { room: peer.room, participant: peer.participant, slots });
    }

    /// On an edge: tells the meeting's home which of one participant's slots this node's
    /// relay paused.
    pub fn paused_to_home(&self, home: &[u8; 32], peer: PeerKey, slots: Vec<(String, &'static str)>) {
        let slots = slots.into_iter().map(|(mid, reason)| (mid, reason.to_string())).collect();
        self.call(home, MediaCall::Paused { room: peer.room, participant: peer.participant, slots });
    }

    /// A call from another member: carried out at this node's relay, or (a notice for a
    /// participant of a meeting homed here) returned for the room.
    pub fn handle(&self, from: &[u8; 32], bytes: &[u8]) -> Option<Notice> {
        let call: MediaCall = match serde_json::from_slice(bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "a malformed media call from another member");
                return None;
            }
        };
        let key = |room: String, participant: u64| PeerKey { room, participant };
        match call {
            MediaCall::Share { room, participant, on } => self.relay.share(key(room, participant), on),
            MediaCall::Hold { room, participant, audio, video } => self.relay.hold(key(room, participant), Held { audio, video }),
            MediaCall::View { room, participant, tiles } => self.relay.view(
                key(room, participant),
                tiles.into_iter().map(|(participant, screen, height)| Tile { participant, screen, height: height.min(8192) }).collect(),
            ),
            MediaCall::Remove { room, participant } => self.relay.remove(key(room, participant)),
            MediaCall::Slots { room, participant, slots } => {
                let peer = key(room, participant);
                // Only the edge this participant publishes at speaks for them.
                if self.edge_of(&peer) != Some(*from) {
                    return None;
                }
                let slots = slots.into_iter().filter_map(|(mid, p, kind)| Some((mid, p, slot_kind(&kind)?))).collect();
                return Some(Notice::Slots { peer, slots });
            }
            MediaCall::Paused { room, participant, slots } => {
                let peer = key(room, participant);
                if self.edge_of(&peer) != Some(*from) {
                    return None;
                }
                let slots = slots.into_iter().filter_map(|(mid, reason)| Some((mid, pause_reason(&reason)?))).collect();
                return Some(Notice::Paused { peer, slots });
            }
        }
        None
    }
}

/// A slot's kind as `sfu-slots` names it (the relay's own names, nothing else).
fn slot_kind(kind: &str) -> Option<&'static str> {
    ["audio", "video", "screen", "screen-audio"].into_iter().find(|k| *k == kind)
}

/// A pause's reason as `sfu-paused` names it (the relay's own names, nothing else).
fn pause_reason(reason: &str) -> Option<&'static str> {
    ["bandwidth", "hidden"].into_iter().find(|r| *r == reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_cross_as_they_left_and_unknown_kinds_are_dropped() {
        let call = MediaCall::View { room: "r".into(), participant: 3, tiles: vec![(1, false, 360)] };
        let back: MediaCall = serde_json::from_slice(&serde_json::to_vec(&call).unwrap()).unwrap();
        assert_eq!(back, call);
        assert_eq!(slot_kind("screen-audio"), Some("screen-audio"));
        assert_eq!(slot_kind("<script>"), None);
    }
}

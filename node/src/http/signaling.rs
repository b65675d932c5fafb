//! `GET /ws/{room}`: the signaling WebSocket. A thin shell: it reads frames, parses them with
//! `meeting::protocol`, hands them to the room through the hub, and writes what the hub
//! queues for it. The first message must be a `join` with an invite, checked exactly as
//! `/api/invites/check` checks it (`capabilities::admit`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use confab_keys::{CapabilityId, RoomName};

use super::{ApiError, AppState};
use crate::capabilities::admit;
use crate::clock;
use crate::cluster::net::{Back, Down, RemoteSeat, Up};
use crate::meeting::budget::Budget;
use crate::meeting::hub::{Dropped, Outbound, Outbox, Queue};
use crate::meeting::protocol::{self, ClientMessage, MAX_MESSAGE_BYTES, ParticipantId, PausedSlot, ProtocolError, ServerMessage, SlotView};
use crate::meeting::room::{CloseWhy, ConnId, RoomError, Seat};
use crate::secrets;
use confab_relay::{Held, NodeId, Notice, PeerKey, Tile};

/// How long a new connection has to send its `join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The node pings every connection this often…
const HEARTBEAT: Duration = Duration::from_secs(10);
/// …and counts it as dropped after this long without hearing anything.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// A write the browser has not taken within this long means it stopped reading: the node
/// closes the socket (1011) and keeps the seat for a resume.
const WRITE_LIMIT: Duration = Duration::from_secs(10);

/// Close codes the client acts on (docs/signaling.md): it reconnects after any other.
pub const CLOSE_REMOVED: u16 = 4001;
pub const CLOSE_REPLACED: u16 = 4002;
pub const CLOSE_REFUSED: u16 = 4003;
/// A host ended the meeting for everyone.
pub const CLOSE_ENDED: u16 = 4004;
/// A host turned this guest away from the lobby.
pub const CLOSE_DENIED: u16 = 4005;
/// "Try again later" (RFC 6455): a refusal that passes, such as the join rate.
pub const CLOSE_TRY_AGAIN: u16 = 1013;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws/{room}", web::get().to(connect));
}

async fn connect(req: HttpRequest, body: web::Payload, state: web::Data<AppState>, room: web::Path<String>) -> Result<HttpResponse, actix_web::Error> {
    let room = RoomName::normalize(&room).map_err(|e| ApiError::bad_request("room_invalid", format!("{}.", e.0)))?;
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream.max_frame_size(MAX_MESSAGE_BYTES).aggregate_continuations().max_continuation_size(MAX_MESSAGE_BYTES);
    // The stream is !Send: the connection lives on this worker's local executor.
    let origin = crate::ratelimit::client_key(super::peer_ip(&req));
    actix_web::rt::spawn(Connection { state: state.into_inner(), room, origin, session }.run(stream));
    Ok(response)
}

struct Connection {
    state: Arc<AppState>,
    room: RoomName,
    /// The client's network (an IPv4 address or an IPv6 /64).
    origin: IpAddr,
    session: Session,
}

/// What the socket's loop hears from the participant's seat, wherever it is.
enum Next {
    Text(String),
    Close(CloseReason),
    /// The seat's queue overflowed (here, or at the home node): it waits for a resume.
    Stalled,
    /// The seat is gone without a word.
    Gone,
    /// The home approved the participant's `sfu-offer`: publish it at this node's relay.
    Publish {
        home: [u8; 32],
        participant: u64,
        sdp: String,
        sharing: bool,
        held: Held,
    },
}

/// Where a connection's seat is: in a room on this node, or on the meeting's home node,
/// reached through the cluster (this node is then only the participant's edge).
enum Backend {
    Local { signaler: Signaler, outbox: Outbox, dropped: Dropped },
    Remote { link: crate::cluster::net::Link, down: tokio::sync::mpsc::Receiver<Down>, home: [u8; 32] },
}

impl Backend {
    async fn next(&mut self) -> Next {
        match self {
            Backend::Local { outbox, dropped, .. } => tokio::select! {
                biased;
                () = dropped.wait() => Next::Stalled,
                out = outbox.recv() => match out {
                    Some(Outbound::Text(text)) => Next::Text(text),
                    Some(Outbound::Close(why)) => Next::Close(close_for(why)),
                    None => Next::Gone,
                },
            },
            Backend::Remote { down, home, .. } => match down.recv().await {
                Some(Down::Text(text)) => Next::Text(text),
                Some(Down::Close { code: 1011, reason }) => {
                    tracing::debug!(reason, "the home node gave up on a stalled seat");
                    Next::Stalled
                }
                Some(Down::Close { code, reason }) => Next::Close(close(code, &reason)),
                Some(Down::Publish { participant, sdp, sharing, held_audio, held_video }) => {
                    Next::Publish { home: *home, participant, sdp, sharing, held: Held { audio: held_audio, video: held_video } }
                }
                // Dropped without a close: the socket fell behind what the home sent.
                None => Next::Stalled,
            },
        }
    }

    /// One message after the join: handled here, or passed on to the home node (whose
    /// replies and errors come back through [`Backend::next`]).
    async fn take(&mut self, text: &str) -> Result<Option<ServerMessage>, ProtocolError> {
        match self {
            Backend::Local { signaler, .. } => signaler.handle(text).await,
            Backend::Remote { link, .. } => {
                link.send(Up::Text(text.to_string()));
                Ok(None)
            }
        }
    }

    /// The participant's socket is gone (not by the seat's doing).
    fn disconnected(&self) {
        match self {
            Backend::Local { signaler, .. } => signaler.state.hub.disconnected(signaler.room.as_str(), signaler.conn),
            Backend::Remote { link, .. } => link.send(Up::Closed),
        }
    }
}

/// Counts a socket against the node's cap for as long as it lives.
struct Counted(Arc<AppState>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Connection {
    /// Whether this node takes no newcomer now: it is being drained, or it holds as many
    /// sockets as it may (`--max-participants`). A page told so goes to another node.
    fn refusal_here(&self) -> Option<ProtocolError> {
        if self.state.cluster.as_ref().is_some_and(|c| c.draining()) {
            return Some(ProtocolError::new(
                "node_draining",
                "This server is handing its meetings to the others before maintenance: connect through another one.",
            ));
        }
        let cap = self.state.max_participants;
        (cap > 0 && self.state.sockets.load(std::sync::atomic::Ordering::Acquire) > cap).then(|| {
            ProtocolError::new("node_full", format!("This server has all the participants it takes ({cap}). Try another server of this meeting, or later."))
        })
    }

    async fn run(mut self, mut stream: actix_ws::AggregatedMessageStream) {
        self.state.sockets.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let _counted = Counted(self.state.clone());
        let Some((join_text, join)) = self.first_message(&mut stream).await else { return };
        if let Some(e) = self.refusal_here() {
            let _ = self.send(&ServerMessage::error(&e)).await;
            let _ = self.session.clone().close(Some(close(CLOSE_TRY_AGAIN, e.code))).await;
            return;
        }
        let mut draining = self.state.cluster.as_ref().map(|c| c.draining_changes());
        let home = self.state.cluster.as_ref().map(|c| (c.clone(), c.home_of(self.room.as_str()))).filter(|(c, home)| *home != c.own_key());
        let mut backend = match home {
            Some((cluster, home)) => {
                tracing::debug!(room = %self.room, home = %secrets::hex(&home), "signaling relayed to the meeting's home node");
                let (link, down) = cluster.open_link(home, self.room.as_str(), self.origin);
                link.send(Up::Join(join_text));
                Backend::Remote { link, down, home }
            }
            None => {
                let (conn, queue, outbox) = self.state.hub.connection();
                let signaler = Signaler { state: self.state.clone(), room: self.room.clone(), origin: self.origin, conn, queue, edge: None };
                if let Err(e) = signaler.seat(join).await {
                    let _ = self.send(&ServerMessage::error(&e)).await;
                    let _ = self.session.clone().close(Some(refusal(&e))).await;
                    return;
                }
                let dropped = outbox.dropped_signal();
                Backend::Local { signaler, outbox, dropped }
            }
        };
        // In a cluster, right after the seat's first message (its welcome): where to come back
        // if this node stops answering.
        let mut nodes_told = self.state.cluster.is_none();
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        let mut heard = Instant::now();
        let mut budget = Budget::new(self.state.hub.now());
        let ended_by_node = loop {
            tokio::select! {
                biased;
                next = backend.next() => match next {
                    // The hub gave up on this connection (its queue overflowed): the seat is
                    // already away, waiting for a resume.
                    Next::Stalled => {
                        self.close_stalled().await;
                        break true;
                    }
                    Next::Text(text) => match tokio::time::timeout(WRITE_LIMIT, self.session.text(text)).await {
                        Ok(Ok(())) if !nodes_told => {
                            nodes_told = true;
                            let urls = self.state.cluster.as_ref().map(|c| c.node_urls()).unwrap_or_default();
                            if self.send(&ServerMessage::Nodes { urls }).await.is_err() {
                                break false;
                            }
                        }
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break false,
                        Err(_) => {
                            tracing::warn!(room = %self.room, "signaling connection stopped reading; closed");
                            self.close_stalled().await;
                            break false;
                        }
                    },
                    Next::Close(reason) => {
                        let _ = tokio::time::timeout(WRITE_LIMIT, self.session.clone().close(Some(reason))).await;
                        break true;
                    }
                    Next::Gone => break true,
                    Next::Publish { home, participant, sdp, sharing, held } => {
                        let reply = self.publish_here(home, participant, sdp, sharing, held).await;
                        if self.send(&reply).await.is_err() {
                            break false;
                        }
                    }
                },
                frame = stream.recv() => {
                    heard = Instant::now();
                    match frame {
                        Some(Ok(AggregatedMessage::Text(text))) => {
                            let handled = if budget.take(self.state.hub.now()) {
                                backend.take(&text).await
                            } else {
                                Err(ProtocolError::new("rate_limited", "Too many messages: this one was dropped. Slow down."))
                            };
                            let reply = match handled {
                                Ok(Some(reply)) => reply,
                                Ok(None) => continue,
                                Err(e) => ServerMessage::error(&e),
                            };
                            if self.send(&reply).await.is_err() {
                                break false;
                            }
                        }
                        Some(Ok(AggregatedMessage::Binary(_))) => {
                            let e = ProtocolError::new("bad_message", "Signaling messages are JSON text, not binary.");
                            if self.send(&ServerMessage::error(&e)).await.is_err() { break false; }
                        }
                        Some(Ok(AggregatedMessage::Ping(bytes))) => {
                            if self.session.pong(&bytes).await.is_err() { break false; }
                        }
                        Some(Ok(AggregatedMessage::Pong(_))) => {}
                        Some(Ok(AggregatedMessage::Close(_))) | None => break false,
                        Some(Err(e)) => {
                            tracing::debug!(room = %self.room, error = %e, "signaling protocol error");
                            let e = protocol_failure(e);
                            let _ = self.send(&ServerMessage::error(&e)).await;
                            let _ = self.session.clone().close(Some(close(1009, e.code))).await;
                            break false;
                        }
                    }
                }
                // Drained: the page reconnects, is refused here, and goes to another node.
                Ok(()) = async { match draining.as_mut() { Some(d) => d.changed().await, None => std::future::pending().await } } => {
                    if draining.as_ref().is_some_and(|d| *d.borrow()) {
                        let _ = tokio::time::timeout(WRITE_LIMIT, self.session.clone().close(Some(close(crate::cluster::net::CLOSE_HOME_LOST, "draining")))).await;
                        break false;
                    }
                }
                _ = heartbeat.tick() => {
                    if heard.elapsed() > SILENCE_LIMIT {
                        let _ = tokio::time::timeout(WRITE_LIMIT, self.session.clone().close(Some(close(1001, "silent")))).await;
                        break false;
                    }
                    match tokio::time::timeout(WRITE_LIMIT, self.session.ping(b"")).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break false,
                        Err(_) => {
                            self.close_stalled().await;
                            break false;
                        }
                    }
                }
            }
        };
        if !ended_by_node {
            backend.disconnected();
        }
    }

    /// Closes with 1011 (the browser then resumes its seat). The close frame waits behind
    /// what the browser has not read yet, so it is sent from a task of its own, for as long
    /// as a silent connection would live anyway; the connection's loop ends at once.
    async fn close_stalled(&self) {
        let session = self.session.clone();
        actix_web::rt::spawn(async move {
            let _ = tokio::time::timeout(SILENCE_LIMIT, session.close(Some(close(1011, "stalled")))).await;
        });
    }

    /// Waits for the `join` (returned as sent, and parsed). Anything else, or nothing in
    /// time, ends the connection with a reason.
    async fn first_message(&mut self, stream: &mut actix_ws::AggregatedMessageStream) -> Option<(String, ClientMessage)> {
        let refusal = loop {
            let frame = match tokio::time::timeout(JOIN_TIMEOUT, stream.recv()).await {
                Err(_) => break ProtocolError::new("join_timeout", "No join message arrived in time."),
                Ok(frame) => frame,
            };
            match frame {
                Some(Ok(AggregatedMessage::Text(text))) => match protocol::parse(&text) {
                    Ok(join @ ClientMessage::Join { .. }) => return Some((text.to_string(), join)),
                    Ok(_) => break ProtocolError::new("not_joined", "The first message must be a join."),
                    Err(e) => break e,
                },
                Some(Ok(AggregatedMessage::Ping(bytes))) => {
                    let _ = self.session.pong(&bytes).await;
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                Some(Ok(AggregatedMessage::Binary(_))) => {
                    break ProtocolError::new("bad_message", "Signaling messages are JSON text, not binary.");
                }
                Some(Ok(AggregatedMessage::Close(_))) | None => return None,
                Some(Err(e)) => break protocol_failure(e),
            }
        };
        let _ = self.send(&ServerMessage::error(&refusal)).await;
        let _ = self.session.clone().close(Some(close(1008, refusal.code))).await;
        None
    }

    /// Publishes the participant's offer (approved by the meeting's home node) at this
    /// node's relay, their edge; returns the answer for them, or why there is none.
    async fn publish_here(&self, home: [u8; 32], participant: u64, sdp: String, sharing: bool, held: Held) -> ServerMessage {
        let peer = PeerKey { room: self.room.to_string(), participant };
        match self.state.relay.publish_homed(peer.clone(), sdp, NodeId::of_key(&home)).await {
            Ok(answer) => {
                if sharing {
                    self.state.relay.share(peer.clone(), true);
                }
                if held.audio || held.video {
                    self.state.relay.hold(peer, held);
                }
                ServerMessage::SfuAnswer { sdp: answer }
            }
            Err(e) => ServerMessage::error(&ProtocolError::new("sfu_refused", format!("The SFU refused the connection: {e}."))),
        }
    }

    /// A reply of the node's own; a browser that has not taken it within [`WRITE_LIMIT`]
    /// counts as gone.
    async fn send(&mut self, message: &ServerMessage) -> Result<(), actix_ws::Closed> {
        let text = serde_json::to_string(message).expect("server messages always serialize");
        tokio::time::timeout(WRITE_LIMIT, self.session.text(text)).await.unwrap_or(Err(actix_ws::Closed))
    }
}

/// How a refused join closes: "try again later" for the join rate, refused otherwise.
fn refusal(e: &ProtocolError) -> CloseReason {
    close(if e.code == "join_rate_limited" { CLOSE_TRY_AGAIN } else { CLOSE_REFUSED }, e.code)
}

/// One participant's seat as the meeting's home node runs it: the join's checks, then each
/// message into the room. Where the participant's socket is (on this node, or on an edge
/// node of the cluster) is not its concern: what the room sends goes through the hub's
/// queue, and a direct reply (a pong, the SFU's answer) is returned.
pub struct Signaler {
    state: Arc<AppState>,
    room: RoomName,
    /// The client's network (an IPv4 address or an IPv6 /64).
    origin: IpAddr,
    conn: ConnId,
    queue: Queue,
    /// The participant's edge node, when their socket is on another node: their media ends
    /// there (if the cascade links us), and the way back to them.
    edge: Option<Back>,
}

impl Signaler {
    /// Revokes the invite `certificate/invite` (hex) a host removed someone with.
    async fn revoke(&self, invite: &str) -> Result<(), ProtocolError> {
        let ids = invite.split_once('/').and_then(|(c, i)| Some((CapabilityId::from_hex(c)?, CapabilityId::from_hex(i)?)));
        let Some((certificate, invite)) = ids else {
            tracing::error!(invite, "a seat's invite is not certificate/invite");
            return Ok(());
        };
        let now = clock::now();
        self.state.db(move |s| s.revoke_invite_under(certificate, invite, now)).await?;
        tracing::info!(room = %self.room, %invite, "invite revoked with a removal");
        Ok(())
    }

    /// Checks the invite and the name, then takes (or takes back) a seat.
    async fn seat(&self, join: ClientMessage) -> Result<(), ProtocolError> {
        let (conn, queue) = (self.conn, &self.queue);
        let ClientMessage::Join { invite, name, audio, video, resume, .. } = join else { unreachable!("first_message returns joins") };
        let name = protocol::display_name(&name)?;
        let room = self.room.clone();
        let node_keys = self.state.trusted.keys();
        let admitted = self.state.db(move |s| admit(s, &node_keys, &room, &invite, clock::now())).await;
        let (granted, meeting) = admitted.map_err(|e| ProtocolError::new(e.code, e.message))?;
        let opens_at = meeting.settings.opens_at;
        if granted.role != confab_keys::Role::Host && opens_at > clock::now() {
            return Err(ProtocolError::new("meeting_not_open", format!("This meeting opens at {}; come back then.", clock::format_utc(opens_at))));
        }
        let invite = format!("{}/{}", granted.certificate_id, granted.invite_id);
        let (certificate, invite_id) = (granted.certificate_id, granted.invite_id);
        let personal = self.state.db(move |s| s.invite_is_personal(certificate, invite_id)).await.map_err(ProtocolError::from)?;
        let seat = Seat { name, role: granted.role, audio, video, invite, origin: self.origin, personal };
        let secret = secrets::hex(&secrets::random_bytes::<16>());
        let (state, room_name) = (self.state.clone(), self.room.to_string());
        let ice_servers = move |id: ParticipantId| state.ice_servers_for(&room_name, id.0);
        let mut stopped = Vec::new();
        let result = self.state.hub.act(self.room.as_str(), conn, queue, |r, now| {
            // The meeting's settings as they are now (an owner may have changed them).
            stopped = r.set_settings(meeting.settings, &ice_servers, now);
            let id = match resume {
                Some(resume) => r.resume_or_join(conn, resume.participant, &resume.secret, seat, secret, &ice_servers, now),
                None => r.join(conn, seat, secret, &ice_servers, now),
            }?;
            Ok::<_, RoomError>((id, r.seat_of(conn).is_some()))
        });
        self.state.stop_shares(self.room.as_str(), &stopped);
        match result {
            Ok((id, seated)) => {
                tracing::info!(room = %self.room, participant = %id, role = granted.role.as_str(), "{}", if seated { "seated" } else { "waiting in the lobby" });
                Ok(())
            }
            Err(e) => Err(e.to_protocol()),
        }
    }

    /// One message after the join.
    async fn handle(&self, text: &str) -> Result<Option<ServerMessage>, ProtocolError> {
        let (conn, queue) = (self.conn, &self.queue);
        let message = protocol::parse(text)?;
        let hub = &self.state.hub;
        let room = self.room.as_str();
        let result: Result<(), RoomError> = match message {
            ClientMessage::Join { .. } => Err(RoomError::AlreadySeated),
            ClientMessage::Signal { to, description, candidate } => {
                let payload = protocol::signal_payload(description, candidate)?;
                hub.act(room, conn, queue, |r, _| r.signal(conn, to, payload))
            }
            ClientMessage::Media { audio, video, screen } => {
                let seat = hub.act(room, conn, queue, |r, _| r.set_media(conn, audio, video, screen).map(|()| r.seat_of(conn)));
                if let Ok(Some(participant)) = seat {
                    // In SFU mode the relay forwards a share to everyone (and none when it stops).
                    self.state.edges.share(PeerKey { room: room.to_string(), participant: participant.0 }, screen);
                }
                seat.map(|_| ())
            }
            ClientMessage::MeshFailed { participant } => hub.act(room, conn, queue, |r, now| r.mesh_failed(conn, participant, now)),
            ClientMessage::Remove { participant, revoke } => {
                let revoked = hub.act(room, conn, queue, |r, now| r.remove(conn, participant, revoke, now));
                if let Ok(Some(invite)) = &revoked {
                    self.revoke(invite).await?;
                }
                revoked.map(|_| ())
            }
            ClientMessage::Mute { participant, kind } => hub.act(room, conn, queue, |r, _| r.mute(conn, participant, kind)),
            ClientMessage::Lock { locked } => hub.act(room, conn, queue, |r, _| r.lock(conn, locked)),
            ClientMessage::End {} => hub.act(room, conn, queue, |r, now| r.end(conn, now)),
            ClientMessage::MakeHost { participant } => hub.act(room, conn, queue, |r, _| r.make_host(conn, participant)),
            ClientMessage::Admit { participant } => {
                let (state, room_name) = (self.state.clone(), room.to_string());
                let ice_servers = move |id: ParticipantId| state.ice_servers_for(&room_name, id.0);
                hub.act(room, conn, queue, |r, now| r.admit(conn, participant, &ice_servers, now))
            }
            ClientMessage::Deny { participant } => hub.act(room, conn, queue, |r, _| r.deny(conn, participant)),
            ClientMessage::Chat { text, to } => {
                let at = clock::unix_millis();
                hub.act(room, conn, queue, |r, now| r.chat(conn, to, text, at, now))
            }
            ClientMessage::Hand { raised } => hub.act(room, conn, queue, |r, _| r.hand(conn, raised)),
            ClientMessage::LowerHand { participant } => hub.act(room, conn, queue, |r, _| r.lower_hand(conn, participant)),
            ClientMessage::Leave {} => hub.act(room, conn, queue, |r, now| r.leave(conn, now)),
            ClientMessage::Ping {} => return Ok(Some(ServerMessage::Pong {})),
            ClientMessage::SfuOffer { sdp } => {
                let (participant, sharing, (held_audio, held_video)) =
                    hub.act(room, conn, queue, |r, now| r.sfu_offer(conn, now).map(|id| (id, r.sharing(id), r.held(id)))).map_err(|e| e.to_protocol())?;
                let peer = PeerKey { room: room.to_string(), participant: participant.0 };
                // Their media ends at their edge, if they have one the cascade reaches.
                if let Some(back) = self.edge.as_ref().filter(|b| self.state.edges.reaches(&b.edge_key)) {
                    self.state.edges.publishes_at(&peer, Some(back.edge_key));
                    back.send(Down::Publish { participant: participant.0, sdp, sharing, held_audio, held_video });
                    return Ok(None);
                }
                self.state.edges.publishes_at(&peer, None);
                let answer = self
                    .state
                    .relay
                    .publish(peer.clone(), sdp)
                    .await
                    .map_err(|e| ProtocolError::new("sfu_refused", format!("The SFU refused the connection: {e}.")))?;
                // A new connection to the relay starts without a share or a host's mute.
                if sharing {
                    self.state.relay.share(peer.clone(), true);
                }
                if held_audio || held_video {
                    self.state.relay.hold(peer, Held { audio: held_audio, video: held_video });
                }
                return Ok(Some(ServerMessage::SfuAnswer { sdp: answer }));
            }
            ClientMessage::SfuView { tiles } => {
                let Some(participant) = hub.act(room, conn, queue, |r, _| r.seat_of(conn)) else {
                    return Err(RoomError::NotSeated.to_protocol());
                };
                let peer = PeerKey { room: room.to_string(), participant: participant.0 };
                self.state
                    .edges
                    .view(peer, tiles.into_iter().map(|t| Tile { participant: t.participant.0, screen: t.screen, height: t.height.min(8192) }).collect());
                Ok(())
            }
        };
        result.map(|()| None).map_err(|e| e.to_protocol())
    }
}

/// A seat whose participant's socket is on another node of the cluster (their edge): the
/// same checks and the same room as a local connection's, with the socket's side carried by
/// the control plane. Runs on the meeting's home node.
pub async fn serve_remote_seat(state: Arc<AppState>, seat: RemoteSeat) {
    let RemoteSeat { room, origin, mut frames, back } = seat;
    let refuse = |e: ProtocolError| {
        back.send(Down::Text(serde_json::to_string(&ServerMessage::error(&e)).expect("server messages always serialize")));
        let reason = refusal(&e);
        back.send(Down::Close { code: reason.code.into(), reason: reason.description.unwrap_or_default() });
    };
    let room = match RoomName::normalize(&room) {
        Ok(room) => room,
        Err(e) => return refuse(ProtocolError::new("room_invalid", format!("{}.", e.0))),
    };
    // The edge relays only a join that parsed.
    let join = match frames.recv().await {
        Some(Up::Join(text)) => match protocol::parse(&text) {
            Ok(join @ ClientMessage::Join { .. }) => join,
            Ok(_) => return refuse(ProtocolError::new("not_joined", "The first message must be a join.")),
            Err(e) => return refuse(e),
        },
        _ => return,
    };
    let (conn, queue, mut outbox) = state.hub.connection();
    let signaler = Signaler { state: state.clone(), room, origin, conn, queue, edge: Some(back.clone()) };
    if let Err(e) = signaler.seat(join).await {
        return refuse(e);
    }
    let dropped = outbox.dropped_signal();
    let as_text = |m: &ServerMessage| Down::Text(serde_json::to_string(m).expect("server messages always serialize"));
    loop {
        tokio::select! {
            biased;
            () = dropped.wait() => {
                back.send(Down::Close { code: 1011, reason: "stalled".into() });
                break;
            }
            out = outbox.recv() => match out {
                Some(Outbound::Text(text)) => back.send(Down::Text(text)),
                Some(Outbound::Close(why)) => {
                    let reason = close_for(why);
                    back.send(Down::Close { code: reason.code.into(), reason: reason.description.unwrap_or_default() });
                    break;
                }
                None => break,
            },
            frame = frames.recv() => match frame {
                Some(Up::Text(text)) => match signaler.handle(&text).await {
                    Ok(Some(reply)) => back.send(as_text(&reply)),
                    Ok(None) => {}
                    Err(e) => back.send(as_text(&ServerMessage::error(&e))),
                },
                Some(Up::Join(_)) => back.send(as_text(&ServerMessage::error(&RoomError::AlreadySeated.to_protocol()))),
                Some(Up::Closed) | None => {
                    state.hub.disconnected(signaler.room.as_str(), conn);
                    break;
                }
            },
        }
    }
}

/// Passes what the relay says to the participant concerned.
pub fn relay_notice(state: &AppState, notice: Notice) {
    match notice {
        Notice::Slots { peer, slots } => {
            // A participant of a meeting homed elsewhere: their room is there.
            if let Some(home) = home_elsewhere(state, &peer.room) {
                state.edges.slots_to_home(&home, peer, slots);
                return;
            }
            let slots = slots.into_iter().map(|(mid, participant, kind)| SlotView { mid, participant: ParticipantId(participant), kind }).collect();
            state.hub.notify(&peer.room, ParticipantId(peer.participant), ServerMessage::SfuSlots { slots });
        }
        Notice::Speaker { room, participant } => state.hub.notify_all(&room, ServerMessage::Speaker { participant: ParticipantId(participant) }),
        Notice::Gone { peer } => tracing::info!(room = %peer.room, participant = peer.participant, "the relay lost a participant's connection"),
        Notice::Layers { peer, mid, active } => state.hub.notify(&peer.room, ParticipantId(peer.participant), ServerMessage::SfuLayers { mid, active }),
        Notice::Paused { peer, slots } => {
            if let Some(home) = home_elsewhere(state, &peer.room) {
                state.edges.paused_to_home(&home, peer, slots);
                return;
            }
            let slots = slots.into_iter().map(|(mid, reason)| PausedSlot { mid, reason }).collect();
            state.hub.notify(&peer.room, ParticipantId(peer.participant), ServerMessage::SfuPaused { slots });
        }
    }
}

/// In a cluster, the node `room` is homed at when that is another one.
fn home_elsewhere(state: &AppState, room: &str) -> Option<[u8; 32]> {
    let cluster = state.cluster.as_ref()?;
    let home = cluster.home_of(room);
    (home != cluster.own_key()).then_some(home)
}

fn protocol_failure(e: actix_ws::ProtocolError) -> ProtocolError {
    match e {
        actix_ws::ProtocolError::Overflow => protocol::too_large(MAX_MESSAGE_BYTES + 1),
        other => ProtocolError::new("bad_frame", format!("The WebSocket frame could not be read: {other}.")),
    }
}

fn close(code: u16, reason: &str) -> CloseReason {
    CloseReason { code: CloseCode::from(code), description: Some(reason.to_string()) }
}

fn close_for(why: CloseWhy) -> CloseReason {
    match why {
        CloseWhy::Left => close(1000, "left"),
        CloseWhy::Removed => close(CLOSE_REMOVED, "removed"),
        CloseWhy::Replaced => close(CLOSE_REPLACED, "replaced"),
        CloseWhy::Ended => close(CLOSE_ENDED, "ended"),
        CloseWhy::Denied => close(CLOSE_DENIED, "turned_away"),
        CloseWhy::Moved => close(crate::cluster::net::CLOSE_HOME_LOST, "moved"),
    }
}

impl From<ApiError> for ProtocolError {
    fn from(e: ApiError) -> ProtocolError {
        ProtocolError::new(e.code, e.message)
    }
}

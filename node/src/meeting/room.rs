//! One meeting's state, sans-IO: who holds a seat, over which connection, what each sends,
//! and whether the room is a mesh or uses the SFU. Inputs are method calls with the current
//! monotonic time; outputs are `Effect`s (messages to send, connections to close) that the
//! caller drains with `take_effects`. No sockets, no clocks, no randomness: the shell passes
//! resume secrets and ICE servers in.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use confab_keys::Role;

use super::budget::{Budget, CHAT_BURST, CHATS_PER_SECOND, JOIN_BURST, JOINS_PER_SECOND, SFU_OFFER_BURST, SFU_OFFERS_PER_SECOND};

use super::protocol::{
    IceServer, LeftReason, MediaMode, MuteKind, PROTOCOL_VERSION, ParticipantId, ParticipantView, ProtocolError, ServerMessage, SignalPayload, Target,
    WaitingView,
};

/// The ICE servers for one participant's connections (TURN credentials are per seat).
pub type IceServersFor<'a> = &'a dyn Fn(ParticipantId) -> Vec<IceServer>;

pub use super::budget::Millis;

/// How many seats one address may hold in one meeting unless configured otherwise.
pub const DEFAULT_SEATS_PER_ADDRESS: usize = 20;

/// The shell's handle for one WebSocket.
pub type ConnId = u64;

#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// The room uses the mesh while it has at most this many participants; 0 means always SFU.
    pub mesh_threshold: usize,
    /// How long a seat is kept after its connection drops.
    pub reconnect_grace_ms: Millis,
    /// How long the room must stay at or under the threshold before it returns to mesh.
    pub sfu_hold_down_ms: Millis,
    pub capacity: usize,
    /// At most this many guest seats from one network address ([`Seat::origin`]); 0: no
    /// limit. Loopback (the node's own machine, e.g. a load generator) is not limited.
    pub seats_per_address: usize,
}

impl Default for RoomConfig {
    fn default() -> RoomConfig {
        RoomConfig { mesh_threshold: 4, reconnect_grace_ms: 30_000, sfu_hold_down_ms: 15_000, capacity: 100, seats_per_address: DEFAULT_SEATS_PER_ADDRESS }
    }
}

/// What a meeting's owner decides on `/account` (stored with the meeting; the shell hands
/// the room the current ones at every join and on every change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeetingSettings {
    /// Guests wait in the lobby until a host admits them.
    pub lobby: bool,
    /// Only hosts may share a screen.
    pub share_hosts_only: bool,
    /// Newcomers join muted once the meeting has more than this many participants (0: never).
    pub muted_above: u32,
    /// When the meeting opens to guests (Unix seconds; 0: always). The shell refuses guests'
    /// joins before then (the room has no wall clock).
    pub opens_at: u64,
}

/// Public chat messages a room keeps for late joiners (in memory only, for the room's life).
pub const CHAT_HISTORY: usize = 200;

/// Removals remembered per room (the oldest is forgotten beyond this).
const MAX_BARRED: usize = 1024;
/// Join budgets kept per room; beyond this, those that have refilled are forgotten.
const MAX_JOIN_BUDGETS: usize = 4096;

/// Signals kept for a participant whose connection is down, delivered when it resumes.
/// Beyond this the oldest are dropped; the client restarts ICE on any pair that needs it.
const MAX_HELD_MESSAGES: usize = 200;
/// …and at most this many bytes of them (an offer may be 64 KiB).
const MAX_HELD_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant, reason = "effects live for one call, a few at a time; boxing every message would cost more")]
pub enum Effect {
    Send {
        conn: ConnId,
        message: ServerMessage,
    },
    Close {
        conn: ConnId,
        why: CloseWhy,
    },
    /// The seat is gone for good: whatever else holds state for it (the relay) lets go,
    /// and the TURN credentials it was given stop working.
    Departed {
        participant: ParticipantId,
        turn_usernames: Vec<String>,
    },
    /// What a host now holds back of `participant` (their microphone, their camera): the
    /// relay forwards none of it until they turn it on again themselves.
    Held {
        participant: ParticipantId,
        audio: bool,
        video: bool,
    },
}

/// Why the node closes a connection; the shell maps these to WebSocket close codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhy {
    Left,
    Removed,
    /// A host ended the meeting.
    Ended,
    /// The same seat was resumed on a newer connection.
    Replaced,
    /// A host turned this guest away from the lobby.
    Denied,
    /// The meeting moved to another node of the cluster: come back (the same link finds it).
    Moved,
}

/// What the joining participant asks for, already validated by the shell.
#[derive(Debug, Clone)]
pub struct Seat {
    pub name: String,
    pub role: Role,
    pub audio: bool,
    pub video: bool,
    /// The id of the invite presented (hex): with `origin`, what a removal bars.
    pub invite: String,
    /// The network the connection came from (`ratelimit::client_key`: an IPv4 address or an
    /// IPv6 /64).
    pub origin: IpAddr,
    /// The invite was made for this one person (its owner named them): a host may revoke it
    /// with a removal.
    pub personal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("this connection has no seat in the meeting")]
    NotSeated,
    #[error("this connection already has a seat")]
    AlreadySeated,
    #[error("{0} is not in the meeting")]
    NoSuchParticipant(ParticipantId),
    #[error("only a host can remove participants")]
    NotHost,
    #[error("to leave the meeting yourself, use leave")]
    CannotRemoveSelf,
    #[error("the meeting is full ({0} participants)")]
    Full(usize),
    #[error("the meeting is not using the SFU now")]
    NotSfu,
    #[error("too many SFU offers: wait a few seconds")]
    TooManyOffers,
    #[error("a host removed you from this meeting; you cannot rejoin it with this link from this network")]
    Barred,
    #[error("this network already holds {0} seats in the meeting, the most one address may")]
    AddressFull(usize),
    #[error("too many joins from this network: wait a few seconds")]
    TooManyJoins,
    #[error("too many chat messages: wait a moment")]
    TooManyChats,
    #[error("the meeting is locked: only a host can let more people in")]
    Locked,
    #[error("you are waiting in the lobby: a host has not let you in yet")]
    InLobby,
    #[error("the lobby is full ({0} waiting)")]
    LobbyFull(usize),
    #[error("only hosts may share a screen in this meeting")]
    ShareNotAllowed,
    #[error("that invite is shared by several people: revoke it from the account page if you mean to")]
    InviteShared,
}

impl RoomError {
    pub fn to_protocol(&self) -> ProtocolError {
        let code = match self {
            RoomError::NotSeated => "not_joined",
            RoomError::AlreadySeated => "already_joined",
            RoomError::NoSuchParticipant(_) => "no_such_participant",
            RoomError::NotHost => "not_host",
            RoomError::CannotRemoveSelf => "cannot_remove_self",
            RoomError::Full(_) => "room_full",
            RoomError::NotSfu => "not_sfu",
            RoomError::TooManyOffers => "rate_limited",
            RoomError::Barred => "removed",
            RoomError::AddressFull(_) => "address_full",
            RoomError::TooManyJoins => "join_rate_limited",
            RoomError::TooManyChats => "rate_limited",
            RoomError::Locked => "locked",
            RoomError::InLobby => "in_lobby",
            RoomError::LobbyFull(_) => "lobby_full",
            RoomError::ShareNotAllowed => "share_not_allowed",
            RoomError::InviteShared => "invite_shared",
        };
        let text = self.to_string();
        let mut chars = text.chars();
        let sentence = chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default();
        ProtocolError::new(code, format!("{sentence}."))
    }
}

#[derive(Debug)]
enum Link {
    Connected(ConnId),
    /// The connection dropped; the seat is kept until `deadline`, and messages for it wait.
    Away {
        deadline: Millis,
        /// Signals for it, with their sizes; and their sum.
        held: VecDeque<(ServerMessage, usize)>,
        held_bytes: usize,
    },
}

#[derive(Debug)]
struct Participant {
    name: String,
    role: Role,
    audio: bool,
    video: bool,
    screen: bool,
    resume_secret: String,
    link: Link,
    /// What the seat may still spend on `sfu-offer`s, and on chat.
    sfu_offers: Budget,
    chats: Budget,
    /// While raised: the hand's place in the queue.
    hand: Option<u64>,
    /// A host muted them / stopped their camera, and they have not turned it on since.
    held_audio: bool,
    held_video: bool,
    /// The TURN usernames its welcomes carried.
    turn_usernames: Vec<String>,
    invite: String,
    origin: IpAddr,
    personal: bool,
}

/// A guest held in the lobby: not a participant yet (nothing of the meeting reaches them),
/// with the id they will have once a host admits them.
#[derive(Debug)]
struct Waiter {
    conn: ConnId,
    seat: Seat,
    resume_secret: String,
}

#[derive(Debug)]
pub struct Room {
    name: String,
    config: RoomConfig,
    participants: BTreeMap<ParticipantId, Participant>,
    next_id: u64,
    mode: MediaMode,
    /// While in SFU mode with few enough participants: since when.
    below_threshold_since: Option<Millis>,
    /// Pairs that reported they could not connect directly: while one remains, the room
    /// stays in SFU mode whatever its size.
    unreachable: std::collections::BTreeSet<(ParticipantId, ParticipantId)>,
    /// (invite id, origin) of the seats a host removed: they get no new seat.
    barred: VecDeque<(String, IpAddr)>,
    /// Fresh joins per origin.
    joins: BTreeMap<IpAddr, Budget>,
    /// The last [`CHAT_HISTORY`] public chat messages.
    chat: VecDeque<ServerMessage>,
    next_chat_id: u64,
    next_hand: u64,
    /// Only hosts get new seats.
    locked: bool,
    /// The owner's settings (the lobby, who shares, joining muted).
    settings: MeetingSettings,
    waiting: BTreeMap<ParticipantId, Waiter>,
    /// What the waiting guests were last told: whether a host is present.
    told_host_present: Option<bool>,
    effects: Vec<Effect>,
}

impl Room {
    pub fn new(name: impl Into<String>, config: RoomConfig) -> Room {
        let mode = if config.mesh_threshold == 0 { MediaMode::Sfu } else { MediaMode::Mesh };
        Room {
            name: name.into(),
            config,
            participants: BTreeMap::new(),
            next_id: 1,
            mode,
            below_threshold_since: None,
            unreachable: Default::default(),
            barred: VecDeque::new(),
            joins: BTreeMap::new(),
            chat: VecDeque::new(),
            next_chat_id: 1,
            next_hand: 1,
            locked: false,
            settings: MeetingSettings::default(),
            waiting: BTreeMap::new(),
            told_host_present: None,
            effects: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mode(&self) -> MediaMode {
        self.mode
    }

    pub fn len(&self) -> usize {
        self.participants.len()
    }

    /// No participant and nobody waiting in the lobby.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty() && self.waiting.is_empty()
    }

    /// The effects produced since the last call, in order. Guests in the lobby hear here
    /// whether a host is present, whenever that changed.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        if !self.waiting.is_empty() {
            let present = self.host_present();
            if self.told_host_present != Some(present) {
                self.told_host_present = Some(present);
                for w in self.waiting.values() {
                    self.effects.push(Effect::Send { conn: w.conn, message: ServerMessage::Lobby { host_present: present } });
                }
            }
        }
        std::mem::take(&mut self.effects)
    }

    /// Whether `conn` holds a seat or waits in the lobby.
    pub fn holds(&self, conn: ConnId) -> bool {
        self.seat_of(conn).is_some() || self.waiter_of(conn).is_some()
    }

    /// The meeting's settings as the owner left them. Turning the lobby off lets everyone
    /// waiting in; allowing only hosts to share ends guests' shares in progress (returned:
    /// the relay stops forwarding them).
    pub fn set_settings(&mut self, settings: MeetingSettings, ice_servers: IceServersFor<'_>, now: Millis) -> Vec<ParticipantId> {
        self.settings = settings;
        let mut stopped = Vec::new();
        if settings.share_hosts_only {
            stopped = self.participants.iter().filter(|(_, p)| p.screen && p.role != Role::Host).map(|(id, _)| *id).collect();
            for &id in &stopped {
                self.participants.get_mut(&id).expect("listed above").screen = false;
                self.send_to(id, ServerMessage::error(&RoomError::ShareNotAllowed.to_protocol()));
                let view = self.view(id);
                self.broadcast(None, ServerMessage::Updated { participant: view });
            }
        }
        if !settings.lobby {
            let all: Vec<ParticipantId> = self.waiting.keys().copied().collect();
            for id in all {
                let _ = self.seat_waiter(id, ice_servers, now);
            }
        }
        stopped
    }

    /// A host admits one guest waiting in the lobby, or all of them: each gets `welcome`
    /// and everyone sees them join. Admitting beyond the room's capacity stops there.
    pub fn admit(&mut self, conn: ConnId, target: Target, ice_servers: IceServersFor<'_>, now: Millis) -> Result<(), RoomError> {
        self.host_of(conn)?;
        let targets: Vec<ParticipantId> = match target {
            Target::One(t) if !self.waiting.contains_key(&t) => return Err(RoomError::NoSuchParticipant(t)),
            Target::One(t) => vec![t],
            Target::All => self.waiting.keys().copied().collect(),
        };
        for t in targets {
            self.seat_waiter(t, ice_servers, now)?;
        }
        Ok(())
    }

    /// A host turns a guest in the lobby away: they are told (`denied`) and disconnected.
    pub fn deny(&mut self, conn: ConnId, target: ParticipantId) -> Result<(), RoomError> {
        let (_, by) = self.host_of(conn)?;
        let waiter = self.waiting.remove(&target).ok_or(RoomError::NoSuchParticipant(target))?;
        self.effects.push(Effect::Send { conn: waiter.conn, message: ServerMessage::Denied { by } });
        self.effects.push(Effect::Close { conn: waiter.conn, why: CloseWhy::Denied });
        self.tell_hosts_who_waits();
        Ok(())
    }

    fn waiter_of(&self, conn: ConnId) -> Option<ParticipantId> {
        self.waiting.iter().find(|(_, w)| w.conn == conn).map(|(id, _)| *id)
    }

    /// The participant seated on `conn`, or why not (not joined, or still in the lobby).
    fn seated(&self, conn: ConnId) -> Result<ParticipantId, RoomError> {
        match self.seat_of(conn) {
            Some(id) => Ok(id),
            None if self.waiter_of(conn).is_some() => Err(RoomError::InLobby),
            None => Err(RoomError::NotSeated),
        }
    }

    fn host_present(&self) -> bool {
        self.participants.values().any(|p| p.role == Role::Host)
    }

    fn waiting_view(&self) -> Vec<WaitingView> {
        self.waiting.iter().map(|(id, w)| WaitingView { id: *id, name: w.seat.name.clone() }).collect()
    }

    /// Every host (connected or not: a resumed host's welcome carries the list anyway)
    /// gets the lobby's list.
    fn tell_hosts_who_waits(&mut self) {
        let guests = self.waiting_view();
        let hosts: Vec<ParticipantId> = self.participants.iter().filter(|(_, p)| p.role == Role::Host).map(|(id, _)| *id).collect();
        for host in hosts {
            self.send_to(host, ServerMessage::Waiting { guests: guests.clone() });
        }
    }

    /// Moves a waiting guest into the meeting.
    fn seat_waiter(&mut self, id: ParticipantId, ice_servers: IceServersFor<'_>, now: Millis) -> Result<(), RoomError> {
        if self.participants.len() >= self.config.capacity {
            return Err(RoomError::Full(self.config.capacity));
        }
        let waiter = self.waiting.remove(&id).ok_or(RoomError::NoSuchParticipant(id))?;
        self.seat(id, waiter.conn, waiter.seat, waiter.resume_secret, ice_servers, now);
        self.tell_hosts_who_waits();
        Ok(())
    }

    /// Whether `conn`'s seat may hand the relay an `sfu-offer` now: only while the meeting
    /// uses the SFU, and no more often than [`SFU_OFFER_BURST`] / [`SFU_OFFERS_PER_SECOND`]
    /// (each offer costs milliseconds on a forwarding thread that other rooms share).
    pub fn sfu_offer(&mut self, conn: ConnId, now: Millis) -> Result<ParticipantId, RoomError> {
        let id = self.seated(conn)?;
        if self.mode != MediaMode::Sfu {
            return Err(RoomError::NotSfu);
        }
        let participant = self.participants.get_mut(&id).expect("seated");
        if !participant.sfu_offers.take(now) {
            return Err(RoomError::TooManyOffers);
        }
        Ok(id)
    }

    /// Whether participant `id` shares their screen now.
    pub fn sharing(&self, id: ParticipantId) -> bool {
        self.participants.get(&id).is_some_and(|p| p.screen)
    }

    /// What a host holds back of participant `id`: (microphone, camera).
    pub fn held(&self, id: ParticipantId) -> (bool, bool) {
        self.participants.get(&id).map_or((false, false), |p| (p.held_audio, p.held_video))
    }

    /// The seat held by `conn`, if any.
    pub fn seat_of(&self, conn: ConnId) -> Option<ParticipantId> {
        self.participants.iter().find(|(_, p)| matches!(p.link, Link::Connected(c) if c == conn)).map(|(id, _)| *id)
    }

    /// When `tick` next has something to do.
    pub fn next_deadline(&self) -> Option<Millis> {
        let away = self.participants.values().filter_map(|p| match p.link {
            Link::Away { deadline, .. } => Some(deadline),
            Link::Connected(_) => None,
        });
        let hold_down = self.below_threshold_since.map(|since| since + self.config.sfu_hold_down_ms);
        away.chain(hold_down).min()
    }

    /// Seats a new participant on `conn`.
    /// A guest arriving while the meeting has a lobby waits in it instead (`lobby`), under
    /// the id returned; hosts are told.
    pub fn join(&mut self, conn: ConnId, seat: Seat, resume_secret: String, ice_servers: IceServersFor<'_>, now: Millis) -> Result<ParticipantId, RoomError> {
        if self.holds(conn) {
            return Err(RoomError::AlreadySeated);
        }
        self.may_seat(&seat, now)?;
        if self.settings.lobby && seat.role != Role::Host {
            if self.waiting.len() >= self.config.capacity {
                return Err(RoomError::LobbyFull(self.waiting.len()));
            }
            let id = ParticipantId(self.next_id);
            self.next_id += 1;
            self.waiting.insert(id, Waiter { conn, seat, resume_secret });
            self.effects.push(Effect::Send { conn, message: ServerMessage::Lobby { host_present: self.host_present() } });
            if self.waiting.len() == 1 {
                // The first to wait: what they were just told is what all waiting know.
                self.told_host_present = Some(self.host_present());
            }
            self.tell_hosts_who_waits();
            return Ok(id);
        }
        if self.participants.len() >= self.config.capacity {
            // A seat whose connection dropped yields to someone who is here: otherwise
            // connections opened and dropped could keep the meeting full for good.
            let away = self.participants.iter().filter_map(|(id, p)| match p.link {
                Link::Away { deadline, .. } => Some((deadline, *id)),
                Link::Connected(_) => None,
            });
            let Some((_, oldest)) = away.min() else {
                return Err(RoomError::Full(self.config.capacity));
            };
            self.remove_participant(oldest, LeftReason::TimedOut, now);
        }
        let id = ParticipantId(self.next_id);
        self.next_id += 1;
        self.seat(id, conn, seat, resume_secret, ice_servers, now);
        Ok(id)
    }

    /// Seats `id` on `conn`, welcomes them and tells the others.
    /// Past the owner's `muted_above`, a newcomer's microphone starts off (their welcome says
    /// so; they may turn it on).
    fn seat(&mut self, id: ParticipantId, conn: ConnId, seat: Seat, resume_secret: String, ice_servers: IceServersFor<'_>, now: Millis) {
        let muted_above = self.settings.muted_above as usize;
        let join_muted = muted_above > 0 && self.participants.len() >= muted_above && seat.audio;
        let participant = Participant {
            name: seat.name,
            role: seat.role,
            audio: seat.audio && !join_muted,
            video: seat.video,
            screen: false,
            resume_secret,
            link: Link::Connected(conn),
            sfu_offers: Budget::with(now, SFU_OFFER_BURST, SFU_OFFERS_PER_SECOND),
            chats: Budget::with(now, CHAT_BURST, CHATS_PER_SECOND),
            hand: None,
            held_audio: false,
            held_video: false,
            turn_usernames: Vec::new(),
            invite: seat.invite,
            origin: seat.origin,
            personal: seat.personal,
        };
        self.participants.insert(id, participant);
        // The mode first: those present switch before they hear of the newcomer (so nobody
        // starts a mesh connection that the switch would end at once), and the newcomer's
        // welcome already carries the mode it must use.
        self.update_mode_except(now, Some(id));
        self.welcome(id, false, ice_servers);
        if join_muted {
            self.send_to(id, ServerMessage::JoinedMuted { above: self.settings.muted_above });
        }
        let view = self.view(id);
        self.broadcast_except(id, ServerMessage::Joined { participant: view });
    }

    /// Whether a fresh seat may go to `seat`: not one a host removed, and (for guests from
    /// elsewhere than loopback) within the per-address seat limit and join rate. One link
    /// holder can then neither keep a meeting full nor come straight back after removal.
    fn may_seat(&mut self, seat: &Seat, now: Millis) -> Result<(), RoomError> {
        if self.barred.iter().any(|(invite, origin)| *invite == seat.invite && *origin == seat.origin) {
            return Err(RoomError::Barred);
        }
        if self.locked && seat.role != Role::Host {
            return Err(RoomError::Locked);
        }
        if seat.role == Role::Host || seat.origin.is_loopback() {
            return Ok(());
        }
        let limit = self.config.seats_per_address;
        let from_origin = self.participants.iter().filter(|(_, p)| p.origin == seat.origin && p.role != Role::Host);
        if limit > 0 && from_origin.clone().count() >= limit {
            // As for a full room: a seat of this address whose connection dropped yields.
            let away = from_origin.filter_map(|(id, p)| match p.link {
                Link::Away { deadline, .. } => Some((deadline, *id)),
                Link::Connected(_) => None,
            });
            let Some((_, oldest)) = away.min() else {
                return Err(RoomError::AddressFull(limit));
            };
            self.remove_participant(oldest, LeftReason::TimedOut, now);
        }
        if self.joins.len() >= MAX_JOIN_BUDGETS {
            self.joins.retain(|_, budget| !budget.is_full(now));
        }
        let budget = self.joins.entry(seat.origin).or_insert_with(|| Budget::with(now, JOIN_BURST, JOINS_PER_SECOND));
        if !budget.take(now) {
            return Err(RoomError::TooManyJoins);
        }
        Ok(())
    }

    /// Takes back the seat `id` on a new connection if `secret` matches and the seat is still
    /// held; otherwise seats the participant afresh (a new id, `resumed: false`), so that a
    /// reconnection after the grace period still gets the person back in.
    #[allow(clippy::too_many_arguments, reason = "a join's inputs plus the seat to resume, all plain values")]
    pub fn resume_or_join(
        &mut self,
        conn: ConnId,
        id: ParticipantId,
        secret: &str,
        seat: Seat,
        fresh_secret: String,
        ice_servers: IceServersFor<'_>,
        now: Millis,
    ) -> Result<ParticipantId, RoomError> {
        let matches = self.participants.get(&id).is_some_and(|p| constant_time_eq(p.resume_secret.as_bytes(), secret.as_bytes()));
        if !matches {
            return self.join(conn, seat, fresh_secret, ice_servers, now);
        }
        if self.holds(conn) {
            return Err(RoomError::AlreadySeated);
        }
        let participant = self.participants.get_mut(&id).expect("checked above");
        // The seat's role is what the invite presented now grants: a host whose link was
        // replaced by a guest link comes back a guest.
        let role_changed = participant.role != seat.role;
        participant.role = seat.role;
        let previous = std::mem::replace(&mut participant.link, Link::Connected(conn));
        let (was_away, held) = match previous {
            Link::Connected(old) => {
                self.effects.push(Effect::Close { conn: old, why: CloseWhy::Replaced });
                (false, VecDeque::new())
            }
            Link::Away { held, .. } => (true, held),
        };
        self.welcome(id, true, ice_servers);
        for (message, _) in held {
            self.effects.push(Effect::Send { conn, message });
        }
        if was_away || role_changed {
            let view = self.view(id);
            self.broadcast_except(id, ServerMessage::Updated { participant: view });
        }
        Ok(id)
    }

    /// The connection `conn` is gone without a goodbye: keep its seat for the grace period.
    /// A guest waiting in the lobby just leaves it.
    pub fn disconnected(&mut self, conn: ConnId, now: Millis) {
        if let Some(waiter) = self.waiter_of(conn) {
            self.waiting.remove(&waiter);
            self.tell_hosts_who_waits();
            return;
        }
        let Some(id) = self.seat_of(conn) else { return };
        if self.config.reconnect_grace_ms == 0 {
            self.remove_participant(id, LeftReason::TimedOut, now);
            return;
        }
        let deadline = now + self.config.reconnect_grace_ms;
        self.participants.get_mut(&id).expect("seated").link = Link::Away { deadline, held: VecDeque::new(), held_bytes: 0 };
        let view = self.view(id);
        self.broadcast_except(id, ServerMessage::Updated { participant: view });
    }

    pub fn leave(&mut self, conn: ConnId, now: Millis) -> Result<(), RoomError> {
        if let Some(waiter) = self.waiter_of(conn) {
            self.waiting.remove(&waiter);
            self.effects.push(Effect::Close { conn, why: CloseWhy::Left });
            self.tell_hosts_who_waits();
            return Ok(());
        }
        let id = self.seated(conn)?;
        self.effects.push(Effect::Close { conn, why: CloseWhy::Left });
        self.remove_participant(id, LeftReason::Left, now);
        Ok(())
    }

    /// A guest's share is refused (and not shown) when only hosts may share.
    pub fn set_media(&mut self, conn: ConnId, audio: bool, video: bool, screen: bool) -> Result<(), RoomError> {
        let id = self.seated(conn)?;
        let p = self.participants.get_mut(&id).expect("seated");
        if screen && !p.screen && self.settings.share_hosts_only && p.role != Role::Host {
            return Err(RoomError::ShareNotAllowed);
        }
        if (audio && p.held_audio) || (video && p.held_video) {
            // They turn it on again themselves: a host's mute (or stop) ends here.
            p.held_audio &= !audio;
            p.held_video &= !video;
            self.effects.push(Effect::Held { participant: id, audio: p.held_audio, video: p.held_video });
        }
        if (p.audio, p.video, p.screen) != (audio, video, screen) {
            (p.audio, p.video, p.screen) = (audio, video, screen);
            let view = self.view(id);
            self.broadcast_except(id, ServerMessage::Updated { participant: view });
        }
        Ok(())
    }

    /// A chat message from `conn`'s participant (`text` already checked by
    /// `protocol::chat_text`): to everyone, kept for late joiners; or privately to `to`, then
    /// only the two of them get it. `at` is the wall clock (Unix ms), for display.
    pub fn chat(&mut self, conn: ConnId, to: Option<ParticipantId>, text: String, at: u64, now: Millis) -> Result<(), RoomError> {
        let from = self.seated(conn)?;
        if let Some(to) = to
            && (to == from || !self.participants.contains_key(&to))
        {
            return Err(RoomError::NoSuchParticipant(to));
        }
        let sender = self.participants.get_mut(&from).expect("seated");
        if !sender.chats.take(now) {
            return Err(RoomError::TooManyChats);
        }
        let id = self.next_chat_id;
        self.next_chat_id += 1;
        let message = ServerMessage::Chat { id, from, name: sender.name.clone(), text, at, to };
        match to {
            Some(to) => {
                self.send_to(to, message.clone());
                self.send_to(from, message);
            }
            None => {
                if self.chat.len() >= CHAT_HISTORY {
                    self.chat.pop_front();
                }
                self.chat.push_back(message.clone());
                self.broadcast(None, message);
            }
        }
        Ok(())
    }

    /// Raises or lowers `conn`'s own hand; everyone (the participant too) gets the update.
    pub fn hand(&mut self, conn: ConnId, raised: bool) -> Result<(), RoomError> {
        let id = self.seated(conn)?;
        self.set_hand(id, raised);
        Ok(())
    }

    /// Lowers a hand: one's own, or as a host anyone's, or (a host) everyone's.
    pub fn lower_hand(&mut self, conn: ConnId, target: Target) -> Result<(), RoomError> {
        let id = self.seated(conn)?;
        let is_host = self.participants[&id].role == Role::Host;
        let targets: Vec<ParticipantId> = match target {
            Target::One(t) if !self.participants.contains_key(&t) => return Err(RoomError::NoSuchParticipant(t)),
            Target::One(t) if t == id || is_host => vec![t],
            Target::All if is_host => self.participants.keys().copied().collect(),
            _ => return Err(RoomError::NotHost),
        };
        for t in targets {
            self.set_hand(t, false);
        }
        Ok(())
    }

    fn set_hand(&mut self, id: ParticipantId, raised: bool) {
        let p = self.participants.get_mut(&id).expect("callers check the seat");
        let hand = match (p.hand, raised) {
            (Some(_), true) | (None, false) => return,
            (None, true) => {
                self.next_hand += 1;
                Some(self.next_hand - 1)
            }
            (Some(_), false) => None,
        };
        p.hand = hand;
        let view = self.view(id);
        self.broadcast(None, ServerMessage::Updated { participant: view });
    }

    /// Relays a description or candidate to `to`. Held for `to` if its connection is down.
    pub fn signal(&mut self, conn: ConnId, to: ParticipantId, payload: SignalPayload) -> Result<(), RoomError> {
        let from = self.seated(conn)?;
        if to == from || !self.participants.contains_key(&to) {
            return Err(RoomError::NoSuchParticipant(to));
        }
        self.send_to(to, ServerMessage::signal(from, payload));
        Ok(())
    }

    /// `conn`'s participant could not connect directly to `other` within the client's
    /// timeout: the room moves to the SFU (at once, whatever its size) and stays there while
    /// both are present. Nobody else is told anything but the mode.
    pub fn mesh_failed(&mut self, conn: ConnId, other: ParticipantId, now: Millis) -> Result<(), RoomError> {
        let from = self.seated(conn)?;
        if other == from || !self.participants.contains_key(&other) {
            return Err(RoomError::NoSuchParticipant(other));
        }
        self.unreachable.insert((from.min(other), from.max(other)));
        self.update_mode(now);
        Ok(())
    }

    /// A host removes `target`: it is told, disconnected, and the others see it leave. With
    /// `revoke`, also the invite they came with, which must be personal (invites are shared
    /// by many): returned (certificate id/invite id) for the shell to revoke.
    pub fn remove(&mut self, conn: ConnId, target: ParticipantId, revoke: bool, now: Millis) -> Result<Option<String>, RoomError> {
        let host = self.seated(conn)?;
        let host_p = &self.participants[&host];
        if host_p.role != Role::Host {
            return Err(RoomError::NotHost);
        }
        if target == host {
            return Err(RoomError::CannotRemoveSelf);
        }
        let by = host_p.name.clone();
        let target_p = self.participants.get(&target).ok_or(RoomError::NoSuchParticipant(target))?;
        if revoke && !target_p.personal {
            return Err(RoomError::InviteShared);
        }
        let revoked = revoke.then(|| target_p.invite.clone());
        if let Link::Connected(target_conn) = target_p.link {
            self.effects.push(Effect::Send { conn: target_conn, message: ServerMessage::Removed { by } });
            self.effects.push(Effect::Close { conn: target_conn, why: CloseWhy::Removed });
        }
        if self.barred.len() >= MAX_BARRED {
            self.barred.pop_front();
        }
        self.barred.push_back((target_p.invite.clone(), target_p.origin));
        self.remove_participant(target, LeftReason::Removed, now);
        Ok(revoked)
    }

    /// The host seated on `conn` (with their name), or why not.
    fn host_of(&self, conn: ConnId) -> Result<(ParticipantId, String), RoomError> {
        let id = self.seated(conn)?;
        let p = &self.participants[&id];
        if p.role != Role::Host {
            return Err(RoomError::NotHost);
        }
        Ok((id, p.name.clone()))
    }

    /// A host asks one participant, or everyone but themselves, to mute (or to stop their
    /// camera, `kind`): each is told (`muted`), shown with it off to all, and it is no longer
    /// forwarded by the SFU until they turn it on again themselves. Nobody's microphone or
    /// camera is ever turned on by someone else.
    pub fn mute(&mut self, conn: ConnId, target: Target, kind: MuteKind) -> Result<(), RoomError> {
        let (host, by) = self.host_of(conn)?;
        let targets: Vec<ParticipantId> = match target {
            Target::One(t) if !self.participants.contains_key(&t) => return Err(RoomError::NoSuchParticipant(t)),
            Target::One(t) => vec![t],
            Target::All => self.participants.keys().copied().filter(|id| *id != host).collect(),
        };
        for t in targets {
            let p = self.participants.get_mut(&t).expect("listed above");
            let (on, held) = match kind {
                MuteKind::Audio => (&mut p.audio, &mut p.held_audio),
                MuteKind::Video => (&mut p.video, &mut p.held_video),
            };
            let changed = std::mem::replace(on, false);
            if !std::mem::replace(held, true) {
                self.effects.push(Effect::Held { participant: t, audio: p.held_audio, video: p.held_video });
            }
            self.send_to(t, ServerMessage::Muted { by: by.clone(), kind });
            if changed {
                let view = self.view(t);
                self.broadcast(None, ServerMessage::Updated { participant: view });
            }
        }
        Ok(())
    }

    /// A host locks (or unlocks) the meeting: while locked only hosts get new seats;
    /// everyone present is told.
    pub fn lock(&mut self, conn: ConnId, locked: bool) -> Result<(), RoomError> {
        let (_, by) = self.host_of(conn)?;
        if self.locked != locked {
            self.locked = locked;
            self.broadcast(None, ServerMessage::Locked { locked, by });
        }
        Ok(())
    }

    /// A host makes `target` a host for the rest of this meeting (their seat's role; a new
    /// seat takes the role of the invite presented then). Everyone sees the new role.
    pub fn make_host(&mut self, conn: ConnId, target: ParticipantId) -> Result<(), RoomError> {
        self.host_of(conn)?;
        let p = self.participants.get_mut(&target).ok_or(RoomError::NoSuchParticipant(target))?;
        if p.role != Role::Host {
            p.role = Role::Host;
            let view = self.view(target);
            self.broadcast(None, ServerMessage::Updated { participant: view });
            if !self.waiting.is_empty() {
                let guests = self.waiting_view();
                self.send_to(target, ServerMessage::Waiting { guests });
            }
        }
        Ok(())
    }

    /// A host ends the meeting: every participant gets `left` (reason `ended`) for
    /// everyone, themselves last, and every connection closes; the room is empty.
    pub fn end(&mut self, conn: ConnId, now: Millis) -> Result<(), RoomError> {
        self.host_of(conn)?;
        self.end_all(now);
        Ok(())
    }

    /// Ends the meeting for everyone (a host's `end`, or its owner deleting it): as `end`.
    pub fn end_all(&mut self, now: Millis) {
        let everyone: Vec<ParticipantId> = self.participants.keys().copied().collect();
        let conns: Vec<(ParticipantId, ConnId)> =
            self.participants.iter().filter_map(|(id, p)| if let Link::Connected(c) = p.link { Some((*id, c)) } else { None }).collect();
        for id in everyone {
            self.remove_participant(id, LeftReason::Ended, now);
        }
        let waiting = std::mem::take(&mut self.waiting).into_iter().map(|(id, w)| (id, w.conn));
        for (id, conn) in conns.into_iter().chain(waiting) {
            self.effects.push(Effect::Send { conn, message: ServerMessage::Left { participant: id, reason: LeftReason::Ended } });
            self.effects.push(Effect::Close { conn, why: CloseWhy::Ended });
        }
        self.locked = false;
    }

    /// The meeting's home is now another node of the cluster: every connection is closed
    /// with [`CloseWhy::Moved`] (browsers come back and find the new home) and every seat is
    /// let go, without telling anyone that the others left.
    pub fn move_away(&mut self, now: Millis) {
        let conns: Vec<ConnId> = self
            .participants
            .values()
            .filter_map(|p| if let Link::Connected(c) = p.link { Some(c) } else { None })
            .chain(self.waiting.values().map(|w| w.conn))
            .collect();
        for conn in conns {
            self.effects.push(Effect::Close { conn, why: CloseWhy::Moved });
        }
        self.waiting.clear();
        let everyone: Vec<ParticipantId> = self.participants.keys().copied().collect();
        for id in everyone {
            self.remove_participant(id, LeftReason::Ended, now);
        }
    }

    /// Ends seats whose grace period is over and completes a pending return to mesh.
    pub fn tick(&mut self, now: Millis) {
        let expired: Vec<ParticipantId> =
            self.participants.iter().filter(|(_, p)| matches!(p.link, Link::Away { deadline, .. } if deadline <= now)).map(|(id, _)| *id).collect();
        for id in expired {
            self.remove_participant(id, LeftReason::TimedOut, now);
        }
        self.update_mode(now);
    }

    /// A message for one participant from outside the room (the relay), if it is connected.
    pub fn notify(&mut self, id: ParticipantId, message: ServerMessage) {
        if let Some(Link::Connected(conn)) = self.participants.get(&id).map(|p| &p.link) {
            self.effects.push(Effect::Send { conn: *conn, message });
        }
    }

    /// Sends `message` to everyone seated (e.g. the relay's dominant-speaker events).
    pub fn notify_all(&mut self, message: ServerMessage) {
        self.broadcast(None, message);
    }

    fn remove_participant(&mut self, id: ParticipantId, reason: LeftReason, now: Millis) {
        if let Some(gone) = self.participants.remove(&id) {
            self.unreachable.retain(|(a, b)| *a != id && *b != id);
            self.effects.push(Effect::Departed { participant: id, turn_usernames: gone.turn_usernames });
            self.broadcast_except(id, ServerMessage::Left { participant: id, reason });
            self.update_mode(now);
        }
    }

    /// Mesh → SFU as soon as the room passes the threshold; SFU → mesh only after it has
    /// stayed at or under the threshold for the hold-down, so that one person flapping at the
    /// boundary does not make everyone renegotiate.
    fn update_mode(&mut self, now: Millis) {
        self.update_mode_except(now, None);
    }

    /// As `update_mode`, without telling `newcomer` (whose welcome carries the mode).
    fn update_mode_except(&mut self, now: Millis, newcomer: Option<ParticipantId>) {
        let wants_sfu = self.participants.len() > self.config.mesh_threshold || self.config.mesh_threshold == 0 || !self.unreachable.is_empty();
        match (self.mode, wants_sfu) {
            (MediaMode::Mesh, true) => self.set_mode(MediaMode::Sfu, newcomer),
            (MediaMode::Sfu, true) => self.below_threshold_since = None,
            (MediaMode::Sfu, false) => {
                let since = *self.below_threshold_since.get_or_insert(now);
                if now >= since + self.config.sfu_hold_down_ms || self.participants.is_empty() {
                    self.set_mode(MediaMode::Mesh, newcomer);
                }
            }
            (MediaMode::Mesh, false) => {}
        }
    }

    fn set_mode(&mut self, mode: MediaMode, except: Option<ParticipantId>) {
        self.mode = mode;
        self.below_threshold_since = None;
        self.broadcast(except, ServerMessage::Mode { mode });
    }

    fn welcome(&mut self, id: ParticipantId, resumed: bool, ice_servers: IceServersFor<'_>) {
        let servers = ice_servers(id);
        let p = self.participants.get_mut(&id).expect("welcomed participants are seated");
        p.turn_usernames.extend(servers.iter().filter_map(|s| s.username.clone()));
        let p = &self.participants[&id];
        let Link::Connected(conn) = p.link else { unreachable!("welcome goes to a connected participant") };
        let message = ServerMessage::Welcome {
            v: PROTOCOL_VERSION,
            room: self.name.clone(),
            you: self.view(id),
            resumed,
            resume_secret: p.resume_secret.clone(),
            participants: self.participants.keys().filter(|&&other| other != id).map(|&other| self.view(other)).collect(),
            mode: self.mode,
            mesh_threshold: self.config.mesh_threshold,
            reconnect_grace_secs: self.config.reconnect_grace_ms / 1000,
            ice_servers: servers,
            chat: self.chat.iter().cloned().collect(),
            locked: self.locked,
            lobby: self.settings.lobby,
            share: if self.settings.share_hosts_only { "hosts" } else { "everyone" },
            muted_above: self.settings.muted_above,
            waiting: if p.role == Role::Host { self.waiting_view() } else { Vec::new() },
        };
        self.effects.push(Effect::Send { conn, message });
    }

    fn view(&self, id: ParticipantId) -> ParticipantView {
        let p = &self.participants[&id];
        ParticipantView {
            id,
            name: p.name.clone(),
            role: p.role.as_str(),
            audio: p.audio,
            video: p.video,
            connected: matches!(p.link, Link::Connected(_)),
            hand: p.hand,
            screen: p.screen,
            personal: p.personal,
        }
    }

    fn send_to(&mut self, id: ParticipantId, message: ServerMessage) {
        let Some(p) = self.participants.get_mut(&id) else { return };
        match &mut p.link {
            Link::Connected(conn) => self.effects.push(Effect::Send { conn: *conn, message }),
            // The welcome on resumption carries who is here, the mode and the public chat;
            // only signals (negotiations in progress) and private chat are worth holding.
            Link::Away { .. } if !matches!(message, ServerMessage::Signal { .. } | ServerMessage::Chat { to: Some(_), .. }) => {}
            Link::Away { held, held_bytes, .. } => {
                let size = serde_json::to_string(&message).map_or(0, |t| t.len());
                held.push_back((message, size));
                *held_bytes += size;
                while held.len() > MAX_HELD_MESSAGES || *held_bytes > MAX_HELD_BYTES {
                    let Some((_, dropped)) = held.pop_front() else { break };
                    *held_bytes -= dropped;
                }
            }
        }
    }

    fn broadcast_except(&mut self, except: ParticipantId, message: ServerMessage) {
        self.broadcast(Some(except), message);
    }

    fn broadcast(&mut self, except: Option<ParticipantId>, message: ServerMessage) {
        let ids: Vec<ParticipantId> = self.participants.keys().copied().filter(|&id| Some(id) != except).collect();
        for id in ids {
            self.send_to(id, message.clone());
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[path = "room_tests.rs"]
mod tests;

//! The shell around the rooms: which rooms exist, which queue each connection id stands for,
//! and the delivery of the rooms' effects. Every room operation runs under one lock and takes
//! microseconds; effects go out through bounded per-connection queues, and a connection whose
//! queue is full is treated as dropped, so that one stalled browser never holds up the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;

use super::protocol::{MediaMode, ParticipantId, ServerMessage};
use super::room::{CloseWhy, ConnId, Effect, Millis, Room, RoomConfig};

/// What the hub asks a connection's task to do.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    Close(CloseWhy),
}

/// Messages a connection may have waiting before it counts as stalled.
/// Several times one sender's burst (`budget::BURST`), so that no single participant can
/// fill another's queue.
pub const OUTBOUND_QUEUE: usize = 1024;

/// Called when a seat ends for good, with the room's name and the participant.
pub type OnDeparted = Box<dyn Fn(&str, ParticipantId) + Send + Sync>;

pub struct Hub {
    config: RoomConfig,
    departed: OnDeparted,
    started: Instant,
    next_conn: AtomicU64,
    rooms: Mutex<HashMap<String, RoomEntry>>,
}

struct RoomEntry {
    room: Room,
    queues: HashMap<ConnId, mpsc::Sender<Outbound>>,
}

/// Participants and rooms by mode, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HubCounts {
    pub participants: usize,
    pub mesh_rooms: usize,
    pub sfu_rooms: usize,
}

impl Hub {
    pub fn new(config: RoomConfig, departed: OnDeparted) -> Hub {
        Hub { config, departed, started: Instant::now(), next_conn: AtomicU64::new(1), rooms: Mutex::new(HashMap::new()) }
    }

    /// Delivers `message` to one participant of `room`, if it is connected.
    pub fn notify(&self, room: &str, participant: ParticipantId, message: ServerMessage) {
        let now = self.now();
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(room) {
            entry.room.notify(participant, message);
            entry.deliver(now, &self.departed);
        }
    }

    pub fn notify_all(&self, room: &str, message: ServerMessage) {
        let now = self.now();
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(room) {
            entry.room.notify_all(message);
            entry.deliver(now, &self.departed);
        }
    }

    pub fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    /// A fresh connection id and the queue the connection's task reads.
    pub fn connection(&self) -> (ConnId, mpsc::Sender<Outbound>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        (self.next_conn.fetch_add(1, Ordering::Relaxed), tx, rx)
    }

    /// Runs `f` on the room named `room` (created if needed) with `conn`'s queue registered,
    /// then delivers what the room produced. A connection left without a seat afterwards
    /// (refused, left, removed) is forgotten, and so is a room left empty.
    pub fn act<R>(&self, room: &str, conn: ConnId, queue: &mpsc::Sender<Outbound>, f: impl FnOnce(&mut Room, Millis) -> R) -> R {
        let now = self.now();
        let mut rooms = self.lock();
        let entry = rooms.entry(room.to_string()).or_insert_with(|| RoomEntry { room: Room::new(room, self.config.clone()), queues: HashMap::new() });
        entry.queues.insert(conn, queue.clone());
        let result = f(&mut entry.room, now);
        entry.deliver(now, &self.departed);
        if entry.room.seat_of(conn).is_none() {
            entry.queues.remove(&conn);
        }
        if entry.room.is_empty() {
            rooms.remove(room);
        }
        result
    }

    /// `conn`'s WebSocket is gone.
    pub fn disconnected(&self, room: &str, conn: ConnId) {
        let now = self.now();
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else { return };
        entry.queues.remove(&conn);
        entry.room.disconnected(conn, now);
        entry.deliver(now, &self.departed);
        if entry.room.is_empty() {
            rooms.remove(room);
        }
    }

    /// Lets every room act on the passage of time (grace periods, hold-downs).
    pub fn tick(&self) {
        let now = self.now();
        let mut rooms = self.lock();
        for entry in rooms.values_mut() {
            if entry.room.next_deadline().is_some_and(|d| d <= now) {
                entry.room.tick(now);
                entry.deliver(now, &self.departed);
            }
        }
        rooms.retain(|_, e| !e.room.is_empty());
    }

    pub fn counts(&self) -> HubCounts {
        let rooms = self.lock();
        let mut counts = HubCounts::default();
        for entry in rooms.values() {
            counts.participants += entry.room.len();
            match entry.room.mode() {
                MediaMode::Mesh => counts.mesh_rooms += 1,
                MediaMode::Sfu => counts.sfu_rooms += 1,
            }
        }
        counts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomEntry>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RoomEntry {
    /// Sends the room's effects to the connections' queues until the room has no more to say.
    /// A full queue marks its connection as dropped, which may itself produce effects.
    fn deliver(&mut self, now: Millis, departed: &OnDeparted) {
        loop {
            let effects = self.room.take_effects();
            if effects.is_empty() {
                return;
            }
            let mut stalled = Vec::new();
            for effect in effects {
                match effect {
                    Effect::Send { conn, message } => {
                        let Some(queue) = self.queues.get(&conn) else { continue };
                        let text = serde_json::to_string(&message).expect("server messages always serialize");
                        if queue.try_send(Outbound::Text(text)).is_err() {
                            stalled.push(conn);
                        }
                    }
                    Effect::Close { conn, why } => {
                        if let Some(queue) = self.queues.remove(&conn) {
                            let _ = queue.try_send(Outbound::Close(why));
                        }
                    }
                    Effect::Departed { participant } => departed(self.room.name(), participant),
                }
            }
            for conn in stalled {
                // Dropping the queue ends the connection's task once it drains what it has.
                if self.queues.remove(&conn).is_some() {
                    tracing::warn!(conn, "signaling connection stalled; treating it as dropped");
                    self.room.disconnected(conn, now);
                }
            }
        }
    }
}

//! The shell around the rooms: which rooms exist, which queue each connection id stands for,
//! and the delivery of the rooms' effects. Every room operation runs under one lock and takes
//! microseconds; effects go out through per-connection queues bounded in messages and in
//! bytes, and a connection whose queue is full is treated as dropped (and told so, see
//! [`Queue::dropped`]), so that one stalled browser never holds up the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, mpsc};

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
/// Bytes a connection may have waiting before it counts as stalled: a few of the largest
/// messages, not a thousand of them.
pub const OUTBOUND_BYTES: usize = 1024 * 1024;

/// The hub's end of a connection's outbound queue.
#[derive(Debug, Clone)]
pub struct Queue {
    tx: mpsc::Sender<Outbound>,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    bytes: AtomicUsize,
    dropped: AtomicBool,
    wake: Notify,
}

impl Queue {
    /// Queues `text`; false when the queue is full, in messages or in bytes.
    fn push(&self, text: String) -> bool {
        let n = text.len();
        if self.shared.bytes.fetch_add(n, Ordering::AcqRel) + n > OUTBOUND_BYTES {
            self.shared.bytes.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        if self.tx.try_send(Outbound::Text(text)).is_err() {
            self.shared.bytes.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Tells the connection's task that the hub gave up on it (it stalled).
    fn drop_connection(&self) {
        self.shared.dropped.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// The connection task's end: what to send, and whether the hub has given up on it.
#[derive(Debug)]
pub struct Outbox {
    rx: mpsc::Receiver<Outbound>,
    shared: Arc<Shared>,
}

impl Outbox {
    pub async fn recv(&mut self) -> Option<Outbound> {
        let out = self.rx.recv().await;
        if let Some(Outbound::Text(text)) = &out {
            self.shared.bytes.fetch_sub(text.len(), Ordering::AcqRel);
        }
        out
    }

    /// What tells the task that the hub gave up on it, to wait on beside `recv`.
    pub fn dropped_signal(&self) -> Dropped {
        Dropped { shared: self.shared.clone() }
    }
}

/// See [`Outbox::dropped_signal`].
#[derive(Debug)]
pub struct Dropped {
    shared: Arc<Shared>,
}

impl Dropped {
    /// Resolves once the hub has treated this connection as dropped (its queue overflowed).
    pub async fn wait(&self) {
        loop {
            let notified = self.shared.wake.notified();
            if self.shared.dropped.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// Called with the room's name for what the room tells the rest of the node: a seat ended
/// for good (`Effect::Departed`: the relay lets go, its TURN usernames stop working) or a
/// participant's microphone or camera held back by a host (`Effect::Held`: the relay stops
/// or resumes forwarding it).
pub type ToOutside = Box<dyn Fn(&str, &Effect) + Send + Sync>;

pub struct Hub {
    config: RoomConfig,
    outside: ToOutside,
    started: Instant,
    next_conn: AtomicU64,
    rooms: Mutex<HashMap<String, RoomEntry>>,
}

struct RoomEntry {
    room: Room,
    queues: HashMap<ConnId, Queue>,
}

/// Participants and rooms by mode, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HubCounts {
    pub participants: usize,
    pub mesh_rooms: usize,
    pub sfu_rooms: usize,
}

impl Hub {
    pub fn new(config: RoomConfig, outside: ToOutside) -> Hub {
        Hub { config, outside, started: Instant::now(), next_conn: AtomicU64::new(1), rooms: Mutex::new(HashMap::new()) }
    }

    /// Delivers `message` to one participant of `room`, if it is connected.
    pub fn notify(&self, room: &str, participant: ParticipantId, message: ServerMessage) {
        let now = self.now();
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(room) {
            entry.room.notify(participant, message);
            entry.deliver(now, &self.outside);
        }
    }

    pub fn notify_all(&self, room: &str, message: ServerMessage) {
        let now = self.now();
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(room) {
            entry.room.notify_all(message);
            entry.deliver(now, &self.outside);
        }
    }

    pub fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    /// A fresh connection id and the queue the connection's task reads.
    pub fn connection(&self) -> (ConnId, Queue, Outbox) {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let shared = Arc::new(Shared::default());
        (self.next_conn.fetch_add(1, Ordering::Relaxed), Queue { tx, shared: shared.clone() }, Outbox { rx, shared })
    }

    /// Runs `f` on the room named `room` (created if needed) with `conn`'s queue registered,
    /// then delivers what the room produced. A connection left without a seat (or a place in
    /// the lobby) afterwards
    /// (refused, left, removed) is forgotten, and so is a room left empty.
    pub fn act<R>(&self, room: &str, conn: ConnId, queue: &Queue, f: impl FnOnce(&mut Room, Millis) -> R) -> R {
        let now = self.now();
        let mut rooms = self.lock();
        let entry = rooms.entry(room.to_string()).or_insert_with(|| RoomEntry { room: Room::new(room, self.config.clone()), queues: HashMap::new() });
        entry.queues.insert(conn, queue.clone());
        let result = f(&mut entry.room, now);
        entry.deliver(now, &self.outside);
        if !entry.room.holds(conn) {
            entry.queues.remove(&conn);
        }
        if entry.room.is_empty() {
            rooms.remove(room);
        }
        result
    }

    /// Runs `f` on the room named `room` if it exists (a meeting in progress), then
    /// delivers what the room produced.
    pub fn existing(&self, room: &str, f: impl FnOnce(&mut Room, Millis)) {
        let now = self.now();
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(room) {
            f(&mut entry.room, now);
            entry.deliver(now, &self.outside);
        }
    }

    /// The meetings in progress here.
    pub fn rooms(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// The meeting `room` moved to another node: see [`Room::move_away`].
    pub fn move_away(&self, room: &str) {
        let now = self.now();
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else { return };
        entry.room.move_away(now);
        entry.deliver(now, &self.outside);
        if entry.room.is_empty() {
            rooms.remove(room);
        }
    }

    /// `conn`'s WebSocket is gone.
    pub fn disconnected(&self, room: &str, conn: ConnId) {
        let now = self.now();
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else { return };
        entry.queues.remove(&conn);
        entry.room.disconnected(conn, now);
        entry.deliver(now, &self.outside);
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
                entry.deliver(now, &self.outside);
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
    fn deliver(&mut self, now: Millis, outside: &ToOutside) {
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
                        if !queue.push(text) {
                            stalled.push(conn);
                        }
                    }
                    Effect::Close { conn, why } => {
                        if let Some(queue) = self.queues.remove(&conn) {
                            let _ = queue.tx.try_send(Outbound::Close(why));
                        }
                    }
                    Effect::Departed { .. } | Effect::Held { .. } => outside(self.room.name(), &effect),
                }
            }
            for conn in stalled {
                // The task closes the socket (1011) at once; the seat waits for a resume.
                if let Some(queue) = self.queues.remove(&conn) {
                    tracing::warn!(conn, "signaling connection stalled; treating it as dropped");
                    queue.drop_connection();
                    self.room.disconnected(conn, now);
                }
            }
        }
    }
}

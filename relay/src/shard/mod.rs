//! One relay shard: a thread that owns a UDP socket and drives a [`Router`]. This is the
//! only place in `relay/` that touches sockets (with `tcp.rs`, the ICE-TCP bridge).
//!
//! Each turn: the messages waiting in the shard's mailbox (the node's commands, other
//! shards' handoffs), a batch of datagrams from `recvmmsg` (each with the kernel's arrival
//! time, so that time spent waiting in the socket counts), the router's timers, then
//! everything the router has to say: datagrams go out together with `sendmmsg`, handoffs
//! into the other shards' mailboxes, notices to the node. With nothing to read the shard
//! parks in `ppoll` on its socket and its mailbox's eventfd, until the router's next timeout.

pub mod udp;

use std::io;
use std::mem::zeroed;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::handoff::{Handoff, RoomId};
use crate::router::{Output, Router, RouterConfig};
use crate::{Cascade, Counters, Held, Notice, PeerKey, RelayConfig, RelayError, ShardId, Tile};

use udp::{BATCH, Batch};

/// Mailbox messages handled per turn, so that datagrams are never starved.
const MESSAGES_PER_TURN: usize = 256;
/// What the shard asks the kernel for, each way: bursts (a keyframe to 50 subscribers)
/// should queue rather than drop.
const SOCKET_BUFFER: usize = 4 << 20;

/// What a shard's mailbox carries.
pub(crate) enum ShardMessage {
    Publish { peer: PeerKey, room: RoomId, home: ShardId, offer: String, reply: tokio::sync::oneshot::Sender<Result<String, RelayError>> },
    Remove { peer: PeerKey, room: RoomId },
    View { peer: PeerKey, room: RoomId, tiles: Vec<Tile> },
    Share { peer: PeerKey, room: RoomId, on: bool },
    Hold { peer: PeerKey, room: RoomId, held: Held },
    Handoff(Handoff),
}

/// A shard's inbox: a lock-free queue, and an eventfd written only when the shard is
/// parked (so a busy shard is never woken needlessly).
pub(crate) struct Mailbox {
    sender: Mutex<Sender<ShardMessage>>,
    receiver: Mutex<Option<Receiver<ShardMessage>>>,
    parked: AtomicBool,
    wake: OwnedFd,
}

impl Mailbox {
    pub fn new() -> io::Result<Mailbox> {
        let (sender, receiver) = channel();
        // SAFETY: eventfd has no memory-safety preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Mailbox { sender: Mutex::new(sender), receiver: Mutex::new(Some(receiver)), parked: AtomicBool::new(false), wake })
    }

    /// Queues `message` and wakes the shard if it is parked.
    pub fn post(&self, message: ShardMessage) -> Result<(), ()> {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner()).clone();
        sender.send(message).map_err(|_| ())?;
        if self.parked.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
            unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
        Ok(())
    }
}

/// A sender to another shard, cloned once per shard so posting takes no lock.
struct Peers {
    senders: Vec<Sender<ShardMessage>>,
    mailboxes: Arc<Vec<Mailbox>>,
}

impl Peers {
    fn post(&self, shard: usize, message: ShardMessage) {
        let Some(sender) = self.senders.get(shard) else { return };
        if sender.send(message).is_ok() && self.mailboxes[shard].parked.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to that shard's eventfd.
            unsafe { libc::write(self.mailboxes[shard].wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }
}

pub(crate) struct Shard {
    index: usize,
    socket: UdpSocket,
    router: Router,
    mailboxes: Arc<Vec<Mailbox>>,
    inbox: Receiver<ShardMessage>,
    /// A message taken from the inbox while parking, handled next turn.
    held: Option<ShardMessage>,
    peers: Peers,
    notices: tokio::sync::mpsc::UnboundedSender<Notice>,
    cascade: Option<Cascade>,
    counters: Arc<Counters>,
}

impl Shard {
    #[allow(clippy::too_many_arguments, reason = "a shard's socket, addresses, settings and channels, each set once")]
    pub(crate) fn new(
        index: usize,
        socket: UdpSocket,
        advertise: SocketAddr,
        ice_tcp: SocketAddr,
        config: RelayConfig,
        mailboxes: Arc<Vec<Mailbox>>,
        notices: tokio::sync::mpsc::UnboundedSender<Notice>,
        counters: Arc<Counters>,
    ) -> io::Result<Shard> {
        // str0m matches each datagram's destination against our candidate, which is the
        // advertised address: behind 1:1 NAT (or a relay in front) that is not the bound one.
        let local = advertise;
        let granted = udp::configure(socket.as_raw_fd(), SOCKET_BUFFER)?;
        if granted < SOCKET_BUFFER {
            tracing::warn!(
                shard = index,
                granted,
                asked = SOCKET_BUFFER,
                "the kernel gave the relay's socket a smaller receive buffer than asked: bursts may be dropped under load; raise net.core.rmem_max (see docs/operating.md)"
            );
        }
        let shard = ShardId { node: config.node, index };
        let router = Router::new(RouterConfig { shard, last_n: config.last_n, local, advertise, ice_tcp: Some(ice_tcp) }, counters.clone(), Instant::now());
        let inbox = mailboxes[index].receiver.lock().unwrap_or_else(|e| e.into_inner()).take().ok_or_else(|| io::Error::other("shard started twice"))?;
        let senders = mailboxes.iter().map(|m| m.sender.lock().unwrap_or_else(|e| e.into_inner()).clone()).collect();
        let peers = Peers { senders, mailboxes: mailboxes.clone() };
        Ok(Shard { index, socket, router, mailboxes, inbox, held: None, peers, notices, cascade: config.cascade, counters })
    }

    pub(crate) fn run(mut self) {
        let mut receive = Batch::new();
        let mut transmits: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(BATCH);
        let mut next_timeout = Instant::now();
        loop {
            self.beat();
            let mut busy = self.messages();
            let received = match receive.recv(self.socket.as_raw_fd()) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "relay socket read failed");
                    0
                }
            };
            let now = Instant::now();
            for i in 0..received {
                let datagram = receive.get(i);
                self.router.handle_datagram(now, datagram.arrival, datagram.source, datagram.contents);
            }
            busy |= received > 0;
            if busy || now >= next_timeout {
                self.router.handle_timeout(now);
            }
            next_timeout = self.outputs(&mut transmits);
            if received == BATCH || busy {
                continue;
            }
            self.park(next_timeout);
        }
    }

    fn beat(&self) {
        if let (Some(started), Some(beat)) = (self.counters.started, self.counters.heartbeats.get(self.index)) {
            beat.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        if let Some(cpu) = self.counters.shard_cpu_us.get(self.index) {
            cpu.store(thread_cpu_us(), Ordering::Relaxed);
        }
        if let Some(n) = self.counters.shard_participants.get(self.index) {
            n.store(self.router.participants(), Ordering::Relaxed);
        }
    }

    /// Handles what waits in the mailbox; returns whether there was anything.
    fn messages(&mut self) -> bool {
        let mut any = false;
        let mut published = false;
        for _ in 0..MESSAGES_PER_TURN {
            let message = match self.held.take().map_or_else(|| self.inbox.try_recv(), Ok) {
                Ok(m) => m,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            };
            // One offer per turn: each costs milliseconds, and the datagrams waiting on the
            // socket (other rooms' audio among them) go first.
            if published && matches!(message, ShardMessage::Publish { .. }) {
                self.held = Some(message);
                break;
            }
            any = true;
            let now = Instant::now();
            match message {
                ShardMessage::Publish { peer, room, home, offer, reply } => {
                    published = true;
                    let _ = reply.send(self.router.publish(now, peer, room, home, &offer));
                }
                ShardMessage::Remove { peer, room } => self.router.remove(now, &peer, room),
                ShardMessage::View { peer, room, tiles } => self.router.view(&peer, room, tiles),
                ShardMessage::Share { peer, room, on } => self.router.share(&peer, room, on),
                ShardMessage::Hold { peer, room, held } => self.router.hold(&peer, room, held),
                ShardMessage::Handoff(handoff) => self.router.handle_handoff(now, handoff),
            }
        }
        any
    }

    /// Carries out everything the router has to say; returns its next timeout.
    fn outputs(&mut self, transmits: &mut Vec<(SocketAddr, Vec<u8>)>) -> Instant {
        let next = loop {
            match self.router.poll_output() {
                Output::Transmit { destination, contents } => {
                    transmits.push((destination, contents));
                    if transmits.len() == BATCH {
                        udp::send_batch(self.socket.as_raw_fd(), transmits);
                    }
                }
                Output::Handoff { shard, message } => self.peers.post(shard, ShardMessage::Handoff(message)),
                Output::Remote { node, frame } => {
                    if let Some(cascade) = &self.cascade {
                        (cascade.0)(node, frame);
                    }
                }
                Output::Notice(notice) => {
                    let _ = self.notices.send(notice);
                }
                Output::Timeout(t) => break t,
            }
        };
        udp::send_batch(self.socket.as_raw_fd(), transmits);
        next
    }

    /// Waits for a datagram, a message, or `until`.
    fn park(&mut self, until: Instant) {
        let mailbox = &self.mailboxes[self.index];
        mailbox.parked.store(true, Ordering::SeqCst);
        // A message posted before we said we were parked did not wake us: look first.
        if let Ok(message) = self.inbox.try_recv() {
            self.held = Some(message);
        } else {
            let wait = until.saturating_duration_since(Instant::now());
            let mut fds = [
                libc::pollfd { fd: self.socket.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: mailbox.wake.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            let timeout = libc::timespec { tv_sec: wait.as_secs() as libc::time_t, tv_nsec: wait.subsec_nanos() as libc::c_long };
            // SAFETY: two live pollfds, a live timespec, no signal mask.
            unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &timeout, std::ptr::null()) };
            if fds[1].revents != 0 {
                drain_eventfd(mailbox.wake.as_raw_fd());
            }
        }
        mailbox.parked.store(false, Ordering::SeqCst);
    }
}

fn drain_eventfd(fd: RawFd) {
    let mut value: u64 = 0;
    // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd.
    unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) };
}

/// This thread's CPU time (user + system), in microseconds.
fn thread_cpu_us() -> u64 {
    // SAFETY: a zeroed timespec filled in by the kernel.
    let mut t: libc::timespec = unsafe { zeroed() };
    // SAFETY: a live timespec for the calling thread's clock.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}

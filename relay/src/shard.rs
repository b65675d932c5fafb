//! One relay shard: a thread that owns a UDP socket and drives a [`Router`]. This is the
//! only place in `relay/` that touches sockets (with `tcp.rs`, the ICE-TCP bridge).
//!
//! Each turn: the messages waiting in the shard's mailbox (the node's commands, other
//! shards' handoffs), a batch of datagrams from `recvmmsg` (all stamped with the time the
//! batch was read), the router's timers, then everything the router has to say: datagrams
//! go out together with `sendmmsg`, handoffs into the other shards' mailboxes, notices to
//! the node. With nothing to read the shard parks in `poll` on its socket and its mailbox's
//! eventfd, until the router's next timeout.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::router::{Handoff, Output, RoomId, Router, RouterConfig};
use crate::{Counters, Notice, PeerKey, RelayConfig, RelayError};

/// Datagrams read (and sent) per system call.
const BATCH: usize = 64;
/// Room for one datagram (larger ones are truncated, and refused by str0m).
const DATAGRAM: usize = 2048;
/// Mailbox messages handled per turn, so that datagrams are never starved.
const MESSAGES_PER_TURN: usize = 256;
/// What the shard asks the kernel for, each way: bursts (a keyframe to 50 subscribers)
/// should queue rather than drop.
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// What a shard's mailbox carries.
pub(crate) enum ShardMessage {
    Publish { peer: PeerKey, room: RoomId, home: usize, offer: String, reply: tokio::sync::oneshot::Sender<Result<String, RelayError>> },
    Remove { peer: PeerKey, room: RoomId },
    View { peer: PeerKey, room: RoomId, tiles: Vec<(u64, u32)> },
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
        let bound = socket.local_addr()?;
        // str0m matches each datagram's destination against our candidate: with a wildcard
        // bind, that is the advertised address.
        let local = if bound.ip().is_unspecified() { advertise } else { bound };
        for option in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
            // SAFETY: sets an int socket option on our own socket from a live int.
            unsafe { libc::setsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, option, (&SOCKET_BUFFER as *const libc::c_int).cast(), size_of::<libc::c_int>() as u32) };
        }
        let router = Router::new(RouterConfig { shard: index, last_n: config.last_n, local, advertise, ice_tcp: Some(ice_tcp) }, counters.clone(), Instant::now());
        let inbox = mailboxes[index].receiver.lock().unwrap_or_else(|e| e.into_inner()).take().ok_or_else(|| io::Error::other("shard started twice"))?;
        let senders = mailboxes.iter().map(|m| m.sender.lock().unwrap_or_else(|e| e.into_inner()).clone()).collect();
        let peers = Peers { senders, mailboxes: mailboxes.clone() };
        Ok(Shard { index, socket, router, mailboxes, inbox, held: None, peers, notices, counters })
    }

    pub(crate) fn run(mut self) {
        let mut receive = Batch::new();
        let mut transmits: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(BATCH);
        let mut next_timeout = Instant::now();
        loop {
            self.beat();
            let mut busy = self.messages();
            let received = match receive.recv(&self.socket) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "relay socket read failed");
                    0
                }
            };
            let now = Instant::now();
            for i in 0..received {
                let (source, contents) = receive.datagram(i);
                self.router.handle_datagram(now, source, contents);
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
        for _ in 0..MESSAGES_PER_TURN {
            let message = match self.held.take().map_or_else(|| self.inbox.try_recv(), Ok) {
                Ok(m) => m,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            };
            any = true;
            let now = Instant::now();
            match message {
                ShardMessage::Publish { peer, room, home, offer, reply } => {
                    let _ = reply.send(self.router.publish(now, peer, room, home, &offer));
                }
                ShardMessage::Remove { peer, room } => self.router.remove(now, &peer, room),
                ShardMessage::View { peer, room, tiles } => self.router.view(&peer, room, tiles),
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
                        send_batch(&self.socket, transmits);
                    }
                }
                Output::Handoff { shard, message } => self.peers.post(shard, ShardMessage::Handoff(message)),
                Output::Notice(notice) => {
                    let _ = self.notices.send(notice);
                }
                Output::Timeout(t) => break t,
            }
        };
        send_batch(&self.socket, transmits);
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

/// Buffers and headers for one `recvmmsg`.
struct Batch {
    buffers: Vec<[u8; DATAGRAM]>,
    addresses: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new() -> Batch {
        // SAFETY: sockaddr_storage and mmsghdr are plain C structs for which zero is valid.
        let (addresses, headers) = unsafe { (vec![zeroed::<libc::sockaddr_storage>(); BATCH], vec![zeroed::<libc::mmsghdr>(); BATCH]) };
        Batch { buffers: vec![[0u8; DATAGRAM]; BATCH], addresses, iovecs: Vec::with_capacity(BATCH), headers }
    }

    /// Reads what is waiting, without blocking; returns how many datagrams.
    fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.iovecs.clear();
        for buffer in &mut self.buffers {
            self.iovecs.push(libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: DATAGRAM });
        }
        for i in 0..BATCH {
            let header = &mut self.headers[i].msg_hdr;
            header.msg_name = (&mut self.addresses[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            header.msg_iov = &mut self.iovecs[i];
            header.msg_iovlen = 1;
            header.msg_control = std::ptr::null_mut();
            header.msg_controllen = 0;
            header.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        // SAFETY: BATCH headers, each pointing at a live buffer and address of this batch.
        let n = unsafe { libc::recvmmsg(socket.as_raw_fd(), self.headers.as_mut_ptr(), BATCH as u32, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
        }
        Ok(n as usize)
    }

    fn datagram(&self, i: usize) -> (SocketAddr, &[u8]) {
        let len = (self.headers[i].msg_len as usize).min(DATAGRAM);
        (from_sockaddr(&self.addresses[i]), &self.buffers[i][..len])
    }
}

/// Sends every transmit (one `sendmmsg` per up to [`BATCH`]) and empties the list. A
/// datagram the kernel refuses (an unreachable address) is skipped, not retried.
fn send_batch(socket: &UdpSocket, transmits: &mut Vec<(SocketAddr, Vec<u8>)>) {
    let mut at = 0;
    while at < transmits.len() {
        let chunk = &transmits[at..(at + BATCH).min(transmits.len())];
        let mut addresses: Vec<(libc::sockaddr_storage, u32)> = chunk.iter().map(|(a, _)| to_sockaddr(*a)).collect();
        let mut iovecs: Vec<libc::iovec> = chunk.iter().map(|(_, c)| libc::iovec { iov_base: c.as_ptr() as *mut libc::c_void, iov_len: c.len() }).collect();
        // SAFETY: mmsghdr is a plain C struct for which zero is valid.
        let mut headers: Vec<libc::mmsghdr> = (0..chunk.len()).map(|_| unsafe { zeroed() }).collect();
        for (i, header) in headers.iter_mut().enumerate() {
            header.msg_hdr.msg_name = (&mut addresses[i].0 as *mut libc::sockaddr_storage).cast();
            header.msg_hdr.msg_namelen = addresses[i].1;
            header.msg_hdr.msg_iov = &mut iovecs[i];
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: headers point at live addresses and buffers of this chunk.
        let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), headers.len() as u32, 0) };
        if sent <= 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::debug!(error = %e, to = %chunk[0].0, "relay send failed; datagram dropped");
                at += 1;
            }
            continue;
        }
        at += sent as usize;
    }
    transmits.clear();
}

fn to_sockaddr(address: SocketAddr) -> (libc::sockaddr_storage, u32) {
    // SAFETY: sockaddr_storage is a plain C struct for which zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match address {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as u32)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> SocketAddr {
    match storage.ss_family as libc::c_int {
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6) into the storage.
            let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(sin6.sin6_addr.s6_addr), u16::from_be(sin6.sin6_port), sin6.sin6_flowinfo, sin6.sin6_scope_id))
        }
        _ => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into the storage.
            let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()), u16::from_be(sin.sin_port)))
        }
    }
}

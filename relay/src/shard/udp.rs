//! Batched UDP for the shard's loop (and the load test's bots, which send and receive as
//! much): `recvmmsg` with the kernel's arrival time of each datagram, `sendmmsg`, and the
//! socket options they need. Linux only.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Datagrams read (and sent) per system call.
pub const BATCH: usize = 64;
/// Room for one datagram (larger ones are truncated, and refused by str0m).
const DATAGRAM: usize = 2048;
/// Room for the control messages of one datagram (its arrival timestamp).
const CONTROL: usize = 64;
/// The kernel's arrival timestamps (`SO_TIMESTAMPNS`, as `struct timespec`).
const SO_TIMESTAMPNS: libc::c_int = 35;

/// Asks the kernel to stamp each datagram with its arrival time, and for `buffer` bytes
/// of queue each way; returns the receive buffer granted (the kernel caps it at
/// `net.core.rmem_max` and counts its own overhead in it).
pub fn configure(fd: RawFd, buffer: usize) -> io::Result<usize> {
    let set = |level, option, value: libc::c_int| {
        // SAFETY: sets an int option on a socket the caller owns, from a live int.
        let r = unsafe { libc::setsockopt(fd, level, option, (&value as *const libc::c_int).cast(), size_of::<libc::c_int>() as u32) };
        if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    };
    set(libc::SOL_SOCKET, SO_TIMESTAMPNS, 1)?;
    let buffer = buffer.min(libc::c_int::MAX as usize) as libc::c_int;
    // Best effort: the kernel may refuse or cap these.
    let _ = set(libc::SOL_SOCKET, libc::SO_RCVBUF, buffer);
    let _ = set(libc::SOL_SOCKET, libc::SO_SNDBUF, buffer);
    let mut granted: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: reads an int option of a socket the caller owns into a live int.
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&mut granted as *mut libc::c_int).cast(), &mut len) };
    Ok(granted.max(0) as usize)
}

/// One datagram of a batch.
pub struct Datagram<'a> {
    pub source: SocketAddr,
    pub contents: &'a [u8],
    /// When it reached the socket (the kernel's stamp, on our monotonic clock), or when the
    /// batch was read if the kernel gave none.
    pub arrival: Instant,
}

/// Buffers and headers for one `recvmmsg` of up to [`BATCH`] datagrams.
pub struct Batch {
    buffers: Vec<[u8; DATAGRAM]>,
    controls: Vec<[u8; CONTROL]>,
    addresses: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    len: usize,
    read_at: Instant,
    /// The wall clock when the batch was read, to turn kernel stamps into `Instant`s.
    read_at_wall: SystemTime,
}

// SAFETY: the raw pointers in the headers point only into the batch's own heap buffers
// (which do not move with it), are rewritten by every `recv` before the kernel uses them,
// and are never shared: moving a batch to another thread is as safe as moving its Vecs.
unsafe impl Send for Batch {}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        // SAFETY: sockaddr_storage and mmsghdr are plain C structs for which zero is valid.
        let (addresses, headers) = unsafe { (vec![zeroed::<libc::sockaddr_storage>(); BATCH], vec![zeroed::<libc::mmsghdr>(); BATCH]) };
        Batch {
            buffers: vec![[0u8; DATAGRAM]; BATCH],
            controls: vec![[0u8; CONTROL]; BATCH],
            addresses,
            iovecs: Vec::with_capacity(BATCH),
            headers,
            len: 0,
            read_at: Instant::now(),
            read_at_wall: SystemTime::now(),
        }
    }

    /// Reads what is waiting on `fd` without blocking; returns how many datagrams.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
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
            header.msg_control = self.controls[i].as_mut_ptr().cast();
            header.msg_controllen = CONTROL;
            header.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        self.len = 0;
        // SAFETY: BATCH headers, each pointing at a live buffer, address and control area of
        // this batch, which outlive the call.
        let n = unsafe { libc::recvmmsg(fd, self.headers.as_mut_ptr(), BATCH as u32, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
        self.read_at = Instant::now();
        self.read_at_wall = SystemTime::now();
        if n < 0 {
            let e = io::Error::last_os_error();
            return if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) { Ok(0) } else { Err(e) };
        }
        self.len = n as usize;
        Ok(self.len)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> Datagram<'_> {
        let len = (self.headers[i].msg_len as usize).min(DATAGRAM);
        Datagram { source: from_sockaddr(&self.addresses[i]), contents: &self.buffers[i][..len], arrival: self.arrival(i) }
    }

    /// The kernel's timestamp of datagram `i`, on the monotonic clock.
    fn arrival(&self, i: usize) -> Instant {
        let header = &self.headers[i].msg_hdr;
        // SAFETY: the header's control area was filled in by recvmmsg (msg_controllen says
        // how much); the CMSG macros stay within it.
        let stamp = unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(header);
            let mut found = None;
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == SO_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                    found = Some(UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                    break;
                }
                cmsg = libc::CMSG_NXTHDR(header, cmsg);
            }
            found
        };
        // Waited in the socket this long; never in the future.
        let waited = stamp.and_then(|s| self.read_at_wall.duration_since(s).ok()).unwrap_or_default();
        self.read_at.checked_sub(waited).unwrap_or(self.read_at)
    }
}

/// Sends every datagram (one `sendmmsg` per up to [`BATCH`]) and empties the list. A
/// datagram the kernel refuses (an unreachable address) is skipped, not retried.
pub fn send_batch(fd: RawFd, datagrams: &mut Vec<(SocketAddr, Vec<u8>)>) {
    let mut at = 0;
    while at < datagrams.len() {
        let chunk = &datagrams[at..(at + BATCH).min(datagrams.len())];
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
        // SAFETY: the headers point at live addresses and buffers of this chunk.
        let sent = unsafe { libc::sendmmsg(fd, headers.as_mut_ptr(), headers.len() as u32, 0) };
        if sent <= 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::debug!(error = %e, to = %chunk[0].0, "send failed; datagram dropped");
                at += 1;
            }
            continue;
        }
        at += sent as usize;
    }
    datagrams.clear();
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

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn a_batch_goes_out_and_comes_back_with_sources_and_arrival_times() {
        let (a, b) = (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap());
        configure(b.as_raw_fd(), 1 << 20).unwrap();
        let to = b.local_addr().unwrap();
        // The kernel turns timestamping on in the background once a socket asks; what
        // arrives before that is stamped when it is read. Give it a moment.
        std::thread::sleep(Duration::from_millis(50));
        let before = Instant::now();
        let mut out: Vec<(SocketAddr, Vec<u8>)> = (0..100u8).map(|i| (to, vec![i; 1 + i as usize])).collect();
        send_batch(a.as_raw_fd(), &mut out);
        assert!(out.is_empty());
        // Once the first datagram is in the socket, let it wait there 20 ms.
        let mut fd = libc::pollfd { fd: b.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd.
        assert_eq!(unsafe { libc::poll(&mut fd, 1, 5000) }, 1, "nothing arrived");
        let queued = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let mut batch = Batch::new();
        let mut seen = Vec::new();
        while seen.len() < 100 {
            let n = batch.recv(b.as_raw_fd()).unwrap();
            assert!(n > 0, "datagrams went missing after {}", seen.len());
            for i in 0..n {
                let d = batch.get(i);
                assert_eq!(d.source, a.local_addr().unwrap());
                assert!(d.arrival >= before && d.arrival <= Instant::now());
                if seen.is_empty() {
                    // It waited in the socket for the 20 ms we slept: the stamp says so.
                    assert!(d.arrival <= queued, "the arrival time is not the kernel's: {:?} after it was queued", d.arrival - queued);
                }
                seen.push(d.contents.to_vec());
            }
        }
        assert!(seen.iter().enumerate().all(|(i, c)| c.len() == i + 1 && c[0] == i as u8));
        assert_eq!(batch.recv(b.as_raw_fd()).unwrap(), 0, "nothing more, and no blocking");
    }
}

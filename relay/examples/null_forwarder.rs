//! The machine's bound for forwarding: the smallest program that receives RTP-sized
//! datagrams and fans each out to several receivers, with `recvmmsg`/`sendmmsg` in batches,
//! optionally protecting every outgoing copy with AES-128-GCM as SRTP does (a 12-byte IV
//! and a 16-byte tag per packet, one key per receiver). It keeps no state per stream, so
//! whatever an SFU costs beyond it is the SFU's own work.
//!
//!     cargo run --release -p confab-relay --example null_forwarder [FANOUT] [SECONDS]
//!
//! A sender thread offers packets (1,100 bytes, the size of a video packet) on loopback as
//! fast as the forwarder takes them; sink threads drain the receivers. The forwarder thread's
//! own CPU time (getrusage RUSAGE_THREAD) gives packets out per CPU-second: pps per core.
//! Run with and without SRTP; docs/benchmarks.md quotes both.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

const PACKET: usize = 1100;
const BATCH: usize = 32;

fn thread_cpu_secs() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// Receives up to `BATCH` datagrams into `bufs`; returns their lengths.
fn recv_batch(socket: &UdpSocket, bufs: &mut [[u8; 1500]; BATCH]) -> Vec<usize> {
    let mut iovecs: Vec<libc::iovec> = bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: a zeroed msghdr is valid; we point it at one iovec.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: headers and buffers live across the call.
    let n = unsafe { libc::recvmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), BATCH as u32, libc::MSG_WAITFORONE, std::ptr::null_mut()) };
    if n <= 0 {
        return Vec::new();
    }
    headers[..n as usize].iter().map(|h| h.msg_len as usize).collect()
}

/// Sends each `(destination, bytes)` with as few `sendmmsg` calls as it takes.
fn send_batch(socket: &UdpSocket, out: &[(libc::sockaddr_in, Vec<u8>)]) -> usize {
    let mut sent = 0;
    for chunk in out.chunks(64) {
        let mut addrs: Vec<libc::sockaddr_in> = chunk.iter().map(|(a, _)| *a).collect();
        let mut iovecs: Vec<libc::iovec> = chunk.iter().map(|(_, b)| libc::iovec { iov_base: b.as_ptr() as *mut _, iov_len: b.len() }).collect();
        let mut headers: Vec<libc::mmsghdr> = (0..chunk.len())
            .map(|i| {
                // SAFETY: as above; each header points at its own address and iovec.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                h.msg_hdr.msg_iov = &mut iovecs[i];
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: everything the headers point at lives across the call.
        let n = unsafe { libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), headers.len() as u32, 0) };
        sent += n.max(0) as usize;
    }
    sent
}

fn sockaddr(addr: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = addr else { panic!("IPv4 loopback only") };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
        sin_zero: [0; 8],
    }
}

fn run(fanout: usize, seconds: u64, srtp: bool) {
    let forwarder = UdpSocket::bind("127.0.0.1:0").unwrap();
    forwarder.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let sinks: Vec<UdpSocket> = (0..fanout).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let destinations: Vec<libc::sockaddr_in> = sinks.iter().map(|s| sockaddr(s.local_addr().unwrap())).collect();
    let mut drains = Vec::new();
    for sink in sinks {
        let (stop, delivered) = (stop.clone(), delivered.clone());
        sink.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        drains.push(std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                if sink.recv(&mut buf).is_ok() {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // The sender keeps a bounded number of packets in flight, so that the forwarder, not the
    // socket buffer, sets the pace.
    let target = forwarder.local_addr().unwrap();
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let packet = [0x80u8; PACKET];
            while !stop.load(Ordering::Relaxed) {
                let _ = socket.send_to(&packet, target);
            }
        })
    };
    let keys: Vec<LessSafeKey> = (0..fanout).map(|i| LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[i as u8 + 1; 16]).unwrap())).collect();
    let mut bufs = Box::new([[0u8; 1500]; BATCH]);
    let (mut received, mut sent) = (0u64, 0u64);
    let cpu_start = thread_cpu_secs();
    let started = Instant::now();
    let mut out: Vec<(libc::sockaddr_in, Vec<u8>)> = Vec::with_capacity(BATCH * fanout);
    let mut counter = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let lengths = recv_batch(&forwarder, &mut bufs);
        received += lengths.len() as u64;
        out.clear();
        for (i, len) in lengths.iter().enumerate() {
            for (d, destination) in destinations.iter().enumerate() {
                let mut copy = bufs[i][..*len].to_vec();
                if srtp {
                    // The RTP header (12 bytes) is authenticated, the payload encrypted.
                    counter += 1;
                    let mut iv = [0u8; 12];
                    iv[4..].copy_from_slice(&counter.to_be_bytes());
                    let mut payload = copy.split_off(12);
                    keys[d].seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::from(&copy[..]), &mut payload).unwrap();
                    copy.extend_from_slice(&payload);
                }
                out.push((*destination, copy));
            }
        }
        sent += send_batch(&forwarder, &out) as u64;
    }
    let cpu = thread_cpu_secs() - cpu_start;
    let wall = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    for d in drains {
        d.join().unwrap();
    }
    println!(
        "{:<13} fan-out {fanout:>2}: {:>8.0} packets in/s, {:>8.0} out/s over {wall:.1} s; forwarder CPU {:.2} s → {:>7.0} packets out per CPU-second ({:.2} µs each); receivers got {:.0} %",
        if srtp { "with SRTP" } else { "without SRTP" },
        received as f64 / wall,
        sent as f64 / wall,
        cpu,
        sent as f64 / cpu,
        cpu * 1e6 / sent.max(1) as f64,
        delivered.load(Ordering::Relaxed) as f64 * 100.0 / sent.max(1) as f64,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let fanout: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    run(fanout, seconds, false);
    run(fanout, seconds, true);
}

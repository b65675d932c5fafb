//! ICE-TCP for the SFU (RFC 6544), for browsers whose network drops UDP: each shard also
//! listens on TCP at its UDP port number and announces a passive TCP candidate there. A
//! connection is bridged to the shard's UDP socket: every RFC 4571 frame (a two-byte length,
//! then one STUN, DTLS, RTP or RTCP packet) becomes one datagram from a UDP socket of the
//! connection's own, and every datagram the shard sends back to that socket becomes a frame.
//! The shard sees one more UDP source; str0m needs no TCP path of its own.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Connections at once per shard.
const MAX_CONNECTIONS: usize = 500;
/// A connection whose shard has sent nothing for this long, and whose browser has gone, ends.
const IDLE: Duration = Duration::from_secs(30);
/// A browser sends its first STUN check at once; a connection that sends nothing is closed.
const FIRST_FRAME_WITHIN: Duration = Duration::from_secs(10);

/// Accepts on `listener` (at the shard's UDP port number) and bridges to the shard's
/// socket at `shard`.
pub(crate) fn serve(listener: TcpListener, shard: SocketAddr) -> io::Result<()> {
    let bind = listener.local_addr()?;
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name(format!("confab-ice-tcp-{}", bind.port())).spawn(move || {
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => {
                    // Out of descriptors, most often: wait rather than spin.
                    tracing::warn!(error = %e, "ICE-TCP cannot accept a connection");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                continue; // Dropped: closed at once.
            }
            open.fetch_add(1, Ordering::Relaxed);
            let open = open.clone();
            let _ = std::thread::Builder::new().name("confab-ice-tcp-conn".into()).spawn(move || {
                if let Err(e) = bridge(stream, shard) {
                    tracing::debug!(error = %e, "ICE-TCP connection ended");
                }
                open.fetch_sub(1, Ordering::Relaxed);
            });
        }
    })?;
    Ok(())
}

fn bridge(stream: TcpStream, shard: SocketAddr) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    // The shard's socket answers to whatever source it sees: a socket on its own address
    // (loopback when it listens on every interface).
    let ip = if shard.ip().is_unspecified() { Ipv4Addr::LOCALHOST.into() } else { shard.ip() };
    let to = SocketAddr::new(ip, shard.port());
    let udp = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    udp.connect(to)?;
    udp.set_read_timeout(Some(Duration::from_secs(1)))?;
    let closed = Arc::new(AtomicBool::new(false));
    let back = {
        let (udp, mut stream, closed) = (udp.try_clone()?, stream.try_clone()?, closed.clone());
        std::thread::Builder::new().name("confab-ice-tcp-back".into()).spawn(move || {
            let mut buf = vec![0u8; 65_535];
            let mut idle = Duration::ZERO;
            loop {
                match udp.recv(&mut buf) {
                    Ok(n) => {
                        idle = Duration::ZERO;
                        let mut frame = Vec::with_capacity(n + 2);
                        frame.extend_from_slice(&(n as u16).to_be_bytes());
                        frame.extend_from_slice(&buf[..n]);
                        if stream.write_all(&frame).is_err() {
                            break;
                        }
                    }
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                        idle += Duration::from_secs(1);
                        if closed.load(Ordering::Relaxed) || idle >= IDLE {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = stream.shutdown(Shutdown::Both);
        })?
    };
    let result = forward(stream, &udp);
    closed.store(true, Ordering::Relaxed);
    let _ = back.join();
    result
}

/// Frames from the browser, each sent to the shard as one datagram, until the stream ends.
/// The first frame must come within [`FIRST_FRAME_WITHIN`].
fn forward(mut stream: TcpStream, udp: &UdpSocket) -> io::Result<()> {
    let mut length = [0u8; 2];
    let mut packet = vec![0u8; 65_535];
    stream.set_read_timeout(Some(FIRST_FRAME_WITHIN))?;
    let mut first = true;
    loop {
        match stream.read_exact(&mut length) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let n = u16::from_be_bytes(length) as usize;
        stream.read_exact(&mut packet[..n])?;
        udp.send(&packet[..n])?;
        if std::mem::take(&mut first) {
            stream.set_read_timeout(None)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_become_datagrams_and_back() {
        let shard = UdpSocket::bind("127.0.0.1:0").unwrap();
        shard.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let addr = shard.local_addr().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = listener.local_addr().unwrap();
        serve(listener, addr).unwrap();
        let mut client = TcpStream::connect(tcp).unwrap();
        client.write_all(&[0, 3, 1, 2, 3, 0, 2, 4, 5]).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = shard.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[1, 2, 3]);
        let (n, again) = shard.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], again), (&[4u8, 5][..], from), "one UDP source per connection");
        shard.send_to(&[9, 9, 9, 9], from).unwrap();
        let mut reply = [0u8; 6];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(reply, [0, 4, 9, 9, 9, 9]);
    }
}

//! The TURN relay's sockets: a thin tokio shell around [`Front`]. One task per listener
//! kind owns its `Front` (UDP; TCP; TLS, which also takes the TURN connections that arrive
//! on the HTTPS port when that is shared) and every relayed UDP socket it opened; readers
//! feed it [`Event`]s and it sends what the front says.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use turn_server_proto::types::Instant;
use turn_server_proto::types::stun::TransportType;

use super::credentials::TurnSecret;
use super::front::{Action, Framer, Front, PeerPolicy};
use crate::clock;

/// Allocations at once per listener: beyond, the server answers 508 (insufficient capacity).
const MAX_ALLOCATIONS: usize = 1000;
/// A TCP or TLS client must send its first whole STUN message within this.
const FIRST_MESSAGE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);
/// A stream silent for this long is closed: a permission lasts 300 s unless refreshed
/// (RFC 8656 §9), so by then it relays nothing.
const STREAM_IDLE: std::time::Duration = std::time::Duration::from_secs(300);
/// After `accept` fails (out of descriptors, most often), wait this long before trying again
/// rather than spin.
pub const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct TurnSettings {
    /// UDP and TCP, on the same port.
    pub listen: Option<SocketAddr>,
    pub tls_listen: Option<SocketAddr>,
    /// Where relayed sockets are bound and what they announce.
    pub relay_ip: IpAddr,
    pub peers: PeerPolicy,
    pub secret: TurnSecret,
    pub withdrawn: super::Withdrawn,
}

/// For `/metrics`.
#[derive(Debug, Default)]
pub struct TurnCounters {
    pub allocations: AtomicU64,
    pub refused_credentials: AtomicU64,
    pub refused_peers: AtomicU64,
    pub relayed_packets: AtomicU64,
}

/// The running listeners; `tls` takes TURN streams found on the HTTPS port.
#[derive(Clone)]
pub struct Turn {
    /// UDP and TCP.
    pub udp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    tls_events: Option<UnboundedSender<Event>>,
    tls_listen: Option<SocketAddr>,
    pub counters: Arc<TurnCounters>,
    pub secret: TurnSecret,
}

pub enum Event {
    /// From `from` to `to`: a UDP datagram, or one framed message of a TCP stream.
    Packet {
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    },
    Connected {
        client: SocketAddr,
        writer: UnboundedSender<Vec<u8>>,
    },
    Disconnected {
        client: SocketAddr,
    },
}

const REALM: &str = "confab";

impl Turn {
    /// Binds the listeners (UDP and TCP on `listen`'s port: an ephemeral UDP port is
    /// reused for TCP) and starts their tasks on the current tokio runtime.
    pub async fn start(settings: TurnSettings, tls: Option<Arc<rustls::ServerConfig>>) -> anyhow::Result<Turn> {
        let counters = Arc::new(TurnCounters::default());
        let (mut udp, mut tls_addr, mut tls_events, mut tls_listen) = (None, None, None, None);
        if let Some(listen) = settings.listen {
            let (socket, listener) = bind_udp_and_tcp(listen).await?;
            let (socket, bound) = (Arc::new(socket), listener.local_addr()?);
            let udp_front = Front::new(TransportType::Udp, bound, REALM, settings.secret.clone(), settings.peers.clone(), settings.withdrawn.clone());
            let events = spawn_actor(udp_front, Some(socket.clone()), settings.relay_ip, counters.clone());
            tokio::spawn(read_datagrams(socket, bound, events));
            let tcp_front = Front::new(TransportType::Tcp, bound, REALM, settings.secret.clone(), settings.peers.clone(), settings.withdrawn.clone());
            let events = spawn_actor(tcp_front, None, settings.relay_ip, counters.clone());
            tokio::spawn(accept(listener, bound, None, events));
            udp = Some(bound);
        }
        if let Some(config) = tls {
            // TURN over TLS has its own front: on its own port, on the HTTPS port, or both.
            let listen = match settings.tls_listen {
                Some(addr) => TcpListener::bind(addr).await.with_context(|| format!("cannot listen for TURN over TLS on {addr}"))?,
                None => TcpListener::bind(SocketAddr::new(settings.relay_ip, 0)).await?,
            };
            let bound = listen.local_addr()?;
            let front = Front::new(TransportType::Tcp, bound, REALM, settings.secret.clone(), settings.peers.clone(), settings.withdrawn.clone());
            let events = spawn_actor(front, None, settings.relay_ip, counters.clone());
            if settings.tls_listen.is_some() {
                tokio::spawn(accept(listen, bound, Some(tokio_rustls::TlsAcceptor::from(config)), events.clone()));
                tls_addr = Some(bound);
            }
            (tls_events, tls_listen) = (Some(events), Some(bound));
        }
        Ok(Turn { udp, tls: tls_addr, tls_events, tls_listen, counters, secret: settings.secret })
    }

    /// A decrypted stream from the HTTPS port whose first bytes (`first`) are TURN.
    pub fn adopt_tls<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(&self, stream: S, client: SocketAddr, first: Vec<u8>) {
        if let (Some(events), Some(listen)) = (self.tls_events.clone(), self.tls_listen) {
            tokio::spawn(serve_stream(stream, client, listen, first, events));
        }
    }
}

/// A UDP socket and a TCP listener on the same port of `listen`. For port 0, the first
/// free UDP port whose number is also free for TCP (another process may hold it for TCP).
async fn bind_udp_and_tcp(listen: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    const ATTEMPTS: usize = 50;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let socket = UdpSocket::bind(listen).await.with_context(|| format!("cannot bind TURN's UDP socket {listen}"))?;
        let bound = socket.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(listener) => return Ok((socket, listener)),
            Err(e) if listen.port() == 0 && attempt < ATTEMPTS && e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot listen for TURN over TCP on {bound}")),
        }
    }
}

/// The protocol's clock: nanoseconds since the process started using TURN.
fn now() -> Instant {
    Instant::from_nanos(base().elapsed().as_nanos() as i64)
}

fn base() -> std::time::Instant {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(std::time::Instant::now)
}

fn spawn_actor(front: Front, udp: Option<Arc<UdpSocket>>, relay_ip: IpAddr, counters: Arc<TurnCounters>) -> UnboundedSender<Event> {
    let (tx, rx) = unbounded_channel();
    tokio::spawn(run(front, udp, relay_ip, rx, tx.clone(), counters));
    tx
}

async fn read_datagrams(socket: Arc<UdpSocket>, local: SocketAddr, events: UnboundedSender<Event>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if events.send(Event::Packet { from, to: local, data: buf[..n].to_vec() }).is_err() {
                    return;
                }
            }
            // ICMP errors from earlier sends surface here on Linux; the socket goes on.
            Err(e) => tracing::trace!(error = %e, %local, "TURN datagram"),
        }
    }
}

async fn accept(listener: TcpListener, local: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>, events: UnboundedSender<Event>) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, %local, "TURN cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (tls, events) = (tls.clone(), events.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_stream(stream, client, local, Vec::new(), events).await,
                Some(acceptor) => match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_stream(stream, client, local, Vec::new(), events).await,
                    _ => tracing::debug!(%client, "TURN over TLS: no handshake"),
                },
            }
        });
    }
}

/// One client's TCP (or TLS) connection: frames in, the actor's replies out.
async fn serve_stream<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    stream: S,
    client: SocketAddr,
    local: SocketAddr,
    first: Vec<u8>,
    events: UnboundedSender<Event>,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (out, mut outgoing) = unbounded_channel::<Vec<u8>>();
    if events.send(Event::Connected { client, writer: out }).is_err() {
        return;
    }
    let writing = tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut framer = Framer::default();
    let mut chunk = first;
    let mut buf = vec![0u8; 16_384];
    loop {
        match framer.push(&chunk) {
            Ok(frames) => {
                for data in frames {
                    let _ = events.send(Event::Packet { from: client, to: local, data });
                }
            }
            Err(why) => {
                tracing::debug!(%client, why, "TURN stream closed");
                break;
            }
        }
        // A client that has sent no whole message yet gets a short while; one that went
        // silent for a permission's lifetime has nothing left to relay.
        let idle = if framer.messages() == 0 { FIRST_MESSAGE_WITHIN } else { STREAM_IDLE };
        match tokio::time::timeout(idle, reader.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => chunk = buf[..n].to_vec(),
            Err(_) => {
                tracing::debug!(%client, ?idle, "TURN stream idle: closed");
                break;
            }
        }
    }
    let _ = events.send(Event::Disconnected { client });
    writing.abort();
}

struct Relayed {
    socket: Arc<UdpSocket>,
    reader: tokio::task::JoinHandle<()>,
}

async fn run(
    mut front: Front,
    udp: Option<Arc<UdpSocket>>,
    relay_ip: IpAddr,
    mut events: UnboundedReceiver<Event>,
    me: UnboundedSender<Event>,
    counters: Arc<TurnCounters>,
) {
    let mut relayed: HashMap<SocketAddr, Relayed> = HashMap::new();
    let mut clients: HashMap<SocketAddr, UnboundedSender<Vec<u8>>> = HashMap::new();
    let listen = front.listen();
    let mut seen = front.refusals;
    loop {
        let wake = loop {
            let (actions, wake) = front.poll(now());
            if actions.is_empty() {
                break wake;
            }
            for action in actions {
                match action {
                    Action::Send(t) => send(t, listen, &udp, &clients, &relayed, &counters),
                    Action::Allocate { listen, client, family } => {
                        let result = if relayed.len() >= MAX_ALLOCATIONS {
                            Err(turn_server_proto::api::SocketAllocateError::InsufficientCapacity)
                        } else {
                            match UdpSocket::bind(SocketAddr::new(relay_ip, 0)).await.and_then(|s| s.local_addr().map(|a| (s, a))) {
                                Ok((socket, addr)) => {
                                    let socket = Arc::new(socket);
                                    let reader = tokio::spawn(read_datagrams(socket.clone(), addr, me.clone()));
                                    relayed.insert(addr, Relayed { socket, reader });
                                    front.peers().relayed.write().unwrap_or_else(|p| p.into_inner()).insert(addr);
                                    counters.allocations.fetch_add(1, Ordering::Relaxed);
                                    tracing::debug!(%client, relayed = %addr, "TURN allocation");
                                    Ok(addr)
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot open a TURN relayed socket");
                                    Err(turn_server_proto::api::SocketAllocateError::InsufficientCapacity)
                                }
                            }
                        };
                        front.allocated(listen, client, family, result, now());
                    }
                    Action::CloseRelayed(addr) => {
                        if let Some(r) = relayed.remove(&addr) {
                            r.reader.abort();
                            front.peers().relayed.write().unwrap_or_else(|p| p.into_inner()).remove(&addr);
                        }
                    }
                    Action::CloseClient(addr) => {
                        clients.remove(&addr);
                    }
                }
            }
        };
        counters.refused_credentials.fetch_add(front.refusals.credentials - seen.credentials, Ordering::Relaxed);
        counters.refused_peers.fetch_add(front.refusals.peers - seen.peers, Ordering::Relaxed);
        seen = front.refusals;
        let deadline = tokio::time::Instant::from_std(wake.to_std(base()).max(std::time::Instant::now()));
        let event = tokio::select! {
            event = events.recv() => event,
            _ = tokio::time::sleep_until(deadline) => continue,
        };
        match event {
            None => return,
            Some(Event::Packet { from, to, data }) => {
                if let Some(reply) = front.recv(from, to, &data, now(), clock::now()) {
                    send(reply, listen, &udp, &clients, &relayed, &counters);
                }
            }
            Some(Event::Connected { client, writer }) => {
                clients.insert(client, writer);
            }
            Some(Event::Disconnected { client }) => {
                clients.remove(&client);
            }
        }
    }
}

/// A transmit from the listening address goes to its client (over UDP, or the client's
/// connection); one from a relayed address goes out of that socket to the peer.
fn send(
    t: turn_server_proto::api::Transmit<Vec<u8>>,
    listen: SocketAddr,
    udp: &Option<Arc<UdpSocket>>,
    clients: &HashMap<SocketAddr, UnboundedSender<Vec<u8>>>,
    relayed: &HashMap<SocketAddr, Relayed>,
    counters: &TurnCounters,
) {
    if t.from == listen {
        match udp {
            Some(socket) => {
                let _ = socket.try_send_to(&t.data, t.to);
            }
            None => {
                if let Some(client) = clients.get(&t.to) {
                    let _ = client.send(stream_frame(t.data));
                }
            }
        }
    } else if let Some(r) = relayed.get(&t.from) {
        counters.relayed_packets.fetch_add(1, Ordering::Relaxed);
        let _ = r.socket.try_send_to(&t.data, t.to);
    }
}

/// Over TCP, ChannelData is padded to a multiple of four bytes (RFC 8656 §12.5), which the
/// server does not do; STUN messages always are.
fn stream_frame(mut data: Vec<u8>) -> Vec<u8> {
    if data.first().is_some_and(|b| b >> 6 == 1) {
        data.resize(data.len().next_multiple_of(4), 0);
    }
    data
}

#[cfg(test)]
mod tests {
    #[test]
    fn channel_data_on_a_stream_is_padded_to_four_bytes() {
        assert_eq!(super::stream_frame(vec![0x40, 0, 0, 3, 1, 2, 3]), vec![0x40, 0, 0, 3, 1, 2, 3, 0]);
        assert_eq!(super::stream_frame(vec![0x40, 0, 0, 4, 1, 2, 3, 4]).len(), 8);
        assert_eq!(super::stream_frame(vec![0x01, 0x01, 0, 0]).len(), 4);
    }

    #[tokio::test]
    async fn udp_and_tcp_share_a_port_and_a_named_port_taken_for_tcp_is_a_clear_error() {
        let (udp, tcp) = super::bind_udp_and_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert_eq!(udp.local_addr().unwrap(), tcp.local_addr().unwrap());

        // Another process holds a TCP port whose UDP twin is free: naming it fails, and says why.
        let (held, port) = loop {
            let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = held.local_addr().unwrap().port();
            if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                break (held, port);
            }
        };
        let error = super::bind_udp_and_tcp(([127, 0, 0, 1], port).into()).await.expect_err("the TCP port is taken");
        assert!(format!("{error:#}").contains(&format!("cannot listen for TURN over TCP on 127.0.0.1:{port}")), "{error:#}");
        drop(held);
    }
}

//! The media cascade's links: a quinn endpoint of its own (libp2p's QUIC turns datagrams
//! off), one QUIC connection per pair of members, TLS 1.3 both ways with certificates bound
//! to the node keys (libp2p-tls's certificates, so the peer id *is* the node key), ALPN
//! `confab-cascade/1` (a peer offering anything else is refused in the handshake), and
//! members of the current epoch only: a connection from anyone else is closed as soon as its
//! key is known, and a member dropped from the membership is disconnected.
//!
//! What travels: the relays' frames (`confab_relay::remote`): media in QUIC datagrams (one
//! packet each, never retransmitted or queued for long: late media is worse than lost), the
//! relays' control messages and the nodes' own ([`super::edges`]) on one ordered
//! unidirectional stream each way, length-prefixed. Figures per peer (RTT, bytes, datagrams,
//! loss, media frames and bytes) go to `/metrics`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use confab_relay::{Frame, NodeId};
use futures_util::FutureExt;
use libp2p::{PeerId, identity};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::sync::{mpsc, watch};

/// The cascade's protocol, version 1.
pub const ALPN: &[u8] = b"confab-cascade/1";
/// The cascade listens on the port after the control plane's.
pub fn port_for(control_port: u16) -> u16 {
    control_port.wrapping_add(1)
}

const KEEP_ALIVE: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Datagrams queued beyond this are dropped (quinn drops the oldest): late media is worse
/// than lost media (1 MiB by default, 400 ms at 20 Mbit/s).
const DATAGRAM_SEND_BUFFER: usize = 128 * 1024;
const CLOSE_NOT_A_MEMBER: u32 = 1;
const CLOSE_REMOVED: u32 = 2;
const CLOSE_BAD_FRAME: u32 = 3;
/// A frame on the stream larger than this is a broken peer (plans and joins are kilobytes).
const MAX_FRAME: usize = 1 << 20;
/// What a datagram or a stream frame carries (its first byte).
const KIND_MEDIA: u8 = 0;
const KIND_RELAY_CONTROL: u8 = 1;
const KIND_NODE: u8 = 2;
/// The node's own messages kept for a member while there is no link to it (sent in order when
/// it comes back); past this the oldest go.
const PENDING_PER_MEMBER: usize = 1024;

/// Media datagrams read in one go, at most.
const MEDIA_BATCH: usize = 64;

/// What arrived from a member.
#[derive(Debug)]
pub enum Received {
    /// For this node's relay: a control message (`Frame::Control`'s bytes).
    Control(Vec<u8>),
    /// For this node's relay: media packets that arrived together (a video frame's packets,
    /// usually), handed over in one go.
    Media(Vec<Vec<u8>>),
    /// For the node itself (`super::edges`).
    Node(Vec<u8>),
}

/// Who takes what arrives: the member's node key, and the frame.
pub type Inbound = Box<dyn Fn([u8; 32], Received) + Send + Sync>;

/// Who the members are, as the control plane sees them: peer id, node key and the
/// cascade's address.
pub type Members = HashMap<PeerId, ([u8; 32], Vec<SocketAddr>)>;

/// One link's figures, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct LinkFigures {
    pub rtt: Duration,
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub sent_datagrams: u64,
    pub received_datagrams: u64,
    pub lost_packets: u64,
    /// Media packets (and their bytes) this node's relay sent the peer, and received.
    pub media_sent: u64,
    pub media_sent_bytes: u64,
    pub media_received: u64,
    pub media_received_bytes: u64,
}

/// Media counted on one link.
#[derive(Default)]
struct MediaCounts {
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
}

/// One member's link: the connection, the queue to its ordered stream, and its counts.
#[derive(Clone)]
struct Link {
    connection: quinn::Connection,
    stream: mpsc::UnboundedSender<(u8, Vec<u8>)>,
    media: Arc<MediaCounts>,
}

/// The links, shared with the relay (frames to send), the node (messages) and `/metrics`.
#[derive(Default)]
pub struct Links {
    connections: Mutex<HashMap<[u8; 32], Link>>,
    /// The node's messages for members not linked now (always locked after `connections`).
    pending: Mutex<HashMap<[u8; 32], std::collections::VecDeque<Vec<u8>>>>,
    pub refused: AtomicU64,
    inbound: OnceLock<Inbound>,
}

impl Links {
    /// Who takes what members send (set once, when the node is ready for it; until then
    /// it is dropped).
    pub fn set_inbound(&self, inbound: Inbound) {
        let _ = self.inbound.set(inbound);
    }

    fn link_to_node(&self, node: NodeId) -> Option<Link> {
        let connections = self.connections.lock().expect("never poisoned");
        connections.iter().find(|(key, _)| NodeId::of_key(key) == node).map(|(_, link)| link.clone())
    }

    /// Sends a relay's frame to the member `node`, if linked (media is dropped otherwise:
    /// the plan moves on without that node).
    pub fn send_relay(&self, node: NodeId, frame: Frame) {
        let Some(link) = self.link_to_node(node) else { return };
        match frame {
            Frame::Media(bytes) => {
                link.media.sent.fetch_add(1, Ordering::Relaxed);
                link.media.sent_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let mut datagram = Vec::with_capacity(bytes.len() + 1);
                datagram.push(KIND_MEDIA);
                datagram.extend_from_slice(&bytes);
                let fits = link.connection.max_datagram_size().is_some_and(|max| datagram.len() <= max);
                if fits {
                    let _ = link.connection.send_datagram(datagram.into());
                } else {
                    // Larger than the path takes in one datagram: in order on the stream.
                    let _ = link.stream.send((KIND_MEDIA, bytes));
                }
            }
            Frame::Control(bytes) => {
                let _ = link.stream.send((KIND_RELAY_CONTROL, bytes));
            }
        }
    }

    /// Sends the node's own message to member `key`, in order after those before: now, or as
    /// soon as a link to it is up again (the last [`PENDING_PER_MEMBER`] are kept meanwhile).
    pub fn send_node(&self, key: &[u8; 32], bytes: Vec<u8>) {
        let connections = self.connections.lock().expect("never poisoned");
        if let Some(link) = connections.get(key)
            && link.stream.send((KIND_NODE, bytes.clone())).is_ok()
        {
            return;
        }
        let mut pending = self.pending.lock().expect("never poisoned");
        let queue = pending.entry(*key).or_default();
        if queue.len() == PENDING_PER_MEMBER {
            queue.pop_front();
        }
        queue.push_back(bytes);
    }

    /// Messages kept for member `key`.
    pub fn pending(&self, key: &[u8; 32]) -> usize {
        self.pending.lock().expect("never poisoned").get(key).map_or(0, |q| q.len())
    }

    /// Whether there is a link to member `key`.
    pub fn linked(&self, key: &[u8; 32]) -> bool {
        self.connections.lock().expect("never poisoned").contains_key(key)
    }

    fn receive_media(&self, key: [u8; 32], packets: Vec<Vec<u8>>, counts: &MediaCounts) {
        if packets.is_empty() {
            return;
        }
        counts.received.fetch_add(packets.len() as u64, Ordering::Relaxed);
        counts.received_bytes.fetch_add(packets.iter().map(|p| p.len() as u64).sum(), Ordering::Relaxed);
        if let Some(inbound) = self.inbound.get() {
            inbound(key, Received::Media(packets));
        }
    }

    fn receive(&self, key: [u8; 32], kind: u8, bytes: Vec<u8>, counts: &MediaCounts) -> Result<(), ()> {
        let received = match kind {
            KIND_MEDIA => {
                self.receive_media(key, vec![bytes], counts);
                return Ok(());
            }
            KIND_RELAY_CONTROL => Received::Control(bytes),
            KIND_NODE => Received::Node(bytes),
            _ => return Err(()),
        };
        if let Some(inbound) = self.inbound.get() {
            inbound(key, received);
        }
        Ok(())
    }

    /// Each connected member's node key and figures.
    pub fn figures(&self) -> Vec<([u8; 32], LinkFigures)> {
        let connections = self.connections.lock().expect("never poisoned");
        let mut out: Vec<([u8; 32], LinkFigures)> = connections
            .iter()
            .map(|(key, link)| {
                let c = &link.connection;
                let s = c.stats();
                (
                    *key,
                    LinkFigures {
                        rtt: c.rtt(),
                        sent_bytes: s.udp_tx.bytes,
                        received_bytes: s.udp_rx.bytes,
                        sent_datagrams: s.udp_tx.datagrams,
                        received_datagrams: s.udp_rx.datagrams,
                        lost_packets: s.path.lost_packets,
                        media_sent: link.media.sent.load(Ordering::Relaxed),
                        media_sent_bytes: link.media.sent_bytes.load(Ordering::Relaxed),
                        media_received: link.media.received.load(Ordering::Relaxed),
                        media_received_bytes: link.media.received_bytes.load(Ordering::Relaxed),
                    },
                )
            })
            .collect();
        out.sort_by_key(|(k, _)| *k);
        out
    }

    pub fn count(&self) -> usize {
        self.connections.lock().expect("never poisoned").len()
    }
}

/// Starts the endpoint on the current tokio runtime; `members` follows the membership, and
/// `links` is where the connections are kept. Returns the address it listens on.
pub fn start(keypair: &identity::Keypair, listen: SocketAddr, members: watch::Receiver<Members>, links: Arc<Links>) -> anyhow::Result<SocketAddr> {
    let own = keypair.public().to_peer_id();
    let mut server_tls = libp2p::tls::make_server_config(keypair).context("the cascade's TLS configuration")?;
    server_tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server_tls)?));
    server.transport_config(transport());
    let endpoint = quinn::Endpoint::server(server, listen).with_context(|| format!("cannot listen for the cascade on {listen} (UDP)"))?;
    let bound = endpoint.local_addr()?;
    tokio::spawn(accept(endpoint.clone(), members.clone(), links.clone()));
    tokio::spawn(dial(endpoint, keypair.clone(), own, members, links));
    Ok(bound)
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("3 s is a valid idle timeout")));
    t.datagram_send_buffer_size(DATAGRAM_SEND_BUFFER);
    Arc::new(t)
}

/// The peer id in the certificate the other side presented (verified by libp2p-tls's
/// verifier during the handshake).
fn peer_of(connection: &quinn::Connection) -> Option<PeerId> {
    let certificates = connection.peer_identity()?.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok()?;
    let first = certificates.first()?;
    Some(libp2p::tls::certificate::parse(first).ok()?.peer_id())
}

async fn accept(endpoint: quinn::Endpoint, members: watch::Receiver<Members>, links: Arc<Links>) {
    while let Some(incoming) = endpoint.accept().await {
        let (members, links) = (members.clone(), links.clone());
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    links.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "a cascade handshake failed");
                    return;
                }
            };
            let key = peer_of(&connection).and_then(|peer| members.borrow().get(&peer).map(|(key, _)| *key));
            match key {
                Some(key) => keep(connection, key, members, links).await,
                None => {
                    links.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(remote = %connection.remote_address(), "refused a cascade connection from a node outside the membership");
                    connection.close(CLOSE_NOT_A_MEMBER.into(), b"not a member");
                }
            }
        });
    }
}

/// Keeps `connection` as the link to member `key` until it closes or `key` leaves the
/// membership.
async fn keep(connection: quinn::Connection, key: [u8; 32], mut members: watch::Receiver<Members>, links: Arc<Links>) {
    let (stream, queued) = mpsc::unbounded_channel();
    let media = Arc::new(MediaCounts::default());
    let link = Link { connection: connection.clone(), stream: stream.clone(), media: media.clone() };
    {
        let mut connections = links.connections.lock().expect("never poisoned");
        if let Some(old) = connections.insert(key, link) {
            old.connection.close(0u32.into(), b"replaced");
        }
        // What the node said to this member while there was no link goes first.
        for bytes in links.pending.lock().expect("never poisoned").remove(&key).into_iter().flatten() {
            let _ = stream.send((KIND_NODE, bytes));
        }
    }
    tracing::info!(remote = %connection.remote_address(), "cascade link up");
    let writer = tokio::spawn(write_stream(connection.clone(), queued));
    loop {
        tokio::select! {
            _ = connection.closed() => break,
            changed = members.changed() => {
                let still = changed.is_ok() && members.borrow().values().any(|(k, _)| *k == key);
                if !still {
                    connection.close(CLOSE_REMOVED.into(), b"no longer a member");
                    break;
                }
            }
            datagram = connection.read_datagram() => match datagram {
                Ok(first) => {
                    // And whatever else has arrived: one hand-over (and one wake of each
                    // shard concerned) for a burst.
                    let mut batch = vec![first];
                    while batch.len() < MEDIA_BATCH {
                        match connection.read_datagram().now_or_never() {
                            Some(Ok(d)) => batch.push(d),
                            _ => break,
                        }
                    }
                    let packets: Vec<Vec<u8>> = batch.iter().filter(|d| d.first() == Some(&KIND_MEDIA)).map(|d| d[1..].to_vec()).collect();
                    links.receive_media(key, packets, &media);
                }
                Err(_) => break,
            },
            stream = connection.accept_uni() => match stream {
                Ok(stream) => {
                    tokio::spawn(read_stream(stream, connection.clone(), key, links.clone(), media.clone()));
                }
                Err(_) => break,
            },
        }
    }
    writer.abort();
    let mut connections = links.connections.lock().expect("never poisoned");
    if connections.get(&key).is_some_and(|l| l.connection.stable_id() == connection.stable_id()) {
        connections.remove(&key);
    }
    tracing::info!(remote = %connection.remote_address(), "cascade link down");
}

/// Writes what is queued for the peer on this node's ordered stream: length, kind, bytes.
async fn write_stream(connection: quinn::Connection, mut queued: mpsc::UnboundedReceiver<(u8, Vec<u8>)>) {
    let Ok(mut stream) = connection.open_uni().await else { return };
    while let Some((kind, bytes)) = queued.recv().await {
        let mut frame = Vec::with_capacity(bytes.len() + 5);
        frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        frame.push(kind);
        frame.extend_from_slice(&bytes);
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// Reads the peer's ordered stream, frame by frame; a malformed one closes the link.
async fn read_stream(mut stream: quinn::RecvStream, connection: quinn::Connection, key: [u8; 32], links: Arc<Links>, media: Arc<MediaCounts>) {
    loop {
        let mut head = [0u8; 5];
        if stream.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes(head[..4].try_into().expect("four bytes")) as usize;
        if len > MAX_FRAME {
            tracing::warn!(remote = %connection.remote_address(), len, "a cascade frame too large; link closed");
            connection.close(CLOSE_BAD_FRAME.into(), b"frame too large");
            return;
        }
        let mut bytes = vec![0; len];
        if stream.read_exact(&mut bytes).await.is_err() {
            return;
        }
        if links.receive(key, head[4], bytes, &media).is_err() {
            tracing::warn!(remote = %connection.remote_address(), kind = head[4], "a cascade frame of unknown kind; link closed");
            connection.close(CLOSE_BAD_FRAME.into(), b"unknown frame");
            return;
        }
    }
}

/// Connects to the members this node should dial: each pair has one link, dialled by the
/// lower peer id (a node outside the membership dials them all, and is refused).
async fn dial(endpoint: quinn::Endpoint, keypair: identity::Keypair, own: PeerId, members: watch::Receiver<Members>, links: Arc<Links>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut dialling: HashMap<PeerId, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        every.tick().await;
        dialling.retain(|_, task| !task.is_finished());
        let snapshot = members.borrow().clone();
        let member = snapshot.contains_key(&own);
        let connected: Vec<[u8; 32]> = links.connections.lock().expect("never poisoned").keys().copied().collect();
        for (peer, (key, addresses)) in snapshot {
            if peer == own || (member && own > peer) || connected.contains(&key) || dialling.contains_key(&peer) {
                continue;
            }
            let Some(address) = addresses.first().copied() else { continue };
            let client = match client_config(&keypair, peer) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "the cascade's TLS configuration");
                    continue;
                }
            };
            let (endpoint, members, links) = (endpoint.clone(), members.clone(), links.clone());
            dialling.insert(
                peer,
                tokio::spawn(async move {
                    match endpoint.connect_with(client, address, "confab-cascade") {
                        Ok(connecting) => match connecting.await {
                            Ok(connection) => keep(connection, key, members, links).await,
                            Err(e) => tracing::debug!(%address, error = %e, "a cascade connection failed"),
                        },
                        Err(e) => tracing::debug!(%address, error = %e, "cannot dial the cascade"),
                    }
                }),
            );
        }
    }
}

fn client_config(keypair: &identity::Keypair, peer: PeerId) -> anyhow::Result<quinn::ClientConfig> {
    let mut tls = libp2p::tls::make_client_config(keypair, Some(peer))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(transport());
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(seed: u8) -> identity::Keypair {
        identity::Keypair::ed25519_from_bytes([seed; 32]).unwrap()
    }

    fn key_of(k: &identity::Keypair) -> [u8; 32] {
        k.public().try_into_ed25519().unwrap().to_bytes()
    }

    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// What a node says to a member it has no link to waits, and arrives in order once the
    /// link is up; after that it goes at once.
    #[tokio::test]
    async fn messages_for_a_member_wait_for_its_link() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let (a, b) = (keypair(11), keypair(12));
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (to_a, members_a) = watch::channel(Members::new());
        let (to_b, members_b) = watch::channel(Members::new());
        let (links_a, links_b) = (Arc::new(Links::default()), Arc::new(Links::default()));
        let heard: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let into = heard.clone();
        links_b.set_inbound(Box::new(move |from, received| {
            assert_eq!(from, key_of(&keypair(11)));
            if let Received::Node(bytes) = received {
                into.lock().unwrap().push(bytes);
            }
        }));
        let addr_a = start(&a, any, members_a, links_a.clone()).unwrap();
        let addr_b = start(&b, any, members_b, links_b.clone()).unwrap();
        links_a.send_node(&key_of(&b), b"first".to_vec());
        links_a.send_node(&key_of(&b), b"second".to_vec());
        assert_eq!(links_a.pending(&key_of(&b)), 2);
        let both: Members = [(a.public().to_peer_id(), (key_of(&a), vec![addr_a])), (b.public().to_peer_id(), (key_of(&b), vec![addr_b]))].into();
        to_a.send_replace(both.clone());
        to_b.send_replace(both);
        until("b to hear what a said before they linked", || heard.lock().unwrap().len() == 2).await;
        assert_eq!(links_a.pending(&key_of(&b)), 0);
        links_a.send_node(&key_of(&b), b"third".to_vec());
        until("b to hear the third", || heard.lock().unwrap().len() == 3).await;
        assert_eq!(*heard.lock().unwrap(), vec![b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]);
    }

    /// Two members link up; a third node, not a member, is refused by both; a client speaking
    /// another version of the protocol is refused in the handshake; a member dropped from the
    /// membership is disconnected.
    #[tokio::test]
    async fn members_link_up_and_nobody_else_does() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let (a, b, c) = (keypair(1), keypair(2), keypair(3));
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (to_a, members_a) = watch::channel(Members::new());
        let (to_b, members_b) = watch::channel(Members::new());
        let (to_c, members_c) = watch::channel(Members::new());
        let (links_a, links_b, links_c) = (Arc::new(Links::default()), Arc::new(Links::default()), Arc::new(Links::default()));
        let addr_a = start(&a, any, members_a, links_a.clone()).unwrap();
        let addr_b = start(&b, any, members_b, links_b.clone()).unwrap();
        let both: Members = [(a.public().to_peer_id(), (key_of(&a), vec![addr_a])), (b.public().to_peer_id(), (key_of(&b), vec![addr_b]))].into();
        to_a.send_replace(both.clone());
        to_b.send_replace(both.clone());
        until("a and b to link up", || links_a.count() == 1 && links_b.count() == 1).await;

        // c has the membership but is not in it: it dials both, and both refuse it.
        start(&c, any, members_c, links_c.clone()).unwrap();
        to_c.send_replace(both.clone());
        until("a and b to refuse c", || links_a.refused.load(Ordering::Relaxed) > 0 && links_b.refused.load(Ordering::Relaxed) > 0).await;
        assert_eq!((links_a.count(), links_b.count()), (1, 1));

        // A member speaking another version is refused during the handshake.
        let mut tls = libp2p::tls::make_client_config(&b, Some(a.public().to_peer_id())).unwrap();
        tls.alpn_protocols = vec![b"confab-cascade/2".to_vec()];
        let endpoint = quinn::Endpoint::client(any).unwrap();
        let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
        let refused = endpoint.connect_with(config, addr_a, "confab-cascade").unwrap().await;
        assert!(refused.is_err(), "another protocol version must be refused");

        // b leaves the membership: a drops the link.
        let only_a: Members = both.into_iter().filter(|(p, _)| *p == a.public().to_peer_id()).collect();
        to_a.send_replace(only_a);
        until("b to be cut off", || links_a.count() == 0 && links_b.count() == 0).await;
    }
}

//! One TURN listener's protocol, sans-IO: `turn-server-proto`'s server behind the node's
//! own checks. Every request from a client passes here first:
//!
//! - a USERNAME must be one this node issued and still valid (`credentials`), and the
//!   request's MESSAGE-INTEGRITY must check out under its password, before the server hears
//!   of it: only then is the user given to the server (which keeps every user it is given, and
//!   a nonce per client address, for good). Anything else is answered `401` here.
//! - a request that needs credentials and carries none (the usual first step) is answered
//!   `401` here too, with the realm and a nonce of ours, so a stranger's datagrams (whose
//!   source addresses are easily spoofed) leave no state anywhere. The server keeps a nonce
//!   per client address; it makes one for a client only once the client has proved its
//!   credential, and the front translates: a request signed with our nonce is re-signed with
//!   the server's before the server sees it (the front knows every password). Clients never
//!   see an extra round trip (browsers treat a `438 Stale Nonce` on Allocate as fatal).
//! - CreatePermission, ChannelBind and Send name peers (XOR-PEER-ADDRESS); a peer the
//!   [`PeerPolicy`] refuses gets `403` (a Send indication is dropped).
//!
//! The shell owns the sockets: it feeds what arrives to [`Front::recv`] and sends or acts on
//! what [`Front::poll`] returns. Times are passed in: `now` for the protocol's timers and
//! `unix` (seconds) for credential expiry.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use turn_server_proto::api::{SocketAllocateError, TcpConnectError, Transmit, TurnServerApi, TurnServerPollRet};
use turn_server_proto::server::TurnServer;
use turn_server_proto::types::attribute::RequestedTransport;
use turn_server_proto::types::attribute::XorPeerAddress;
use turn_server_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH, SEND};
use turn_server_proto::types::stun::TransportType;
use turn_server_proto::types::stun::attribute::{ErrorCode, Fingerprint, MessageIntegrity, MessageIntegritySha256, Nonce, Realm, Username};
use turn_server_proto::types::stun::message::{IntegrityAlgorithm, LongTermCredentials, LongTermKeyCredentials, Message, MessageClass, MessageWriteVec};
use turn_server_proto::types::stun::prelude::{AttributeFromRaw, AttributeStaticType, MessageWrite, MessageWriteExt};
use turn_server_proto::types::{AddressFamily, Instant};

use super::credentials::TurnSecret;
use super::{PROBE_PARTICIPANT, Withdrawn, policy};

/// Where relays may send.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// Private, link-local, CGNAT and ULA peers (for networks whose participants are private).
    pub allow_private: bool,
    /// The node's own media addresses (the SFU's sockets): reachable whatever the ranges
    /// say, so that a participant who can only reach TURN still reaches the SFU.
    pub own: Vec<SocketAddr>,
    /// This host's addresses (its interfaces, its public address): no other port of theirs
    /// is reachable through the relay (the node's HTTPS, TURN itself, whatever else runs here).
    pub own_ips: Vec<std::net::IpAddr>,
    /// The relayed addresses of every allocation on this node, shared by all listeners: two
    /// participants both relayed here reach each other through them.
    pub relayed: Arc<RwLock<HashSet<SocketAddr>>>,
}

impl PeerPolicy {
    pub fn allows(&self, peer: SocketAddr) -> bool {
        let ip = match peer.ip() {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        if self.own.iter().any(|own| *own == peer && !own.ip().is_loopback()) {
            return true;
        }
        if self.own_ips.contains(&ip) && self.relayed.read().unwrap_or_else(|p| p.into_inner()).contains(&SocketAddr::new(ip, peer.port())) {
            return policy::peer_allowed(ip, self.allow_private);
        }
        !self.own_ips.contains(&ip) && policy::peer_allowed(ip, self.allow_private)
    }
}

/// What the shell must do.
#[derive(Debug)]
pub enum Action {
    /// Send `data` from `from` (the listening socket or a relayed one) to `to`.
    Send(Transmit<Vec<u8>>),
    /// Open a relayed UDP socket for the client and report it with [`Front::allocated`].
    Allocate { listen: SocketAddr, client: SocketAddr, family: AddressFamily },
    /// Close the relayed socket bound at this address.
    CloseRelayed(SocketAddr),
    /// Close the TCP connection to this client.
    CloseClient(SocketAddr),
}

/// Counts for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Refusals {
    pub credentials: u64,
    pub peers: u64,
}

#[derive(Debug)]
pub struct Front {
    server: TurnServer,
    transport: TransportType,
    listen: SocketAddr,
    secret: TurnSecret,
    peers: PeerPolicy,
    realm: String,
    /// What our own `401` answers carry; the server replaces it (see the module's notes).
    nonce: String,
    /// Users given to the server (it keeps them), with when their credential expires.
    known_users: HashMap<String, u64>,
    /// The server's nonce for each client that proved its credential.
    server_nonces: HashMap<SocketAddr, String>,
    /// Credentials of seats that ended.
    withdrawn: Withdrawn,
    pub refusals: Refusals,
}

impl Front {
    pub fn new(transport: TransportType, listen: SocketAddr, realm: &str, secret: TurnSecret, peers: PeerPolicy, withdrawn: Withdrawn) -> Front {
        let server = TurnServer::new(transport, listen, realm.to_string());
        let nonce = format!("confab{}", crate::secrets::hex(&crate::secrets::random_bytes::<12>()));
        Front {
            server,
            transport,
            listen,
            secret,
            peers,
            realm: realm.to_string(),
            nonce,
            known_users: HashMap::new(),
            server_nonces: HashMap::new(),
            withdrawn,
            refusals: Refusals::default(),
        }
    }

    pub fn peers(&self) -> &PeerPolicy {
        &self.peers
    }

    /// How many users the server has been given (each passed the integrity check).
    #[cfg(test)]
    pub fn known_users(&self) -> usize {
        self.known_users.len()
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// A datagram (UDP) or one whole framed message (TCP, see [`Framer`]) that arrived from
    /// `from` at `to`: the listening address for clients, a relayed address for peers.
    pub fn recv(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8], now: Instant, unix: u64) -> Option<Transmit<Vec<u8>>> {
        let transport = if to == self.listen { self.transport } else { TransportType::Udp };
        if to != self.listen {
            return self.server.recv(Transmit::new(data, transport, from, to), now).map(|t| t.build());
        }
        match self.screen(data, unix) {
            Screen::Pass => self.server.recv(Transmit::new(data, transport, from, to), now).map(|t| t.build()),
            Screen::Reply(reply) => reply.map(|data| Transmit::new(data, transport, self.listen, from)),
            Screen::Resign { key, algorithm } => {
                let nonce = match self.server_nonces.get(&from) {
                    Some(nonce) => nonce.clone(),
                    None => self.fetch_server_nonce(from, transport, now)?,
                };
                let resigned = resign(data, &nonce, &key, algorithm)?;
                let reply = self.server.recv(Transmit::new(&resigned[..], transport, from, to), now).map(|t| t.build())?;
                // The server's nonce expired (after an hour): take the new one and sign again.
                match stale_nonce(&reply.data) {
                    Some(fresh) => {
                        self.server_nonces.insert(from, fresh.clone());
                        let resigned = resign(data, &fresh, &key, algorithm)?;
                        self.server.recv(Transmit::new(&resigned[..], transport, from, to), now).map(|t| t.build())
                    }
                    None => Some(reply),
                }
            }
        }
    }

    /// Asks the server for its nonce for `client` (an unsigned request, whose `401` carries
    /// it) and remembers it. Only for clients that proved their credential.
    fn fetch_server_nonce(&mut self, client: SocketAddr, transport: TransportType, now: Instant) -> Option<String> {
        let mut probe = Message::builder_request(ALLOCATE, MessageWriteVec::new());
        probe.add_attribute(&RequestedTransport::new(RequestedTransport::UDP)).ok()?;
        let probe = probe.finish();
        let reply = self.server.recv(Transmit::new(&probe[..], transport, client, self.listen), now)?.build();
        let reply = Message::from_bytes(&reply.data).ok()?;
        let nonce = reply.attribute::<Nonce>().ok()?.nonce().to_string();
        self.server_nonces.insert(client, nonce.clone());
        Some(nonce)
    }

    /// What to do with a message from a client.
    fn screen(&mut self, data: &[u8], unix: u64) -> Screen {
        if data.first().is_none_or(|b| b >> 6 != 0) {
            return Screen::Pass; // ChannelData: goes only to a peer the policy allowed at ChannelBind.
        }
        let Ok(msg) = Message::from_bytes(data) else { return Screen::Pass };
        let request = msg.has_class(MessageClass::Request);
        if !request && !msg.has_class(MessageClass::Indication) {
            return Screen::Pass;
        }
        let method = msg.method();
        if method == CREATE_PERMISSION || method == CHANNEL_BIND || method == SEND {
            let refused = msg
                .iter_attributes()
                .filter(|(_, a)| a.header.get_type() == XorPeerAddress::TYPE)
                .filter_map(|(_, a)| XorPeerAddress::from_raw(a).ok())
                .map(|a| a.addr(msg.transaction_id()))
                .find(|peer| !self.peers.allows(*peer));
            if let Some(peer) = refused {
                self.refusals.peers += 1;
                tracing::debug!(%peer, "TURN relay to a refused address");
                return Screen::Reply(request.then(|| error(&msg, ErrorCode::FORBIDDEN, "this relay does not send to private or local addresses")));
            }
        }
        match msg.attribute::<Username>() {
            Ok(username) => {
                let username = username.username();
                let refusal = match self.secret.check(username, unix) {
                    Ok(_) if self.withdrawn.contains(username) => "this credential was withdrawn: its seat in the meeting ended".to_string(),
                    // The prejoin self-test only gathers a relay candidate; its credential
                    // relays to nobody.
                    Ok((holder, _)) if holder.participant == PROBE_PARTICIPANT && (method == CREATE_PERMISSION || method == CHANNEL_BIND) => {
                        self.refusals.peers += 1;
                        return Screen::Reply(request.then(|| error(&msg, ErrorCode::FORBIDDEN, "a self-test credential relays to nobody")));
                    }
                    Ok((holder, password)) => {
                        let key = LongTermCredentials::new(username.to_string(), password.clone()).to_key(self.realm.clone());
                        match msg.validate_integrity(&key.clone().into()) {
                            Ok(algorithm) => {
                                if !self.known_users.contains_key(username) {
                                    self.known_users.insert(username.to_string(), holder.expires_at);
                                    self.server.add_user(username.to_string(), password);
                                }
                                return Screen::Resign { key, algorithm };
                            }
                            Err(_) => "the request's MESSAGE-INTEGRITY does not match its credential".to_string(),
                        }
                    }
                    Err(e) => e.to_string(),
                };
                self.refusals.credentials += 1;
                tracing::debug!(reason = %refusal, "TURN request refused");
                Screen::Reply(request.then(|| self.challenge(&msg, &refusal)))
            }
            Err(_) if request && (method == ALLOCATE || method == REFRESH || method == CREATE_PERMISSION || method == CHANNEL_BIND) => {
                Screen::Reply(Some(self.challenge(&msg, "credentials required")))
            }
            Err(_) => Screen::Pass,
        }
    }

    /// `401` with the realm and a nonce: what a client needs to sign its next request.
    fn challenge(&self, request: &Message<'_>, reason: &str) -> Vec<u8> {
        let mut reply = Message::builder_error(request, MessageWriteVec::new());
        let code = ErrorCode::builder(ErrorCode::UNAUTHORIZED).reason(reason).build().expect("a short reason fits an ERROR-CODE");
        reply.add_attribute(&code).expect("fits");
        reply.add_attribute(&Realm::new(&self.realm).expect("the realm was accepted at start")).expect("fits");
        reply.add_attribute(&Nonce::new(&self.nonce).expect("a short nonce")).expect("fits");
        reply.finish()
    }

    /// Advances timers and collects what the shell must do; the instant is when to call
    /// again at the latest.
    pub fn poll(&mut self, now: Instant) -> (Vec<Action>, Instant) {
        let mut actions = Vec::new();
        let wake = loop {
            match self.server.poll(now) {
                TurnServerPollRet::WaitUntil(at) => break at,
                TurnServerPollRet::AllocateSocket { listen_addr, client_addr, allocation_transport, family, transport } => {
                    if allocation_transport == TransportType::Udp && family == AddressFamily::IPV4 {
                        actions.push(Action::Allocate { listen: listen_addr, client: client_addr, family });
                    } else {
                        // TCP allocations (RFC 6062) and IPv6 relays: browsers need neither.
                        let refusal = if family == AddressFamily::IPV4 {
                            SocketAllocateError::InsufficientCapacity
                        } else {
                            SocketAllocateError::AddressFamilyNotSupported
                        };
                        self.server.allocated_socket(transport, listen_addr, client_addr, allocation_transport, family, Err(refusal), now);
                    }
                }
                TurnServerPollRet::TcpConnect { relayed_addr, peer_addr, listen_addr, client_addr } => {
                    self.server.tcp_connected(relayed_addr, peer_addr, listen_addr, client_addr, Err(TcpConnectError::Forbidden), now);
                }
                TurnServerPollRet::TcpClose { remote_addr, .. } => actions.push(Action::CloseClient(remote_addr)),
                TurnServerPollRet::SocketClose { listen_addr, .. } => actions.push(Action::CloseRelayed(listen_addr)),
            }
        };
        while let Some(t) = self.server.poll_transmit(now) {
            actions.push(Action::Send(t));
        }
        (actions, wake)
    }

    /// The shell's answer to [`Action::Allocate`].
    pub fn allocated(&mut self, listen: SocketAddr, client: SocketAddr, family: AddressFamily, relayed: Result<SocketAddr, SocketAllocateError>, now: Instant) {
        self.server.allocated_socket(self.transport, listen, client, TransportType::Udp, family, relayed, now);
    }
}

/// What the front does with a client's message.
enum Screen {
    /// To the server as it is.
    Pass,
    /// Answered here (`None`: dropped).
    Reply(Option<Vec<u8>>),
    /// Its credential checked out: to the server, signed again with the server's nonce.
    Resign { key: LongTermKeyCredentials, algorithm: IntegrityAlgorithm },
}

/// `message` with its NONCE replaced by `nonce` and signed again with `key` (and a new
/// FINGERPRINT if it had one); every other attribute as it was.
fn resign(message: &[u8], nonce: &str, key: &LongTermKeyCredentials, algorithm: IntegrityAlgorithm) -> Option<Vec<u8>> {
    let msg = Message::from_bytes(message).ok()?;
    let mut out = Message::builder(msg.get_type(), msg.transaction_id(), MessageWriteVec::new());
    let mut fingerprint = false;
    for (_, attribute) in msg.iter_attributes() {
        let kind = attribute.header.get_type();
        if kind == Fingerprint::TYPE {
            fingerprint = true;
        } else if kind != Nonce::TYPE && kind != MessageIntegrity::TYPE && kind != MessageIntegritySha256::TYPE {
            out.add_attribute(&attribute).ok()?;
        }
    }
    out.add_attribute(&Nonce::new(nonce).ok()?).ok()?;
    out.add_message_integrity(&key.clone().into(), algorithm).ok()?;
    if fingerprint {
        out.add_fingerprint().ok()?;
    }
    Some(out.finish())
}

/// The new nonce in a `438 Stale Nonce` answer.
fn stale_nonce(reply: &[u8]) -> Option<String> {
    let msg = Message::from_bytes(reply).ok()?;
    if msg.attribute::<ErrorCode>().ok()?.code() != ErrorCode::STALE_NONCE {
        return None;
    }
    Some(msg.attribute::<Nonce>().ok()?.nonce().to_string())
}

fn error(request: &Message<'_>, code: u16, reason: &str) -> Vec<u8> {
    let mut reply = Message::builder_error(request, MessageWriteVec::new());
    let attribute = ErrorCode::builder(code).reason(reason).build().expect("a short reason fits an ERROR-CODE");
    reply.add_attribute(&attribute).expect("one attribute fits");
    reply.finish()
}

/// Splits a TCP byte stream into whole STUN messages and ChannelData frames (RFC 8656
/// §11.5: ChannelData over TCP is padded to four bytes). A stream that is neither is an
/// error: the shell closes the connection.
#[derive(Debug, Default)]
pub struct Framer {
    buffer: Vec<u8>,
    messages: u64,
}

/// Larger than any STUN message or channel frame a client has reason to send.
const MAX_FRAME: usize = 4 + 65_535 + 3;

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
        self.buffer.extend_from_slice(bytes);
        let mut frames = Vec::new();
        loop {
            if self.buffer.len() < 4 {
                break;
            }
            let length = u16::from_be_bytes([self.buffer[2], self.buffer[3]]) as usize;
            let total = match self.buffer[0] >> 6 {
                0 => 20 + length,
                // Channel numbers are 0x4000..=0x4FFF.
                1 if self.buffer[0] <= 0x4f => (4 + length).next_multiple_of(4),
                _ => return Err("not TURN: neither a STUN message nor ChannelData"),
            };
            if total > MAX_FRAME {
                return Err("a TURN frame larger than any client sends");
            }
            if self.buffer.len() < total {
                break;
            }
            let mut frame: Vec<u8> = self.buffer.drain(..total).collect();
            if frame[0] >> 6 == 1 {
                frame.truncate(4 + length);
            }
            frames.push(frame);
            self.messages += 1;
        }
        Ok(frames)
    }

    /// Whole messages and frames taken so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }
}

/// Whether the first bytes of a (decrypted) stream are TURN rather than HTTP: a STUN
/// message begins with two zero bits, an HTTP request with an ASCII letter.
pub fn looks_like_turn(first: u8) -> bool {
    first >> 6 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_UNIX: u64 = 1_800_000_000;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn front() -> Front {
        let peers = PeerPolicy {
            allow_private: false,
            own: vec![addr("192.0.2.10:4443")],
            own_ips: vec!["192.0.2.10".parse().unwrap(), "198.51.100.1".parse().unwrap()],
            relayed: Default::default(),
        };
        peers.relayed.write().unwrap().insert(addr("198.51.100.1:61000"));
        Front::new(TransportType::Udp, addr("192.0.2.10:3478"), "confab", TurnSecret::from_bytes([9; 32]), peers, Withdrawn::default())
    }

    fn error_code(reply: &[u8]) -> u16 {
        let msg = Message::from_bytes(reply).unwrap();
        assert!(msg.has_class(MessageClass::Error), "an error response");
        msg.attribute::<ErrorCode>().unwrap().code()
    }

    /// A client's Allocate: the first without credentials, then with the server's realm
    /// and nonce (RFC 8656 long-term authentication).
    fn allocate(username: Option<(&str, &str)>, realm_nonce: Option<(&str, &str)>) -> Vec<u8> {
        let mut msg = Message::builder_request(ALLOCATE, MessageWriteVec::new());
        msg.add_attribute(&RequestedTransport::new(RequestedTransport::UDP)).unwrap();
        if let (Some((user, pass)), Some((realm, nonce))) = (username, realm_nonce) {
            msg.add_attribute(&Username::new(user).unwrap()).unwrap();
            msg.add_attribute(&Realm::new(realm).unwrap()).unwrap();
            msg.add_attribute(&Nonce::new(nonce).unwrap()).unwrap();
            let credentials = LongTermCredentials::new(user.to_string(), pass.to_string()).to_key(realm.to_string());
            msg.add_message_integrity(&credentials.into(), IntegrityAlgorithm::Sha1).unwrap();
        }
        msg.finish()
    }

    /// Runs an Allocate through the front and the shell's part (a relayed address).
    fn exchange(front: &mut Front, request: &[u8], now: Instant) -> Vec<u8> {
        let client = addr("203.0.113.5:50000");
        if let Some(reply) = front.recv(client, front.listen(), request, now, NOW_UNIX) {
            return reply.data;
        }
        let (actions, _) = front.poll(now);
        for action in actions {
            match action {
                Action::Allocate { listen, client, family } => front.allocated(listen, client, family, Ok(addr("192.0.2.10:60000")), now),
                Action::Send(t) => return t.data,
                _ => {}
            }
        }
        let (actions, _) = front.poll(now);
        actions.into_iter().find_map(|a| if let Action::Send(t) = a { Some(t.data) } else { None }).expect("a reply")
    }

    fn realm_nonce(reply: &[u8]) -> (String, String) {
        let msg = Message::from_bytes(reply).unwrap();
        (msg.attribute::<Realm>().unwrap().realm().to_string(), msg.attribute::<Nonce>().unwrap().nonce().to_string())
    }

    #[test]
    fn an_issued_credential_allocates_and_others_get_401() {
        let now = Instant::from_nanos(0);
        let mut f = front();
        let first = exchange(&mut f, &allocate(None, None), now);
        assert_eq!(error_code(&first), ErrorCode::UNAUTHORIZED, "no credentials: the server asks for them");
        let (realm, nonce) = realm_nonce(&first);
        let rn = Some((realm.as_str(), nonce.as_str()));

        let secret = TurnSecret::from_bytes([9; 32]);
        let (user, pass) = secret.issue("room", 7, NOW_UNIX, 600);
        // Signed with our nonce: the front signs it again with the server's, no extra trip.
        let ok = exchange(&mut f, &allocate(Some((&user, &pass)), rn), now);
        let ok = Message::from_bytes(&ok).unwrap();
        assert!(ok.has_class(MessageClass::Success), "a valid credential allocates");
        // The answer is signed with the client's key, which the client checks.
        let key = LongTermCredentials::new(user.clone(), pass.clone()).to_key(realm.clone());
        assert!(ok.validate_integrity(&key.into()).is_ok());
        assert_eq!(f.known_users(), 1);

        let mut f = front();
        let (realm, nonce) = realm_nonce(&exchange(&mut f, &allocate(None, None), now));
        let rn = Some((realm.as_str(), nonce.as_str()));
        let (expired, expired_pass) = secret.issue("room", 7, NOW_UNIX - 700, 600);
        assert_eq!(error_code(&exchange(&mut f, &allocate(Some((&expired, &expired_pass)), rn), now)), ErrorCode::UNAUTHORIZED);
        let forged = TurnSecret::from_bytes([1; 32]).issue("room", 7, NOW_UNIX, 600);
        assert_eq!(error_code(&exchange(&mut f, &allocate(Some((&forged.0, &forged.1)), rn), now)), ErrorCode::UNAUTHORIZED, "a password from another secret");
        assert_eq!(error_code(&exchange(&mut f, &allocate(Some(("alice", "pw")), rn), now)), ErrorCode::UNAUTHORIZED);
        assert_eq!(f.refusals.credentials, 3, "the expired, the forged and the unknown are refused in front");
    }

    #[test]
    fn requests_without_a_valid_integrity_leave_no_state() {
        // Spoofable datagrams: well-formed unexpired usernames this node could have issued,
        // signed with the wrong password or not at all, from many addresses.
        let now = Instant::from_nanos(0);
        let mut f = front();
        let secret = TurnSecret::from_bytes([9; 32]);
        for i in 0..1_000u16 {
            let (user, _) = secret.issue("room", u64::from(i), NOW_UNIX, 600);
            let request = if i % 2 == 0 {
                allocate(Some((&user, "not the password")), Some(("confab", "n")))
            } else {
                let mut msg = Message::builder_request(ALLOCATE, MessageWriteVec::new());
                msg.add_attribute(&RequestedTransport::new(RequestedTransport::UDP)).unwrap();
                msg.add_attribute(&Username::new(&user).unwrap()).unwrap();
                msg.finish()
            };
            let from = SocketAddr::new(std::net::Ipv4Addr::from(0xcb00_7100 + u32::from(i)).into(), 40_000);
            let reply = f.recv(from, f.listen(), &request, now, NOW_UNIX).expect("answered in front");
            assert_eq!(error_code(&reply.data), ErrorCode::UNAUTHORIZED);
            assert!(realm_nonce(&reply.data).1.starts_with("confab"), "the realm and our nonce, to sign with");
        }
        assert_eq!(f.known_users(), 0);
        assert_eq!(f.refusals.credentials, 1_000);
        let (actions, _) = f.poll(now);
        assert!(actions.is_empty(), "{actions:?}");
    }

    #[test]
    fn a_withdrawn_credential_is_refused_and_a_self_test_credential_relays_to_nobody() {
        let now = Instant::from_nanos(0);
        let secret = TurnSecret::from_bytes([9; 32]);
        let mut f = front();
        let (user, pass) = secret.issue("room", 7, NOW_UNIX, 600);
        f.withdrawn.withdraw(std::slice::from_ref(&user), NOW_UNIX);
        let (realm, nonce) = realm_nonce(&exchange(&mut f, &allocate(None, None), now));
        let refused = exchange(&mut f, &allocate(Some((&user, &pass)), Some((&realm, &nonce))), now);
        assert_eq!(error_code(&refused), ErrorCode::UNAUTHORIZED);

        let (probe, probe_pass) = secret.issue("room", PROBE_PARTICIPANT, NOW_UNIX, 60);
        let mut msg = Message::builder_request(CREATE_PERMISSION, MessageWriteVec::new());
        let id = msg.transaction_id();
        msg.add_attribute(&XorPeerAddress::new(addr("198.51.100.7:5000"), id)).unwrap();
        msg.add_attribute(&Username::new(&probe).unwrap()).unwrap();
        msg.add_attribute(&Realm::new(&realm).unwrap()).unwrap();
        msg.add_attribute(&Nonce::new(&nonce).unwrap()).unwrap();
        let key = LongTermCredentials::new(probe.clone(), probe_pass).to_key(realm.clone());
        msg.add_message_integrity(&key.into(), IntegrityAlgorithm::Sha1).unwrap();
        let reply = f.recv(addr("203.0.113.5:50000"), f.listen(), &msg.finish(), now, NOW_UNIX).expect("answered in front");
        assert_eq!(error_code(&reply.data), ErrorCode::FORBIDDEN);
    }

    #[test]
    fn permissions_to_private_or_local_peers_get_403() {
        let mut f = front();
        let peers = [
            ("10.1.2.3:5000", false),
            ("127.0.0.1:5000", false),
            ("169.254.1.1:5000", false),
            // This host: its SFU socket, and nothing else on it (another port, another of
            // its addresses).
            ("192.0.2.10:4443", true),
            ("192.0.2.10:443", false),
            ("198.51.100.1:22", false),
            ("[::ffff:198.51.100.1]:22", false),
            // Another participant's relayed address here.
            ("198.51.100.1:61000", true),
            ("198.51.100.7:5000", true),
        ];
        for (peer, allowed) in peers {
            let mut msg = Message::builder_request(CREATE_PERMISSION, MessageWriteVec::new());
            let id = msg.transaction_id();
            msg.add_attribute(&XorPeerAddress::new(addr(peer), id)).unwrap();
            let request = msg.finish();
            let reply = f.recv(addr("203.0.113.5:50000"), f.listen(), &request, Instant::from_nanos(0), NOW_UNIX);
            match reply {
                Some(t) if !allowed => assert_eq!(error_code(&t.data), ErrorCode::FORBIDDEN, "{peer}"),
                // Allowed peers reach the server, which wants an allocation and credentials.
                Some(t) => assert_ne!(error_code(&t.data), ErrorCode::FORBIDDEN, "{peer}"),
                None => assert!(allowed, "{peer} must be refused"),
            }
        }
        assert_eq!(f.refusals.peers, 6);
    }

    #[test]
    fn the_framer_splits_stun_and_padded_channel_data() {
        let mut stun = vec![0x00, 0x01, 0x00, 0x04];
        stun.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        stun.extend_from_slice(&[0; 12]);
        stun.extend_from_slice(&[1, 2, 3, 4]);
        let channel = [0x40, 0x00, 0x00, 0x03, 7, 8, 9, 0];
        let mut stream = stun.clone();
        stream.extend_from_slice(&channel);
        let mut framer = Framer::default();
        assert!(framer.push(&stream[..10]).unwrap().is_empty());
        let frames = framer.push(&stream[10..]).unwrap();
        assert_eq!(frames, vec![stun, vec![0x40, 0x00, 0x00, 0x03, 7, 8, 9]]);
        assert!(Framer::default().push(b"POST / HTTP/1.1\r\n").is_err());
        assert!(looks_like_turn(0x00) && !looks_like_turn(b'G'));
    }
}

//! A minimal TURN client (RFC 8656 long-term authentication, Allocate and CreatePermission)
//! over UDP, TCP or TLS, to test the node's relay from outside: only what the tests check.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use turn_types::attribute::{RequestedTransport, XorPeerAddress, XorRelayedAddress};
use turn_types::message::{ALLOCATE, CREATE_PERMISSION};
use turn_types::stun::attribute::{ErrorCode, Nonce, Realm, Username};
use turn_types::stun::message::{IntegrityAlgorithm, LongTermCredentials, Message, MessageClass, MessageWriteVec};
use turn_types::stun::prelude::{MessageWrite, MessageWriteExt};

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

enum Link {
    Udp(UdpSocket, SocketAddr),
    Stream(Box<dyn Stream>),
}

/// What the server answered.
#[derive(Debug)]
pub enum Reply {
    Success { relayed: Option<SocketAddr> },
    Error { code: u16, reason: String },
}

pub struct TurnClient {
    link: Link,
    realm_nonce: Option<(String, String)>,
}

impl TurnClient {
    pub async fn udp(server: SocketAddr) -> TurnClient {
        let socket = UdpSocket::bind(SocketAddr::new(server.ip(), 0)).await.unwrap();
        TurnClient { link: Link::Udp(socket, server), realm_nonce: None }
    }

    pub async fn tcp(server: SocketAddr) -> TurnClient {
        let stream = TcpStream::connect(server).await.unwrap_or_else(|e| panic!("TURN over TCP at {server}: {e}"));
        TurnClient { link: Link::Stream(Box::new(stream)), realm_nonce: None }
    }

    /// TLS without checking the certificate (the node's is self-signed), and no ALPN, as
    /// browsers' TURN clients connect.
    pub async fn tls(server: SocketAddr) -> TurnClient {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let config = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::signaling::AcceptAnyCertificate))
            .with_no_client_auth();
        let tcp = TcpStream::connect(server).await.unwrap_or_else(|e| panic!("TURN over TLS at {server}: {e}"));
        let name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake with the node");
        TurnClient { link: Link::Stream(Box::new(stream)), realm_nonce: None }
    }

    async fn exchange(&mut self, request: Vec<u8>) -> Vec<u8> {
        let reply = async {
            match &mut self.link {
                Link::Udp(socket, server) => {
                    // Retransmit as RFC 8489 says, until a reply comes.
                    let mut buf = vec![0u8; 2048];
                    loop {
                        socket.send_to(&request, *server).await.unwrap();
                        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await {
                            return buf[..n].to_vec();
                        }
                    }
                }
                Link::Stream(stream) => {
                    stream.write_all(&request).await.unwrap();
                    let mut header = [0u8; 20];
                    stream.read_exact(&mut header).await.expect("a STUN reply on the stream");
                    let len = u16::from_be_bytes([header[2], header[3]]) as usize;
                    let mut body = vec![0u8; len];
                    stream.read_exact(&mut body).await.unwrap();
                    [header.to_vec(), body].concat()
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), reply).await.expect("the TURN server answers within 10 s")
    }

    fn parse(reply: &[u8]) -> Reply {
        let msg = Message::from_bytes(reply).expect("a STUN message");
        if msg.has_class(MessageClass::Success) {
            let relayed = msg.attribute::<XorRelayedAddress>().ok().map(|a| a.addr(msg.transaction_id()));
            Reply::Success { relayed }
        } else {
            let error = msg.attribute::<ErrorCode>().expect("an error response has an ERROR-CODE");
            Reply::Error { code: error.code(), reason: error.reason().to_string() }
        }
    }

    /// An Allocate with no credentials at all.
    pub async fn allocate_anonymously(&mut self) -> Reply {
        let mut msg = Message::builder_request(ALLOCATE, MessageWriteVec::new());
        msg.add_attribute(&RequestedTransport::new(RequestedTransport::UDP)).unwrap();
        let reply = self.exchange(msg.finish()).await;
        let parsed = Message::from_bytes(&reply).unwrap();
        if let (Ok(realm), Ok(nonce)) = (parsed.attribute::<Realm>(), parsed.attribute::<Nonce>()) {
            self.realm_nonce = Some((realm.realm().to_string(), nonce.nonce().to_string()));
        }
        TurnClient::parse(&reply)
    }

    fn signed(&self, mut msg: MessageWriteVec, username: &str, password: &str) -> Vec<u8> {
        let (realm, nonce) = self.realm_nonce.clone().expect("an anonymous request first, for the realm and nonce");
        msg.add_attribute(&Username::new(username).unwrap()).unwrap();
        msg.add_attribute(&Realm::new(&realm).unwrap()).unwrap();
        msg.add_attribute(&Nonce::new(&nonce).unwrap()).unwrap();
        let key = LongTermCredentials::new(username.to_string(), password.to_string()).to_key(realm);
        msg.add_message_integrity(&key.into(), IntegrityAlgorithm::Sha1).unwrap();
        msg.finish()
    }

    /// Sends the request `build` makes, signed; on `438 Stale Nonce` takes the server's new
    /// nonce and signs again, as every TURN client does.
    async fn signed_exchange(&mut self, build: impl Fn() -> MessageWriteVec, username: &str, password: &str) -> Reply {
        let reply = self.exchange(self.signed(build(), username, password)).await;
        let parsed = Message::from_bytes(&reply).expect("a STUN message");
        if parsed.attribute::<ErrorCode>().is_ok_and(|e| e.code() == ErrorCode::STALE_NONCE) {
            let (realm, nonce) = (parsed.attribute::<Realm>().expect("438 carries the realm"), parsed.attribute::<Nonce>().expect("438 carries a nonce"));
            self.realm_nonce = Some((realm.realm().to_string(), nonce.nonce().to_string()));
            return TurnClient::parse(&self.exchange(self.signed(build(), username, password)).await);
        }
        TurnClient::parse(&reply)
    }

    /// Allocate with credentials (after [`TurnClient::allocate_anonymously`]).
    pub async fn allocate(&mut self, username: &str, password: &str) -> Reply {
        let build = || {
            let mut msg = Message::builder_request(ALLOCATE, MessageWriteVec::new());
            msg.add_attribute(&RequestedTransport::new(RequestedTransport::UDP)).unwrap();
            msg
        };
        self.signed_exchange(build, username, password).await
    }

    pub async fn create_permission(&mut self, peer: SocketAddr, username: &str, password: &str) -> Reply {
        let build = || {
            let mut msg = Message::builder_request(CREATE_PERMISSION, MessageWriteVec::new());
            let id = msg.transaction_id();
            msg.add_attribute(&XorPeerAddress::new(peer, id)).unwrap();
            msg
        };
        self.signed_exchange(build, username, password).await
    }
}

/// The node's own TURN server among the `ice_servers` of `body` (a `welcome` or an invite
/// check): the entry with credentials.
pub fn embedded(body: &serde_json::Value) -> &serde_json::Value {
    let servers = body["ice_servers"].as_array().unwrap_or_else(|| panic!("no ice_servers in {body}"));
    servers.iter().find(|s| s["username"].is_string()).unwrap_or_else(|| panic!("no TURN server in {body}"))
}

/// Takes a seat over raw signaling with the invite in `link`; returns the seat's TURN
/// credentials and URLs from its `welcome`, and the connection (the seat lasts while it is
/// open, or until it leaves).
pub async fn seat_credentials(node: &crate::Node, link: &str, name: &str) -> (String, String, Vec<String>, crate::signaling::Signaling) {
    let (room, invite) = link.rsplit_once("/m/").unwrap().1.split_once('#').unwrap();
    let (signaling, welcome) = crate::signaling::Signaling::join(node, room, invite, name).await;
    let turn = embedded(&welcome);
    let urls = turn["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_string()).collect();
    (turn["username"].as_str().unwrap().to_string(), turn["credential"].as_str().unwrap().to_string(), urls, signaling)
}

/// The probe credentials and TURN URLs the prejoin screen gets with the invite in `link`.
pub async fn credentials(node: &crate::Node, link: &str) -> (String, String, Vec<String>) {
    let (room, invite) = link.rsplit_once("/m/").unwrap().1.split_once('#').unwrap();
    let res = crate::client().post(node.api("/api/invites/check")).json(&serde_json::json!({"room": room, "invite": invite})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    let turn = embedded(&body);
    let urls = turn["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_string()).collect();
    (turn["username"].as_str().unwrap().to_string(), turn["credential"].as_str().unwrap().to_string(), urls)
}

/// The address in the first of `urls` with this scheme and transport
/// (`turn:1.2.3.4:5?transport=udp` → 1.2.3.4:5).
pub fn address(urls: &[String], scheme: &str, transport: &str) -> SocketAddr {
    let url = urls
        .iter()
        .find(|u| u.starts_with(scheme) && u.ends_with(&format!("transport={transport}")))
        .unwrap_or_else(|| panic!("no {scheme} {transport} URL in {urls:?}"));
    url[scheme.len()..].split('?').next().unwrap().parse().unwrap()
}

//! A raw signaling client over a real TLS WebSocket, for protocol tests that need no browser.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::Node;

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Signaling {
    socket: Socket,
}

/// What the node said last: a message, or the close frame that ended the connection.
#[derive(Debug)]
pub enum Heard {
    Message(Value),
    Closed(Option<u16>),
}

impl Signaling {
    pub async fn connect(node: &Node, room: &str) -> Signaling {
        Signaling::connect_to(&node.url, room).await
    }

    /// Connects to the node at `base`, or says why it could not.
    pub async fn try_connect_to(base: &str, room: &str) -> Result<Signaling, String> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let url = format!("{}/ws/{room}", base.replacen("https://", "wss://", 1));
        let tls = rustls::ClientConfig::builder().dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate)).with_no_client_auth();
        match tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, false, Some(Connector::Rustls(Arc::new(tls)))).await {
            Ok((socket, _)) => Ok(Signaling { socket }),
            Err(e) => Err(format!("cannot open {url}: {e}")),
        }
    }

    /// Connects to the node at `base` (`https://HOST:PORT`).
    pub async fn connect_to(base: &str, room: &str) -> Signaling {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let url = format!("{}/ws/{room}", base.replacen("https://", "wss://", 1));
        let tls = rustls::ClientConfig::builder().dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate)).with_no_client_auth();
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, false, Some(Connector::Rustls(Arc::new(tls))))
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
        Signaling { socket }
    }

    /// Connects and joins; returns the client and its welcome.
    pub async fn join(node: &Node, room: &str, invite: &str, name: &str) -> (Signaling, Value) {
        let mut s = Signaling::connect(node, room).await;
        s.send(json!({"type": "join", "v": 1, "invite": invite, "name": name, "audio": true, "video": true})).await;
        let welcome = s.expect("welcome").await;
        (s, welcome)
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.socket.send(Message::text(text)).await.expect("the node closed the connection");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket.send(Message::binary(bytes)).await.expect("the node closed the connection");
    }

    /// The next message or close, waiting at most 10 s.
    pub async fn next(&mut self) -> Heard {
        tokio::time::timeout(Duration::from_secs(10), self.receive()).await.expect("the node said nothing for 10 s")
    }

    /// The next message or close, however long it takes (cancel-safe, for `select!`).
    pub async fn receive(&mut self) -> Heard {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => return Heard::Message(serde_json::from_str(&text).expect("the node sent invalid JSON")),
                Some(Ok(Message::Close(frame))) => return Heard::Closed(frame.map(|f: CloseFrame| f.code.into())),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Heard::Closed(None),
            }
        }
    }

    /// The next message, which must be of type `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        match self.next().await {
            Heard::Message(m) if m["type"] == kind => m,
            other => panic!("expected a {kind} message, got {other:?}"),
        }
    }

    /// Skips messages until one of type `kind` arrives.
    pub async fn wait_for(&mut self, kind: &str) -> Value {
        loop {
            match self.next().await {
                Heard::Message(m) if m["type"] == kind => return m,
                Heard::Message(_) => continue,
                Heard::Closed(code) => panic!("closed ({code:?}) while waiting for a {kind} message"),
            }
        }
    }

    /// Expects the connection to end, and returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        match self.next().await {
            Heard::Closed(code) => code,
            Heard::Message(m) => panic!("expected the connection to close, got {m}"),
        }
    }

    /// Drops the TCP connection without a WebSocket close, as a lost network would.
    pub fn vanish(self) {
        drop(self.socket);
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

#[derive(Debug)]
pub struct AcceptAnyCertificate;

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, _: &[u8], _: &CertificateDer<'_>, _: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(&self, _: &[u8], _: &CertificateDer<'_>, _: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

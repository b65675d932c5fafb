//! HTTPS and TURN over TLS on one TCP port, for networks that let nothing out but TCP to
//! port 443. This listener terminates TLS itself and looks at the first decrypted byte: a
//! STUN message starts with two zero bits, an HTTP request with a letter. TURN streams go to
//! the TURN relay; HTTP streams are copied to the web server on an internal loopback port,
//! and the client's real address is remembered for [`client_of`] (the login throttle).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::turn::front::looks_like_turn;
use crate::turn::service::Turn;

/// Internal connection (its local address, as the web server sees the peer) → client IP.
fn proxied() -> &'static Mutex<HashMap<SocketAddr, IpAddr>> {
    static MAP: std::sync::OnceLock<Mutex<HashMap<SocketAddr, IpAddr>>> = std::sync::OnceLock::new();
    MAP.get_or_init(Default::default)
}

/// The client behind a connection the split made to the web server.
pub fn client_of(peer: SocketAddr) -> Option<IpAddr> {
    if !peer.ip().is_loopback() {
        return None;
    }
    proxied().lock().unwrap_or_else(|p| p.into_inner()).get(&peer).copied()
}

/// Accepts on `public` forever.
pub async fn serve(public: TcpListener, web: SocketAddr, tls: Arc<rustls::ServerConfig>, turn: Turn) {
    let mut config = (*tls).clone();
    // HTTP/1.1 only: the internal hop is plain HTTP/1.1; TURN clients offer no ALPN.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let (stream, client) = match public.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "HTTPS cannot accept a connection");
                tokio::time::sleep(crate::turn::service::ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (acceptor, turn) = (acceptor.clone(), turn.clone());
        tokio::spawn(async move {
            if let Err(why) = split(stream, client, web, acceptor, turn).await {
                tracing::debug!(%client, why, "HTTPS/TURN connection ended early");
            }
        });
    }
}

async fn split(stream: TcpStream, client: SocketAddr, web: SocketAddr, acceptor: tokio_rustls::TlsAcceptor, turn: Turn) -> Result<(), &'static str> {
    let _ = stream.set_nodelay(true);
    let limit = Duration::from_secs(10);
    let mut tls = tokio::time::timeout(limit, acceptor.accept(stream)).await.map_err(|_| "no TLS handshake in time")?.map_err(|_| "TLS handshake failed")?;
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(limit, tls.read(&mut first)).await.map_err(|_| "nothing sent")?.map_err(|_| "read failed")?;
    if n == 0 {
        return Err("closed before sending anything");
    }
    first.truncate(n);
    if looks_like_turn(first[0]) {
        turn.adopt_tls(tls, client, first);
        return Ok(());
    }
    let mut inner = TcpStream::connect(web).await.map_err(|_| "the web server is not reachable")?;
    let _ = inner.set_nodelay(true);
    let local = inner.local_addr().map_err(|_| "no local address")?;
    proxied().lock().unwrap_or_else(|p| p.into_inner()).insert(local, client.ip());
    let copied = async {
        inner.write_all(&first).await?;
        tokio::io::copy_bidirectional(&mut tls, &mut inner).await
    }
    .await;
    proxied().lock().unwrap_or_else(|p| p.into_inner()).remove(&local);
    copied.map(|_| ()).map_err(|_| "connection reset")
}

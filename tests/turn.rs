//! The embedded TURN relay from outside, over UDP, TCP and TLS on the HTTPS port: it relays
//! only for credentials the node issued to an admitted participant and that have not
//! expired, and never to private or local addresses unless told to.

use std::net::SocketAddr;

use confab_tests::meeting::start_meeting;
use confab_tests::turn::{Reply, TurnClient, address, credentials};

fn assert_error(reply: Reply, code: u16, what: &str) -> String {
    match reply {
        Reply::Error { code: c, reason } if c == code => reason,
        other => panic!("{what}: expected error {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn turn_relays_only_for_issued_credentials_and_only_to_public_peers() {
    let (node, link, _) = start_meeting(&["--turn-on-https", "true"], "turnroom").await;
    let (user, pass, urls) = credentials(&node, &link).await;
    println!("TURN URLs: {urls:?}; username {user}");
    let udp = address(&urls, "turn:", "udp");
    let tcp = address(&urls, "turn:", "tcp");
    let tls: SocketAddr = format!("127.0.0.1:{}", node.port()).parse().unwrap();
    assert!(urls.iter().any(|u| u.starts_with("turns:") && u.contains(&format!(":{}?", node.port()))), "TURN/TLS on the HTTPS port is offered: {urls:?}");

    for (transport, mut c) in [("UDP", TurnClient::udp(udp).await), ("TCP", TurnClient::tcp(tcp).await), ("TLS on the HTTPS port", TurnClient::tls(tls).await)] {
        assert_error(c.allocate_anonymously().await, 401, &format!("{transport}: an allocation without credentials"));
        assert_error(c.allocate(&user, "not the password").await, 401, &format!("{transport}: a wrong password"));
        let forged = user.replacen("turnroom", "otherroom", 1);
        assert_error(c.allocate(&forged, &pass).await, 401, &format!("{transport}: a username edited to another room"));
        assert_error(c.allocate("alice", "secret").await, 401, &format!("{transport}: a username the node never issued"));
        let relayed = match c.allocate(&user, &pass).await {
            Reply::Success { relayed: Some(relayed) } => relayed,
            other => panic!("{transport}: an issued credential must allocate, got {other:?}"),
        };
        println!("{transport}: allocated {relayed}");
        for peer in ["127.0.0.1:9", "10.1.2.3:5000", "192.168.1.20:5000", "169.254.0.7:5000", "[::1]:9", "[fd00::1]:5000"] {
            let reason = assert_error(c.create_permission(peer.parse().unwrap(), &user, &pass).await, 403, &format!("{transport}: relaying to {peer}"));
            println!("{transport}: {peer} refused: {reason}");
        }
        // A public peer is permitted (no datagram is sent by a permission).
        assert!(matches!(c.create_permission("198.51.100.7:5000".parse().unwrap(), &user, &pass).await, Reply::Success { .. }), "{transport}: a public peer");
    }
    assert!(node.metric("confab_turn_allocations_total").await >= 3);
}

#[tokio::test]
async fn expired_turn_credentials_are_refused() {
    let (node, link, _) = start_meeting(&["--turn-credential-ttl", "1s"], "expiry").await;
    let (user, pass, urls) = credentials(&node, &link).await;
    let expiry: u64 = user.split(':').next().unwrap().parse().unwrap();
    // Wait for the wall clock to pass the expiry written in the username.
    confab_tests::eventually("the credential to expire", std::time::Duration::from_secs(5), || async {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        (now > expiry).then_some(())
    })
    .await;
    let mut c = TurnClient::udp(address(&urls, "turn:", "udp")).await;
    assert_error(c.allocate_anonymously().await, 401, "no credentials");
    let reason = assert_error(c.allocate(&user, &pass).await, 401, "an expired credential");
    assert!(reason.contains("expired"), "the refusal says why: {reason}");
}

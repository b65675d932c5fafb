//! The embedded TURN relay from outside, over UDP, TCP and TLS on the HTTPS port: it relays
//! only for credentials the node issued to an admitted participant and that have not
//! expired, and never to private or local addresses unless told to.

use std::net::SocketAddr;

use confab_tests::meeting::start_meeting;
use confab_tests::turn::{Reply, TurnClient, address, credentials, seat_credentials};

fn assert_error(reply: Reply, code: u16, what: &str) -> String {
    match reply {
        Reply::Error { code: c, reason } if c == code => reason,
        other => panic!("{what}: expected error {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn turn_relays_only_for_issued_credentials_and_only_to_public_peers() {
    let (node, link, _) = start_meeting(&["--turn-on-https", "true"], "turnroom").await;
    let (user, pass, urls, _seat) = seat_credentials(&node, &link, "Ana").await;
    println!("TURN URLs: {urls:?}; username {user}");
    let udp = address(&urls, "turn:", "udp");
    let tcp = address(&urls, "turn:", "tcp");
    let tls: SocketAddr = node.listen().parse().unwrap();
    assert!(urls.iter().any(|u| u.starts_with("turns:") && u.contains(&format!(":{}?", node.port()))), "TURN/TLS on the HTTPS port is offered: {urls:?}");

    for (transport, mut c) in [("UDP", TurnClient::udp(udp).await), ("TCP", TurnClient::tcp(tcp).await), ("TLS on the HTTPS port", TurnClient::tls(tls).await)]
    {
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

/// The prejoin self-test's credential (anyone with the link may have one) allocates, which
/// is all the self-test needs, and relays to nobody; a seat's credential stops working when
/// the seat ends.
#[tokio::test]
async fn self_test_credentials_relay_to_nobody_and_a_seats_end_withdraws_its_credentials() {
    let (node, link, _) = start_meeting(&[], "withdrawn").await;
    let (probe, probe_pass, urls) = credentials(&node, &link).await;
    let udp = address(&urls, "turn:", "udp");
    let mut c = TurnClient::udp(udp).await;
    assert_error(c.allocate_anonymously().await, 401, "no credentials");
    assert!(matches!(c.allocate(&probe, &probe_pass).await, Reply::Success { relayed: Some(_) }), "the self-test allocates");
    let reason = assert_error(c.create_permission("198.51.100.7:5000".parse().unwrap(), &probe, &probe_pass).await, 403, "a self-test credential");
    println!("self-test credential, CreatePermission: {reason}");

    let (user, pass, _, mut seat) = seat_credentials(&node, &link, "Ana").await;
    let mut c = TurnClient::udp(udp).await;
    assert_error(c.allocate_anonymously().await, 401, "no credentials");
    assert!(matches!(c.allocate(&user, &pass).await, Reply::Success { relayed: Some(_) }), "a seated participant allocates");
    seat.send(serde_json::json!({"type": "leave"})).await;
    let _ = seat.expect_close().await;
    let mut c = TurnClient::udp(udp).await;
    assert_error(c.allocate_anonymously().await, 401, "no credentials");
    let reason = assert_error(c.allocate(&user, &pass).await, 401, "the credential of a seat that ended");
    assert!(reason.contains("withdrawn"), "the refusal says why: {reason}");
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

/// Fifty thousand Allocates from strangers, each with a different well-formed unexpired
/// username and no valid MESSAGE-INTEGRITY, from two hundred source addresses: every one is
/// refused and the node keeps nothing of them (it grew by 105 MiB, for good, when the
/// usernames reached the TURN server before the integrity was checked).
#[tokio::test]
async fn fifty_thousand_unauthenticated_allocates_leave_no_state() {
    use turn_types::attribute::RequestedTransport;
    use turn_types::message::ALLOCATE;
    use turn_types::stun::attribute::Username;
    use turn_types::stun::message::{Message, MessageWriteVec};
    use turn_types::stun::prelude::{MessageWrite, MessageWriteExt};

    let (node, link, _) = start_meeting(&[], "flood").await;
    let (_, _, urls) = credentials(&node, &link).await;
    let server = address(&urls, "turn:", "udp");
    let rss_before = confab_tests::node::resident_kib(node.pid());
    let expiry = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let mut sockets = Vec::new();
    for i in 0..200u32 {
        // 127.0.1.x and ports: distinct sources, all on loopback.
        let ip = std::net::Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, (i % 250 + 1) as u8);
        sockets.push(tokio::net::UdpSocket::bind((ip, 0)).await.unwrap());
    }
    let mut refused = 0;
    let mut buf = vec![0u8; 1500];
    for i in 0..50_000u32 {
        let mut msg = Message::builder_request(ALLOCATE, MessageWriteVec::new());
        msg.add_attribute(&RequestedTransport::new(RequestedTransport::UDP)).unwrap();
        msg.add_attribute(&Username::new(&format!("{expiry}:flood:{}", 1_000_000 + i)).unwrap()).unwrap();
        let socket = &sockets[i as usize % sockets.len()];
        socket.send_to(&msg.finish(), server).await.unwrap();
        // Take the answers as they come, so that neither side's buffers overflow.
        if i % sockets.len() as u32 == sockets.len() as u32 - 1 {
            for s in &sockets {
                while let Ok(Ok(n)) = tokio::time::timeout(std::time::Duration::from_millis(200), s.recv(&mut buf)).await {
                    let reply = Message::from_bytes(&buf[..n]).unwrap();
                    if reply.attribute::<turn_types::stun::attribute::ErrorCode>().is_ok_and(|e| e.code() == 401) {
                        refused += 1;
                        break;
                    }
                }
            }
        }
    }
    let rss_after = confab_tests::node::resident_kib(node.pid());
    let grown = rss_after.saturating_sub(rss_before);
    println!("50,000 unauthenticated Allocates: {refused} answers of 401 taken; resident memory {rss_before} KiB -> {rss_after} KiB (+{grown} KiB)");
    assert!(refused >= 49_000, "{refused} of 50,000 refused");
    assert!(grown < 32 * 1024, "the node grew by {grown} KiB");
    let rejected = node.metric("confab_turn_refused_total{reason=\"credentials\"}").await;
    assert!(rejected >= 50_000, "{rejected} refusals counted");
}

//! What a hostile account holder or a stranger could do to others over HTTP, each found by
//! a security review (issue 13) and each refused here against a real node.

use confab_keys::{AccountKey, Invite, Role};
use confab_tests::Node;
use confab_tests::node::{check_invite, client, login, make_invite, register_invite};

/// Invite ids are chosen by whoever signs an invite. Mallory signs invites of her own whose
/// ids are Vera's certificate id and Vera's invite id (both are inside Vera's link),
/// registers and revokes them: Vera's link still seats people.
#[tokio::test]
async fn revoking_an_invite_that_reuses_someone_elses_ids_voids_nothing_of_theirs() {
    let node = Node::start().await;
    let admin = node.admin().await;
    let vera = node.account(&admin, "vera").await;
    let mallory = node.account(&admin, "mallory").await;
    let link = make_invite(&vera, &node, &AccountKey::from_seed([1; 32]), "vera-room", 3600).await;
    let invite = Invite::from_text(&link).unwrap();
    let stolen = [invite.certificate().body().id, invite.body().id];

    let key = AccountKey::from_seed([2; 32]);
    for id in stolen {
        let (_, res) = register_invite(&mallory, &node, &key, "mallory-room", 3600, Role::Guest, id).await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        let res = mallory.post(node.api(&format!("/api/invites/{}/revoke", id.to_hex()))).json(&serde_json::json!({})).send().await.unwrap();
        assert!(res.status().is_success(), "revoke: {}", res.text().await.unwrap());
    }
    assert_eq!(check_invite(&node, "vera-room", &link).await, (200, "ok".into()));
    // Vera's own revocation still works, and only for her link.
    let res = vera.post(node.api(&format!("/api/invites/{}/revoke", stolen[1].to_hex()))).json(&serde_json::json!({})).send().await.unwrap();
    assert!(res.status().is_success());
    assert_eq!(check_invite(&node, "vera-room", &link).await.1, "capability_revoked");
}

/// The documented limit is five wrong passwords per account: forty sent at the same instant
/// must not all be checked.
#[tokio::test]
async fn forty_concurrent_wrong_logins_get_at_most_five_answers() {
    let node = Node::start().await;
    let admin = node.admin().await;
    let _ = node.account(&admin, "dana").await;
    let attempts = (0..40).map(|_| async {
        let c = client();
        login(&c, &node, "dana", "wrong password").await.status().as_u16()
    });
    let statuses = futures::future::join_all(attempts).await;
    let wrong = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(wrong <= 5 && wrong + throttled == 40, "{statuses:?}");
}

/// HEAD is answered like GET without a body; every answer asks for HTTPS from now on; the
/// session cookie is one only this host over HTTPS can set.
#[tokio::test]
async fn head_hsts_and_a_host_only_session_cookie() {
    let node = Node::start().await;
    let c = client();
    for path in ["/", "/login", "/healthz", "/static/js/api.js"] {
        let res = c.head(node.api(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "HEAD {path}");
        assert_eq!(res.headers()["strict-transport-security"], "max-age=31536000", "HEAD {path}");
        // A node on its own lets its pages connect to itself only.
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("connect-src 'self';") && csp.contains("script-src 'self';") && csp.contains("frame-ancestors 'none'"), "HEAD {path}: {csp}");
        assert!(res.bytes().await.unwrap().is_empty(), "HEAD {path} has a body");
    }
    let token = node.first_token.clone().unwrap();
    let res = confab_tests::node::signup(&c, &node, "admin", "admin password", &token).await;
    assert_eq!(res.status(), 201);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("__Host-confab_session=") && cookie.contains("Path=/") && cookie.contains("Secure") && !cookie.contains("Domain"), "{cookie}");
}

/// Sets this process's soft limit on open files (children inherit it); returns the old one.
fn set_soft_open_files(soft: u64) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let old = limit.rlim_cur;
    limit.rlim_cur = soft.min(limit.rlim_max);
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0, "setrlimit");
    old
}

/// 1,200 idle TCP connections to TURN and 400 to the SFU's ICE-TCP port, from a node started
/// under the usual soft limit of 1,024 open files: `/healthz` still answers at once, and the
/// node closes every idle connection by itself.
#[tokio::test]
async fn idle_connections_to_turn_and_ice_tcp_leave_the_node_answering_and_are_closed() {
    let _heavy = confab_tests::browser::exclusive().await;
    use tokio::io::AsyncReadExt;
    let hard = {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        limit.rlim_max
    };
    assert!(hard >= 4096, "this test needs a hard limit on open files of at least 4096 (it is {hard})");
    // A port free for both UDP and TCP: the relay's shard, and its ICE-TCP listener.
    let port = loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            break port;
        }
    };
    let old = set_soft_open_files(1024);
    let relay = format!("127.0.0.1:{port}");
    let (node, link, _) = confab_tests::meeting::start_meeting(&["--relay-listen", &relay, "--relay-shards", "1"], "idle").await;
    set_soft_open_files(old.max(4096));
    let (_, _, urls) = confab_tests::turn::credentials(&node, &link).await;
    let turn = confab_tests::turn::address(&urls, "turn:", "tcp");

    let started = std::time::Instant::now();
    let mut connections = Vec::new();
    for i in 0..1_600 {
        let to: std::net::SocketAddr = if i < 1_200 { turn } else { relay.parse().unwrap() };
        connections.push(tokio::net::TcpStream::connect(to).await.unwrap_or_else(|e| panic!("connection {i} to {to}: {e}")));
    }
    let asked = std::time::Instant::now();
    let res = client().get(node.api("/healthz")).send().await.unwrap();
    let answered = asked.elapsed();
    println!("1,600 idle connections opened in {:?}; /healthz answered {} in {answered:?}", started.elapsed(), res.status());
    assert_eq!(res.status(), 200);
    assert!(answered < std::time::Duration::from_secs(2), "/healthz took {answered:?}");

    // The node closes them: each read ends (end of stream or reset) without our doing.
    let mut buf = [0u8; 64];
    for (i, mut c) in connections.into_iter().enumerate() {
        let ended = tokio::time::timeout(std::time::Duration::from_secs(30), c.read(&mut buf)).await;
        assert!(matches!(ended, Ok(Ok(0)) | Ok(Err(_))), "connection {i} is still open: {ended:?}");
    }
    println!("all closed by the node {:?} after they opened", started.elapsed());
}

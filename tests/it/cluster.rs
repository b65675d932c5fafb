//! Several nodes as one cluster, each in its own network namespace: the membership admits
//! members only and a new epoch cuts a removed node off; what admission needs is replicated,
//! so an invite made on the accounts node admits a seat on every member, and a revocation
//! holds everywhere, also after a restart.

use std::time::{Duration, Instant};

use confab_tests::cluster::Cluster;
use confab_tests::eventually_or;
use confab_tests::meeting::{Participant, each_receives_the_others};
use confab_tests::native::NativeParticipant;
use confab_tests::node::{check_invite, make_invite};
use confab_tests::signaling::{Heard, Signaling};
use serde_json::{Value, json};

fn id(welcome: &Value) -> String {
    welcome["you"]["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_connect_an_outsider_cannot_and_a_removed_node_is_cut_off() {
    // Nodes 1-3 are members; node 4 has the membership and dials them, but is not in it.
    let mut cluster = Cluster::prepare(4, 3);
    cluster.start_all().await;
    cluster.wait_formed(3).await;
    // The outsider dialled every member and each refused it.
    for i in 0..3 {
        let node = cluster.node(i);
        eventually_or(&format!("node {} to refuse the outsider", i + 1), Duration::from_secs(20), || async move {
            let refused = node.metric("confab_cluster_refused_connections_total").await;
            if refused > 0 { Ok(()) } else { Err("no refusal yet".to_string()) }
        })
        .await;
        assert_eq!(node.metric("confab_cluster_peers").await, 2, "node {} let the outsider in", i + 1);
    }
    assert_eq!(cluster.node(3).metric("confab_cluster_peers").await, 0, "the outsider is connected to nobody");
    assert_eq!(cluster.node(0).metric("confab_cluster_epoch").await, 4);
    // The media cascade's links (QUIC on the next port): one to each other member, none to
    // or from the outsider, which every member refuses there too.
    for i in 0..3 {
        let node = cluster.node(i);
        eventually_or(&format!("node {}'s cascade links", i + 1), Duration::from_secs(20), || async move {
            let (links, refused) = (node.metric("confab_cascade_links").await, node.metric("confab_cascade_refused_total").await);
            if links == 2 && refused > 0 { Ok(()) } else { Err(format!("{links} links, {refused} refused")) }
        })
        .await;
    }
    assert_eq!(cluster.node(3).metric("confab_cascade_links").await, 0, "the outsider has no cascade link");

    // The operator removes node 3 and gives the new epoch to node 1 only: gossip carries it
    // to node 2, and both cut node 3 off.
    cluster.remove(2);
    let start = Instant::now();
    cluster.publish_to(0);
    cluster.wait_peers(2, 0, Duration::from_secs(10)).await;
    let cut_off = start.elapsed();
    cluster.wait_peers(0, 1, Duration::from_secs(5)).await;
    cluster.wait_peers(1, 1, Duration::from_secs(5)).await;
    let node3 = cluster.node(2);
    eventually_or("node 3's cascade links to drop", Duration::from_secs(2) - start.elapsed().min(Duration::from_secs(2)), || async move {
        let links = node3.metric("confab_cascade_links").await;
        if links == 0 { Ok(()) } else { Err(format!("{links} links")) }
    })
    .await;
    let cascade_cut_off = start.elapsed();
    assert_eq!(cluster.node(1).metric("confab_cluster_epoch").await, 5, "node 2 follows the epoch gossip brought");
    println!(
        "a node removed in a new epoch was disconnected {} ms (control plane) and {} ms (cascade) after the operator's file changed",
        cut_off.as_millis(),
        cascade_cut_off.as_millis()
    );
    assert!(cut_off <= Duration::from_secs(2), "a removed node must be cut off within 2 s, took {cut_off:?}");
    // The removed node stays out: after its next dials it is still connected to nobody.
    let refused_before = cluster.node(0).metric("confab_cluster_refused_connections_total").await;
    let node1 = cluster.node(0);
    eventually_or("node 1 to refuse the removed node again", Duration::from_secs(20), || async move {
        let refused = node1.metric("confab_cluster_refused_connections_total").await;
        if refused > refused_before { Ok(()) } else { Err(format!("{refused} refusals")) }
    })
    .await;
    assert_eq!(cluster.node(2).metric("confab_cluster_peers").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_made_on_the_accounts_node_admits_everywhere_and_its_revocation_holds_everywhere() {
    let mut cluster = Cluster::prepare(3, 3);
    cluster.start_all().await;
    cluster.wait_formed(3).await;
    let first = cluster.node(0);
    assert!(first.first_token.is_some(), "the accounts node prints the first-start token");
    assert!(cluster.node(1).first_token.is_none() && cluster.node(2).first_token.is_none(), "media nodes hold no accounts of their own");
    let admin = first.admin().await;
    let key = confab_keys::AccountKey::from_seed([3; 32]);
    let invite = make_invite(&admin, first, &key, "spanning", 3600).await;

    // The meeting, the certificate and the owner reach every member.
    for i in 1..3 {
        let node = cluster.node(i);
        let invite = invite.clone();
        let seen = eventually_or(&format!("node {} to admit the invite", i + 1), Duration::from_secs(15), || {
            let invite = invite.clone();
            async move {
                let (status, code) = check_invite(node, "spanning", &invite).await;
                if status == 200 { Ok(code) } else { Err(format!("{status} {code}")) }
            }
        })
        .await;
        assert_eq!(seen, "ok");
    }

    // Account pages and calls on another node are sent to the accounts node (307 keeps a
    // POST a POST); meeting links and the invite check are answered where they are asked.
    let no_redirects = reqwest::Client::builder().danger_accept_invalid_certs(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let node2 = cluster.node(1);
    let location = |res: &reqwest::Response| res.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let res = no_redirects.get(node2.api("/create?token=x")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), location(&res)), (307, first.api("/create?token=x")));
    let res = no_redirects.post(node2.api("/api/login")).json(&serde_json::json!({"username": "admin", "password": "admin password"})).send().await.unwrap();
    assert_eq!((res.status().as_u16(), location(&res)), (307, first.api("/api/login")));
    // However the path is spelled: a mirror never answers an account route itself (it
    // once ran `/api/%6Cogin` against its copy of the accounts and handed out a session).
    for (method, route) in [
        ("POST", "/api/%6Cogin"),
        ("POST", "/api/%6c%6f%67%69%6e"),
        ("POST", "/%61pi/signup"),
        ("POST", "/api/%73ignup"),
        ("GET", "/api/%6De"),
        ("POST", "/api/%6Cogout"),
        ("POST", "/api/%63ertificate"),
        ("GET", "/api/%6Deetings"),
        ("POST", "/api/meetings/spanning/%64elete"),
        ("GET", "/api/%69nvites"),
        ("POST", "/api/invites/00/%72evoke"),
        ("GET", "/api/%74okens"),
        ("POST", "/api/tokens/1/%72evoke"),
        ("GET", "/api/%61ccounts"),
        ("POST", "/api/accounts/admin/%64isable"),
        ("GET", "/%63reate"),
        ("GET", "/%6Cogin"),
        ("GET", "/%61dmin"),
    ] {
        let body = serde_json::json!({"username": "admin", "password": "admin password", "token": "x"});
        let req = if method == "POST" { no_redirects.post(node2.api(route)).json(&body) } else { no_redirects.get(node2.api(route)) };
        let res = req.send().await.unwrap();
        assert_eq!((res.status().as_u16(), location(&res)), (307, first.api(route)), "{method} {route} on a mirror");
    }
    let res = no_redirects.get(node2.api("/m/spanning")).send().await.unwrap();
    assert_eq!(res.status(), 200, "a meeting link is served by every node");
    // Followed, the redirect logs in on the accounts node.
    let res = confab_tests::client()
        .post(node2.api("/api/login"))
        .json(&serde_json::json!({"username": "admin", "password": "admin password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    // The owner revokes it on the accounts node: every member refuses it.
    let id = confab_keys::Invite::from_text(&invite).unwrap().body().id.to_hex();
    let res = admin.post(first.api(&format!("/api/invites/{id}/revoke"))).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    for i in 1..3 {
        let node = cluster.node(i);
        let invite = invite.clone();
        eventually_or(&format!("node {} to refuse the revoked invite", i + 1), Duration::from_secs(15), || {
            let invite = invite.clone();
            async move {
                let (status, code) = check_invite(node, "spanning", &invite).await;
                if code == "capability_revoked" { Ok(()) } else { Err(format!("{status} {code}")) }
            }
        })
        .await;
    }

    // Node 3 restarts with the accounts node down: it still refuses the invite (its own
    // copy), and still admits a second invite made before.
    let second = make_invite(&admin, first, &key, "spanning", 3600).await;
    let node3 = cluster.node(2);
    let second_text = second.clone();
    eventually_or("node 3 to admit the second invite", Duration::from_secs(15), || {
        let second = second_text.clone();
        async move {
            let (status, code) = check_invite(node3, "spanning", &second).await;
            if status == 200 { Ok(()) } else { Err(format!("{status} {code}")) }
        }
    })
    .await;
    cluster.members[0].node.as_mut().unwrap().kill();
    cluster.members[2].node.as_mut().unwrap().kill();
    cluster.members[2].node = None;
    cluster.start(2, &[]).await;
    assert_eq!(check_invite(cluster.node(2), "spanning", &invite).await.1, "capability_revoked");
    assert_eq!(check_invite(cluster.node(2), "spanning", &second).await.0, 200);
}

/// One link, three nodes: whichever node a participant opens it on, they are in the same
/// meeting, run by its home node; the others relay their signaling there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_link_opened_on_any_node_joins_the_same_meeting() {
    let mut cluster = Cluster::prepare(3, 3);
    cluster.start_all().await;
    cluster.wait_formed(3).await;
    let admin = cluster.node(0).admin().await;
    let invite = cluster.invite(&admin, "spanning", &[0, 1, 2]).await;

    let (mut ana, welcome_a) = Signaling::join(cluster.node(0), "spanning", &invite, "Ana").await;
    let (mut bo, welcome_b) = Signaling::join(cluster.node(1), "spanning", &invite, "Bo").await;
    let (mut cy, welcome_c) = Signaling::join(cluster.node(2), "spanning", &invite, "Cy").await;
    let names = |w: &Value| w["participants"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&welcome_a), Vec::<String>::new());
    assert_eq!(names(&welcome_b), vec!["Ana"]);
    let mut seen_by_cy = names(&welcome_c);
    seen_by_cy.sort();
    assert_eq!(seen_by_cy, vec!["Ana", "Bo"]);
    assert_eq!(ana.wait_for("joined").await["participant"]["name"], "Bo");
    assert_eq!(ana.wait_for("joined").await["participant"]["name"], "Cy");
    assert_eq!(bo.wait_for("joined").await["participant"]["name"], "Cy");
    // Each node says what it carries: three seats on the home, one socket on each node.
    let (node1, admin_ref) = (cluster.node(0), &admin);
    eventually_or("/api/cluster to show the load", Duration::from_secs(10), || async move {
        let status: Value = admin_ref.get(node1.api("/api/cluster")).send().await.unwrap().json().await.unwrap();
        let members = status["members"].as_array().cloned().unwrap_or_default();
        let seats: Vec<u64> = members.iter().map(|m| m["seats"].as_u64().unwrap_or(99)).collect();
        let sockets: Vec<u64> = members.iter().map(|m| m["sockets"].as_u64().unwrap_or(99)).collect();
        let mut sorted = seats.clone();
        sorted.sort();
        if sorted == [0, 0, 3] && sockets == [1, 1, 1] { Ok(()) } else { Err(format!("seats {seats:?}, sockets {sockets:?}")) }
    })
    .await;

    // Signaling between participants on different nodes, in order.
    for n in 0..5 {
        cy.send(
            json!({"type": "signal", "to": id(&welcome_a), "candidate": {"candidate": format!("candidate:{n} 1 udp 1 10.0.0.1 {n} typ host"), "sdpMid": "0"}}),
        )
        .await;
    }
    for n in 0..5 {
        let relayed = ana.wait_for("signal").await;
        assert_eq!(relayed["from"], id(&welcome_c).as_str());
        assert!(relayed["candidate"]["candidate"].as_str().unwrap().starts_with(&format!("candidate:{n} ")), "out of order: {relayed}");
    }
    bo.send(json!({"type": "chat", "text": "hello from node 2"})).await;
    for s in [&mut ana, &mut cy] {
        assert_eq!(s.wait_for("chat").await["text"], "hello from node 2");
    }
    // A direct reply comes back through the relaying node too.
    cy.send(json!({"type": "ping"})).await;
    cy.wait_for("pong").await;

    // Leaving from a relaying node is heard everywhere, and the socket closes normally.
    cy.send(json!({"type": "leave"})).await;
    loop {
        match cy.next().await {
            Heard::Closed(code) => {
                assert_eq!(code, Some(1000));
                break;
            }
            Heard::Message(_) => continue,
        }
    }
    assert_eq!(ana.wait_for("left").await["participant"], id(&welcome_c).as_str());
    assert_eq!(bo.wait_for("left").await["participant"], id(&welcome_c).as_str());
}

/// Waits until the page has been seated `times` times (a reconnection that took a seat),
/// then takes its participant id again.
async fn seated_again(p: &mut Participant, times: u64) -> String {
    let page = &p.browser;
    eventually_or(&format!("{} to be seated again", p.name), Duration::from_secs(20), || async move {
        let welcomes = page.eval("return window.confabCall.signaling.welcomes").await.as_u64();
        if welcomes >= Some(times) {
            return Ok(());
        }
        let log = page.eval("return (window.confabLog ?? []).slice(-12).join('\\n')").await;
        Err(format!("{welcomes:?} welcomes; the page's log ends:\n{}", log.as_str().unwrap_or_default()))
    })
    .await;
    p.wait_seated().await
}

/// Waits until `p`'s SFU connection decodes `other`'s video: a connection made since
/// [`Participant::mark_sfu_link_old`] (a page publishes again after a move), whose count of
/// their decoded frames rises between two looks 100 ms apart.
async fn decoding_through_the_sfu(p: &Participant, other: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut before = p.sfu_frames_decoded().await.get(other).copied();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = p.sfu_frames_decoded().await.get(other).copied();
        if let (Some(b), Some(n)) = (before, now)
            && n > b
        {
            return;
        }
        assert!(Instant::now() < deadline, "{} does not decode {other}'s video through the SFU (frames: {now:?}):\n{}", p.name, p.log().await);
        before = now;
    }
}

/// kill -9 of a participant's node (their edge), then of the meeting's home: each time the
/// participants are back in the meeting and receive each other's audio and video within
/// 10 s, with no action from them. The meeting is in SFU mode: each one's media ends at
/// their edge and crosses the cascade. A page whose node is gone reconnects through another
/// node the `nodes` message named, resumes its seat at the home and publishes at its new
/// edge; when the home goes, the nodes close their sockets (1012), the pages reconnect, and
/// the meeting has a new home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_are_back_within_10_s_when_their_node_or_their_meetings_home_dies() {
    let _browsers = confab_tests::browser::exclusive().await;
    let mut cluster = Cluster::prepare(3, 3);
    for i in 0..3 {
        cluster.start(i, &["--mesh-threshold", "0"]).await;
    }
    cluster.wait_formed(3).await;
    let admin = cluster.node(0).admin().await;
    let status: Value = admin.get(cluster.node(0).api("/api/cluster")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["epoch"], 4);
    assert_eq!(status["members"].as_array().unwrap().iter().filter(|m| m["connected"] == true).count(), 3, "{status}");
    let room = cluster.room_homed_at(&admin, "failover", &cluster.members[2].key).await;
    let invite = cluster.invite(&admin, &room, &[0, 1]).await;
    // The meeting page lets its socket go to the other nodes too (`connect-src`).
    let page_url = cluster.node(0).api(&format!("/m/{room}"));
    let others: Vec<String> = (1..3).map(|i| cluster.node(i).url.replacen("https://", "wss://", 1)).collect();
    eventually_or("node 1's pages to allow sockets to the other nodes", Duration::from_secs(10), || {
        let (page_url, others) = (page_url.clone(), others.clone());
        async move {
            let res = confab_tests::client().get(&page_url).send().await.unwrap();
            let csp = res.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let connect = csp.split(';').find(|d| d.trim().starts_with("connect-src")).unwrap_or_default().to_string();
            if others.iter().all(|o| connect.split_whitespace().any(|s| s == o)) { Ok(()) } else { Err(csp) }
        }
    })
    .await;
    let (link_a, link_b) = (format!("{}/m/{room}#{invite}", cluster.node(0).url), format!("{}/m/{room}#{invite}", cluster.node(1).url));
    let (a, b) = tokio::join!(Participant::chromium(&link_a, "Ana"), Participant::chromium(&link_b, "Bo"));
    let (mut a, mut b) = (a, b);
    let ana = a.join().await;
    b.join().await;
    each_receives_the_others(&[&a, &b]).await;
    assert_eq!(cluster.node(2).metric("confab_participants").await, 2, "node 3 runs the meeting");
    assert_eq!(cluster.node(0).metric("confab_participants").await, 0, "node 1 only relays Ana's signaling");
    let relayed: Vec<u64> = futures::future::join_all((0..3).map(|i| cluster.node(i).metric_sum("confab_relay_shard_participants"))).await;
    assert_eq!(relayed, vec![1, 1, 0], "each one's media ends at their edge");

    // Ana's node dies: her page comes back through another node, to the same seat, and
    // publishes there (a new SFU link); Bo's link stays and carries her again.
    a.mark_sfu_link_old().await;
    let killed = Instant::now();
    cluster.members[0].node.as_mut().unwrap().kill();
    assert_eq!(seated_again(&mut a, 2).await, ana, "Ana resumed her seat");
    tokio::join!(decoding_through_the_sfu(&a, b.id()), decoding_through_the_sfu(&b, a.id()));
    let back = killed.elapsed();
    println!("after kill -9 of Ana's node, she was back in her seat, receiving media, {} ms later", back.as_millis());
    assert!(back <= Duration::from_secs(10), "participants must be back within 10 s of their node dying, took {back:?}");
    assert!(a.log().await.contains("signaling: trying wss://"), "Ana's page went through another node:\n{}", a.log().await);
    assert_eq!(cluster.node(2).metric("confab_participants").await, 2, "no ghost seat: Ana's is the one she had");

    // The meeting's home dies: both come back, and node 2, the last one, runs the meeting.
    a.mark_sfu_link_old().await;
    b.mark_sfu_link_old().await;
    let killed = Instant::now();
    cluster.members[2].node.as_mut().unwrap().kill();
    let script = "return window.confabCall.signaling.welcomes";
    let (wa, wb) = (a.browser.eval(script).await.as_u64().unwrap(), b.browser.eval(script).await.as_u64().unwrap());
    seated_again(&mut a, wa + 1).await;
    seated_again(&mut b, wb + 1).await;
    tokio::join!(decoding_through_the_sfu(&a, b.id()), decoding_through_the_sfu(&b, a.id()));
    let back = killed.elapsed();
    println!("after kill -9 of the meeting's home, both participants received media again {} ms later", back.as_millis());
    assert_eq!(cluster.node(1).metric("confab_participants").await, 2, "node 2 holds both seats");
    assert!(back <= Duration::from_secs(10), "participants must be back within 10 s of their meeting's home dying, took {back:?}");
}

/// A protocol client that does what the web client does: when its node closes the socket as
/// "moved" (1012) it comes back to the same node; when a node refuses it (full, or being
/// drained: 1013) or cannot be reached, it tries the next of `bases`. Each socket's node goes
/// to `on`.
fn rejoining(bases: Vec<String>, room: String, invite: String, name: &'static str) -> (tokio::task::JoinHandle<()>, tokio::sync::watch::Receiver<String>) {
    let (on_tx, on) = tokio::sync::watch::channel(String::new());
    let task = tokio::spawn(async move {
        let mut at = 0;
        loop {
            let base = bases[at % bases.len()].clone();
            let Ok(mut s) = Signaling::try_connect_to(&base, &room).await else {
                at += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            };
            s.send(json!({"type": "join", "v": 1, "invite": invite, "name": name, "audio": true, "video": true})).await;
            let code = loop {
                match s.receive().await {
                    Heard::Message(m) if m["type"] == "welcome" => on_tx.send_replace(base.clone()),
                    Heard::Message(_) => continue,
                    Heard::Closed(code) => break code,
                };
            };
            match code {
                Some(1012) => {}
                Some(1013) => at += 1,
                other => panic!("{name}'s socket closed for another reason than a move or a refusal: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    (task, on)
}

/// Cut node 1 off from node 2 (node 3 still reaches both) and heal: during the cut the
/// meeting lives where both participants' nodes reach (node 3), after healing it has one
/// home again within 5 s; an invite revoked on the accounts node during the cut is refused
/// by node 2 after healing, and after node 2 restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_into_one_home_per_meeting_and_keeps_what_was_revoked() {
    let mut cluster = Cluster::prepare(3, 3);
    cluster.start_all().await;
    cluster.wait_formed(3).await;
    let admin = cluster.node(0).admin().await;
    let room = cluster.room_homed_at(&admin, "partition", &cluster.members[0].key).await;
    let invite = cluster.invite(&admin, &room, &[0, 1]).await;
    let doomed = cluster.invite(&admin, &room, &[0, 1, 2]).await;
    let (ana, _) = rejoining(vec![cluster.node(0).url.clone()], room.clone(), invite.clone(), "Ana");
    let (bo, _) = rejoining(vec![cluster.node(1).url.clone()], room.clone(), invite.clone(), "Bo");
    cluster.wait_seats(&[2, 0, 0], "both seated at node 1", Duration::from_secs(10)).await;

    cluster.members[0].ns.cut_off_from(&cluster.members[1].ns, true);
    for i in 0..2 {
        cluster.wait_peers(i, 1, Duration::from_secs(10)).await;
    }
    // The only node both sides reach runs the meeting.
    cluster.wait_seats(&[0, 0, 2], "the meeting to move to node 3", Duration::from_secs(15)).await;
    let id = confab_keys::Invite::from_text(&doomed).unwrap().body().id.to_hex();
    let res = admin.post(cluster.node(0).api(&format!("/api/invites/{id}/revoke"))).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(check_invite(cluster.node(1), &room, &doomed).await.0, 200, "node 2 cannot have heard yet");

    let healed = Instant::now();
    cluster.members[0].ns.cut_off_from(&cluster.members[1].ns, false);
    cluster.wait_seats(&[2, 0, 0], "one home again, node 1", Duration::from_secs(15)).await;
    let one_home = healed.elapsed();
    println!("after healing, the meeting had one home again in {} ms", one_home.as_millis());
    assert!(one_home <= Duration::from_secs(5), "one home per meeting within 5 s of healing, took {one_home:?}");
    let node2 = cluster.node(1);
    let doomed_text = doomed.clone();
    let room_name = room.clone();
    eventually_or("node 2 to refuse the invite revoked during the cut", Duration::from_secs(15), || {
        let (doomed, room) = (doomed_text.clone(), room_name.clone());
        async move {
            let (status, code) = check_invite(node2, &room, &doomed).await;
            if code == "capability_revoked" { Ok(()) } else { Err(format!("{status} {code}")) }
        }
    })
    .await;
    ana.abort();
    bo.abort();
    cluster.members[1].node.as_mut().unwrap().kill();
    cluster.members[1].node = None;
    cluster.start(1, &[]).await;
    assert_eq!(check_invite(cluster.node(1), &room, &doomed).await.1, "capability_revoked", "after a restart too");
}

/// `confab drain` on the node that runs a meeting and holds a participant's socket: the
/// meeting moves to another home, the participant goes through another node, newcomers are
/// sent elsewhere and its /healthz says 503; `--undo` takes it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_node_hands_its_meetings_and_participants_to_the_others() {
    let mut cluster = Cluster::prepare(3, 3);
    cluster.start_all().await;
    cluster.wait_formed(3).await;
    let admin = cluster.node(0).admin().await;
    let room = cluster.room_homed_at(&admin, "drain", &cluster.members[2].key).await;
    let invite = cluster.invite(&admin, &room, &[0, 1, 2]).await;
    let urls: Vec<String> = (0..3).map(|i| cluster.node(i).url.clone()).collect();
    let (ana, ana_on) = rejoining(vec![urls[2].clone(), urls[0].clone(), urls[1].clone()], room.clone(), invite.clone(), "Ana");
    let (bo, _) = rejoining(vec![urls[0].clone()], room.clone(), invite.clone(), "Bo");
    cluster.wait_seats(&[0, 0, 2], "both seated at node 3", Duration::from_secs(10)).await;
    assert_eq!(*ana_on.borrow(), urls[2], "Ana's socket is on node 3");

    let drained = Instant::now();
    let out = cluster.node(2).cli(&["drain"]);
    assert!(out.contains("Draining"), "{out}");
    eventually_or("the meeting to leave node 3", Duration::from_secs(10), || async {
        let s = cluster.seats().await;
        if s[2] == 0 && s[0] + s[1] == 2 { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    println!("a drained node's meeting moved in {} ms", drained.elapsed().as_millis());
    let ana_now = ana_on.clone();
    eventually_or("Ana to go through another node", Duration::from_secs(10), || {
        let on = ana_now.borrow().clone();
        let node3 = urls[2].clone();
        async move { if !on.is_empty() && on != node3 { Ok(()) } else { Err(on) } }
    })
    .await;
    let health = confab_tests::client().get(cluster.node(2).api("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "draining");
    assert_eq!(cluster.node(2).metric("confab_cluster_draining").await, 1);
    let mut newcomer = Signaling::connect(cluster.node(2), &room).await;
    newcomer.send(json!({"type": "join", "v": 1, "invite": invite, "name": "Cy", "audio": true, "video": true})).await;
    assert_eq!(newcomer.expect("error").await["code"], "node_draining");
    assert_eq!(newcomer.expect_close().await, Some(1013));

    // Back in service: the meeting's home is node 3 again, and the meeting goes back there.
    cluster.node(2).cli(&["drain", "--undo"]);
    cluster.wait_seats(&[0, 0, 2], "the meeting back on node 3", Duration::from_secs(10)).await;
    assert_eq!(confab_tests::client().get(cluster.node(2).api("/healthz")).send().await.unwrap().status(), 200);
    ana.abort();
    bo.abort();
}

/// Spill: node 1 takes four participants; the fifth who opens the link there is sent to
/// another node (the invite check names them), and all five are in one meeting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_a_nodes_cap_the_next_participant_is_served_by_another_and_everyone_meets() {
    // Taken first: the protocol clients below answer no pings while the browser waits its
    // turn, and the node drops a socket silent for 30 s.
    let _browsers = confab_tests::browser::exclusive().await;
    let mut cluster = Cluster::prepare(3, 3);
    cluster.start(0, &["--max-participants", "4"]).await;
    cluster.start(1, &[]).await;
    cluster.start(2, &[]).await;
    cluster.wait_formed(3).await;
    let admin = cluster.node(0).admin().await;
    let invite = cluster.invite(&admin, "spill", &[0, 1, 2]).await;
    let mut expected = vec![cluster.node(1).url.clone(), cluster.node(2).url.clone()];
    expected.sort();
    let node1 = cluster.node(0);
    let others: Vec<String> = eventually_or("the invite check to name the other nodes", Duration::from_secs(10), || {
        let (invite, expected) = (invite.clone(), expected.clone());
        async move {
            let res = confab_tests::client().post(node1.api("/api/invites/check")).json(&json!({"room": "spill", "invite": invite})).send().await.unwrap();
            let checked: Value = res.json().await.unwrap();
            let mut named: Vec<String> = checked["nodes"].as_array().into_iter().flatten().filter_map(|u| u.as_str().map(str::to_string)).collect();
            named.sort();
            if named == expected { Ok(named) } else { Err(format!("{checked}")) }
        }
    })
    .await;

    let mut four = Vec::new();
    for name in ["Ana", "Bo", "Cy", "Di"] {
        four.push(Signaling::join(cluster.node(0), "spill", &invite, name).await.0);
    }
    let mut fifth = Signaling::connect(cluster.node(0), "spill").await;
    fifth.send(json!({"type": "join", "v": 1, "invite": invite, "name": "Ed", "audio": true, "video": true})).await;
    assert_eq!(fifth.expect("error").await["code"], "node_full");
    assert_eq!(fifth.expect_close().await, Some(1013));
    let mut ed = Signaling::connect_to(&others[0], "spill").await;
    ed.send(json!({"type": "join", "v": 1, "invite": invite, "name": "Ed", "audio": true, "video": true})).await;
    let welcome = ed.expect("welcome").await;
    let mut seen: Vec<String> = welcome["participants"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect();
    seen.sort();
    assert_eq!(seen, vec!["Ana", "Bo", "Cy", "Di"], "Ed, on another node, sees the four");
    for s in &mut four {
        loop {
            let joined = s.wait_for("joined").await;
            if joined["participant"]["name"] == "Ed" {
                break;
            }
        }
    }

    // The web client does the same by itself: Fay opens node 1's link, is told node_full,
    // and takes her seat through another node.
    let mut fay = Participant::chromium(&format!("{}/m/spill#{invite}", cluster.node(0).url), "Fay").await;
    fay.join().await;
    let through = fay.browser.eval("return window.confabCall.signaling.url").await;
    let through = through.as_str().unwrap();
    assert!(others.iter().any(|o| through.starts_with(&o.replacen("https://", "wss://", 1))), "Fay's socket went to another node: {through}");
    let page = &fay.browser;
    eventually_or("Fay's page to show the five others", Duration::from_secs(10), || async move {
        let n = page.eval("return window.confabCall.participants.size").await;
        if n == json!(5) { Ok(()) } else { Err(format!("{n}")) }
    })
    .await;
    println!("Fay was refused by node 1 (full) and is seated through {through} with the five others");
}

/// SFU mode across nodes: a webrtc-rs bot whose socket is on node 1 and a Chromium whose
/// socket is on node 3, in a meeting homed on node 2. Node 2 runs the room (it approves
/// their offers and decides their slots) but carries none of their media: each publishes at
/// the relay of the node they connected to, and the two relays exchange the media over the
/// cascade. Each receives the other; when Ana's node is killed, her page publishes through
/// another and they receive each other again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sfu_mode_participants_on_two_nodes_meet_through_the_cascade() {
    let _browsers = confab_tests::browser::exclusive().await;
    let mut cluster = Cluster::prepare(3, 3);
    for i in 0..3 {
        cluster.start(i, &["--mesh-threshold", "0"]).await;
    }
    cluster.wait_formed(3).await;
    let admin = cluster.node(0).admin().await;
    let room = cluster.room_homed_at(&admin, "sfu", &cluster.members[1].key).await;
    let invite = cluster.invite(&admin, &room, &[0, 2]).await;
    // webrtc-rs sends from the test's end of node 1's link.
    let udp = format!("{}:0", cluster.members[0].ns.host_ip);
    let bot = NativeParticipant::join_from(&format!("{}/m/{room}#{invite}", cluster.node(0).url), "Bot", &udp).await;
    let mut ana = Participant::chromium(&format!("{}/m/{room}#{invite}", cluster.node(2).url), "Ana").await;
    let id_ana = ana.join().await;
    for (from, rate) in bot.wait_receiving(&[&id_ana]).await {
        println!("Bot (webrtc-rs, through node 1) ← {from} in one second: {rate:?}");
    }
    let stats = ana.wait_receiving(&[&bot.id]).await;
    let s = &stats[&bot.id];
    println!("Ana (Chromium, through node 3) ← Bot via {}: {} frames ({}p), {} samples", s.via, s.frames_decoded, s.frame_height, s.samples_received);
    assert_eq!(s.via, "sfu");
    assert!(s.samples_received > 0 && s.frames_decoded > 0, "Ana hears and sees the bot");
    let home = cluster.node(1);
    assert_eq!(home.metric("confab_participants").await, 2, "node 2 runs the meeting");
    assert_eq!(home.metric("confab_rooms{mode=\"sfu\"}").await, 1, "in SFU mode");
    let relayed: Vec<u64> = futures::future::join_all((0..3).map(|i| cluster.node(i).metric_sum("confab_relay_shard_participants"))).await;
    assert_eq!(relayed, vec![1, 0, 1], "each participant's media ends at the node they connected to, none at the home");
    let peer = |i: usize| cluster.members[i].key[..16].to_string();
    let sent_1_3 = cluster.node(0).metric_sum(&format!("confab_cascade_media_sent_bytes_total{{peer=\"{}\"}}", peer(2))).await;
    let sent_3_1 = cluster.node(2).metric_sum(&format!("confab_cascade_media_sent_bytes_total{{peer=\"{}\"}}", peer(0))).await;
    let to_home = home.metric_sum("confab_cascade_media_received_bytes_total").await;
    println!("cascade media: node 1 → node 3 {sent_1_3} bytes, node 3 → node 1 {sent_3_1} bytes, to the home {to_home} bytes");
    assert!(sent_1_3 > 0 && sent_3_1 > 0, "the edges exchange media");
    assert_eq!(to_home, 0, "the home receives no media");

    // 5 % of what reaches node 3 from node 1 is lost: node 3 asks for the packets again and
    // Ana decodes the bot as before (without that, at 5 %, 15 % of the frames:
    // docs/benchmarks.md, "Two nodes, loss on the link between them").
    let clean = decode_rate(&ana, &bot.id, Duration::from_secs(4)).await;
    cluster.members[2].ns.lose_udp_from(&cluster.members[0].ns, 5);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lossy = decode_rate(&ana, &bot.id, Duration::from_secs(6)).await;
    cluster.members[2].ns.lose_udp_from(&cluster.members[0].ns, 0);
    let asked = cluster.node(2).metric("confab_cascade_media_lost_total").await;
    let resent = cluster.node(0).metric("confab_cascade_media_resent_total").await;
    println!("Ana decodes the bot at {clean:.1} frames/s, {lossy:.1} with 5 % lost between the nodes ({asked} packets asked for again, {resent} sent again)");
    assert!(asked > 0 && resent > 0, "nothing asked for again: {asked} asked, {resent} sent");
    assert!(lossy >= 0.9 * clean, "Ana decodes {lossy:.1} frames/s with 5 % loss between the nodes, {clean:.1} without");

    // Ana's node dies with her media on it: her page resumes its seat through another node
    // and publishes there, and the two receive each other again.
    ana.mark_sfu_link_old().await;
    let killed = Instant::now();
    cluster.members[2].node.as_mut().unwrap().kill();
    decoding_through_the_sfu(&ana, &bot.id).await;
    let back = killed.elapsed();
    bot.wait_receiving(&[&id_ana]).await;
    println!("Ana's node killed: she decodes the bot again after {back:?}, and the bot receives her");
}

/// Frames per second `p` decodes of `from`'s video over `window`.
async fn decode_rate(p: &Participant, from: &str, window: Duration) -> f64 {
    let decoded = || async { p.stats().await.get(from).map_or(0, |s| s.frames_decoded) };
    let (before, at) = (decoded().await, Instant::now());
    tokio::time::sleep(window).await;
    decoded().await.saturating_sub(before) as f64 / at.elapsed().as_secs_f64()
}

/// Bytes per second of media node `from` sends member `to` over the cascade (its /metrics),
/// and that reach `to`'s namespace from `from`'s (nftables), over `window`.
async fn cascade_rates(cluster: &Cluster, from: usize, to: usize, window: Duration) -> (f64, f64) {
    let peer = format!("confab_cascade_media_sent_bytes_total{{peer=\"{}\"}}", &cluster.members[to].key[..16]);
    let node = cluster.node(from);
    let (metric_before, counted_before, at) = (node.metric_sum(&peer).await, cluster.members[to].ns.udp_bytes_counted(), Instant::now());
    tokio::time::sleep(window).await;
    let (metric_after, counted_after) = (node.metric_sum(&peer).await, cluster.members[to].ns.udp_bytes_counted());
    let secs = at.elapsed().as_secs_f64();
    ((metric_after - metric_before) as f64 / secs, (counted_after - counted_before) as f64 / secs)
}

/// One copy per edge: a publisher on node 1, and on node 2 first one subscriber, then eight.
/// Node 1 sends node 2 the same bytes per second either way (within 10 %), counted by its
/// /metrics and, independently, by nftables in node 2's namespace. Node 3 runs the meeting
/// and has no subscriber: it receives none of the media (its /metrics), and from node 1 only
/// a trickle of control (nftables).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_receives_one_copy_of_a_source_however_many_watch_it_there() {
    // Nine WebRTC peers with live media: heavy enough to disturb the browser tests' timings.
    let _heavy = confab_tests::browser::exclusive().await;
    let mut cluster = Cluster::prepare(3, 3);
    for i in 0..3 {
        cluster.start(i, &["--mesh-threshold", "0"]).await;
    }
    cluster.wait_formed(3).await;
    let admin = cluster.node(0).admin().await;
    let room = cluster.room_homed_at(&admin, "copies", &cluster.members[2].key).await;
    let invite = cluster.invite(&admin, &room, &[0, 1]).await;
    let link = |i: usize| format!("{}/m/{room}#{invite}", cluster.node(i).url);
    let from = |i: usize| format!("{}:0", cluster.members[i].ns.host_ip);
    let publisher = NativeParticipant::join_from(&link(0), "Publisher", &from(0)).await;
    // Subscribers who send nothing: all that crosses from node 1 to node 2 is the
    // publisher's media (and QUIC's own acknowledgements and keep-alives).
    let mut subscribers = vec![NativeParticipant::watch_from(&link(1), "Sub 1", &from(1)).await];
    subscribers[0].wait_receiving(&[&publisher.id]).await;
    // The cascade's packets from node 1 (its endpoint, at the port after the control plane's).
    let cascade_port = confab_tests::cluster::CLUSTER_PORT + 1;
    cluster.members[1].ns.count_udp_from(&cluster.members[0].ns, cascade_port);
    cluster.members[2].ns.count_udp_from(&cluster.members[0].ns, cascade_port);
    let window = Duration::from_secs(6);
    let one = cascade_rates(&cluster, 0, 1, window).await;
    for n in 2..=8 {
        subscribers.push(NativeParticipant::watch_from(&link(1), &format!("Sub {n}"), &from(1)).await);
    }
    for s in &subscribers {
        s.wait_receiving(&[&publisher.id]).await;
    }
    let to_home_before = cluster.members[2].ns.udp_bytes_counted();
    let eight = cascade_rates(&cluster, 0, 1, window).await;
    let to_home = (cluster.members[2].ns.udp_bytes_counted() - to_home_before) as f64 / window.as_secs_f64();
    println!(
        "node 1 → node 2, bytes/s with 1 subscriber there: {:.0} (/metrics), {:.0} (nftables); with 8: {:.0}, {:.0}; node 1 → node 3 (the home, no subscriber): {to_home:.0} (nftables)",
        one.0, one.1, eight.0, eight.1
    );
    for (what, a, b) in [("/metrics", one.0, eight.0), ("nftables", one.1, eight.1)] {
        assert!(a > 10_000.0, "the publisher's media crosses to node 2 ({what}: {a:.0} B/s)");
        let ratio = b / a;
        assert!((0.9..=1.1).contains(&ratio), "{what}: {b:.0} B/s with 8 subscribers against {a:.0} with 1 (×{ratio:.2})");
    }
    assert_eq!(cluster.node(2).metric_sum("confab_cascade_media_received_bytes_total").await, 0, "the home receives no media");
    assert!(to_home < one.1 / 10.0, "node 1's cascade sends the home only control: {to_home:.0} B/s against {:.0} to node 2", one.1);
    assert_eq!(cluster.node(2).metric("confab_participants").await, 9, "node 3 runs the meeting");
}

/// The accounts node dies; the operator gives node 2 the accounts role in a new epoch: the
/// admin logs in there with the password they always had, a token issued before signs
/// someone up, node 3 sends account pages there, and the invite made before the loss still
/// admits on every node left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_takes_over_the_accounts_when_the_accounts_node_is_lost() {
    let mut cluster = Cluster::prepare(3, 3);
    cluster.start_all().await;
    cluster.wait_formed(3).await;
    let admin = cluster.node(0).admin().await;
    let spare_token = cluster.node(0).issue_token(&admin).await;
    // Admitted on nodes 2 and 3: a snapshot taken after the token reached them.
    let invite = cluster.invite(&admin, "takeover", &[1, 2]).await;
    cluster.members[0].node.as_mut().unwrap().kill();
    cluster.wait_peers(1, 1, Duration::from_secs(10)).await;
    let res =
        confab_tests::client().post(cluster.node(1).api("/api/login")).json(&json!({"username": "admin", "password": "admin password"})).send().await.unwrap();
    assert_eq!(res.status(), 503, "no accounts node: {}", res.text().await.unwrap());

    // The runbook: node 2 gets the accounts role and node 1 keeps only media (removing it
    // would void the certificates it signed, and every invite made with them); the epoch
    // goes to node 3.
    cluster.add_as(1, "accounts,media");
    cluster.add_as(0, "media");
    cluster.publish_to(2);
    let node2 = cluster.node(1);
    let promoted = eventually_or("the admin to log in on node 2", Duration::from_secs(10), || async move {
        let c = confab_tests::client();
        let res = c.post(node2.api("/api/login")).json(&json!({"username": "admin", "password": "admin password"})).send().await.unwrap();
        if res.status() == 200 { Ok(c) } else { Err(format!("{} {}", res.status(), res.text().await.unwrap())) }
    })
    .await;
    let me: Value = promoted.get(node2.api("/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["username"], "admin");
    // A token issued before the loss signs someone up on the new accounts node.
    let res = confab_tests::node::signup(&confab_tests::client(), node2, "newcomer", "a long password", &spare_token).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    // Node 3 sends account pages to node 2 now, and the old invite still admits everywhere.
    let no_redirects = reqwest::Client::builder().danger_accept_invalid_certs(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let node3 = cluster.node(2);
    let location = eventually_or("node 3 to send logins to node 2", Duration::from_secs(10), || {
        let c = no_redirects.clone();
        async move {
            let res = c.get(node3.api("/login")).send().await.unwrap();
            let at = res.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            if at.starts_with(&node2.url) { Ok(at) } else { Err(format!("{} {at}", res.status())) }
        }
    })
    .await;
    assert_eq!(location, node2.api("/login"));
    for i in 1..3 {
        assert_eq!(check_invite(cluster.node(i), "takeover", &invite).await.0, 200);
    }
}

/// A membership that runs out ends like a removal: the member is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_membership_runs_out_is_cut_off() {
    let mut cluster = Cluster::prepare(2, 1);
    cluster.add_with(1, &["--expires", "8s"]);
    cluster.publish_to(0);
    cluster.publish_to(1);
    cluster.start_all().await;
    cluster.wait_peers(0, 1, Duration::from_secs(6)).await;
    cluster.wait_peers(0, 0, Duration::from_secs(15)).await;
    cluster.wait_peers(1, 0, Duration::from_secs(5)).await;
    let refused = cluster.node(0);
    eventually_or("node 1 to refuse node 2 from then on", Duration::from_secs(10), || async move {
        let n = refused.metric("confab_cluster_refused_connections_total").await;
        if n > 0 { Ok(()) } else { Err(format!("{n}")) }
    })
    .await;
}

//! The signaling WebSocket without browsers: real node, real TLS, raw protocol messages.
//! Seating, relaying, reconnection, removal, and what bad input gets.

use std::collections::BTreeMap;
use std::time::Duration;

use confab_keys::{AccountKey, Role};
use confab_tests::node::{make_invite, make_invite_as};
use confab_tests::signaling::{Heard, Signaling};
use confab_tests::{Node, client};
use serde_json::{Value, json};

const ROOM: &str = "standup";

async fn node_with_invites(options: &[&str]) -> (Node, String, String) {
    let node = Node::start_with(options).await;
    let admin = node.admin().await;
    let key = AccountKey::from_seed([7; 32]);
    let guest = make_invite(&admin, &node, &key, ROOM, 3600).await;
    let host = make_invite_as(&admin, &node, &key, ROOM, 3600, Role::Host).await;
    (node, guest, host)
}

fn id(message: &Value) -> String {
    message["you"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn participants_are_seated_told_of_each_other_and_relay_signals() {
    let (node, invite, _) = node_with_invites(&[]).await;
    let (mut ana, welcome_a) = Signaling::join(&node, ROOM, &invite, "Ana").await;
    assert_eq!(welcome_a["participants"], json!([]));
    assert_eq!(welcome_a["mode"], "mesh");
    assert_eq!(welcome_a["mesh_threshold"], 4);
    assert_eq!(welcome_a["you"]["role"], "guest");
    let (mut bo, welcome_b) = Signaling::join(&node, ROOM, &invite, "  Bo  ").await;
    assert_eq!(welcome_b["you"]["name"], "Bo");
    assert_eq!(welcome_b["participants"][0]["id"], id(&welcome_a));
    let joined = ana.expect("joined").await;
    assert_eq!(joined["participant"]["id"], id(&welcome_b));

    let offer = json!({"type": "offer", "sdp": "v=0\r\n"});
    ana.send(json!({"type": "signal", "to": id(&welcome_b), "description": offer})).await;
    let relayed = bo.expect("signal").await;
    assert_eq!(relayed, json!({"type": "signal", "from": id(&welcome_a), "description": offer}));

    bo.send(json!({"type": "media", "audio": false, "video": true})).await;
    let updated = ana.expect("updated").await;
    assert_eq!((updated["participant"]["audio"].as_bool(), updated["participant"]["video"].as_bool()), (Some(false), Some(true)));

    ana.send(json!({"type": "ping"})).await;
    ana.expect("pong").await;

    bo.send(json!({"type": "leave"})).await;
    assert_eq!(bo.expect_close().await, Some(1000));
    let left = ana.expect("left").await;
    assert_eq!(left, json!({"type": "left", "participant": id(&welcome_b), "reason": "left"}));

    let metrics = confab_tests::client().get(node.api("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("\nconfab_participants 1\n"), "{metrics}");
    assert!(metrics.contains("confab_rooms{mode=\"mesh\"} 1\n"), "{metrics}");
}

#[tokio::test]
async fn bad_messages_get_an_error_and_disturb_nobody() {
    let (node, invite, _) = node_with_invites(&[]).await;
    let (mut ana, welcome_a) = Signaling::join(&node, ROOM, &invite, "Ana").await;
    let (mut bo, welcome_b) = Signaling::join(&node, ROOM, &invite, "Bo").await;
    ana.expect("joined").await;

    let bad: Vec<(String, &str)> = vec![
        ("not json".into(), "bad_message"),
        (r#"{"type":"dance"}"#.into(), "bad_message"),
        (r#"{"type":"media","audio":"yes","video":true}"#.into(), "bad_message"),
        (r#"{"type":"signal","to":"p999","candidate":{"candidate":""}}"#.into(), "no_such_participant"),
        (format!(r#"{{"type":"signal","to":"{}"}}"#, id(&welcome_a)), "bad_signal"),
        (format!(r#"{{"type":"signal","to":"{}","candidate":{{"candidate":""}}}}"#, id(&welcome_b)), "no_such_participant"),
        (r#"{"type":"remove","participant":"p1"}"#.into(), "not_host"),
        (format!(r#"{{"type":"join","v":1,"invite":"{invite}","name":"Again","audio":true,"video":true}}"#), "already_joined"),
    ];
    for (text, code) in bad {
        bo.send_text(text.clone()).await;
        let reply = bo.expect("error").await;
        assert_eq!(reply["code"], code, "{text}: {reply}");
        assert!(reply["message"].as_str().unwrap().ends_with('.'), "{reply}");
    }
    bo.send_binary(vec![0xff; 16]).await;
    assert_eq!(bo.expect("error").await["code"], "bad_message");

    // Bo is still seated and Ana heard none of it: the next thing she gets is Bo's signal.
    bo.send(json!({"type": "signal", "to": id(&welcome_a), "candidate": {"candidate": ""}})).await;
    assert_eq!(ana.expect("signal").await["from"], id(&welcome_b));

    // An oversized frame ends the sender's connection (with a reason), not anyone else's.
    let huge = format!(r#"{{"type":"signal","to":"{}","description":{{"type":"offer","sdp":"{}"}}}}"#, id(&welcome_a), "a".repeat(70_000));
    bo.send_text(huge).await;
    assert_eq!(bo.expect("error").await["code"], "message_too_large");
    assert_eq!(bo.expect_close().await, Some(1009));
    let updated = ana.expect("updated").await;
    assert_eq!(updated["participant"]["connected"], false, "Bo's seat is kept for the grace period");
    ana.send(json!({"type": "ping"})).await;
    ana.expect("pong").await;
}

#[tokio::test]
async fn joins_are_refused_with_the_reason() {
    let (node, invite, _) = node_with_invites(&[]).await;
    let join = |invite: &str, name: &str| json!({"type": "join", "v": 1, "invite": invite, "name": name, "audio": true, "video": false});
    // Change one character inside the signature (the last one may carry padding bits that
    // strict base64 refuses, which would test the decoder instead).
    let mut tampered: Vec<char> = invite.chars().collect();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let cases = [
        (ROOM, join(&tampered, "Eve"), "capability_bad_signature"),
        (ROOM, join("cfi1.nonsense", "Eve"), "capability_malformed"),
        (ROOM, join(&invite, " \u{202e} "), "bad_name"),
        (ROOM, json!({"type": "ping"}), "not_joined"),
        (ROOM, json!({"type": "join", "v": 9, "invite": invite, "name": "Eve", "audio": true, "video": true}), "unsupported_version"),
        ("other-room", join(&invite, "Eve"), "room_unknown"),
    ];
    for (room, message, code) in cases {
        let mut s = Signaling::connect(&node, room).await;
        s.send(message.clone()).await;
        let reply = s.expect("error").await;
        assert_eq!(reply["code"], code, "{message}: {reply}");
        let close = s.expect_close().await;
        assert!(matches!(close, Some(1008) | Some(4003)), "{message}: closed with {close:?}");
    }
    // None of that took a seat.
    let (_s, welcome) = Signaling::join(&node, ROOM, &invite, "Ana").await;
    assert_eq!(welcome["participants"], json!([]));
}

#[tokio::test]
async fn a_dropped_connection_resumes_its_seat_and_gets_what_was_held() {
    let (node, invite, _) = node_with_invites(&[]).await;
    let (ana, welcome_a) = Signaling::join(&node, ROOM, &invite, "Ana").await;
    let (mut bo, _) = Signaling::join(&node, ROOM, &invite, "Bo").await;
    ana.vanish();
    let updated = bo.expect("updated").await;
    assert_eq!(updated["participant"]["connected"], false);
    // Bo's offer waits for Ana.
    bo.send(json!({"type": "signal", "to": id(&welcome_a), "description": {"type": "offer", "sdp": "v=0\r\n"}})).await;

    let mut ana = Signaling::connect(&node, ROOM).await;
    let resume = json!({"participant": id(&welcome_a), "secret": welcome_a["resume_secret"]});
    ana.send(json!({"type": "join", "v": 1, "invite": invite, "name": "Ana", "audio": true, "video": true, "resume": resume})).await;
    let welcome = ana.expect("welcome").await;
    assert_eq!(welcome["resumed"], true);
    assert_eq!(id(&welcome), id(&welcome_a));
    assert_eq!(ana.expect("signal").await["description"]["type"], "offer");
    let updated = bo.expect("updated").await;
    assert_eq!(updated["participant"]["connected"], true);

    // A wrong secret does not take the seat: it gets a new one.
    let mut mallory = Signaling::connect(&node, ROOM).await;
    let forged = json!({"participant": id(&welcome_a), "secret": "00".repeat(16)});
    mallory.send(json!({"type": "join", "v": 1, "invite": invite, "name": "Mallory", "audio": true, "video": true, "resume": forged})).await;
    let welcome = mallory.expect("welcome").await;
    assert_eq!(welcome["resumed"], false);
    assert_ne!(id(&welcome), id(&welcome_a));
}

#[tokio::test]
async fn configured_grace_threshold_and_ice_servers_apply_and_the_seat_ends_with_the_grace() {
    let options = ["--reconnect-grace", "1s", "--mesh-threshold", "2", "--ice-server", "stun:stun.example.org:3478"];
    let (node, invite, _) = node_with_invites(&options).await;
    let (ana, welcome_a) = Signaling::join(&node, ROOM, &invite, "Ana").await;
    let (mut bo, welcome_b) = Signaling::join(&node, ROOM, &invite, "Bo").await;
    assert_eq!(welcome_b["reconnect_grace_secs"], 1);
    assert_eq!(welcome_b["mesh_threshold"], 2);
    // Configured servers come first, then the embedded TURN relay with credentials for this seat.
    let servers = welcome_b["ice_servers"].as_array().expect("ice_servers is a list");
    assert_eq!(servers[0], json!({"urls": ["stun:stun.example.org:3478"]}));
    let (turn_a, turn_b) = (confab_tests::turn::embedded(&welcome_a), confab_tests::turn::embedded(&welcome_b));
    assert!(turn_b["urls"].as_array().unwrap().iter().any(|u| u.as_str().unwrap().starts_with("turn:")), "{turn_b}");
    assert!(turn_b["credential"].as_str().is_some_and(|c| !c.is_empty()), "{turn_b}");
    assert_ne!(turn_a["username"], turn_b["username"], "each seat gets its own TURN credentials");
    ana.vanish();
    assert_eq!(bo.expect("updated").await["participant"]["connected"], false);
    let left = bo.expect("left").await;
    assert_eq!(left, json!({"type": "left", "participant": id(&welcome_a), "reason": "timed-out"}));
}

#[tokio::test]
async fn a_host_removes_a_participant_who_then_stays_out_and_a_guest_cannot_remove_anyone() {
    let (node, guest_invite, host_invite) = node_with_invites(&[]).await;
    let (mut host, welcome_h) = Signaling::join(&node, ROOM, &host_invite, "Host").await;
    assert_eq!(welcome_h["you"]["role"], "host");
    let (mut guest, welcome_g) = Signaling::join(&node, ROOM, &guest_invite, "Guest").await;
    let (mut other, _) = Signaling::join(&node, ROOM, &guest_invite, "Other").await;
    guest.send(json!({"type": "remove", "participant": id(&welcome_h)})).await;
    assert_eq!(guest.wait_for("error").await["code"], "not_host");

    host.send(json!({"type": "remove", "participant": id(&welcome_g)})).await;
    assert_eq!(guest.wait_for("removed").await["by"], "Host");
    assert_eq!(guest.expect_close().await, Some(4001));
    let left = other.wait_for("left").await;
    assert_eq!(left, json!({"type": "left", "participant": id(&welcome_g), "reason": "removed"}));
    let left = host.wait_for("left").await;
    assert_eq!(left["reason"], "removed");
    other.send(json!({"type": "ping"})).await;
    match other.next().await {
        Heard::Message(m) => assert_eq!(m["type"], "pong", "the bystander got an unexpected {m}"),
        Heard::Closed(code) => panic!("the bystander was disconnected ({code:?})"),
    }

    // Removal bars: the same link from the same network gets no new seat, with the reason…
    let mut again = Signaling::connect(&node, ROOM).await;
    again.send(json!({"type": "join", "v": 1, "invite": guest_invite, "name": "Guest", "audio": true, "video": false})).await;
    let refusal = again.expect("error").await;
    assert_eq!(refusal["code"], "removed", "{refusal}");
    assert_eq!(again.expect_close().await, Some(4003));
    // …while another link from there still gets one.
    let (_host2, welcome) = Signaling::join(&node, ROOM, &host_invite, "Host 2").await;
    assert_eq!(welcome["you"]["role"], "host");
}

#[tokio::test]
async fn a_flooding_participant_is_rate_limited_and_nobody_else_notices() {
    let (node, invite, _) = node_with_invites(&[]).await;
    let (mut ana, welcome_a) = Signaling::join(&node, ROOM, &invite, "Ana").await;
    let (mut bo, welcome_b) = Signaling::join(&node, ROOM, &invite, "Bo").await;
    ana.expect("joined").await;
    let flood = 1_000;
    for _ in 0..flood {
        bo.send(json!({"type": "signal", "to": id(&welcome_a), "candidate": {"candidate": ""}})).await;
    }
    // Every message is either refused (Bo hears why) or relayed (Ana gets it).
    let (mut limited, mut relayed) = (0, 0);
    while limited + relayed < flood {
        tokio::select! {
            heard = bo.next() => match heard {
                Heard::Message(m) if m["code"] == "rate_limited" => limited += 1,
                other => panic!("Bo got {other:?}"),
            },
            heard = ana.next() => match heard {
                Heard::Message(m) if m["type"] == "signal" && m["from"] == id(&welcome_b) => relayed += 1,
                other => panic!("Ana got {other:?}"),
            },
        }
    }
    println!("of {flood} messages sent at once, {relayed} were relayed and {limited} refused");
    assert!(limited >= flood / 2, "only {limited} refused");
    ana.send(json!({"type": "ping"})).await;
    ana.expect("pong").await;
}

/// Ana's browser stops reading while Bo sends her offers of 56 KiB: the node does not let
/// her queue grow, closes her socket with 1011 (Bo sees her away, not gone), and she resumes
/// her seat with her secret.
#[tokio::test]
async fn a_participant_that_stops_reading_is_closed_with_1011_and_resumes() {
    let (node, invite, _) = node_with_invites(&[]).await;
    let (mut ana, welcome_a) = Signaling::join(&node, ROOM, &invite, "Ana").await;
    let (mut bo, _) = Signaling::join(&node, ROOM, &invite, "Bo").await;
    // 56 KiB of JSON each (the limit is 64 KiB; the line ends take four bytes in JSON).
    let sdp = format!("v=0\r\n{}", format!("a={}\r\n", "x".repeat(58)).repeat(900));
    let offer = json!({"type": "signal", "to": id(&welcome_a), "description": {"type": "offer", "sdp": sdp}});
    // Ana reads nothing from here on. Bo sends 22 MiB of offers, within his message budget.
    let started = std::time::Instant::now();
    for i in 0..400 {
        bo.send(offer.clone()).await;
        if i >= 190 {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let away = tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            match bo.receive().await {
                Heard::Message(m) if m["type"] == "updated" && m["participant"]["connected"] == false => return,
                Heard::Message(_) => {}
                Heard::Closed(code) => panic!("Bo was closed ({code:?})"),
            }
        }
    })
    .await;
    assert!(away.is_ok(), "Ana was never treated as away");
    println!("Ana counted as away {:?} after the first offer", started.elapsed());
    // Ana reads again: what was queued for her, then the 1011.
    let code = loop {
        match ana.next().await {
            Heard::Closed(code) => break code,
            Heard::Message(_) => {}
        }
    };
    assert_eq!(code, Some(1011));
    let mut ana = Signaling::connect(&node, ROOM).await;
    let resume = json!({"participant": id(&welcome_a), "secret": welcome_a["resume_secret"]});
    ana.send(json!({"type": "join", "v": 1, "invite": invite, "name": "Ana", "audio": true, "video": true, "resume": resume})).await;
    let welcome = ana.expect("welcome").await;
    assert_eq!((welcome["resumed"].clone(), id(&welcome)), (json!(true), id(&welcome_a)));
}

/// Every file under `dir`, read whole, and whether any holds `needle`.
fn found_in(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(found_in(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle)) {
            hits.push(path);
        }
    }
    hits
}

#[tokio::test]
async fn chat_reaches_everyone_privately_only_its_addressee_a_late_joiner_sees_the_history_and_nothing_reaches_disk() {
    let (mut node, invite, _) = node_with_invites(&[]).await;
    let (mut ana, welcome_a) = Signaling::join(&node, ROOM, &invite, "Ana").await;
    let (mut bo, welcome_b) = Signaling::join(&node, ROOM, &invite, "Bo").await;
    let (mut cy, _) = Signaling::join(&node, ROOM, &invite, "Cy").await;
    let marker = format!("marker-{}", std::process::id());
    let hostile = format!("<img src=x onerror=alert(1)> {marker}");
    ana.send(json!({"type": "chat", "text": hostile})).await;
    for s in [&mut ana, &mut bo, &mut cy] {
        let m = s.wait_for("chat").await;
        assert_eq!((&m["from"], &m["name"], &m["text"]), (&json!(id(&welcome_a)), &json!("Ana"), &json!(hostile)), "{m}");
        assert!(m["at"].as_u64().unwrap() > 1_700_000_000_000 && m.get("to").is_none(), "{m}");
    }
    ana.send(json!({"type": "chat", "text": "just for Bo", "to": id(&welcome_b)})).await;
    assert_eq!(bo.wait_for("chat").await["text"], "just for Bo");
    assert_eq!(ana.wait_for("chat").await["to"], id(&welcome_b), "the sender gets it back, marked private");
    // Cy hears the next public message, and never the private one before it.
    bo.send(json!({"type": "chat", "text": "public again"})).await;
    assert_eq!(cy.wait_for("chat").await["text"], "public again");

    // Refusals, each with its code; the connection stays.
    let refusals = [
        (json!({"type": "chat", "text": "x".repeat(2001)}), "chat_too_long"),
        (json!({"type": "chat", "text": " \u{200b} "}), "chat_empty"),
        (json!({"type": "chat", "text": "hi", "to": "p999"}), "no_such_participant"),
    ];
    for (message, code) in refusals {
        cy.send(message).await;
        assert_eq!(cy.wait_for("error").await["code"], code);
    }
    let mut limited = 0;
    for i in 0..30 {
        cy.send(json!({"type": "chat", "text": format!("flood {i}")})).await;
    }
    let mut relayed = 0;
    while relayed + limited < 30 {
        let m = cy.next().await;
        match m {
            Heard::Message(m) if m["type"] == "chat" => relayed += 1,
            Heard::Message(m) if m["type"] == "error" => {
                assert_eq!(m["code"], "rate_limited");
                limited += 1;
            }
            Heard::Message(_) => {}
            Heard::Closed(code) => panic!("closed ({code:?})"),
        }
    }
    assert!(relayed <= 11 && limited >= 19, "{relayed} relayed, {limited} refused");

    // A late joiner gets the public history in its welcome, and no private message.
    let (_di, welcome_d) = Signaling::join(&node, ROOM, &invite, "Di").await;
    let texts: Vec<&str> = welcome_d["chat"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(&texts[..2], [hostile.as_str(), "public again"]);
    assert!(!texts.contains(&"just for Bo"), "{texts:?}");

    // Chat lives in memory only: not in the data directory, also once the node has stopped.
    assert_eq!(found_in(node.data_dir(), marker.as_bytes()), Vec::<std::path::PathBuf>::new());
    node.kill();
    assert_eq!(found_in(node.data_dir(), marker.as_bytes()), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn hands_queue_in_order_for_everyone_and_only_a_host_lowers_another_s() {
    let (node, invite, host_invite) = node_with_invites(&[]).await;
    let (mut host, _) = Signaling::join(&node, ROOM, &host_invite, "Host").await;
    let (mut ana, welcome_a) = Signaling::join(&node, ROOM, &invite, "Ana").await;
    let (mut bo, welcome_b) = Signaling::join(&node, ROOM, &invite, "Bo").await;
    for (s, _) in [(&mut bo, 0), (&mut ana, 1)] {
        s.send(json!({"type": "hand", "raised": true})).await;
        // Wait for the node to have taken it, so that the order is the test's.
        loop {
            let m = s.wait_for("updated").await;
            if m["participant"]["hand"].is_u64() {
                break;
            }
        }
    }
    let hand_of = |m: &Value| (m["participant"]["id"].as_str().unwrap().to_string(), m["participant"]["hand"].as_u64());
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let m = host.wait_for("updated").await;
        seen.push(hand_of(&m));
    }
    assert_eq!(seen[0].0, id(&welcome_b));
    assert_eq!(seen[1].0, id(&welcome_a));
    assert!(seen[0].1 < seen[1].1, "Bo raised first: {seen:?}");
    // A late joiner sees the hands in its welcome.
    let (_cy, welcome_c) = Signaling::join(&node, ROOM, &invite, "Cy").await;
    let raised: Vec<(String, u64)> =
        welcome_c["participants"].as_array().unwrap().iter().filter_map(|p| Some((p["id"].as_str()?.to_string(), p["hand"].as_u64()?))).collect();
    assert_eq!(raised.len(), 2, "{welcome_c}");

    ana.send(json!({"type": "lower-hand", "participant": id(&welcome_b)})).await;
    assert_eq!(ana.wait_for("error").await["code"], "not_host");
    host.send(json!({"type": "lower-hand", "participant": id(&welcome_b)})).await;
    // Bo hears of Ana's raise first, then of his own hand going down.
    loop {
        let m = bo.wait_for("updated").await;
        if hand_of(&m).0 == id(&welcome_b) {
            assert_eq!(hand_of(&m).1, None, "{m}");
            break;
        }
    }
}

#[tokio::test]
async fn host_tools_mute_lock_make_host_and_end_are_refused_to_guests_and_work_for_hosts() {
    let (node, guest_invite, host_invite) = node_with_invites(&[]).await;
    let (mut host, _) = Signaling::join(&node, ROOM, &host_invite, "Host").await;
    let (mut ana, welcome_a) = Signaling::join(&node, ROOM, &guest_invite, "Ana").await;
    let (mut bo, _) = Signaling::join(&node, ROOM, &guest_invite, "Bo").await;
    ana.wait_for("joined").await;
    // A guest's host messages: each refused with not_host, and nobody hears anything.
    for message in [
        json!({"type": "mute", "participant": "all"}),
        json!({"type": "lock", "locked": true}),
        json!({"type": "end"}),
        json!({"type": "make-host", "participant": "p3"}),
        json!({"type": "remove", "participant": "p1"}),
        json!({"type": "remove", "participant": "p1", "revoke": true}),
        json!({"type": "lower-hand", "participant": "all"}),
        json!({"type": "admit", "participant": "all"}),
        json!({"type": "deny", "participant": "p1"}),
    ] {
        bo.send(message.clone()).await;
        assert_eq!(bo.expect("error").await["code"], "not_host", "{message}");
    }
    host.wait_for("joined").await; // Ana
    host.wait_for("joined").await; // Bo
    for p in [&mut host, &mut ana] {
        p.send(json!({"type": "ping"})).await;
        assert_eq!(p.expect("pong").await["type"], "pong", "nothing else was heard of Bo's attempts");
    }

    // Mute everyone: both guests are told, and shown muted.
    host.send(json!({"type": "mute", "participant": "all"})).await;
    assert_eq!(ana.wait_for("muted").await["by"], "Host");
    assert_eq!(bo.wait_for("muted").await["by"], "Host");
    let updated = host.wait_for("updated").await;
    assert_eq!(updated["participant"]["audio"], false, "{updated}");
    // Stop Ana's camera: she is told which.
    host.send(json!({"type": "mute", "participant": id(&welcome_a), "kind": "video"})).await;
    let muted = ana.wait_for("muted").await;
    assert_eq!((muted["kind"].as_str(), muted["by"].as_str()), (Some("video"), Some("Host")), "{muted}");

    // Lock: everyone is told; a new guest is refused with its code, a host still gets in.
    host.send(json!({"type": "lock", "locked": true})).await;
    assert_eq!(ana.wait_for("locked").await["locked"], true);
    let mut late = Signaling::connect(&node, ROOM).await;
    late.send(json!({"type": "join", "v": 1, "invite": guest_invite, "name": "Late", "audio": true, "video": false})).await;
    assert_eq!(late.expect("error").await["code"], "locked");
    assert_eq!(late.expect_close().await, Some(4003));
    let (mut host2, welcome_h2) = Signaling::join(&node, ROOM, &host_invite, "Host 2").await;
    assert_eq!(welcome_h2["locked"], true);

    // The host makes Ana a host: everyone sees her role, and she may now unlock.
    bo.send(json!({"type": "make-host", "participant": id(&welcome_a)})).await;
    assert_eq!(bo.wait_for("error").await["code"], "not_host");
    host.send(json!({"type": "make-host", "participant": id(&welcome_a)})).await;
    loop {
        let updated = bo.wait_for("updated").await;
        if updated["participant"]["id"] == id(&welcome_a) && updated["participant"]["role"] == "host" {
            break;
        }
    }
    ana.send(json!({"type": "lock", "locked": false})).await;
    assert_eq!(bo.wait_for("locked").await["locked"], false);

    // End: everyone gets `left` (reason ended) for themselves, then the close code 4004.
    host.send(json!({"type": "end"})).await;
    for (p, name) in [(&mut ana, "Ana"), (&mut bo, "Bo"), (&mut host2, "Host 2"), (&mut host, "Host")] {
        let mut lefts = Vec::new();
        let code = loop {
            match p.next().await {
                Heard::Message(m) if m["type"] == "left" => lefts.push(m),
                Heard::Message(_) => {}
                Heard::Closed(code) => break code,
            }
        };
        assert!(!lefts.is_empty() && lefts.iter().all(|m| m["reason"] == "ended"), "{name}: {lefts:?}");
        assert_eq!(code, Some(4004), "{name}");
    }
    assert_eq!(node.metric("confab_participants").await, 0);
}

/// The owner turns the meeting's lobby on; it holds for joins from then on.
async fn turn_lobby(node: &Node, owner: &reqwest::Client, on: bool) {
    let res = owner.post(node.api(&format!("/api/meetings/{ROOM}/settings"))).json(&json!({"lobby": on})).send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["lobby"], on, "{body}");
}

/// Reads everything `p` hears until a pong answers a ping: the types, in order.
async fn heard_until_pong(p: &mut Signaling) -> Vec<String> {
    p.send(json!({"type": "ping"})).await;
    let mut types = Vec::new();
    loop {
        match p.next().await {
            Heard::Message(m) if m["type"] == "pong" => return types,
            Heard::Message(m) => types.push(m["type"].as_str().unwrap_or("?").to_string()),
            Heard::Closed(code) => panic!("closed ({code:?}); heard {types:?}"),
        }
    }
}

#[tokio::test]
async fn with_the_lobby_on_guests_wait_hear_nothing_of_the_meeting_and_only_a_host_admits_or_turns_them_away() {
    let node = Node::start().await;
    let owner = node.admin().await;
    let key = AccountKey::from_seed([7; 32]);
    let guest = make_invite(&owner, &node, &key, ROOM, 3600).await;
    let host_invite = make_invite_as(&owner, &node, &key, ROOM, 3600, Role::Host).await;
    // Only the owner changes the settings; a stranger's session and a missing meeting are refused.
    let res = client().post(node.api(&format!("/api/meetings/{ROOM}/settings"))).json(&json!({"lobby": true})).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = owner.post(node.api("/api/meetings/no-such-room/settings")).json(&json!({"lobby": true})).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = owner.post(node.api(&format!("/api/meetings/{ROOM}/settings"))).json(&json!({"lobby": "yes"})).send().await.unwrap();
    assert_eq!(res.status(), 400);
    turn_lobby(&node, &owner, true).await;

    // No host yet: guests wait, and are told nobody can let them in yet.
    let join = |name: &str| json!({"type": "join", "v": 1, "invite": guest, "name": name, "audio": true, "video": true});
    let mut ana = Signaling::connect(&node, ROOM).await;
    ana.send(join("Ana")).await;
    assert_eq!(ana.expect("lobby").await["host_present"], false);
    let mut bo = Signaling::connect(&node, ROOM).await;
    bo.send(join("Bo")).await;
    assert_eq!(bo.expect("lobby").await["host_present"], false);
    assert_eq!(node.metric("confab_participants").await, 0, "nobody waiting holds a seat");
    // What a waiting guest sends is refused, and nothing reaches anyone.
    for message in [
        json!({"type": "chat", "text": "let me in"}),
        json!({"type": "signal", "to": "p9", "description": {"type": "offer", "sdp": "v=0"}}),
        json!({"type": "hand", "raised": true}),
        json!({"type": "sfu-offer", "sdp": "v=0"}),
        json!({"type": "admit", "participant": "all"}),
    ] {
        bo.send(message.clone()).await;
        assert_eq!(bo.expect("error").await["code"], "in_lobby", "{message}");
    }

    // A host arrives: seated, told who waits (oldest first); the lobby hears a host is here.
    let (mut host, welcome) = Signaling::join(&node, ROOM, &host_invite, "Hana").await;
    assert_eq!(welcome["lobby"], true);
    let waiting: Vec<&str> = welcome["waiting"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(waiting, ["Ana", "Bo"]);
    let (ana_id, bo_id) = (welcome["waiting"][0]["id"].clone(), welcome["waiting"][1]["id"].clone());
    assert_eq!(ana.expect("lobby").await["host_present"], true);
    assert_eq!(bo.expect("lobby").await["host_present"], true);

    // A guest already inside cannot admit or deny: not_host, and nothing changes.
    host.send(json!({"type": "admit", "participant": ana_id})).await;
    let welcome_a = ana.expect("welcome").await;
    assert_eq!(welcome_a["you"]["id"], ana_id, "admitted under the id the host saw");
    assert!(welcome_a.get("waiting").is_none(), "a guest is not shown the lobby: {welcome_a}");
    assert_eq!(host.wait_for("joined").await["participant"]["name"], "Ana");
    for message in
        [json!({"type": "admit", "participant": bo_id}), json!({"type": "admit", "participant": "all"}), json!({"type": "deny", "participant": bo_id})]
    {
        ana.send(message.clone()).await;
        assert_eq!(ana.expect("error").await["code"], "not_host", "{message}");
    }
    // Meanwhile Bo, still waiting, heard nothing: no joined, no chat, no signal, no sfu-*.
    host.send(json!({"type": "chat", "text": "welcome, Ana"})).await;
    ana.wait_for("chat").await;
    assert_eq!(heard_until_pong(&mut bo).await, Vec::<String>::new(), "Bo hears nothing of the meeting while waiting");

    // Turned away: told by whom, then the close 4005; the host's list empties.
    host.send(json!({"type": "deny", "participant": bo_id})).await;
    assert_eq!(bo.expect("denied").await["by"], "Hana");
    assert_eq!(bo.expect_close().await, Some(4005));
    let list = host.wait_for("waiting").await;
    let list = if list["guests"].as_array().unwrap().len() == 1 { host.wait_for("waiting").await } else { list };
    assert_eq!(list["guests"], json!([]), "{list}");
    assert_eq!(node.metric("confab_participants").await, 2);

    // Turning the lobby off lets whoever waits in at once.
    let mut cy = Signaling::connect(&node, ROOM).await;
    cy.send(join("Cy")).await;
    cy.expect("lobby").await;
    turn_lobby(&node, &owner, false).await;
    assert_eq!(cy.expect("welcome").await["lobby"], false);
}

#[tokio::test]
async fn the_owners_settings_restrict_sharing_to_hosts_and_mute_newcomers_past_a_size() {
    let node = Node::start().await;
    let owner = node.admin().await;
    let key = AccountKey::from_seed([7; 32]);
    let guest = make_invite(&owner, &node, &key, ROOM, 3600).await;
    let host_invite = make_invite_as(&owner, &node, &key, ROOM, 3600, Role::Host).await;
    let settings = |body: Value| {
        let (owner, url) = (owner.clone(), node.api(&format!("/api/meetings/{ROOM}/settings")));
        async move {
            let res = owner.post(url).json(&body).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    // Each setting alone; the others stay. Bad values are refused with their codes.
    let (status, body) = settings(json!({"share": "hosts"})).await;
    assert_eq!((status, &body["share"], &body["lobby"], &body["muted_above"]), (200, &json!("hosts"), &json!(false), &json!(0)), "{body}");
    let (status, body) = settings(json!({"muted_above": 2})).await;
    assert_eq!((status, &body["share"], &body["muted_above"]), (200, &json!("hosts"), &json!(2)), "{body}");
    assert_eq!(settings(json!({"share": "some"})).await.0, 400);
    let (status, body) = settings(json!({"muted_above": 10_001})).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("settings_invalid")), "{body}");
    let listed: Value = owner.get(node.api("/api/meetings")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed[0]["share"], "hosts", "{listed}");

    let (mut host, welcome) = Signaling::join(&node, ROOM, &host_invite, "Hana").await;
    assert_eq!((welcome["share"].as_str(), welcome["muted_above"].as_u64()), (Some("hosts"), Some(2)));
    let (mut ana, _) = Signaling::join(&node, ROOM, &guest, "Ana").await;
    // A guest's share is refused; a host's goes through.
    ana.send(json!({"type": "media", "audio": true, "video": true, "screen": true})).await;
    assert_eq!(ana.wait_for("error").await["code"], "share_not_allowed");
    host.send(json!({"type": "media", "audio": true, "video": true, "screen": true})).await;
    loop {
        let updated = ana.wait_for("updated").await;
        if updated["participant"]["name"] == "Hana" && updated["participant"]["screen"] == true {
            break;
        }
    }
    // The third joins muted (more than two were there), is told, and is shown muted.
    let (mut bo, welcome) = Signaling::join(&node, ROOM, &guest, "Bo").await;
    assert_eq!(welcome["you"]["audio"], false, "{welcome}");
    assert_eq!(bo.expect("joined-muted").await["above"], 2);
    let joined = host.wait_for("joined").await;
    let joined = if joined["participant"]["name"] == "Bo" { joined } else { host.wait_for("joined").await };
    assert_eq!(joined["participant"]["audio"], false, "{joined}");
    bo.send(json!({"type": "media", "audio": true, "video": true})).await;
    loop {
        let updated = host.wait_for("updated").await;
        if updated["participant"]["name"] == "Bo" && updated["participant"]["audio"] == true {
            break;
        }
    }
}

#[tokio::test]
async fn an_owner_copies_live_links_again_renames_a_meeting_and_deleting_it_ends_it_and_voids_its_links() {
    let node = Node::start().await;
    let owner = node.admin().await;
    let key = AccountKey::from_seed([7; 32]);
    let guest = make_invite(&owner, &node, &key, ROOM, 3600).await;
    // The live invite's link can be copied again from the list.
    let invites: Value = owner.get(node.api("/api/invites")).send().await.unwrap().json().await.unwrap();
    assert_eq!(invites[0]["status"], "active");
    assert_eq!(invites[0]["link"], format!("{}/m/{ROOM}#{guest}", node.url), "{invites}");

    // A title for people; links keep the room name. Bad titles are refused.
    let rename = |title: &str| {
        let (owner, url, body) = (owner.clone(), node.api(&format!("/api/meetings/{ROOM}/rename")), json!({"title": title}));
        async move {
            let res = owner.post(url).json(&body).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = rename("  Tuesday   clinic ").await;
    assert_eq!((status, body["title"].as_str(), body["room"].as_str()), (200, Some("Tuesday clinic"), Some(ROOM)), "{body}");
    let checked: Value =
        client().post(node.api("/api/invites/check")).json(&json!({"room": ROOM, "invite": guest})).send().await.unwrap().json().await.unwrap();
    assert_eq!(checked["title"], "Tuesday clinic", "{checked}");
    let (status, body) = rename(&"x".repeat(65)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("title_invalid")), "{body}");
    let (status, body) = rename("").await;
    assert_eq!((status, body["title"].as_str()), (200, Some(ROOM)), "an empty title is the room name again: {body}");
    let res = client().post(node.api(&format!("/api/meetings/{ROOM}/rename"))).json(&json!({"title": "mine"})).send().await.unwrap();
    assert_eq!(res.status(), 401, "only its owner renames it");

    // Deleting ends the meeting in progress and voids its links.
    let (mut ana, _) = Signaling::join(&node, ROOM, &guest, "Ana").await;
    let res = owner.post(node.api(&format!("/api/meetings/{ROOM}/delete"))).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let code = loop {
        match ana.next().await {
            Heard::Message(m) if m["type"] == "left" => assert_eq!(m["reason"], "ended"),
            Heard::Message(_) => {}
            Heard::Closed(code) => break code,
        }
    };
    assert_eq!(code, Some(4004));
    let res = client().post(node.api("/api/invites/check")).json(&json!({"room": ROOM, "invite": guest})).send().await.unwrap();
    assert_eq!(res.status(), 404, "the meeting is gone");
    let invites: Value = owner.get(node.api("/api/invites")).send().await.unwrap().json().await.unwrap();
    assert_eq!(invites[0]["status"], "revoked", "{invites}");
    assert!(invites[0].get("link").is_none(), "no link to copy for a revoked invite: {invites}");
    let res = owner.post(node.api(&format!("/api/meetings/{ROOM}/delete"))).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn a_host_removes_someone_and_revokes_their_personal_invite_in_one_step_but_never_a_shared_one() {
    let node = Node::start().await;
    let owner = node.admin().await;
    let key = AccountKey::from_seed([7; 32]);
    let shared = make_invite(&owner, &node, &key, ROOM, 3600).await;
    let personal = confab_tests::node::make_personal_invite(&owner, &node, &key, ROOM, "Pia").await;
    let host_invite = make_invite_as(&owner, &node, &key, ROOM, 3600, Role::Host).await;
    let (mut host, _) = Signaling::join(&node, ROOM, &host_invite, "Hana").await;
    let (_gus, welcome_g) = Signaling::join(&node, ROOM, &shared, "Gus").await;
    let (mut pia, welcome_p) = Signaling::join(&node, ROOM, &personal, "Pia").await;
    let mut seen = BTreeMap::new();
    while seen.len() < 2 {
        let joined = host.wait_for("joined").await;
        seen.insert(joined["participant"]["name"].as_str().unwrap().to_string(), joined["participant"].get("personal").cloned());
    }
    assert_eq!(seen["Pia"], Some(json!(true)), "hosts see that Pia's invite is hers alone: {seen:?}");
    assert_eq!(seen["Gus"], None, "{seen:?}");

    // A shared link is never revoked from the meeting: refused, and Gus stays.
    host.send(json!({"type": "remove", "participant": id(&welcome_g), "revoke": true})).await;
    assert_eq!(host.wait_for("error").await["code"], "invite_shared");
    assert_eq!(node.metric("confab_participants").await, 3);

    // Pia: removed and her invite revoked, in one step.
    host.send(json!({"type": "remove", "participant": id(&welcome_p), "revoke": true})).await;
    assert_eq!(pia.wait_for("removed").await["by"], "Hana");
    assert_eq!(pia.expect_close().await, Some(4001));
    let invites: Value = owner.get(node.api("/api/invites")).send().await.unwrap().json().await.unwrap();
    let hers = invites.as_array().unwrap().iter().find(|i| i["for"] == "Pia").expect("the personal invite is listed with whom it is for");
    assert_eq!(hers["status"], "revoked", "{hers}");
    // Her link no longer opens the meeting, from anywhere.
    let mut again = Signaling::connect(&node, ROOM).await;
    again.send(json!({"type": "join", "v": 1, "invite": personal, "name": "Pia", "audio": true, "video": true})).await;
    assert_eq!(again.expect("error").await["code"], "capability_revoked");
    let res = client().post(node.api("/api/invites/check")).json(&json!({"room": ROOM, "invite": personal})).send().await.unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn before_the_meeting_opens_guests_are_refused_with_the_time_and_hosts_may_come_in() {
    let node = Node::start().await;
    let owner = node.admin().await;
    let key = AccountKey::from_seed([7; 32]);
    let guest = make_invite(&owner, &node, &key, ROOM, 3600).await;
    let host_invite = make_invite_as(&owner, &node, &key, ROOM, 3600, Role::Host).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let set = |opens_at: u64| {
        let (owner, url) = (owner.clone(), node.api(&format!("/api/meetings/{ROOM}/settings")));
        async move { owner.post(url).json(&json!({"opens_at": opens_at})).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(set(now + 3600).await, 200);
    assert_eq!(set(now * 1000).await, 400, "milliseconds are a mistake, refused");
    // The invite page learns when, and the node's time, to count down.
    let checked: Value =
        client().post(node.api("/api/invites/check")).json(&json!({"room": ROOM, "invite": guest})).send().await.unwrap().json().await.unwrap();
    assert_eq!(checked["opens_at"], now + 3600, "{checked}");
    assert!(checked["now"].as_u64().is_some_and(|t| t.abs_diff(now) < 60), "{checked}");
    let mut early = Signaling::connect(&node, ROOM).await;
    early.send(json!({"type": "join", "v": 1, "invite": guest, "name": "Early", "audio": true, "video": true})).await;
    let refused = early.expect("error").await;
    assert_eq!(refused["code"], "meeting_not_open", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("UTC"), "the time it opens: {refused}");
    assert_eq!(early.expect_close().await, Some(4003));
    let _host = Signaling::join(&node, ROOM, &host_invite, "Hana").await;
    // Open now: the guest comes in.
    assert_eq!(set(0).await, 200);
    let _guest = Signaling::join(&node, ROOM, &guest, "Early").await;
}

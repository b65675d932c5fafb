//! Meetings as a direct mesh, in real browsers: three headless Chromium participants see,
//! hear and show each other with media going browser to browser; Firefox ESR joins two
//! Chromium participants; simultaneous joins (glare) connect; a dropped signaling connection
//! reconnects without interrupting media.

use std::time::{Duration, Instant};

use confab_keys::AccountKey;
use confab_tests::Node;
use confab_tests::meeting::Participant;
use confab_tests::node::{make_invite, make_invite_as};

const ROOM: &str = "weekly";
const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>";

async fn meeting(options: &[&str]) -> (Node, String) {
    let (node, guest, _) = meeting_with_host(options).await;
    (node, guest)
}

/// A node with a meeting, and a guest link and a host link to it.
async fn meeting_with_host(options: &[&str]) -> (Node, String, String) {
    let node = Node::start_with(options).await;
    let admin = node.admin().await;
    let key = AccountKey::from_seed([3; 32]);
    let guest = make_invite(&admin, &node, &key, ROOM, 3600).await;
    let host = make_invite_as(&admin, &node, &key, ROOM, 3600, confab_keys::Role::Host).await;
    let (guest, host) = (format!("{}/m/{ROOM}#{guest}", node.url), format!("{}/m/{ROOM}#{host}", node.url));
    (node, guest, host)
}

async fn metric(node: &Node, name: &str) -> u64 {
    let text = confab_tests::client().get(node.api("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_chromium_participants_meet_in_a_direct_mesh_and_a_host_removes_one() {
    let _browsers = confab_tests::browser::exclusive().await;
    let (node, link, host_link) = meeting_with_host(&[]).await;
    let (a, b, c) = tokio::join!(
        Participant::chromium(&host_link, "Ana"),
        Participant::chromium(&link, "Bo"),
        Participant::chromium(&link, HOSTILE_NAME),
    );
    let (mut a, mut b, mut c) = (a, b, c);
    let ida = a.join().await;
    let idb = b.join().await;
    let idc = c.join().await;

    // Everyone decodes video and receives audio from the two others.
    for (p, others) in [(&a, [&idb, &idc]), (&b, [&ida, &idc]), (&c, [&ida, &idb])] {
        let stats = p.wait_receiving(&[others[0], others[1]]).await;
        for id in others {
            let s = &stats[id.as_str()];
            println!("{} ← {id}: {} frames, {} samples, path {}", p.name, s.frames_decoded, s.samples_received, s.path);
            // Browser to browser: never through a relay, and never to the node's port.
            for end in ["local", "remote"] {
                let kind = s.path[end]["type"].as_str().unwrap_or("none");
                assert!(["host", "srflx", "prflx"].contains(&kind), "{}'s pair with {id} runs over a {kind} candidate: {}", p.name, s.path);
                assert_eq!(s.path[end]["protocol"], "udp", "{}", s.path);
            }
            let node_port = node.url.rsplit(':').next().unwrap().parse::<u64>().unwrap();
            assert_ne!(s.path["remote"]["port"].as_u64(), Some(node_port));
        }
    }
    // The SFU's socket neither received nor sent a single datagram.
    for counter in ["confab_media_received_packets_total", "confab_media_forwarded_packets_total", "confab_media_forwarded_frames_total"] {
        assert_eq!(metric(&node, counter).await, 0, "{counter}");
    }
    assert_eq!(metric(&node, "confab_participants").await, 3);

    // The hostile name is text on everyone's screen, and ran nothing.
    for p in [&a, &b] {
        let tile = p.wait_tile(&idc, "to show the name", |t| !t.name.is_empty()).await;
        assert_eq!(tile.name, HOSTILE_NAME);
        let images = p.browser.eval("return document.querySelectorAll('#tiles img').length").await;
        assert_eq!(images, 0, "markup in a name became an element");
        assert!(p.browser.client.get_alert_text().await.is_err(), "an alert is open: the name ran as code");
    }
    assert_eq!(c.tile(&idc).await.unwrap().name, format!("{HOSTILE_NAME} (you)"));

    // Mute and camera-off show on the others' tiles.
    a.browser.click("#toggle-mic").await;
    for p in [&b, &c] {
        let tile = p.wait_tile(&ida, "to show muted", |t| !t.audio).await;
        assert!(tile.shows_muted && tile.video);
    }
    a.browser.click("#toggle-camera").await;
    for p in [&b, &c] {
        p.wait_tile(&ida, "to show the camera off", |t| !t.video).await;
    }
    a.browser.click("#toggle-mic").await;
    a.browser.click("#toggle-camera").await;
    for p in [&b, &c] {
        p.wait_tile(&ida, "to show microphone and camera on again", |t| t.audio && t.video && !t.shows_muted).await;
    }
    b.wait_receiving(&[&ida]).await;

    // A leaver's tile is gone from the others' screens within 2 s.
    let left = Instant::now();
    c.leave().await;
    for p in [&a, &b] {
        let took = p.wait_tile_gone(&idc, Duration::from_secs(2)).await;
        println!("{}: the leaver's tile went {took:?} after the click ({:?} in all)", p.name, left.elapsed());
    }
    assert_eq!(metric(&node, "confab_participants").await, 2);

    // Ana is a host: she removes Bo, who is told by whom; guests get no Remove buttons.
    let buttons = b.browser.eval("return document.querySelectorAll('#tiles .remove').length").await;
    assert_eq!(buttons, 0, "a guest sees Remove buttons");
    a.browser.click(&format!("[data-participant=\"{idb}\"] .remove")).await;
    let reason = b.browser.wait_visible("#ended-reason").await;
    assert_eq!(reason, "Ana removed you from the meeting.");
    a.wait_tile_gone(&idb, Duration::from_secs(5)).await;
    assert_eq!(metric(&node, "confab_participants").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn firefox_esr_and_two_chromium_participants_exchange_media() {
    let _browsers = confab_tests::browser::exclusive().await;
    let (_node, link) = meeting(&[]).await;
    let (fox, a, b) = tokio::join!(
        Participant::firefox(&link, "Fox"),
        Participant::chromium(&link, "Ana"),
        Participant::chromium(&link, "Bo"),
    );
    let (mut fox, mut a, mut b) = (fox, a, b);
    let idf = fox.join().await;
    let ida = a.join().await;
    let idb = b.join().await;
    for (p, others) in [(&fox, [&ida, &idb]), (&a, [&idf, &idb]), (&b, [&idf, &ida])] {
        let stats = p.wait_receiving(&[others[0], others[1]]).await;
        for id in others {
            let s = &stats[id.as_str()];
            println!("{} ← {id}: {} frames, {} samples, path {}", p.name, s.frames_decoded, s.samples_received, s.path);
        }
    }
}



/// Starts recording, every 100 ms in `p`'s page, the frames decoded from `from` and whether
/// its tile is on screen.
async fn start_sampling(p: &Participant, from: &str) {
    let script = "const from = arguments[0]; window.__samples = []; \
        window.__sampler = setInterval(async () => { \
          const s = (await window.confabCall.stats()).find(x => x.id === from); \
          window.__samples.push([performance.now(), s ? s.framesDecoded : -1, document.querySelector(`[data-participant=\"${from}\"]`) ? 1 : 0]); \
        }, 100);";
    p.browser.client.execute(script, vec![serde_json::json!(from)]).await.unwrap();
}

/// Stops the recording; returns the longest time without a new decoded frame, and whether
/// the tile stayed on screen throughout.
async fn stop_sampling(p: &Participant) -> (Duration, bool, usize) {
    let samples = p.browser.eval("clearInterval(window.__sampler); return window.__samples").await;
    let samples: Vec<(f64, f64, f64)> = serde_json::from_value(samples).unwrap();
    let mut longest = 0.0f64;
    let mut last_change = samples[0].0;
    for pair in samples.windows(2) {
        if pair[1].1 > pair[0].1 {
            longest = longest.max(pair[1].0 - last_change);
            last_change = pair[1].0;
        }
    }
    longest = longest.max(samples.last().unwrap().0 - last_change);
    let tile_always_there = samples.iter().all(|s| s.2 == 1.0);
    (Duration::from_secs_f64(longest / 1000.0), tile_always_there, samples.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_signaling_connection_reconnects_without_interrupting_media_and_ice_restarts() {
    let _browsers = confab_tests::browser::exclusive().await;
    let (_node, link) = meeting(&[]).await;
    let (a, b) = tokio::join!(Participant::chromium(&link, "Ana"), Participant::chromium(&link, "Bo"));
    let (mut a, mut b) = (a, b);
    let ida = a.join().await;
    let idb = b.join().await;
    a.wait_receiving(&[&idb]).await;
    b.wait_receiving(&[&ida]).await;

    start_sampling(&a, &idb).await;
    start_sampling(&b, &ida).await;
    a.browser.eval("window.confabCall.signaling.dropConnection()").await;
    confab_tests::eventually("Ana's signaling to reconnect", Duration::from_secs(20), || async {
        (a.browser.eval("return window.confabCall.signaling.welcomes").await.as_u64() >= Some(2)).then_some(())
    })
    .await;
    assert_eq!(a.browser.eval("return window.confabCall.me.id").await, serde_json::json!(ida), "the seat changed");
    // Keep sampling for three seconds after the drop (30 samples), so that a stall would show.
    for p in [&a, &b] {
        confab_tests::eventually("30 samples", Duration::from_secs(20), || async {
            (p.browser.eval("return window.__samples.length").await.as_u64() >= Some(30)).then_some(())
        })
        .await;
    }
    // Media keeps flowing after the reconnection, too.
    a.wait_receiving(&[&idb]).await;
    b.wait_receiving(&[&ida]).await;
    for (p, from) in [(&a, &idb), (&b, &ida)] {
        let (gap, tile_kept, samples) = stop_sampling(p).await;
        println!("{} ← {from}: longest gap between decoded frames across the reconnection: {gap:?} ({samples} samples)", p.name);
        assert!(tile_kept, "{}'s tile for {from} disappeared", p.name);
        assert!(gap < Duration::from_secs(1), "{}'s video from {from} stopped for {gap:?}", p.name);
    }
    // Signaling works again: a media change reaches the other side.
    a.browser.click("#toggle-mic").await;
    b.wait_tile(&ida, "to show muted", |t| !t.audio).await;

    // An ICE restart (what a failed pair does) renegotiates the pair with new credentials,
    // and media carries on.
    let remote_ufrag = "return window.confabCall.peers.get(arguments[0]).pc.remoteDescription.sdp.match(/a=ice-ufrag:(\\S+)/)[1]";
    let before = b.browser.client.execute(remote_ufrag, vec![serde_json::json!(ida)]).await.unwrap();
    a.browser.client.execute("window.confabCall.peers.get(arguments[0]).restartIce()", vec![serde_json::json!(idb)]).await.unwrap();
    confab_tests::eventually("Bo to see Ana's new ICE credentials", Duration::from_secs(20), || async {
        let now = b.browser.client.execute(remote_ufrag, vec![serde_json::json!(ida)]).await.unwrap();
        (now != before).then_some(())
    })
    .await;
    a.wait_receiving(&[&idb]).await;
    b.wait_receiving(&[&ida]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_participants_joining_at_the_same_instant_connect_twenty_times() {
    let _browsers = confab_tests::browser::exclusive().await;
    let (_node, link) = meeting(&[]).await;
    let (a, b) = tokio::join!(Participant::chromium(&link, "Ana"), Participant::chromium(&link, "Bo"));
    let (mut a, mut b) = (a, b);
    let click_at = "const at = arguments[0]; \
        setTimeout(() => { window.__clickedAt = Date.now(); document.querySelector('#join').click(); }, at - Date.now());";
    for round in 1..=20 {
        if round > 1 {
            tokio::join!(a.prejoin(&link), b.prejoin(&link));
        }
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let at = serde_json::json!(now_ms + 300);
        let started = Instant::now();
        let (ra, rb) = tokio::join!(a.browser.client.execute(click_at, vec![at.clone()]), b.browser.client.execute(click_at, vec![at]));
        ra.unwrap();
        rb.unwrap();
        let (ida, idb) = tokio::join!(a.wait_seated(), b.wait_seated());
        let (from_b, from_a) = ([idb.as_str()], [ida.as_str()]);
        let (sa, sb) = tokio::join!(a.wait_receiving(&from_b), b.wait_receiving(&from_a));
        let clicked_a = a.browser.eval("return window.__clickedAt").await.as_i64().unwrap();
        let clicked_b = b.browser.eval("return window.__clickedAt").await.as_i64().unwrap();
        println!(
            "round {round:2}: joins {} ms apart, both receiving after {:?} (offer collisions: {} / {})",
            (clicked_a - clicked_b).abs(),
            started.elapsed(),
            sa[&idb].collisions,
            sb[&ida].collisions
        );
        tokio::join!(a.leave(), b.leave());
    }
}

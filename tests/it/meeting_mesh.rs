//! Meetings as a direct mesh, in real browsers: three headless Chromium participants see,
//! hear and show each other with media going browser to browser; Firefox ESR joins two
//! Chromium participants; simultaneous joins (glare) connect; a dropped signaling connection
//! reconnects without interrupting media.

use std::time::{Duration, Instant};

use confab_tests::Node;
use confab_tests::meeting::{Participant, each_receives_the_others, start_meeting};
use serde_json::json;

const ROOM: &str = "weekly";
const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>";

async fn meeting(options: &[&str]) -> (Node, String) {
    let (node, guest, _) = start_meeting(options, ROOM).await;
    (node, guest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_chromium_participants_meet_in_a_direct_mesh_and_a_host_removes_one() {
    let _browsers = confab_tests::browser::exclusive().await;
    let (node, link, host_link) = start_meeting(&[], ROOM).await;
    let (a, b, c) = tokio::join!(Participant::chromium(&host_link, "Ana"), Participant::chromium(&link, "Bo"), Participant::chromium(&link, HOSTILE_NAME),);
    let (mut a, mut b, mut c) = (a, b, c);
    let ida = a.join().await;
    let idb = b.join().await;
    let idc = c.join().await;

    // Everyone decodes video and receives audio from the two others.
    let node_port = node.url.rsplit(':').next().unwrap().parse::<u64>().unwrap();
    for (p, id, s) in each_receives_the_others(&[&a, &b, &c]).await {
        // Browser to browser: never through a relay, and never to the node's port.
        assert_eq!(s.via, "mesh");
        for end in ["local", "remote"] {
            let kind = s.path[end]["type"].as_str().unwrap_or("none");
            assert!(["host", "srflx", "prflx"].contains(&kind), "{}'s pair with {id} runs over a {kind} candidate: {}", p.name, s.path);
            assert_eq!(s.path[end]["protocol"], "udp", "{}", s.path);
        }
        assert_ne!(s.path["remote"]["port"].as_u64(), Some(node_port));
    }
    // The SFU's socket neither received nor sent a single datagram.
    for counter in ["confab_media_received_packets_total", "confab_media_forwarded_packets_total", "confab_media_forwarded_frames_total"] {
        assert_eq!(node.metric(counter).await, 0, "{counter}");
    }
    assert_eq!(node.metric("confab_participants").await, 3);

    // The hostile name is text on everyone's screen, and ran nothing.
    for p in [&a, &b] {
        let tile = p.wait_tile(&idc, "to show the name", |t| !t.name.is_empty()).await;
        assert_eq!(tile.name, HOSTILE_NAME);
        let images = p.browser.eval("return document.querySelectorAll('#tiles img').length").await;
        assert_eq!(images, 0, "markup in a name became an element");
        assert!(p.browser.client.get_alert_text().await.is_err(), "an alert is open: the name ran as code");
    }
    assert_eq!(c.tile(&idc).await.unwrap().name, format!("{HOSTILE_NAME} (you)"));

    // Chat typed as people do: text only on every screen, the link clickable with no opener,
    // an unread count while the panel is closed.
    c.browser.click("#toggle-chat").await;
    let typed = "<img src=x onerror=alert(2)> slides: https://example.org/slides.";
    c.browser.fill("#chat-text", typed).await;
    c.browser.click("#chat-form button[type=submit]").await;
    for p in [&a, &b] {
        assert_eq!(p.browser.wait_visible("#chat-unread").await, "1", "{}'s unread count", p.name);
        p.browser.click("#toggle-chat").await;
        assert_eq!(p.browser.wait_visible("#chat-log .chat-message .text").await, typed);
        let shown = p
            .browser
            .eval(
                "const m = document.querySelector('#chat-log .chat-message'); const link = m.querySelector('a'); \
                 return { images: document.querySelectorAll('#chat-log img').length, href: link?.href, rel: link?.rel, \
                          name: m.querySelector('.name').textContent, unreadShown: !document.querySelector('#chat-unread').hidden }",
            )
            .await;
        assert_eq!(shown, json!({"images": 0, "href": "https://example.org/slides", "rel": "noopener noreferrer", "name": HOSTILE_NAME, "unreadShown": false}));
        assert!(p.browser.client.get_alert_text().await.is_err(), "an alert is open: chat ran as code");
    }

    // Hands: raised in order, the same queue on every screen; a guest may lower only their
    // own, a host anyone's.
    let queue = "return [...document.querySelectorAll('#hand-queue li')].map(li => li.dataset.participant)";
    for p in [&b, &c, &a] {
        p.browser.click("#toggle-hand").await;
        confab_tests::eventually("the node to take the raised hand", Duration::from_secs(5), || async {
            (p.browser.eval("return document.querySelector('#toggle-hand').getAttribute('aria-pressed')").await == "true").then_some(())
        })
        .await;
    }
    for p in [&a, &b, &c] {
        confab_tests::eventually(&format!("{}'s hand queue", p.name), Duration::from_secs(5), || async {
            (p.browser.eval(queue).await == json!([idb, idc, ida])).then_some(())
        })
        .await;
    }
    let lowerable = "return [...document.querySelectorAll('#hand-queue li')].filter(li => li.querySelector('.lower-hand')).map(li => li.dataset.participant)";
    assert_eq!(b.browser.eval(lowerable).await, json!([idb]), "a guest can lower only their own hand");
    assert_eq!(a.browser.eval(lowerable).await, json!([idb, idc, ida]), "a host can lower every hand");
    a.browser.click("#toggle-people").await;
    a.browser.click(&format!("#hand-queue li[data-participant=\"{idb}\"] .lower-hand")).await;
    for p in [&a, &b, &c] {
        confab_tests::eventually(&format!("{}'s hand queue without Bo", p.name), Duration::from_secs(5), || async {
            (p.browser.eval(queue).await == json!([idc, ida])).then_some(())
        })
        .await;
    }
    assert_eq!(b.browser.eval("return document.querySelector('#toggle-hand').textContent").await, "Raise hand");

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

    // The same by keyboard: M mutes and unmutes, ? lists the shortcuts.
    let ana = &a;
    let press = |key: &'static str| async move {
        ana.browser.client.active_element().await.expect("a focused element").send_keys(key).await.expect("the key reaches the page");
    };
    press("m").await;
    for p in [&b, &c] {
        p.wait_tile(&ida, "to show muted after M", |t| !t.audio).await;
    }
    press("m").await;
    for p in [&b, &c] {
        p.wait_tile(&ida, "to show unmuted after M again", |t| t.audio).await;
    }
    press("?").await;
    assert_eq!(a.browser.eval("return document.querySelector('#shortcuts').open").await, json!(true), "? opens the list of shortcuts");
    a.browser.eval("document.querySelector('#shortcuts').close()").await;

    // Ana, a host, mutes everyone: Bo's and Cy's microphones go off (their buttons say so)
    // and everyone's list shows them muted; Ana's stays on. Guests have no host tools.
    assert_eq!(b.browser.eval("return document.querySelector('#host-tools').hidden").await, json!(true), "a guest sees host tools");
    a.browser.eval("document.querySelector('#people-panel').hidden && document.querySelector('#toggle-people').click()").await;
    a.browser.click("#mute-all").await;
    for p in [&b, &c] {
        confab_tests::eventually(&format!("{}'s microphone to be muted by the host", p.name), Duration::from_secs(10), || async {
            (p.browser.eval("return document.querySelector('#toggle-mic').textContent").await == json!("Unmute")).then_some(())
        })
        .await;
    }
    assert_eq!(a.browser.eval("return document.querySelector('#toggle-mic').textContent").await, json!("Mute"), "the host keeps her microphone");
    confab_tests::eventually("Ana's list to show Bo and Cy muted", Duration::from_secs(10), || async {
        let muted =
            a.browser.eval(&format!("return ['{idb}', '{idc}'].every((id) => !document.querySelector(`#people [data-participant=\"${{id}}\"] .mute`))")).await;
        (muted == json!(true)).then_some(())
    })
    .await;

    // A leaver's tile is gone from the others' screens within 2 s.
    let left = Instant::now();
    c.leave().await;
    for p in [&a, &b] {
        let took = p.wait_tile_gone(&idc, Duration::from_secs(2)).await;
        println!("{}: the leaver's tile went {took:?} after the click ({:?} in all)", p.name, left.elapsed());
    }
    assert_eq!(node.metric("confab_participants").await, 2);

    // Ana is a host: she removes Bo, who is told by whom; guests get no Remove buttons.
    let buttons = b.browser.eval("return document.querySelectorAll('#tiles .remove').length").await;
    assert_eq!(buttons, 0, "a guest sees Remove buttons");
    a.browser.click(&format!("[data-participant=\"{idb}\"] .remove")).await;
    // She confirms (the dialog says who is barred: this link from this network only).
    let question = a.browser.client.get_alert_text().await.expect("a confirmation before a removal");
    assert!(question.starts_with("Remove Bo from the meeting?"), "{question}");
    a.browser.client.accept_alert().await.unwrap();
    let reason = b.browser.wait_visible("#ended-reason").await;
    assert_eq!(reason, "Ana removed you from the meeting.");
    a.wait_tile_gone(&idb, Duration::from_secs(5)).await;
    assert_eq!(node.metric("confab_participants").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn firefox_esr_and_two_chromium_participants_exchange_media() {
    let _browsers = confab_tests::browser::exclusive().await;
    let (_node, link) = meeting(&[]).await;
    let (fox, a, b) = tokio::join!(Participant::firefox(&link, "Fox"), Participant::chromium(&link, "Ana"), Participant::chromium(&link, "Bo"),);
    let (mut fox, mut a, mut b) = (fox, a, b);
    fox.join().await;
    a.join().await;
    b.join().await;
    each_receives_the_others(&[&fox, &a, &b]).await;
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

    a.start_sampling(&[&idb]).await;
    b.start_sampling(&[&ida]).await;
    a.browser.eval("window.confabCall.signaling.dropConnection()").await;
    confab_tests::eventually("Ana's signaling to reconnect", Duration::from_secs(20), || async {
        (a.browser.eval("return window.confabCall.signaling.welcomes").await.as_u64() >= Some(2)).then_some(())
    })
    .await;
    assert_eq!(a.browser.eval("return window.confabCall.me.id").await, serde_json::json!(ida), "the seat changed");
    // Keep sampling for three seconds after the drop (30 samples), so that a stall would show.
    for p in [&a, &b] {
        confab_tests::eventually("30 samples", Duration::from_secs(20), || async { (p.samples().await >= 30).then_some(()) }).await;
    }
    // Media keeps flowing after the reconnection, too.
    a.wait_receiving(&[&idb]).await;
    b.wait_receiving(&[&ida]).await;
    for (p, from) in [(&a, &idb), (&b, &ida)] {
        for gap in p.stop_sampling(&[from]).await {
            println!("{} ← {from}: longest gap between decoded frames across the reconnection: {:?} ({} samples)", p.name, gap.longest, gap.samples);
            assert!(gap.tile_kept, "{}'s tile for {from} disappeared", p.name);
            assert!(gap.longest < Duration::from_secs(1), "{}'s video from {from} stopped for {:?}", p.name, gap.longest);
        }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_screen_share_reaches_everyone_in_the_mesh_as_its_own_tile_without_stopping_the_camera() {
    let _browsers = confab_tests::browser::exclusive().await;
    let (_node, link) = meeting(&[]).await;
    let (a, b, c) = tokio::join!(Participant::chromium(&link, "Ana"), Participant::chromium(&link, "Bo"), Participant::chromium(&link, "Cy"));
    let (mut a, mut b, mut c) = (a, b, c);
    let ida = a.join().await;
    b.join().await;
    c.join().await;
    each_receives_the_others(&[&a, &b, &c]).await;
    // Ana starts and stops sharing three times; her camera keeps playing on the others'
    // screens. Its freezes are counted by their browsers' video pipelines (the pages' own
    // timers run late on a loaded machine) and printed: issue 14 asks that none last over
    // 0.5 s as a share starts or stops, a timing figure kept in docs/benchmarks.md ("Screen
    // share": met in every run on one machine, not on a saturated one). Asserted:
    // the camera's tile stays and it still plays after the three shares (the page's looks
    // at the counters can themselves stop on this machine, so the windows are only printed).
    b.watch_freezes(&ida).await;
    c.watch_freezes(&ida).await;
    let mut windows = Vec::new();
    for round in 1..=3 {
        for on in [true, false] {
            let (window, took) = confab_tests::meeting::toggle_share(&a, &[&b, &c], on).await;
            windows.push(window);
            if on {
                println!("round {round}: Ana's screen on Bo's and Cy's screens {took:?} after the click");
                assert_eq!(a.browser.eval("return document.querySelector('#toggle-screen').textContent").await, "Stop sharing");
                let own = format!("return !!document.querySelector('#tiles [data-screen=\"{ida}\"]')");
                assert_eq!(a.browser.eval(&own).await, json!(true), "Ana sees her own share");
            }
        }
    }
    for p in [&b, &c] {
        p.wait_receiving(&[&ida]).await;
        let freezes = p.freezes().await;
        let (longest, around) = (freezes.longest(), freezes.longest_within(&windows));
        println!(
            "{} ← Ana's camera over three shares: longest freeze {around:?} around a start or stop, {longest:?} in all; {} freezes, {:?} frozen, {} frames",
            p.name, freezes.count, freezes.total, freezes.frames_decoded
        );
        assert!(p.tile(&ida).await.is_some(), "{}'s tile for Ana's camera went away", p.name);
        assert!(freezes.frames_decoded > 0, "{} decoded nothing of Ana's camera: {freezes:?}", p.name);
        let covered = windows.iter().filter(|w| freezes.decoded_within(**w) > 0).count();
        println!("{}: Ana's camera decoded in {covered} of {} start/stop windows the looks covered", p.name, windows.len());
    }
    // A late joiner (Firefox ESR, in Cy's place: four browsers on two cores starve each
    // other) sees a share already running at once.
    c.leave().await;
    drop(c);
    let mut fox = Participant::firefox(&link, "Fox").await;
    a.browser.click("#toggle-screen").await;
    b.wait_screen(&ida).await;
    let joined = Instant::now();
    fox.join().await;
    fox.wait_screen(&ida).await;
    println!("Firefox shows Ana's screen {:?} after joining", joined.elapsed());
}

/// The lobby in real browsers: two guests wait (the page says so); the host admits one, who
/// then meets her, and turns the other away, whose page says so; then she ends the meeting
/// for everyone and each page shows the ended screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_admits_one_of_two_lobby_guests_turns_the_other_away_and_ends_the_meeting_for_all() {
    let _browsers = confab_tests::browser::exclusive().await;
    let (node, link, host_link) = confab_tests::meeting::start_meeting_with(&[], ROOM, json!({"lobby": true})).await;
    let (h, a, b) = tokio::join!(Participant::chromium(&host_link, "Hana"), Participant::chromium(&link, "Ana"), Participant::chromium(&link, "Bo"));
    let (mut h, mut a, b) = (h, a, b);
    let idh = h.join().await;
    a.click_join().await;
    b.click_join().await;
    for p in [&a, &b] {
        let status = p.browser.wait_visible("#lobby-status").await;
        assert!(status.starts_with("A host is in the meeting"), "{}: {status}", p.name);
        assert_eq!(p.browser.eval("return document.querySelector('#call').hidden").await, json!(true), "{} sees no call while waiting", p.name);
    }
    assert_eq!(node.metric("confab_participants").await, 1, "the waiting hold no seat");

    // The host sees both waiting (a notice too), opens People, admits Ana.
    h.browser.click("#toggle-people").await;
    let waiting = confab_tests::eventually("both guests in the host's lobby list", Duration::from_secs(10), || async {
        let names = h.browser.eval("return [...document.querySelectorAll('#waiting-list li .name')].map((e) => e.textContent)").await;
        (names == json!(["Ana", "Bo"])).then_some(names)
    })
    .await;
    println!("Hana's lobby list: {waiting}");
    h.browser.click("#waiting-list li:first-child .admit").await;
    let ida = a.wait_seated().await;
    a.browser.wait_visible("#tiles").await;
    each_receives_the_others(&[&h, &a]).await;
    // Screen readers hear who came in (a live region).
    confab_tests::eventually("Hana's live region to announce Ana", Duration::from_secs(10), || async {
        (h.browser.eval("return document.querySelector('#announcer').textContent").await == json!("Ana joined")).then_some(())
    })
    .await;
    assert_eq!(b.browser.eval("return document.querySelector('#lobby').hidden").await, json!(false), "Bo still waits");

    // Bo is turned away: his page says so, and he is gone from the list.
    h.browser.click("#waiting-list li:first-child .deny").await;
    let reason = b.browser.wait_visible("#ended-reason").await;
    assert_eq!(reason, "Hana turned you away: you were not let into the meeting.");
    confab_tests::eventually("the host's lobby list to empty", Duration::from_secs(10), || async {
        (h.browser.eval("return document.querySelector('#lobby-guests').hidden").await == json!(true)).then_some(())
    })
    .await;

    // End for everyone, confirmed: both pages show the ended screen; the room is empty.
    h.browser.click("#end-all").await;
    let question = h.browser.client.get_alert_text().await.expect("a confirmation before ending for all");
    assert!(question.starts_with("End the meeting for everyone?"), "{question}");
    h.browser.client.accept_alert().await.unwrap();
    for p in [&h, &a] {
        let reason = p.browser.wait_visible("#ended-reason").await;
        assert_eq!(reason, "A host ended the meeting for everyone.", "{}", p.name);
    }
    confab_tests::eventually("the room to empty", Duration::from_secs(5), || async { (node.metric("confab_participants").await == 0).then_some(()) }).await;
    println!("{idh} admitted {ida}, turned Bo away and ended the meeting");
}

/// A meeting that opens in a few seconds: the invite page says when and keeps Join off, then
/// lets the guest in at the time, without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn before_the_meeting_opens_the_invite_page_counts_down_and_join_works_at_the_time() {
    let _browsers = confab_tests::browser::exclusive().await;
    let (node, link, _, owner) = confab_tests::meeting::start_meeting_owned(&[], ROOM).await;
    let b = confab_tests::browser::Browser::chromium().await;
    // The page once, while the meeting is open (its first load is the slow one); then the
    // meeting opens in twelve seconds (the page rounds up to "in 1 minute") and the page is
    // loaded again.
    b.goto(&link).await;
    b.wait_visible("#prejoin").await;
    let opens_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 12;
    let res = owner.post(node.api(&format!("/api/meetings/{ROOM}/settings"))).json(&json!({"opens_at": opens_at})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    b.eval("location.reload()").await;
    let said = b.wait_visible("#opens-at").await;
    assert!(said.starts_with("This meeting opens at") && said.contains("in 1 minute"), "{said}");
    assert_eq!(b.eval("return document.querySelector('#join').disabled").await, json!(true), "Join waits for the time");
    confab_tests::eventually("Join to work at the opening time", Duration::from_secs(30), || async {
        (b.eval("return !document.querySelector('#join').disabled && document.querySelector('#opens-at').hidden").await == json!(true)).then_some(())
    })
    .await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(now + 1 >= opens_at, "Join came on {}s before the time", opens_at.saturating_sub(now));
    let mut p = Participant { browser: b, name: "Early".into(), id: None };
    p.browser.fill("#display-name", "Early").await;
    p.join().await;
    assert_eq!(node.metric("confab_participants").await, 1);
}

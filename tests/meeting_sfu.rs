//! Meetings through the node's SFU, in real browsers.

use std::time::{Duration, Instant};

use confab_keys::AccountKey;
use confab_tests::Node;
use confab_tests::meeting::Participant;
use confab_tests::node::make_invite;

const ROOM: &str = "plenary";

async fn meeting(options: &[&str]) -> (Node, String) {
    let node = Node::start_with(options).await;
    let admin = node.admin().await;
    let invite = make_invite(&admin, &node, &AccountKey::from_seed([5; 32]), ROOM, 3600).await;
    let link = format!("{}/m/{ROOM}#{invite}", node.url);
    (node, link)
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
async fn with_threshold_zero_media_goes_through_the_sfu() {
    let _browsers = confab_tests::browser::exclusive().await;
    let (node, link) = meeting(&["--mesh-threshold", "0"]).await;
    let (a, b, c) = tokio::join!(
        Participant::chromium(&link, "Ana"),
        Participant::chromium(&link, "Bo"),
        Participant::chromium(&link, "Cy"),
    );
    let (mut a, mut b, mut c) = (a, b, c);
    let ida = a.join().await;
    let idb = b.join().await;
    let idc = c.join().await;
    for (p, others) in [(&a, [&idb, &idc]), (&b, [&ida, &idc]), (&c, [&ida, &idb])] {
        let stats = p.wait_receiving(&[others[0], others[1]]).await;
        for id in others {
            let s = &stats[id.as_str()];
            println!("{} ← {id} via {}: {} frames ({}p), {} samples, path {}", p.name, s.via, s.frames_decoded, s.frame_height, s.samples_received, s.path);
            assert_eq!(s.via, "sfu");
        }
    }
    let forwarded = metric(&node, "confab_media_forwarded_frames_total").await;
    println!("the SFU forwarded {forwarded} frames");
    assert!(forwarded > 0);
}

/// Records, every 100 ms in `p`'s page, the frames decoded from each of `from` (whatever the
/// path) and whether their tiles are on screen.
async fn start_sampling(p: &Participant, from: &[&str]) {
    let script = "const from = arguments[0]; window.__samples = []; \
        window.__sampler = setInterval(async () => { \
          const stats = await window.confabCall.stats(); \
          window.__samples.push([performance.now(), from.map(id => { const s = stats.find(x => x.id === id); return s ? s.framesDecoded : -1; }), \
            from.map(id => document.querySelector(`[data-participant=\"${id}\"]`) ? 1 : 0)]); \
        }, 100);";
    p.browser.client.execute(script, vec![serde_json::json!(from)]).await.unwrap();
}

/// Stops the recording; per sender, the longest time without newly decoded frames (a
/// counter that changes to another positive value counts: the path changed and decodes)
/// and whether the tile stayed throughout.
async fn stop_sampling(p: &Participant, from: &[&str]) -> Vec<(String, Duration, bool)> {
    let samples = p.browser.eval("clearInterval(window.__sampler); return window.__samples").await;
    let samples: Vec<(f64, Vec<f64>, Vec<f64>)> = serde_json::from_value(samples).unwrap();
    from.iter()
        .enumerate()
        .map(|(i, id)| {
            let mut longest = 0.0f64;
            let mut last = samples[0].0;
            for pair in samples.windows(2) {
                let (before, now) = (pair[0].1[i], pair[1].1[i]);
                if now > 0.0 && now != before {
                    longest = longest.max(pair[1].0 - last);
                    last = pair[1].0;
                }
            }
            longest = longest.max(samples.last().unwrap().0 - last);
            let tile_kept = samples.iter().all(|s| s.2[i] == 1.0);
            (id.to_string(), Duration::from_secs_f64(longest / 1000.0), tile_kept)
        })
        .collect()
}

async fn wait_via(p: &Participant, from: &[&str], via: &str) {
    confab_tests::eventually(&format!("{} to receive {from:?} via {via}", p.name), Duration::from_secs(40), || async {
        let stats = p.stats().await;
        from.iter().all(|id| stats.get(*id).is_some_and(|s| s.via == via)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_third_participant_moves_the_meeting_to_the_sfu_and_back_without_a_gap() {
    let _browsers = confab_tests::browser::exclusive().await;
    let (node, link) = meeting(&["--mesh-threshold", "2"]).await;
    let (a, b, c) = tokio::join!(Participant::chromium(&link, "Ana"), Participant::chromium(&link, "Bo"), Participant::chromium(&link, "Cy"));
    let (mut a, mut b, mut c) = (a, b, c);
    let ida = a.join().await;
    let idb = b.join().await;
    let (from_b, from_a) = ([idb.as_str()], [ida.as_str()]);
    let (sa, sb) = tokio::join!(a.wait_receiving(&from_b), b.wait_receiving(&from_a));
    assert_eq!((sa[&idb].via.as_str(), sb[&ida].via.as_str()), ("mesh", "mesh"));
    assert_eq!(metric(&node, "confab_media_forwarded_frames_total").await, 0);

    // Cy joins: past the threshold, everyone moves to the SFU.
    start_sampling(&a, &[&idb]).await;
    start_sampling(&b, &[&ida]).await;
    let switched = Instant::now();
    let idc = c.join().await;
    let (for_a, for_b, for_c) = ([idb.as_str(), &idc], [ida.as_str(), &idc], [ida.as_str(), &idb]);
    tokio::join!(wait_via(&a, &for_a, "sfu"), wait_via(&b, &for_b, "sfu"), wait_via(&c, &for_c, "sfu"));
    println!("everyone receives everyone through the SFU {:?} after Cy's join", switched.elapsed());
    a.wait_receiving(&[&idb, &idc]).await;
    b.wait_receiving(&[&ida, &idc]).await;
    c.wait_receiving(&[&ida, &idb]).await;
    for (p, from) in [(&a, [idb.as_str()]), (&b, [ida.as_str()])] {
        for (id, gap, kept) in stop_sampling(p, &from).await {
            println!("{} ← {id}: longest gap in decoded frames across mesh → SFU: {gap:?}", p.name);
            assert!(kept, "{}'s tile for {id} went away during the switch", p.name);
            assert!(gap <= Duration::from_secs(1), "{}'s video from {id} stalled for {gap:?} during the switch", p.name);
        }
    }
    assert!(metric(&node, "confab_media_forwarded_frames_total").await > 0);

    // Cy leaves: after the hold-down, Ana and Bo are back in the mesh.
    start_sampling(&a, &[&idb]).await;
    start_sampling(&b, &[&ida]).await;
    let left = Instant::now();
    c.leave().await;
    let (for_a, for_b) = ([idb.as_str()], [ida.as_str()]);
    tokio::join!(wait_via(&a, &for_a, "mesh"), wait_via(&b, &for_b, "mesh"));
    println!("back in the mesh {:?} after Cy left (hold-down 15 s)", left.elapsed());
    a.wait_receiving(&[&idb]).await;
    b.wait_receiving(&[&ida]).await;
    for (p, from) in [(&a, [idb.as_str()]), (&b, [ida.as_str()])] {
        for (id, gap, kept) in stop_sampling(p, &from).await {
            println!("{} ← {id}: longest gap in decoded frames across SFU → mesh: {gap:?}", p.name);
            assert!(kept);
            assert!(gap <= Duration::from_secs(1), "{}'s video from {id} stalled for {gap:?} returning to the mesh", p.name);
        }
    }
    // The SFU stops forwarding: its frame counter stays put for a whole second.
    let last_change = std::sync::Mutex::new((u64::MAX, Instant::now()));
    let settled = confab_tests::eventually("the SFU to stop forwarding", Duration::from_secs(20), || async {
        let now = metric(&node, "confab_media_forwarded_frames_total").await;
        let mut last = last_change.lock().unwrap();
        if now != last.0 {
            *last = (now, Instant::now());
        }
        (last.1.elapsed() >= Duration::from_secs(1)).then_some(now)
    })
    .await;
    println!("the SFU forwarded {settled} frames in all, and no more");
}

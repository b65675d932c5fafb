//! Media over a lossy link, in real Chromium: Bo's browser runs in a network namespace whose
//! inbound UDP loses a share of its datagrams at random (nftables, see `netns::lose_udp`).
//! NACK and retransmission (RTX) must hide the loss, through the SFU and in the mesh.

use std::time::{Duration, Instant};

use confab_tests::Node;
use confab_tests::meeting::{Participant, start_meeting};
use confab_tests::netns::Namespace;

/// What Bo decoded of Ana's video over one window.
struct Window {
    loss: u32,
    decoded: u64,
    sent: u64,
    longest_gap: Duration,
}

impl Window {
    fn share(&self) -> f64 {
        self.decoded as f64 / self.sent.max(1) as f64
    }
}

/// Frames Ana has sent: through the SFU, her busiest simulcast layer (every layer runs at
/// the camera's rate); in the mesh, what she sent Bo.
async fn frames_sent(a: &Participant, idb: &str, sfu: bool) -> u64 {
    if sfu {
        let sent = a.browser.eval("return window.confabCall.sfu.sent()").await;
        sent.as_object().map(|layers| layers.values().filter_map(|l| l["framesSent"].as_u64()).max().unwrap_or(0)).unwrap_or(0)
    } else {
        a.stats().await.get(idb).map_or(0, |s| s.frames_sent)
    }
}

/// Ana, Bo (inside `ns`) and their ids, in the mode the meeting uses.
struct Pair<'a> {
    a: &'a Participant,
    b: &'a Participant,
    ns: &'a Namespace,
    ida: &'a str,
    idb: &'a str,
    sfu: bool,
}

async fn measure(pair: &Pair<'_>, loss: u32, seconds: u64) -> Window {
    let Pair { a, b, ns, ida, idb, sfu } = *pair;
    ns.lose_udp(loss);
    // Let the loss take effect and the receivers settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.start_sampling(&[ida]).await;
    let (sent0, decoded0) = (frames_sent(a, idb, sfu).await, b.stats().await[ida].frames_decoded);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (sent1, decoded1) = (frames_sent(a, idb, sfu).await, b.stats().await[ida].frames_decoded);
    let gap = b.stop_sampling(&[ida]).await.remove(0);
    ns.lose_udp(0);
    Window { loss, decoded: decoded1 - decoded0, sent: sent1 - sent0, longest_gap: gap.longest }
}

async fn lossy_meeting(sfu: bool) -> Vec<Window> {
    let _browsers = confab_tests::browser::exclusive().await;
    let ns = Namespace::create();
    let host = ns.host_ip.to_string();
    let listen = format!("{host}:0");
    let mut options = vec!["--listen", &listen, "--relay-ip", &host, "--turn-allow-private", "true"];
    if sfu {
        options.extend(["--mesh-threshold", "0"]);
    }
    let (node, link, _): (Node, String, String) = start_meeting(&options, if sfu { "lossy-sfu" } else { "lossy-mesh" }).await;
    let (a, b) = tokio::join!(Participant::chromium(&link, "Ana"), Participant::chromium_in(&ns, &link, "Bo"));
    let (mut a, mut b) = (a, b);
    let ida = a.join().await;
    let idb = b.join().await;
    let via = if sfu { "sfu" } else { "mesh" };
    confab_tests::eventually("Bo to decode Ana's video", Duration::from_secs(30), || async {
        b.stats().await.get(&ida).filter(|s| s.via == via && s.frames_decoded > 30).map(|_| ())
    })
    .await;
    let started = Instant::now();
    let mut windows = Vec::new();
    for loss in [0, 2, 5, 10] {
        let pair = Pair { a: &a, b: &b, ns: &ns, ida: &ida, idb: &idb, sfu };
        let w = measure(&pair, loss, 12).await;
        println!(
            "{via}, {loss:>2} % loss on Bo's link: {} of {} frames decoded ({:.1} %), longest gap {:?}",
            w.decoded,
            w.sent,
            100.0 * w.share(),
            w.longest_gap
        );
        windows.push(w);
    }
    println!("{via}: measured in {:?}", started.elapsed());
    if sfu {
        println!(
            "the SFU received {} NACKs, dropped {} stale video packets",
            node.metric("confab_media_nacks_received_total").await,
            node.metric("confab_media_stale_drops_total").await
        );
    }
    windows
}

fn check(windows: &[Window], via: &str) {
    let five = windows.iter().find(|w| w.loss == 5).expect("measured at 5 %");
    assert!(five.share() >= 0.95, "{via} at 5 % loss: {} of {} frames decoded", five.decoded, five.sent);
    assert!(five.longest_gap <= Duration::from_secs(1), "{via} at 5 % loss: a freeze of {:?}", five.longest_gap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_percent_loss_on_a_subscribers_link_is_hidden_by_retransmission_through_the_sfu() {
    check(&lossy_meeting(true).await, "sfu");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_percent_loss_on_a_direct_link_is_hidden_by_retransmission_in_the_mesh() {
    check(&lossy_meeting(false).await, "mesh");
}

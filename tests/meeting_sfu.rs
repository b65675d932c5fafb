//! Meetings through the node's SFU, in real browsers.

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

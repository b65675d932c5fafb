//! Connectivity through NATs, with the browsers in network namespaces the test creates (and
//! always removes). The topology matrix of issue 6 grows here; so far: one participant
//! behind a NAT of their own.

use confab_tests::meeting::{Participant, each_receives_the_others, start_meeting};
use confab_tests::netns::Nat;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_behind_a_nat_meets_another_directly_in_the_mesh() {
    let _browsers = confab_tests::browser::exclusive().await;
    // Bo sits behind a home router; Ana does not. No STUN or TURN server is configured.
    let nat = Nat::create();
    let host = nat.inside.host_ip.to_string();
    let listen = format!("{host}:0");
    let (node, link, _) = start_meeting(&["--listen", &listen, "--relay-ip", &host], "nat").await;
    let (a, b) = tokio::join!(Participant::chromium(&link, "Ana"), Participant::chromium_in(&nat.inside, &link, "Bo"));
    let (mut a, mut b) = (a, b);
    let ida = a.join().await;
    let idb = b.join().await;

    // Two people: a mesh. Bo's checks reach Ana from the router's address and a port it
    // chose; Ana answers that peer-reflexive candidate (Chromium hides its address in stats)
    // and the pair is direct UDP. Bo learns his mapped address from Ana's answers.
    let router = nat.router.ns_ip.to_string();
    for (p, id, s) in each_receives_the_others(&[&a, &b]).await {
        println!("{} ← {id}: {} via {} over {}", p.name, s.frames_decoded, s.via, s.path);
        assert_eq!(s.via, "mesh");
        assert_eq!(s.path["local"]["protocol"], "udp", "{}", s.path);
        if p.name == "Ana" {
            assert_eq!(s.path["remote"]["type"], "prflx", "Ana reaches Bo only through his NAT's mapping: {}", s.path);
        } else {
            assert_eq!(s.path["local"]["type"], "prflx", "{}", s.path);
            assert_eq!(s.path["local"]["address"], router.as_str(), "Bo's side of the pair is the NAT's mapping: {}", s.path);
            assert_eq!(s.path["remote"]["type"], "host", "{}", s.path);
        }
    }
    assert_eq!(node.metric("confab_media_forwarded_packets_total").await, 0, "the SFU carried nothing");
    println!("{ida} and {idb} meet directly; Bo's NAT maps him to {router}");
}

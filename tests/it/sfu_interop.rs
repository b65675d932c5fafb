//! Interop: a participant on webrtc-rs (an independent WebRTC implementation, not a browser)
//! meets two headless Chromium participants through the node's SFU.

use std::time::Duration;

use confab_tests::meeting::{Participant, start_meeting};
use confab_tests::native::NativeParticipant;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webrtc_rs_participant_and_two_browsers_exchange_media_through_the_sfu() {
    let _browsers = confab_tests::browser::exclusive().await;
    let (node, link, _) = start_meeting(&["--mesh-threshold", "0"], "interop").await;
    let (a, b) = tokio::join!(Participant::chromium(&link, "Ana"), Participant::chromium(&link, "Bo"));
    let (mut a, mut b) = (a, b);
    let ida = a.join().await;
    let idb = b.join().await;
    let native = NativeParticipant::join(&link, "Rusty").await;
    let idn = native.id.clone();

    // webrtc-rs receives both browsers' audio and video from the relay...
    for (from, rate) in native.wait_receiving(&[&ida, &idb]).await {
        println!("Rusty (webrtc-rs) ← {from} in one second: {rate:?}");
    }
    // ...and both browsers decode what webrtc-rs publishes (Opus and VP8), through the SFU.
    for p in [&a, &b] {
        let stats = p.wait_receiving(&[&idn]).await;
        let s = &stats[&idn];
        println!("{} ← Rusty (webrtc-rs) via {}: {} frames ({}p), {} samples", p.name, s.via, s.frames_decoded, s.frame_height, s.samples_received);
        assert_eq!(s.via, "sfu");
        assert_eq!(s.frame_height, 180, "the browser decodes the 320×180 VP8 that webrtc-rs sends");
    }
    // The browsers still receive each other.
    a.wait_receiving(&[&idb]).await;
    b.wait_receiving(&[&ida]).await;
    assert_eq!(node.metric("confab_participants").await, 3);

    // It leaves like anyone else: its tile goes, and the others carry on.
    native.leave().await;
    a.wait_tile_gone(&idn, Duration::from_secs(10)).await;
    b.wait_tile_gone(&idn, Duration::from_secs(10)).await;
    a.wait_receiving(&[&idb]).await;
    assert_eq!(node.metric("confab_participants").await, 2);
}

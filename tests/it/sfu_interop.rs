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

/// Audio packets `native` receives over `seconds`.
async fn audio_in(native: &NativeParticipant, seconds: u64) -> u64 {
    let before = native.audio_packets();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    native.audio_packets() - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_a_host_muted_is_forwarded_to_nobody_until_they_unmute_even_if_they_keep_sending() {
    let (node, link, host_link) = start_meeting(&["--mesh-threshold", "0"], "muting").await;
    let host_invite = host_link.split_once('#').expect("a link carries its invite").1;
    let (mut host, _) = confab_tests::signaling::Signaling::join(&node, "muting", host_invite, "Host").await;
    let rusty = NativeParticipant::join(&link, "Rusty").await;
    let rita = NativeParticipant::join(&link, "Rita").await;
    rita.wait_receiving(&[&rusty.id]).await;
    // Rusty is the only one sending audio to Rita (the host has no media).
    let forwarded = || node.metric("confab_media_forwarded_audio_packets_total");
    let before = forwarded().await;
    let unmuted = audio_in(&rita, 2).await;
    println!("Rita receives {unmuted} audio packets in 2 s from Rusty; the node forwarded {} in all", forwarded().await - before);
    assert!(unmuted >= 50, "{unmuted}");

    // The host mutes everyone. Rusty (webrtc-rs, which ignores `muted`) keeps sending Opus:
    // the relay forwards none of it.
    host.send(serde_json::json!({"type": "mute", "participant": "all"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = forwarded().await;
    let muted = audio_in(&rita, 3).await;
    let by_node = forwarded().await - before;
    println!("…and {muted} in 3 s after the host muted everyone (Rusty and Rita); the node forwarded {by_node} audio packets");
    assert_eq!(muted, 0, "the relay still forwards a muted participant's microphone");
    assert_eq!(by_node, 0, "/metrics: the relay forwarded audio while everyone who sends any was muted");

    // Rusty unmutes himself: forwarded again.
    rusty.send(serde_json::json!({"type": "media", "audio": true, "video": true}));
    let again = confab_tests::eventually_or("Rusty's audio to reach Rita again", Duration::from_secs(10), || async {
        let n = audio_in(&rita, 1).await;
        if n >= 20 { Ok(n) } else { Err(format!("{n} packets in 1 s")) }
    })
    .await;
    println!("…and {again} in 1 s once he unmuted");
}

//! Measures what one SFU participant costs the relay in memory: the marginal resident set
//! of `str0m::Rtc`s that have accepted a browser-shaped offer (audio, simulcast video and
//! 9 + 9 receive slots, as `web-client/static/js/meeting/sfu.js` makes). Run with
//! `cargo run --release -p confab-relay --example peer_memory [N]`; `docs/decisions.md`
//! quotes it.

use std::time::Instant;

use str0m::Rtc;
use str0m::media::{Direction, MediaKind, Simulcast, SimulcastLayer};

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

fn offer() -> str0m::change::SdpOffer {
    let mut client = Rtc::builder().build(Instant::now());
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let mut simulcast = Simulcast::new();
    for rid in ["l", "m", "h"] {
        simulcast.add_send_layer(SimulcastLayer::new(rid));
    }
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(simulcast));
    for _ in 0..9 {
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    }
    let (offer, _pending) = api.apply().expect("an offer");
    offer
}

fn main() {
    str0m::crypto::from_feature_flags().install_process_default();
    let n: usize = std::env::args().nth(1).map_or(500, |a| a.parse().expect("N"));
    let offer = offer().to_sdp_string();
    let candidate = str0m::Candidate::host("127.0.0.1:9000".parse().unwrap(), "udp").unwrap();
    // Warm up allocators and lazy statics before measuring.
    let mut peers = Vec::new();
    for _ in 0..20 {
        let mut rtc = Rtc::builder().enable_bwe(Some(str0m::bwe::Bitrate::kbps(1000))).build(Instant::now());
        rtc.add_local_candidate(candidate.clone());
        rtc.sdp_api().accept_offer(str0m::change::SdpOffer::from_sdp_string(&offer).unwrap()).unwrap();
        peers.push(rtc);
    }
    let before = rss_kib();
    let started = Instant::now();
    for _ in 0..n {
        let mut rtc = Rtc::builder().enable_bwe(Some(str0m::bwe::Bitrate::kbps(1000))).build(Instant::now());
        rtc.add_local_candidate(candidate.clone());
        rtc.sdp_api().accept_offer(str0m::change::SdpOffer::from_sdp_string(&offer).unwrap()).unwrap();
        peers.push(rtc);
    }
    let elapsed = started.elapsed();
    let after = rss_kib();
    println!(
        "{n} relay peers (audio + 3-layer video + 18 receive slots each): {} KiB resident, {:.0} KiB per peer; accepting an offer takes {:.2} ms",
        after - before,
        (after - before) as f64 / n as f64,
        elapsed.as_secs_f64() * 1000.0 / n as f64
    );
}

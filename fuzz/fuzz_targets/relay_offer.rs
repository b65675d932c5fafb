//! Any SDP a participant can send as `sfu-offer`, into the relay's router: answered or
//! refused with a reason, never a panic; and then any datagram from anywhere.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use confab_relay::router::{RoomId, Router, RouterConfig};
use confab_relay::{Counters, PeerKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (offer, datagram) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(offer) = std::str::from_utf8(offer) else { return };
    let local: SocketAddr = "127.0.0.1:4443".parse().unwrap();
    let config = RouterConfig { shard: 0, last_n: 9, local, advertise: local, ice_tcp: None };
    let now = Instant::now();
    let mut router = Router::new(config, Arc::new(Counters::new(1)), now);
    let key = PeerKey { room: "fuzz".into(), participant: 1 };
    let _ = router.publish(now, key, RoomId(1), 0, offer);
    router.handle_datagram(now, now, "127.0.0.1:50000".parse().unwrap(), datagram);
    router.handle_timeout(now);
    for _ in 0..1000 {
        if let confab_relay::router::Output::Timeout(_) = router.poll_output() {
            break;
        }
    }
});

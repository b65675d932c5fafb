//! Anything a stranger can send the TURN listener: datagrams (STUN, ChannelData, garbage)
//! from a few addresses, and the same bytes as a TCP stream through the framer. The front
//! and the server behind it must answer or drop, never panic.
#![no_main]

use std::net::SocketAddr;

use confab_node::turn::Withdrawn;
use confab_node::turn::credentials::TurnSecret;
use confab_node::turn::front::{Framer, Front, PeerPolicy};
use libfuzzer_sys::fuzz_target;
use turn_server_proto::types::Instant;
use turn_server_proto::types::stun::TransportType;

fuzz_target!(|data: &[u8]| {
    let listen: SocketAddr = "192.0.2.10:3478".parse().unwrap();
    let peers = PeerPolicy { allow_private: false, own: vec!["192.0.2.10:4443".parse().unwrap()], own_ips: vec![listen.ip()], relayed: Default::default() };
    let mut front = Front::new(TransportType::Udp, listen, "confab", TurnSecret::from_bytes([7; 32]), peers, Withdrawn::default());
    // Split the input into datagrams at each 0xff 0xfe marker, each from one of four clients.
    for (i, datagram) in data.split(|b| *b == 0xfe).enumerate() {
        let from: SocketAddr = format!("203.0.113.{}:{}", i % 4 + 1, 40_000 + i % 7).parse().unwrap();
        let now = Instant::from_nanos(i as i64 * 1_000_000);
        let _ = front.recv(from, listen, datagram, now, 1_800_000_000);
        let _ = front.poll(now);
    }
    let mut framer = Framer::default();
    for chunk in data.chunks(7) {
        if framer.push(chunk).is_err() {
            break;
        }
    }
});

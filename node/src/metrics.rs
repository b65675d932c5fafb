//! Counters the node exposes at `/metrics` in Prometheus' text format. The media counters
//! are the SFU's (`confab_relay::Counters`); while every meeting is a mesh nobody connects
//! to the SFU and they stay at zero, which is itself the evidence that the node carried no
//! media.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use confab_relay::Counters;

use crate::meeting::hub::HubCounts;

pub fn render(hub: HubCounts, media: &Counters) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    gauge("confab_participants", "Seats taken in all meetings, including those reconnecting.", "gauge", &[("", hub.participants as u64)]);
    gauge(
        "confab_rooms",
        "Meetings with at least one participant, by media mode.",
        "gauge",
        &[("{mode=\"mesh\"}", hub.mesh_rooms as u64), ("{mode=\"sfu\"}", hub.sfu_rooms as u64)],
    );
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    gauge("confab_media_received_packets_total", "Datagrams the SFU's socket received (STUN, DTLS, RTP, RTCP).", "counter", &[("", load(&media.packets_received))]);
    gauge("confab_media_received_bytes_total", "Bytes the SFU's socket received.", "counter", &[("", load(&media.bytes_received))]);
    gauge("confab_media_forwarded_packets_total", "Datagrams the SFU sent.", "counter", &[("", load(&media.packets_forwarded))]);
    gauge("confab_media_forwarded_bytes_total", "Bytes the SFU sent.", "counter", &[("", load(&media.bytes_forwarded))]);
    gauge("confab_media_forwarded_frames_total", "Audio and video frames the SFU forwarded to subscribers.", "counter", &[("", load(&media.frames_forwarded))]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let media = Counters::default();
        media.packets_forwarded.store(7, Ordering::Relaxed);
        let text = render(HubCounts { participants: 3, mesh_rooms: 1, sfu_rooms: 0 }, &media);
        assert!(text.contains("# TYPE confab_participants gauge\nconfab_participants 3\n"));
        assert!(text.contains("confab_rooms{mode=\"mesh\"} 1\n"));
        assert!(text.contains("confab_media_forwarded_packets_total 7\n"));
    }
}

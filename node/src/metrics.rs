//! What the node exposes at `/metrics` in Prometheus' text format: seats and rooms, the
//! SFU's media counters (`confab_relay::Counters`), and the process's CPU, memory and the
//! machine's load. While every meeting is a mesh nobody connects to the SFU and the media
//! counters stay at zero, which is itself the evidence that the node carried no media.
//! `docs/grafana-dashboard.json` is built on these names.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use confab_relay::Counters;

use crate::meeting::hub::HubCounts;

/// What the node reads from /proc for `/metrics` (absent where /proc is not readable).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessFigures {
    pub cpu_seconds: Option<f64>,
    pub resident_kib: Option<u64>,
    pub load: Option<[f64; 3]>,
}

impl ProcessFigures {
    pub fn read() -> ProcessFigures {
        let process = crate::procfs::process("self");
        ProcessFigures {
            cpu_seconds: process.map(|p| p.0),
            resident_kib: process.map(|p| p.1),
            load: std::fs::read_to_string("/proc/loadavg").ok().and_then(|t| crate::procfs::load_average(&t)),
        }
    }
}

pub fn render(hub: HubCounts, media: &Counters, turn: Option<&crate::turn::service::TurnCounters>, process: ProcessFigures) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, samples: &[(&str, String)]| {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: u64| vec![("", v.to_string())];
    let load = |c: &AtomicU64| one(c.load(Ordering::Relaxed));
    metric("confab_participants", "Seats taken in all meetings, including those reconnecting.", "gauge", &one(hub.participants as u64));
    metric(
        "confab_rooms",
        "Meetings with at least one participant, by media mode.",
        "gauge",
        &[("{mode=\"mesh\"}", hub.mesh_rooms.to_string()), ("{mode=\"sfu\"}", hub.sfu_rooms.to_string())],
    );
    metric("confab_media_received_packets_total", "Datagrams the SFU's sockets received (STUN, DTLS, RTP, RTCP).", "counter", &load(&media.packets_received));
    metric("confab_media_received_bytes_total", "Bytes the SFU's sockets received.", "counter", &load(&media.bytes_received));
    metric("confab_media_forwarded_packets_total", "Datagrams the SFU sent.", "counter", &load(&media.packets_forwarded));
    metric("confab_media_forwarded_bytes_total", "Bytes the SFU sent.", "counter", &load(&media.bytes_forwarded));
    metric("confab_media_forwarded_frames_total", "Audio and video frames the SFU forwarded to subscribers.", "counter", &load(&media.frames_forwarded));
    metric("confab_media_forwarded_audio_packets_total", "Audio packets the SFU forwarded to subscribers.", "counter", &load(&media.audio_forwarded));
    metric(
        "confab_media_repeated_audio_packets_total",
        "Audio packets the SFU sent again beside the next, for subscribers whose link loses.",
        "counter",
        &load(&media.audio_repeated),
    );
    metric(
        "confab_media_keyframe_requests_received_total",
        "Keyframe requests (PLI/FIR) from subscribers.",
        "counter",
        &load(&media.keyframe_requests_received),
    );
    metric("confab_media_keyframe_requests_sent_total", "Keyframe requests the SFU sent to publishers.", "counter", &load(&media.keyframe_requests_sent));
    metric("confab_media_nacks_received_total", "Retransmission requests (NACK) from subscribers.", "counter", &load(&media.nacks_received));
    metric("confab_media_nacks_sent_total", "Retransmission requests (NACK) the SFU sent to publishers.", "counter", &load(&media.nacks_sent));
    metric(
        "confab_media_subscriber_packets_lost_total",
        "Packets the subscribers reported lost (RTCP receiver reports) on what the SFU sent them.",
        "counter",
        &load(&media.subscriber_packets_lost),
    );
    metric(
        "confab_media_stale_drops_total",
        "Video packets the SFU dropped because a subscriber's send queue had gone stale (it then waits for a keyframe).",
        "counter",
        &load(&media.stale_drops),
    );
    metric(
        "confab_cascade_media_lost_total",
        "Media packets from other nodes the cascade lost on the way (gaps in a feed's numbering); each is asked for again.",
        "counter",
        &load(&media.cascade_lost),
    );
    metric("confab_cascade_media_resent_total", "Media packets sent again to another node that missed them.", "counter", &load(&media.cascade_resent));
    let shard_labels: Vec<String> = (0..media.heartbeats.len()).map(|s| format!("{{shard=\"{s}\"}}")).collect();
    let per_shard = |f: &dyn Fn(usize) -> String| shard_labels.iter().enumerate().map(|(i, l)| (l.as_str(), f(i))).collect::<Vec<_>>();
    metric(
        "confab_relay_shard_cpu_seconds_total",
        "CPU time of each SFU shard thread (its own clock), in seconds.",
        "counter",
        &per_shard(&|i| format!("{:.3}", media.shard_cpu_us[i].load(Ordering::Relaxed) as f64 / 1e6)),
    );
    metric(
        "confab_relay_shard_participants",
        "SFU participants placed on each shard.",
        "gauge",
        &per_shard(&|i| media.shard_participants[i].load(Ordering::Relaxed).to_string()),
    );
    metric(
        "confab_relay_stalled_shards",
        "SFU shard threads whose loop has not run for 5 s (stuck or dead); /healthz fails while this is not 0.",
        "gauge",
        &one(media.stalled_shards(confab_relay::STALL_LIMIT) as u64),
    );
    if let Some(turn) = turn {
        metric("confab_turn_allocations_total", "Relayed addresses the TURN relay gave out.", "counter", &load(&turn.allocations));
        metric("confab_turn_relayed_packets_total", "Datagrams the TURN relay sent to peers.", "counter", &load(&turn.relayed_packets));
        metric(
            "confab_turn_refused_total",
            "TURN requests refused: a credential the node did not issue, that expired or whose MESSAGE-INTEGRITY did not match, or a peer address that is private or local.",
            "counter",
            &[
                ("{reason=\"credentials\"}", turn.refused_credentials.load(Ordering::Relaxed).to_string()),
                ("{reason=\"peer\"}", turn.refused_peers.load(Ordering::Relaxed).to_string()),
            ],
        );
    }
    let cpu: Vec<(&str, String)> = process.cpu_seconds.map(|s| ("", format!("{s:.2}"))).into_iter().collect();
    metric("process_cpu_seconds_total", "CPU time the node has used (user and system), in seconds.", "counter", &cpu);
    let rss: Vec<(&str, String)> = process.resident_kib.map(|k| ("", (k * 1024).to_string())).into_iter().collect();
    metric("process_resident_memory_bytes", "The node's resident memory.", "gauge", &rss);
    let loads: Vec<(&str, String)> = process
        .load
        .map(|l| vec![("{minutes=\"1\"}", l[0].to_string()), ("{minutes=\"5\"}", l[1].to_string()), ("{minutes=\"15\"}", l[2].to_string())])
        .unwrap_or_default();
    metric("confab_load_average", "The machine's load average.", "gauge", &loads);
    histogram(
        &mut out,
        "confab_media_hop_latency_seconds",
        "From a packet's arrival at the SFU to its departure to each subscriber (decryption, routing, the subscriber's pacer queue, encryption).",
        &media.hop_latency,
    );
    histogram(
        &mut out,
        "confab_media_send_queue_age_seconds",
        "Age of the oldest packet in each subscriber slot's send queue, sampled every 200 ms.",
        &media.queue_age,
    );
    out
}

/// A cluster member's figures: its control plane's counters, whether it is being drained,
/// and its cascade links (each member's node key and figures) and refusals.
pub struct ClusterFigures<'a> {
    pub counters: &'a crate::cluster::net::Counters,
    pub draining: bool,
    pub links: Vec<([u8; 32], crate::cluster::cascade::LinkFigures)>,
    pub cascade_refused: u64,
}

impl ClusterFigures<'_> {
    pub fn of(cluster: &crate::cluster::net::Cluster) -> ClusterFigures<'_> {
        ClusterFigures {
            counters: cluster.counters(),
            draining: cluster.draining(),
            links: cluster.cascade.figures(),
            cascade_refused: cluster.cascade.refused.load(Ordering::Relaxed),
        }
    }
}

/// The cluster's control plane and cascade links, for a node that is a member of one.
pub fn render_cluster(figures: &ClusterFigures<'_>) -> String {
    let c = figures.counters;
    let mut out = String::new();
    for (name, help, kind, value) in [
        ("confab_cluster_epoch", "The membership epoch this node follows.", "gauge", &c.epoch),
        ("confab_cluster_peers", "Members this node is connected to (not counting itself).", "gauge", &c.peers),
        ("confab_cluster_syncs_total", "Catch-up syncs applied (snapshots from the accounts node, revocations from any member).", "counter", &c.syncs),
        ("confab_cluster_rows_applied_total", "Rows of replicated tables that syncs added, changed or removed.", "counter", &c.rows_applied),
        (
            "confab_cluster_refused_documents_total",
            "Membership documents ignored: malformed, another operator or cluster, altered.",
            "counter",
            &c.refused_documents,
        ),
        ("confab_cluster_refused_connections_total", "Connections refused because the peer is not a member.", "counter", &c.refused_connections),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", value.load(Ordering::Relaxed));
    }
    let _ = writeln!(
        out,
        "# HELP confab_cluster_draining 1 while this node is being drained (confab drain).\n# TYPE confab_cluster_draining gauge\nconfab_cluster_draining {}",
        u8::from(figures.draining)
    );
    let links = &figures.links;
    let _ = writeln!(
        out,
        "# HELP confab_cascade_links Media cascade links up (QUIC, one per other member).\n# TYPE confab_cascade_links gauge\nconfab_cascade_links {}",
        links.len()
    );
    let _ = writeln!(
        out,
        "# HELP confab_cascade_refused_total Cascade connections refused: not a member, another protocol version, a failed handshake.\n# TYPE confab_cascade_refused_total counter\nconfab_cascade_refused_total {}",
        figures.cascade_refused
    );
    type Figure = fn(&crate::cluster::cascade::LinkFigures) -> String;
    let per_peer: [(&str, &str, &str, Figure); 10] = [
        ("confab_cascade_rtt_seconds", "Round-trip time of the cascade link to each member (QUIC's estimate).", "gauge", |f| {
            format!("{:.6}", f.rtt.as_secs_f64())
        }),
        ("confab_cascade_sent_bytes_total", "UDP bytes sent on the cascade link to each member.", "counter", |f| f.sent_bytes.to_string()),
        ("confab_cascade_received_bytes_total", "UDP bytes received on the cascade link from each member.", "counter", |f| f.received_bytes.to_string()),
        ("confab_cascade_sent_packets_total", "UDP datagrams sent on the cascade link to each member.", "counter", |f| f.sent_datagrams.to_string()),
        ("confab_cascade_received_packets_total", "UDP datagrams received on the cascade link from each member.", "counter", |f| {
            f.received_datagrams.to_string()
        }),
        ("confab_cascade_lost_packets_total", "QUIC packets the cascade link to each member declared lost.", "counter", |f| f.lost_packets.to_string()),
        ("confab_cascade_media_sent_packets_total", "Media packets this node's relay sent each member (one per feed its subscribers need).", "counter", |f| {
            f.media_sent.to_string()
        }),
        ("confab_cascade_media_sent_bytes_total", "Bytes of those media packets (RTP payload and the cascade's header).", "counter", |f| {
            f.media_sent_bytes.to_string()
        }),
        ("confab_cascade_media_received_packets_total", "Media packets received from each member's relay.", "counter", |f| f.media_received.to_string()),
        ("confab_cascade_media_received_bytes_total", "Bytes of those media packets.", "counter", |f| f.media_received_bytes.to_string()),
    ];
    for (name, help, kind, value) in per_peer {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (key, figures) in links {
            let _ = writeln!(out, "{name}{{peer=\"{}\"}} {}", crate::secrets::hex(&key[..8]), value(figures));
        }
    }
    out
}

fn histogram(out: &mut String, name: &str, help: &str, h: &confab_relay::Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let (buckets, count) = h.cumulative();
    for (bound_ms, n) in buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {n}", bound_ms / 1000.0);
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {:.6}", h.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {count}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let media = Counters::default();
        media.packets_forwarded.store(7, Ordering::Relaxed);
        media.nacks_received.store(3, Ordering::Relaxed);
        let process = ProcessFigures { cpu_seconds: Some(1.5), resident_kib: Some(2), load: Some([0.5, 0.25, 0.125]) };
        let text = render(HubCounts { participants: 3, mesh_rooms: 1, sfu_rooms: 0 }, &media, Some(&Default::default()), process);
        assert!(text.contains("# TYPE confab_participants gauge\nconfab_participants 3\n"));
        assert!(text.contains("confab_rooms{mode=\"mesh\"} 1\n"));
        assert!(text.contains("confab_media_forwarded_packets_total 7\n"));
        assert!(text.contains("# TYPE confab_media_nacks_received_total counter\nconfab_media_nacks_received_total 3\n"));
        assert!(text.contains("process_cpu_seconds_total 1.50\n"));
        assert!(text.contains("process_resident_memory_bytes 2048\n"));
        assert!(text.contains("confab_load_average{minutes=\"15\"} 0.125\n"));
        assert!(text.contains("confab_relay_stalled_shards 0\n"));
    }

    #[test]
    fn latency_histograms_are_cumulative_in_seconds() {
        let media = Counters::new(2);
        media.hop_latency.record_us(300);
        media.hop_latency.record_us(4_000);
        media.hop_latency.record_us(9_000_000);
        let text = render(HubCounts::default(), &media, None, ProcessFigures::default());
        assert!(text.contains("# TYPE confab_media_hop_latency_seconds histogram\n"));
        assert!(text.contains("confab_media_hop_latency_seconds_bucket{le=\"0.0005\"} 1\n"), "{text}");
        assert!(text.contains("confab_media_hop_latency_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("confab_media_hop_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("confab_media_hop_latency_seconds_count 3\n"));
        assert!(text.contains("confab_relay_shard_participants{shard=\"1\"} 0\n"));
    }

    #[test]
    fn the_grafana_dashboard_uses_only_metrics_the_node_renders() {
        let process = ProcessFigures { cpu_seconds: Some(1.0), resident_kib: Some(1), load: Some([0.0; 3]) };
        let mut text = render(HubCounts::default(), &Counters::new(2), Some(&Default::default()), process);
        let counters = crate::cluster::net::Counters::default();
        let figures = ClusterFigures { counters: &counters, draining: false, links: vec![([1; 32], Default::default())], cascade_refused: 0 };
        text += &render_cluster(&figures);
        let dashboard: serde_json::Value = serde_json::from_str(include_str!("../../docs/grafana-dashboard.json")).unwrap();
        let mut names = Vec::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if word.starts_with("confab_") || word.starts_with("process_") {
                        names.push(word.to_string());
                    }
                }
            }
        }
        assert!(names.len() > 10, "{names:?}");
        for name in names {
            // A histogram's series are its name with _bucket, _sum or _count.
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).filter(|f| text.contains(&format!("# TYPE {f} histogram")));
            let name = family.unwrap_or(&name);
            assert!(text.contains(&format!("# TYPE {name} ")), "the dashboard uses {name}, which /metrics does not have");
        }
    }

    #[test]
    fn figures_that_cannot_be_read_are_left_out() {
        let text = render(HubCounts::default(), &Counters::default(), None, ProcessFigures::default());
        assert!(!text.contains("process_cpu_seconds_total"));
        assert!(!text.contains("confab_load_average"));
    }
}

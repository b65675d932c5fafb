//! The SFU benchmark behind docs/benchmarks.md: runs `confab loadtest` against a release
//! `confab` node on loopback (a new meeting, the node's pid given so that the report has the
//! server's CPU and memory beside the bots' own), or against Debian's Janus with the same
//! bots. Janus runs inside a network namespace this benchmark creates (a veth pair on a
//! private /30; libnice offers no loopback candidates) and removes afterwards, the bots on
//! the host end of the pair: no traffic reaches any other address.
//!
//!     cargo bench -p confab-tests --bench sfu -- BOTS [loadtest options...]
//!     cargo bench -p confab-tests --bench sfu -- --janus BOTS [loadtest options...]
//!
//!     cargo bench -p confab-tests --bench sfu -- --flood BOTS [loadtest options...]
//!
//!     cargo bench -p confab-tests --bench sfu -- --cluster BOTS [loadtest options...]
//!
//! `--cluster` runs three nodes, each in a network namespace of its own (as the cluster
//! tests do), a meeting homed on node 2 with nobody on it, and measures the bots twice, back
//! to back: all through node 1, then alternately through node 1 and node 3, so that what
//! each receives from the bots on the other node crosses the media cascade. It prints both
//! audio latencies (the difference is what the cascade adds), the three nodes' CPU per
//! packet they sent, and the cascade's bytes per remote source.
//!
//! `--flood` runs one node with a single relay shard and measures the bots' meeting twice,
//! back to back: alone, then with five seats of another meeting on the same shard flooding
//! `sfu-offer`s (`confab loadtest --flood-link`); it prints both audio latencies.
//!
//! e.g. `cargo bench -p confab-tests --bench sfu -- 50 --duration 60s`. Janus needs
//! `apt-get install janus` and root (for the namespace); it runs from a configuration
//! written to a temporary directory (the VideoRoom plugin and the WebSocket transport only),
//! and is stopped afterwards. The report is printed, and written as JSON to
//! target/bench-{confab,janus}-BOTS.json.

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use confab_tests::cluster::Cluster;
use confab_tests::meeting::{start_meeting, start_meetings};
use confab_tests::netns::Namespace;
use confab_tests::node::confab_bin;
use confab_tests::node::{check_invite, make_invite};

/// The node's relay on loopback, where the bots are: by default it would advertise this
/// machine's default-route address, and the bots' media would go there.
const LOOPBACK_RELAY: &str = "127.0.0.1:0";

const USAGE: &str = "usage: cargo bench -p confab-tests --bench sfu -- [--janus|--flood|--cluster] BOTS [loadtest options]";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let janus = args.first().is_some_and(|a| a == "--janus");
    let flood = args.first().is_some_and(|a| a == "--flood");
    let cluster = args.first().is_some_and(|a| a == "--cluster");
    if janus || flood || cluster {
        args.remove(0);
    }
    let bots: u32 = args.first().and_then(|a| a.parse().ok()).expect(USAGE);
    args.remove(0);
    if flood {
        return next_door_flood(bots, &args).await;
    }
    if cluster {
        return across_nodes(bots, &args).await;
    }
    let which = if janus { "janus" } else { "confab" };
    let json = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/bench-{which}-{bots}.json"));
    let mut loadtest = Command::new(confab_bin());
    loadtest.args(["loadtest", "--bots", &bots.to_string(), "--json"]).arg(&json);

    // Whichever server runs stays alive until the load test is over.
    let (_node, _janus);
    if janus {
        let server = Janus::start();
        loadtest.args(["--janus", &server.url, "--server-pid", &server.child.id().to_string(), "--bind-ip", &server.ns.host_ip.to_string()]);
        _janus = Some(server);
    } else {
        let (node, link, _) = start_meeting(&["--mesh-threshold", "0", "--relay-listen", LOOPBACK_RELAY, "--seats-per-address", "0"], "bench").await;
        loadtest.args(["--link", &link, "--insecure", "--server-pid", &node.pid().to_string(), "--bind-ip", &node.ip()]);
        _node = Some(node);
    }
    let status = loadtest.args(&args).status().expect("confab loadtest runs");
    assert!(status.success(), "confab loadtest failed: {status:?}");
    println!("machine: {} cores; report: {}", std::thread::available_parallelism().map_or(0, |n| n.get()), json.display());
}

/// The bots' audio latency alone, then beside a flood of `sfu-offer`s from another meeting
/// on the same (only) relay shard.
async fn next_door_flood(bots: u32, args: &[String]) {
    let (node, links) = start_meetings(
        &["--mesh-threshold", "0", "--relay-shards", "1", "--relay-listen", LOOPBACK_RELAY, "--seats-per-address", "0"],
        &["quiet", "flooded", "next-door"],
    )
    .await;
    let [(quiet, _), (flooded, _), (next_door, _)] = &links[..] else { unreachable!("three meetings") };
    let mut p95 = Vec::new();
    for (name, link, flood) in [("alone", &quiet, None), ("flood", &flooded, Some(&next_door))] {
        let json = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/bench-confab-{bots}-{name}.json"));
        let mut loadtest = Command::new(confab_bin());
        loadtest.args(["loadtest", "--bots", &bots.to_string(), "--json"]).arg(&json);
        loadtest.args(["--link", link, "--insecure", "--server-pid", &node.pid().to_string(), "--bind-ip", &node.ip()]);
        if let Some(next_door) = flood {
            loadtest.args(["--flood-link", next_door]);
        }
        let status = loadtest.args(args).status().expect("confab loadtest runs");
        assert!(status.success(), "confab loadtest failed: {status:?}");
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("the report")).expect("the report is JSON");
        p95.push(report["audio_latency_ms_p95"].as_f64().expect("audio latency measured"));
    }
    println!(
        "audio latency P95 in a {bots}-bot meeting on one relay shard: {:.1} ms alone, {:.1} ms beside a flood of sfu-offers next door ({:.2} x)",
        p95[0],
        p95[1],
        p95[1] / p95[0]
    );
}

/// A process's CPU time (user and system), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the node's /proc/PID/stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("a stat line").1.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat(5), 11 and 12 after the command's ')'.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// The bots on one node, then on two: what the cascade adds to their audio latency, what a
/// forwarded packet costs the three nodes, and what crosses between nodes per source.
async fn across_nodes(bots: u32, args: &[String]) {
    let mut cluster = Cluster::prepare(3, 3);
    for i in 0..3 {
        cluster.start(i, &["--mesh-threshold", "0"]).await;
    }
    cluster.wait_formed(3).await;
    let admin = cluster.node(0).admin().await;
    let room = cluster.room_homed_at(&admin, "bench", &cluster.members[1].key).await;
    let invite = make_invite(&admin, cluster.node(0), &confab_keys::AccountKey::from_seed([3; 32]), &room, 3600).await;
    let node3 = cluster.node(2);
    confab_tests::eventually_or("node 3 to admit the invite", Duration::from_secs(15), || async {
        let (status, code) = check_invite(node3, &room, &invite).await;
        if status == 200 { Ok(()) } else { Err(format!("{status} {code}")) }
    })
    .await;
    let link = |i: usize| format!("{}/m/{room}#{invite}", cluster.node(i).url);
    let mut rows = Vec::new();
    for (name, also) in [("one node", None), ("two nodes", Some(link(2)))] {
        let json = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/bench-cluster-{bots}-{}.json", name.replace(' ', "-")));
        let mut loadtest = Command::new(confab_bin());
        loadtest.args(["loadtest", "--bots", &bots.to_string(), "--json"]).arg(&json);
        loadtest.args(["--link", &link(0), "--insecure", "--bind-ip", &cluster.members[0].ns.host_ip.to_string()]);
        if let Some(also) = &also {
            loadtest.args(["--also-link", also]);
        }
        let pids: Vec<u32> = (0..3).map(|i| cluster.node(i).pid()).collect();
        let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
        let mut sent_before = 0.0;
        let mut cascade_before = 0.0;
        for i in 0..3 {
            sent_before += cluster.node(i).metric_sum("confab_media_forwarded_packets_total").await as f64;
            cascade_before += cluster.node(i).metric_sum("confab_cascade_media_sent_bytes_total").await as f64;
        }
        let started = std::time::Instant::now();
        let status = loadtest.args(args).status().expect("confab loadtest runs");
        assert!(status.success(), "confab loadtest failed: {status:?}");
        let secs = started.elapsed().as_secs_f64();
        let cpu = pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu_before;
        let (mut sent, mut cascade) = (-sent_before, -cascade_before);
        for i in 0..3 {
            sent += cluster.node(i).metric_sum("confab_media_forwarded_packets_total").await as f64;
            cascade += cluster.node(i).metric_sum("confab_cascade_media_sent_bytes_total").await as f64;
        }
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("the report")).expect("the report is JSON");
        let p95 = report["audio_latency_ms_p95"].as_f64().expect("audio latency measured");
        let p50 = report["audio_latency_ms_p50"].as_f64().expect("audio latency measured");
        // Each bot's media crosses to the other node once (when the bots are on two).
        let per_source_kbps = cascade * 8.0 / 1000.0 / secs / f64::from(bots);
        println!(
            "{name}: audio latency P50 {p50:.1} ms, P95 {p95:.1} ms; the three nodes: {:.1} µs CPU per packet sent ({:.0} packets/s); cascade {per_source_kbps:.0} kbit/s per source",
            cpu * 1e6 / sent.max(1.0),
            sent / secs
        );
        rows.push((p50, p95));
    }
    println!(
        "the cascade adds {:.1} ms to the audio latency at P95 ({:.1} ms at P50) in a {bots}-bot meeting (veth links, no added delay)",
        rows[1].1 - rows[0].1,
        rows[1].0 - rows[0].0
    );
}

/// Debian's Janus with only what the benchmark uses, inside a namespace of its own.
struct Janus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
    /// Dropped after the child is stopped (fields drop in order).
    ns: Namespace,
}

impl Janus {
    fn start() -> Janus {
        let ns = Namespace::create();
        let ip = IpAddr::V4(ns.ns_ip);
        let dir = tempfile::tempdir().unwrap();
        let lib = "/usr/lib/x86_64-linux-gnu/janus";
        let others = |folder: &str, keep: &str| {
            std::fs::read_dir(format!("{lib}/{folder}"))
                .unwrap_or_else(|e| panic!("Janus is not installed ({lib}/{folder}: {e}); apt-get install janus"))
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|f| f.ends_with(".so") && f != keep)
                .collect::<Vec<_>>()
                .join(",")
        };
        let config = format!(
            "general: {{ configs_folder = \"{cfg}\" plugins_folder = \"{lib}/plugins\" transports_folder = \"{lib}/transports\" \
             events_folder = \"{lib}/events\" loggers_folder = \"{lib}/loggers\" debug_level = 3 }}\n\
             media: {{ rtp_port_range = \"20000-40000\" }}\n\
             nat: {{ nice_debug = false ice_enforce_list = \"{ip}\" }}\n\
             plugins: {{ disable = \"{plugins}\" }}\n\
             transports: {{ disable = \"{transports}\" }}\n\
             events: {{ broadcast = false }}\n",
            cfg = dir.path().display(),
            plugins = others("plugins", "libjanus_videoroom.so"),
            transports = others("transports", "libjanus_websockets.so"),
        );
        std::fs::write(dir.path().join("janus.jcfg"), config).unwrap();
        std::fs::write(dir.path().join("janus.plugin.videoroom.jcfg"), "general: { }\n").unwrap();
        let port = 8188;
        std::fs::write(
            dir.path().join("janus.transport.websockets.jcfg"),
            format!(
                "general: {{ json = \"plain\" ws = true ws_port = {port} ws_ip = \"{ip}\" wss = false }}\nadmin: {{ admin_ws = false admin_wss = false }}\n"
            ),
        )
        .unwrap();
        let child = ns
            .command("janus")
            .args(["-F"])
            .arg(dir.path())
            .args(["-C"])
            .arg(dir.path().join("janus.jcfg"))
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot start janus (apt-get install janus)");
        let url = format!("ws://{ip}:{port}");
        // Ready when the WebSocket port accepts connections.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(1)).is_err() {
            assert!(std::time::Instant::now() < deadline, "Janus did not open {url} within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Janus { child, url, _dir: dir, ns }
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

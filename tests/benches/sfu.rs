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

use confab_tests::meeting::{start_meeting, start_meetings};
use confab_tests::netns::Namespace;
use confab_tests::node::confab_bin;

/// The node's relay on loopback, where the bots are: by default it would advertise this
/// machine's default-route address, and the bots' media would go there.
const LOOPBACK_RELAY: &str = "127.0.0.1:0";

const USAGE: &str = "usage: cargo bench -p confab-tests --bench sfu -- [--janus|--flood] BOTS [loadtest options]";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let janus = args.first().is_some_and(|a| a == "--janus");
    let flood = args.first().is_some_and(|a| a == "--flood");
    if janus || flood {
        args.remove(0);
    }
    let bots: u32 = args.first().and_then(|a| a.parse().ok()).expect(USAGE);
    args.remove(0);
    if flood {
        return next_door_flood(bots, &args).await;
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
        let (node, link, _) = start_meeting(&["--mesh-threshold", "0", "--relay-listen", LOOPBACK_RELAY], "bench").await;
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
    let (node, links) =
        start_meetings(&["--mesh-threshold", "0", "--relay-shards", "1", "--relay-listen", LOOPBACK_RELAY], &["quiet", "flooded", "next-door"]).await;
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

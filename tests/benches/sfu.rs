//! The SFU benchmark behind docs/benchmarks.md: starts a release `confab` node on loopback,
//! creates a meeting, and runs `confab loadtest` against it with the server's pid, so the
//! report has the server's CPU and memory beside the bots' own.
//!
//!     cargo bench -p confab-tests --bench sfu -- BOTS [loadtest options...]
//!
//! e.g. `cargo bench -p confab-tests --bench sfu -- 50 --duration 60s`. The report is printed,
//! and written as JSON to target/bench-sfu-BOTS.json.

use std::process::Command;

use confab_tests::meeting::start_meeting;
use confab_tests::node::confab_bin;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let bots: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("usage: cargo bench -p confab-tests --bench sfu -- BOTS [loadtest options]"));
    args.remove(0);
    let (node, link, _) = start_meeting(&["--mesh-threshold", "0"], "bench").await;
    let json = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/bench-sfu-{bots}.json"));
    let status = Command::new(confab_bin())
        .args(["loadtest", "--link", &link, "--bots", &bots.to_string(), "--insecure", "--server-pid", &node.pid().to_string(), "--json"])
        .arg(&json)
        .args(&args)
        .status()
        .expect("confab loadtest runs");
    assert!(status.success(), "confab loadtest failed: {status:?}");
    println!("machine: {} cores; report: {}", std::thread::available_parallelism().map_or(0, |n| n.get()), json.display());
}

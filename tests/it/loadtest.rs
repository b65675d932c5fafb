//! `confab loadtest` against a real node: six bots join one meeting through the real
//! signaling with a real invite, the room escalates from mesh to SFU as the fifth joins, and
//! every bot receives every other's audio and video through the relay.
//!
//! The figures are printed; only joining, receiving and loss are asserted (timing targets
//! belong to the benchmark in docs/benchmarks.md).

use std::process::Command;

use confab_tests::meeting::start_meeting;
use confab_tests::node::confab_bin;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_bots_join_and_receive_each_other_with_under_one_percent_loss() {
    let _heavy = confab_tests::browser::exclusive().await;
    // The default mesh threshold (4): the first bots wait in a mesh room until it moves to
    // the SFU, as a meeting that grows does.
    let (node, link, _) = start_meeting(&[], "load").await;
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let pid = node.pid().to_string();
    let output = Command::new(confab_bin())
        .current_dir(dir.path())
        .args(["loadtest", "--link", &link, "--bots", "6", "--join-every-ms", "200", "--warmup", "4s", "--duration", "15s"])
        // The bots' sockets on the node's link, said outright rather than found by a route probe.
        .args(["--speaker-every", "3s", "--insecure", "--server-pid", &pid, "--bind-ip", &node.ip(), "--json"])
        .arg(&report_path)
        .output()
        .expect("confab loadtest runs");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "confab loadtest failed: {:?}", output.status);

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["joined"], 6, "every bot joined");
    assert_eq!(report["failed"], 0, "no bot failed");
    let outcomes = report["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 6);
    for bot in outcomes {
        let name = bot["name"].as_str().unwrap();
        let from = bot["from"].as_object().unwrap();
        assert_eq!(from.len(), 5, "{name} receives from the 5 others: {from:?}");
        for (who, frames) in from {
            let (audio, video) = (frames[0].as_u64().unwrap(), frames[1].as_u64().unwrap());
            assert!(audio > 0 && video > 0, "{name} received audio {audio} and video {video} frames from {who}");
        }
        let (packets, lost) = (bot["packets"].as_u64().unwrap(), bot["lost"].as_u64().unwrap());
        assert!(packets > 0, "{name} received packets");
        let loss = lost as f64 / (packets + lost) as f64;
        assert!(loss < 0.01, "{name} lost {lost} of {} packets ({:.2} %)", packets + lost, loss * 100.0);
    }
    // The SFU carried it all, /metrics shows what it cost, and the node is healthy.
    assert!(node.metric("confab_media_forwarded_frames_total").await > 0);
    assert!(node.metric("process_resident_memory_bytes").await > 10 << 20);
    assert_eq!(node.metric("confab_relay_stalled_shards").await, 0);
    let health = confab_tests::client().get(node.api("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!((&health["status"], &health["database"], &health["stalled_relay_shards"]), (&"ok".into(), &"ok".into(), &0.into()), "{health}");
    // The bots left properly.
    confab_tests::eventually("the bots' seats to be given up", std::time::Duration::from_secs(10), || async {
        (node.metric("confab_participants").await == 0).then_some(())
    })
    .await;
}

//! The network-conditions benchmark behind docs/benchmarks.md ("On real networks"): two
//! people in a meeting, Ana in Chromium on this machine and Bo (Chromium, or Firefox ESR
//! with `--firefox`) in a network namespace this benchmark creates and removes, whose link is
//! impaired cell by cell; Bo's own browser stats say what he got of Ana's camera and
//! microphone in each window.
//!
//!     cargo bench -p confab-tests --bench networks -- [--mode sfu,mesh,cluster] [--loss 0,2,5,10,20]
//!         [--delay 0,50,150] [--down 0,1000,400,150] [--up 0,300] [--outage N] [--move N]
//!         [--bots N] [--seconds 15] [--firefox]
//!
//! - `--mode`: `sfu` (the meeting runs through the node, `--mesh-threshold 0`) and/or `mesh`
//!   (a direct connection between the two browsers), one meeting each; and/or `cluster`:
//!   two nodes of a cluster (each in a namespace of its own), Ana on the first and Bo on
//!   the second, through the SFU, where `--loss` is on the link between the nodes (what
//!   reaches Bo's node from Ana's) and the other conditions do not apply. Each cell also
//!   prints how many media packets Bo's node asked for again; `NETWORKS_METRICS=1` prints
//!   both nodes' cascade, NACK and keyframe figures at the end.
//! - `--loss`: % of the UDP datagrams reaching Bo dropped at random (nftables).
//! - `--delay`: ms added each way to Bo's media, ± a third of it as jitter (the userspace
//!   relay in `support/impair.rs`; through the SFU only: in the mesh the browsers' direct
//!   path does not pass it, and such cells are skipped with a line saying so).
//! - `--down`: a cap on UDP towards Bo in kbit/s (`tc`; 0: none).
//! - `--up`: a cap on UDP from Bo in kbit/s (0: none). Cells with a cap also print what Ana
//!   receives of Bo (`Ana ← Bo`): Bo is then the publisher on a thin uplink.
//! - `--bots N`: N bots of `confab loadtest` (real VP8 clips in three layers and Opus,
//!   taking turns to speak) join the meeting too, through the SFU only: a meeting of N + 2.
//!   Each cell then also prints what Bo receives of everyone (`Bo ← all`): audio concealed
//!   over every audio slot, the video slots that decoded, and the longest any one of them
//!   stood frozen in the window (`NETWORKS_SLOTS=1`: audio concealed per slot as well).
//! - `--outage N`: after the cells, N times: every UDP datagram to and from Bo is dropped
//!   for 2 s, then the link is back; printed: how long after that Bo's audio (samples that
//!   are not concealment) and Ana's video (a frame decoded) come back, polled as fast as the
//!   page answers (~20-60 ms), and the frames frozen over the next 5 s.
//! - `--move N`: after the cells (and outages), N times: Bo's namespace gets a new address
//!   (the old one removed, as a phone going from Wi-Fi to mobile data); printed as for an
//!   outage, counted from the change, and whether Bo kept his seat (the same participant
//!   id). When something did not come back (or with `NETWORKS_PAGE_LOG=1` set), both pages'
//!   last log lines follow.
//!
//! Each cell: the impairment set, 3 s for the receivers to settle, then a window of
//! `--seconds`. Printed per cell: frames decoded of those sent, freezes (`freezeCount`,
//! `totalFreezesDuration`, and the longest one, read every quarter second; a freeze still
//! going on at the end, no frame for 0.5 s, counts too), audio concealed
//! (`concealedSamples` of `totalSamplesReceived`), the height decoded at the end, Bo's
//! NACKs, PLIs and retransmissions received, and the round trip. Traffic stays on loopback
//! and in the namespace.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use confab_tests::conditions::{Window, window};
use confab_tests::impair::{Impairment, UdpImpairer};
use confab_tests::meeting::{Participant, start_meeting};
use confab_tests::netns::Namespace;

const USAGE: &str = "usage: cargo bench -p confab-tests --bench networks -- [--mode sfu,mesh,cluster] [--loss 0,2,5,10,20] [--delay 0,50,150] [--down 0,1000,400,150] [--up 0,300] [--outage N] [--move N] [--bots N] [--seconds 15] [--firefox]";

struct Plan {
    modes: Vec<String>,
    losses: Vec<u32>,
    delays: Vec<u64>,
    downs: Vec<u32>,
    ups: Vec<u32>,
    outages: u32,
    moves: u32,
    bots: u32,
    seconds: u64,
    firefox: bool,
}

fn list<T: std::str::FromStr>(value: Option<String>) -> Vec<T> {
    let value = value.unwrap_or_else(|| panic!("{USAGE}"));
    value.split(',').map(|v| v.trim().parse().unwrap_or_else(|_| panic!("`{v}` is not a number; {USAGE}"))).collect()
}

fn plan() -> Plan {
    let mut plan = Plan {
        modes: vec!["sfu".into(), "mesh".into()],
        losses: vec![0, 2, 5, 10, 20],
        delays: vec![0],
        downs: vec![0],
        ups: vec![0],
        outages: 0,
        moves: 0,
        bots: 0,
        seconds: 15,
        firefox: false,
    };
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mode" => plan.modes = args.next().expect(USAGE).split(',').map(str::to_string).collect(),
            "--loss" => plan.losses = list(args.next()),
            "--delay" => plan.delays = list(args.next()),
            "--down" => plan.downs = list(args.next()),
            "--up" => plan.ups = list(args.next()),
            "--outage" => plan.outages = args.next().and_then(|s| s.parse().ok()).expect(USAGE),
            "--move" => plan.moves = args.next().and_then(|s| s.parse().ok()).expect(USAGE),
            "--bots" => plan.bots = args.next().and_then(|s| s.parse().ok()).expect(USAGE),
            "--seconds" => plan.seconds = args.next().and_then(|s| s.parse().ok()).expect(USAGE),
            "--firefox" => plan.firefox = true,
            other => panic!("unknown argument `{other}`; {USAGE}"),
        }
    }
    assert!(plan.modes.iter().all(|m| m == "sfu" || m == "mesh" || m == "cluster"), "{USAGE}");
    assert!(plan.bots == 0 || plan.modes == ["sfu"], "--bots goes with --mode sfu (a meeting that size is not a mesh); {USAGE}");
    plan
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let plan = plan();
    println!(
        "| mode | receiver | loss | delay | down | up | frames decoded | freezes | frozen | longest | audio concealed | height | NACKs | PLIs | RTX | RTT |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for mode in &plan.modes {
        if mode == "cluster" {
            run_cluster(&plan).await;
        } else {
            run_mode(&plan, mode == "sfu").await;
        }
    }
}

/// Two nodes of a cluster, Ana on the first (the meeting's home) and Bo on the second,
/// through the SFU; the loss of each cell is on the link between the nodes (what reaches
/// Bo's node from Ana's: the cascade's media and the control plane), not on Bo's own.
async fn run_cluster(plan: &Plan) {
    use confab_tests::cluster::Cluster;
    let mut cluster = Cluster::prepare(2, 2);
    for i in 0..2 {
        cluster.start(i, &["--mesh-threshold", "0"]).await;
    }
    cluster.wait_formed(2).await;
    let admin = cluster.node(0).admin().await;
    let room = cluster.room_homed_at(&admin, "conditions", &cluster.members[0].key).await;
    let invite = cluster.invite(&admin, &room, &[0, 1]).await;
    let (link_a, link_b) = (format!("{}/m/{room}#{invite}", cluster.node(0).url), format!("{}/m/{room}#{invite}", cluster.node(1).url));
    let (a, b) = tokio::join!(Participant::chromium(&link_a, "Ana"), Participant::chromium(&link_b, "Bo"));
    let (mut a, mut b) = (a, b);
    let ida = a.join().await;
    let idb = b.join().await;
    confab_tests::eventually_or("Bo to decode Ana's video across the nodes", Duration::from_secs(30), || async {
        match b.reception(&ida).await {
            Some(r) if r.path == "sfu" && r.frames_decoded > 30 => Ok(()),
            seen => Err(format!("{seen:?}; the page's log: {}", b.log().await)),
        }
    })
    .await;
    let (ana_node, bo_node) = (&cluster.members[0], &cluster.members[1]);
    for &loss in &plan.losses {
        bo_node.ns.lose_udp_from(&ana_node.ns, loss);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let lost0 = bo_node.node().metric_if_any("confab_cascade_media_lost_total").await.unwrap_or(0);
        let w = window(&a, &b, &ida, &idb, Duration::from_secs(plan.seconds)).await;
        let lost = bo_node.node().metric_if_any("confab_cascade_media_lost_total").await.unwrap_or(0) - lost0;
        print_row(&Cell { via: "cluster", loss, delay: 0, down: 0, up: 0 }, "Bo ← Ana", &w);
        println!("(between the nodes: {lost} media packets lost on the way and asked for again)");
    }
    bo_node.ns.lose_udp_from(&ana_node.ns, 0);
    if std::env::var_os("NETWORKS_METRICS").is_some() {
        for (name, m) in [("Ana's node", ana_node), ("Bo's node", bo_node)] {
            let text = confab_tests::node::client().get(m.node().api("/metrics")).send().await.unwrap().text().await.unwrap();
            let lines: Vec<&str> =
                text.lines().filter(|l| !l.starts_with('#') && (l.contains("cascade") || l.contains("keyframe") || l.contains("nack"))).collect();
            println!("{name}:\n{}", lines.join("\n"));
        }
    }
}

async fn run_mode(plan: &Plan, sfu: bool) {
    let mut ns = Namespace::create();
    let host = ns.host_ip;
    // Through the SFU, Bo's media passes the impairment relay: the node's relay listens on
    // loopback and advertises the namespace link's address, where the impairer listens.
    let impairer = UdpImpairer::start(SocketAddr::new(host.into(), 0), SocketAddr::from(([127, 0, 0, 1], 0)), ns.ns_ip.into()).await;
    let port = impairer.listen.port();
    let (listen, relay_listen, relay_ip) = (format!("{host}:0"), format!("127.0.0.1:{port}"), host.to_string());
    let mut options = vec!["--listen", &listen, "--relay-ip", &relay_ip, "--turn-allow-private", "true"];
    if sfu {
        options.extend(["--relay-shards", "1", "--mesh-threshold", "0"]);
    }
    // Only cells with delay need the impairment relay in the path (Firefox ESR's ICE does
    // not complete through it; Chromium's does); without, the relay listens on the link.
    let delayed = plan.delays.iter().any(|d| *d > 0);
    if sfu && delayed {
        options.extend(["--relay-listen", &relay_listen, "--turn-listen", "off"]);
    }
    let (_node, link, _) = start_meeting(&options, if sfu { "conditions-sfu" } else { "conditions-mesh" }).await;
    let bo_browser = if plan.firefox { confab_tests::browser::Browser::firefox_in(&ns).await } else { confab_tests::browser::Browser::chromium_in(&ns).await };
    let (a, b) = tokio::join!(Participant::chromium(&link, "Ana"), Participant::open(bo_browser, &link, "Bo"));
    let (mut a, mut b) = (a, b);
    let ida = a.join().await;
    let idb = b.join().await;
    let via = if sfu { "sfu" } else { "mesh" };
    confab_tests::eventually_or("Bo to decode Ana's video", Duration::from_secs(30), || async {
        match b.reception(&ida).await {
            Some(r) if r.path == via && r.frames_decoded > 30 => Ok(()),
            seen => Err(format!("{seen:?}; the page's log: {}", b.log().await)),
        }
    })
    .await;
    let _bots = (plan.bots > 0).then(|| Bots::join(&link, &host.to_string(), plan.bots));
    if plan.bots > 0 {
        let everyone = u64::from(plan.bots) + 1;
        confab_tests::eventually("Bo to see every bot", Duration::from_secs(60), || async {
            (b.browser.eval("return window.confabCall.participants.size").await.as_u64() >= Some(everyone)).then_some(())
        })
        .await;
    }
    for &delay in &plan.delays {
        if delay > 0 && !sfu {
            println!("| {via} | | | {delay} ms | | | skipped: in the mesh the direct path does not pass the delay relay | | | | | | | | | |");
            continue;
        }
        impairer.set((delay > 0).then(|| Impairment { delay: Duration::from_millis(delay), jitter: Duration::from_millis(delay / 3) }));
        for &up in &plan.ups {
            ns.limit_udp_uplink(up);
            for &down in &plan.downs {
                ns.limit_udp_downlink(down);
                for &loss in &plan.losses {
                    ns.lose_udp(loss);
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    let cell = Cell { via, loss, delay, down, up };
                    let length = Duration::from_secs(plan.seconds);
                    let everyone = everything(&b).await;
                    if up > 0 {
                        // Both ways at once: Bo receiving, and Bo publishing on his thin uplink.
                        let (to_bo, from_bo) = tokio::join!(window(&a, &b, &ida, &idb, length), window(&b, &a, &idb, &ida, length));
                        print_row(&cell, "Bo ← Ana", &to_bo);
                        print_row(&cell, "Ana ← Bo", &from_bo);
                    } else {
                        print_row(&cell, "Bo ← Ana", &window(&a, &b, &ida, &idb, length).await);
                    }
                    if plan.bots > 0 {
                        print_everyone(&cell, &everyone, &everything(&b).await);
                    }
                }
                ns.lose_udp(0);
            }
        }
    }
    ns.unlimit();
    impairer.set(None);
    for _ in 0..plan.outages {
        outage(&ns, &a, &b, &ida, &idb, via).await;
    }
    for _ in 0..plan.moves {
        let seat = "return [window.confabCall.me.id, window.confabCall.signaling.welcomes]";
        let before = b.browser.eval(seat).await;
        let o = confab_tests::conditions::address_change(&mut ns, &a, &b, &ida, &idb).await;
        let after = b.browser.eval(seat).await;
        let kept = if before[0] == after[0] { format!("kept his seat ({} seat grants)", after[1]) } else { format!("lost his seat: {before} → {after}") };
        print_return(&format!("address change to {} ({via}), Bo {kept}", ns.ns_ip), &o);
        if o.audio.is_none() || o.video.is_none() || o.video_back.is_none() || std::env::var_os("NETWORKS_PAGE_LOG").is_some() {
            for (who, p) in [("Bo", &b), ("Ana", &a)] {
                let log = p.log().await;
                let lines: Vec<&str> = log.lines().collect();
                println!("{who}'s page log, last lines:\n{}", lines[lines.len().saturating_sub(25)..].join("\n"));
            }
        }
    }
}

/// A 2 s outage of Bo's link, and what came back when (`conditions::outage`).
async fn outage(ns: &Namespace, a: &Participant, b: &Participant, ida: &str, idb: &str, via: &str) {
    let o = confab_tests::conditions::outage(ns, a, b, ida, idb).await;
    print_return(&format!("outage 2 s ({via})"), &o);
}

fn print_return(what: &str, o: &confab_tests::conditions::Outage) {
    let ms = |d: Option<Duration>| d.map_or("not within 10 s".to_string(), |d| format!("{} ms", d.as_millis()));
    let after = &o.after;
    println!(
        "{what}: Bo hears Ana after {}, sees her after {}; Ana sees Bo after {}; the 5 s after: {:.1} % of frames, {} freezes ({:.2} s), {}p, audio concealed {:.2} %",
        ms(o.audio),
        ms(o.video),
        ms(o.video_back),
        100.0 * after.decoded_share(),
        after.freeze_count,
        after.frozen.as_secs_f64(),
        after.frame_height,
        100.0 * after.concealed_share()
    );
}

/// The bots of `confab loadtest`, in the meeting until dropped.
struct Bots(std::process::Child);

impl Bots {
    fn join(link: &str, ip: &str, bots: u32) -> Bots {
        let child = std::process::Command::new(confab_tests::node::confab_bin())
            .args(["loadtest", "--link", link, "--insecure", "--bind-ip", ip, "--bots", &bots.to_string(), "--video", "clips"])
            .args(["--warmup", "1s", "--duration", "3600s", "--log", "warn"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("confab loadtest runs");
        Bots(child)
    }
}

impl Drop for Bots {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Cumulative figures of everything one page receives through the SFU, per slot (mid):
/// audio (samples, concealed) and video (frames decoded, seconds frozen).
#[derive(Default)]
struct Everything {
    audio: HashMap<String, (f64, f64)>,
    video: HashMap<String, (f64, f64)>,
}

const EVERYTHING: &str = "return (async () => { const pc = window.confabCall?.sfu?.pc; if (!pc) return {audio: {}, video: {}}; \
    const out = {audio: {}, video: {}}; (await pc.getStats()).forEach((s) => { if (s.type !== 'inbound-rtp') return; \
    if (s.kind === 'audio') out.audio[s.mid] = [s.totalSamplesReceived ?? 0, s.concealedSamples ?? 0]; \
    else out.video[s.mid] = [s.framesDecoded ?? 0, s.totalFreezesDuration ?? 0]; }); return out; })();";

async fn everything(p: &Participant) -> Everything {
    let v = p.browser.eval(EVERYTHING).await;
    let read = |kind: &str| {
        v[kind]
            .as_object()
            .map(|m| m.iter().map(|(mid, x)| (mid.clone(), (x[0].as_f64().unwrap_or(0.0), x[1].as_f64().unwrap_or(0.0)))).collect())
            .unwrap_or_default()
    };
    Everything { audio: read("audio"), video: read("video") }
}

/// What Bo received of everyone between two readings.
fn print_everyone(cell: &Cell, before: &Everything, after: &Everything) {
    let delta = |m: &HashMap<String, (f64, f64)>, mid: &str, now: (f64, f64)| {
        let then = m.get(mid).copied().unwrap_or_default();
        (now.0 - then.0, now.1 - then.1)
    };
    let (mut samples, mut concealed) = (0.0, 0.0);
    let mut slots = Vec::new();
    for (mid, now) in &after.audio {
        let (s, c) = delta(&before.audio, mid, *now);
        samples += s;
        concealed += c;
        slots.push(format!("{mid}: {:.1} %", 100.0 * c / s.max(1.0)));
    }
    if std::env::var_os("NETWORKS_SLOTS").is_some() {
        slots.sort();
        println!("  audio concealed per slot: {}", slots.join(", "));
    }
    let (mut decoding, mut longest) = (0, 0.0f64);
    for (mid, now) in &after.video {
        let (frames, frozen) = delta(&before.video, mid, *now);
        decoding += usize::from(frames > 0.0);
        longest = longest.max(frozen);
    }
    let Cell { via, loss, down, up, .. } = *cell;
    let (down, up) = (cap(down), cap(up));
    println!(
        "| {via} | Bo ← all | {loss} % | | {down} | {up} | {decoding} of {} video slots decoding | | {longest:.2} s (one slot, most) | {:.2} % | | | | | |",
        after.video.len(),
        100.0 * concealed / samples.max(1.0)
    );
}

/// A cap as the table shows it.
fn cap(kbit: u32) -> String {
    if kbit > 0 { format!("{kbit} kbit/s") } else { "none".into() }
}

/// One cell's conditions.
struct Cell<'a> {
    via: &'a str,
    loss: u32,
    delay: u64,
    down: u32,
    up: u32,
}

fn print_row(cell: &Cell, receiver: &str, w: &Window) {
    let Cell { via, loss, delay, down, up } = *cell;
    let delay = if delay > 0 { format!("{delay} ± {} ms", delay / 3) } else { "0".into() };
    let (down, up) = (cap(down), cap(up));
    let path = if w.path == via { String::new() } else { format!(" (on {})", w.path) };
    println!(
        "| {via}{path} | {receiver} | {loss} % | {delay} | {down} | {up} | {:.1} % ({} of {}) | {} | {:.2} s | {:.2} s | {:.2} % | {}p | {} | {} | {} | {:.0} ms |",
        100.0 * w.decoded_share(),
        w.decoded,
        w.sent,
        w.freeze_count,
        w.frozen.as_secs_f64(),
        w.longest_freeze.as_secs_f64(),
        100.0 * w.concealed_share(),
        w.frame_height,
        w.nacks,
        w.plis,
        w.retransmitted,
        w.rtt * 1000.0
    );
}

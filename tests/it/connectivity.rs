//! Connectivity through NATs and firewalls, with browsers in network namespaces the test
//! creates (and always removes): the topology matrix behind docs/connectivity.md.
//!
//! Every address here is private (10.213/16 and up), so the nodes run with
//! `--turn-allow-private true`; the refusal of private peers by default is tests/turn.rs.

use std::time::{Duration, Instant};

use confab_tests::meeting::{Participant, each_receives_the_others, start_meeting};
use confab_tests::netns::{Mapping, Namespace, Nat, Protocol, Wan};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_behind_a_nat_meets_another_directly_in_the_mesh() {
    let _browsers = confab_tests::browser::exclusive().await;
    // Bo sits behind a home router; Ana does not. No STUN or TURN server is configured.
    let nat = Nat::create();
    let host = nat.inside.host_ip.to_string();
    let listen = format!("{host}:0");
    let (node, link, _) = start_meeting(&["--listen", &listen, "--relay-ip", &host, "--turn-listen", "off"], "nat").await;
    let (a, b) = tokio::join!(Participant::chromium(&link, "Ana"), Participant::chromium_in(&nat.inside, &link, "Bo"));
    let (mut a, mut b) = (a, b);
    let ida = a.join().await;
    let idb = b.join().await;

    // Two people: a mesh. Bo's checks reach Ana from the router's address and a port it
    // chose; Ana answers that peer-reflexive candidate (Chromium hides its address in stats)
    // and the pair is direct UDP. Bo learns his mapped address from Ana's answers.
    let router = nat.router.ns_ip.to_string();
    for (p, id, s) in each_receives_the_others(&[&a, &b]).await {
        println!("{} ← {id}: {} via {} over {}", p.name, s.frames_decoded, s.via, s.path);
        assert_eq!(s.via, "mesh");
        assert_eq!(s.path["local"]["protocol"], "udp", "{}", s.path);
        if p.name == "Ana" {
            assert_eq!(s.path["remote"]["type"], "prflx", "Ana reaches Bo only through his NAT's mapping: {}", s.path);
        } else {
            assert_eq!(s.path["local"]["type"], "prflx", "{}", s.path);
            assert_eq!(s.path["local"]["address"], router.as_str(), "Bo's side of the pair is the NAT's mapping: {}", s.path);
            assert_eq!(s.path["remote"]["type"], "host", "{}", s.path);
        }
    }
    assert_eq!(node.metric("confab_media_forwarded_packets_total").await, 0, "the SFU carried nothing");
    println!("{ida} and {idb} meet directly; Bo's NAT maps him to {router}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_whose_network_drops_udp_reaches_the_sfu_over_ice_tcp() {
    let _browsers = confab_tests::browser::exclusive().await;
    // No TURN: the SFU's own TCP listener is the only way in for Bo. (With TURN as well,
    // which of the two Chromium uses is a race on a link this short: its relay over TCP
    // can connect before it gathers TCP candidates, and it stops gathering then.)
    let ns = Namespace::create();
    let host = ns.host_ip.to_string();
    let listen = format!("{host}:0");
    let (node, link, _) =
        start_meeting(&["--listen", &listen, "--relay-ip", &host, "--turn-listen", "off", "--mesh-threshold", "0", "--relay-shards", "1"], "ice-tcp").await;
    let (a, b) = tokio::join!(Participant::chromium(&link, "Ana"), Participant::chromium_in(&ns, &link, "Bo"));
    let (mut a, mut b) = (a, b);
    ns.allow_only(&[(Protocol::Tcp, 0)]);
    a.join().await;
    b.join().await;
    for (p, id, s) in each_receives_the_others(&[&a, &b]).await {
        assert_eq!(s.via, "sfu");
        if p.name == "Bo" {
            let pairs = b.browser.eval(SFU_PAIRS).await;
            assert_eq!(s.path["local"]["protocol"], "tcp", "Bo ← {id} over TCP: {}; {pairs}", s.path);
            assert_ne!(s.path["local"]["type"], "relay", "{}; {pairs}", s.path);
            assert_eq!(s.path["remote"]["type"], "host", "to the SFU's passive TCP candidate: {}; {pairs}", s.path);
            assert_eq!(s.path["remote"]["protocol"], "tcp", "{}; {pairs}", s.path);
        }
    }
    assert!(node.metric("confab_media_forwarded_packets_total").await > 0, "the SFU carried the media");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    Open,
    BothNat,
    Symmetric,
    UdpBlocked,
    Tcp443Only,
}

impl Topology {
    fn describe(self) -> &'static str {
        match self {
            Topology::Open => "(a) all open",
            Topology::BothNat => "(b) each behind its own NAT",
            Topology::Symmetric => "(c) symmetric NAT (Bo) and a NAT (Ana)",
            Topology::UdpBlocked => "(d) UDP blocked for Bo (TCP open)",
            Topology::Tcp443Only => "(e) Bo: only TCP to port 443",
        }
    }
}

/// What one cell of the matrix measured.
struct Cell {
    topology: Topology,
    sfu: bool,
    /// From the second join until each receives video and audio from the other.
    media_after: Duration,
    /// The prejoin self-test's verdict for Bo.
    self_test: String,
    ana: String,
    bo: String,
}

/// "relay (tls) ↔ host": the local candidate (and how a relay is reached) and the remote one.
fn path(p: &Value) -> String {
    let side = |c: &Value| {
        let kind = c["type"].as_str().unwrap_or("?").to_string();
        match c["relayProtocol"].as_str() {
            Some(over) if kind == "relay" => format!("relay/{over}"),
            _ => format!("{kind}/{}", c["protocol"].as_str().unwrap_or("?")),
        }
    };
    format!("{} → {}", side(&p["local"]), side(&p["remote"]))
}

/// Both participants' browsers, each where the topology puts them, with what must outlive
/// the meeting (namespaces) kept alive by the caller.
struct Network {
    _wan: Option<Wan>,
    _nats: Vec<Nat>,
    ns: Option<Namespace>,
    ana_in: Option<usize>,
    bo_in: Option<usize>,
    /// Where the node listens (the host end of the links).
    host: String,
}

fn build(topology: Topology) -> Network {
    match topology {
        Topology::Open | Topology::UdpBlocked | Topology::Tcp443Only => {
            let ns = Namespace::create();
            let host = ns.host_ip.to_string();
            Network { _wan: None, _nats: Vec::new(), ns: Some(ns), ana_in: None, bo_in: None, host }
        }
        Topology::BothNat | Topology::Symmetric => {
            let wan = Wan::create();
            let ana = wan.nat(Mapping::Cone);
            let bo = wan.nat(if topology == Topology::Symmetric { Mapping::Symmetric } else { Mapping::Cone });
            let host = wan.link.host_ip.to_string();
            Network { _wan: Some(wan), _nats: vec![ana, bo], ns: None, ana_in: Some(0), bo_in: Some(1), host }
        }
    }
}

async fn participant(net: &Network, at: Option<usize>, bo: bool, link: &str, name: &str) -> Participant {
    match (at, &net.ns) {
        (Some(i), _) => Participant::chromium_in(&net._nats[i].inside, link, name).await,
        (None, Some(ns)) if bo => Participant::chromium_in(ns, link, name).await,
        _ => Participant::chromium(link, name).await,
    }
}

async fn cell(topology: Topology, sfu: bool) -> Cell {
    let net = build(topology);
    let port = if topology == Topology::Tcp443Only { 443 } else { 0 };
    let listen = format!("{}:{port}", net.host);
    let mut options = vec!["--listen", &listen, "--relay-ip", &net.host, "--turn-allow-private", "true", "--relay-shards", "1"];
    if sfu {
        options.extend(["--mesh-threshold", "0"]);
    }
    let room = if sfu { "matrix-sfu" } else { "matrix-mesh" };
    let (node, link, _) = start_meeting(&options, room).await;
    let (a, b) = tokio::join!(participant(&net, net.ana_in, false, &link, "Ana"), participant(&net, net.bo_in, true, &link, "Bo"));
    let (mut a, mut b) = (a, b);
    firewall(&net, topology);
    // The prejoin again, now behind the firewall: the self-test sees what Bo's network
    // allows. It does not depend on the meeting's mode, so the mesh cell checks it (behind a
    // firewall it waits for its 8 s limit).
    let (self_test, said) = if sfu {
        ("(as in the mesh)".to_string(), String::new())
    } else {
        b.prejoin(&link).await;
        let self_test = confab_tests::eventually("Bo's network check", Duration::from_secs(20), || async {
            b.browser.eval("return document.querySelector('#network-status')?.dataset.path ?? null").await.as_str().map(str::to_string)
        })
        .await;
        let said = b.browser.eval("return document.querySelector('#network-status').textContent").await;
        println!("{}: Bo's self-test: {self_test}: {said}", topology.describe());
        (self_test, said.to_string())
    };

    let ida = a.join().await;
    b.join().await;
    let joined = Instant::now();
    let received = each_receives_the_others(&[&a, &b]).await;
    let media_after = joined.elapsed();
    let mode = if sfu { "sfu" } else { "mesh" };
    let mut paths = (String::new(), String::new());
    for (p, _, s) in &received {
        assert_eq!(s.via, mode, "{}: {} receives through the {mode}", topology.describe(), p.name);
        if p.name == "Ana" { paths.0 = path(&s.path) } else { paths.1 = path(&s.path) }
    }
    let bo_path = &received.iter().find(|(p, _, _)| p.name == "Bo").unwrap().2.path;
    match topology {
        // Only a relay joins a symmetric NAT to another NAT (in a mesh; the SFU is public).
        Topology::Symmetric if !sfu => assert!(paths.0.contains("relay") || paths.1.contains("relay"), "a relayed pair: {paths:?}"),
        // A mesh pair needs TURN over TCP (browsers do not listen on TCP); the SFU listens.
        Topology::UdpBlocked if !sfu => assert_eq!(bo_path["local"]["relayProtocol"], "tcp", "Bo reaches TURN over TCP: {bo_path}"),
        // The SFU: over TCP, directly (ICE-TCP) or through TURN, whichever Chromium finds
        // first (see a_participant_whose_network_drops_udp_reaches_the_sfu_over_ice_tcp).
        Topology::UdpBlocked => {
            assert!(bo_path["local"]["protocol"] == "tcp" || bo_path["local"]["relayProtocol"] == "tcp", "Bo reaches the SFU over TCP: {bo_path}")
        }
        Topology::Tcp443Only => {
            assert_eq!(bo_path["local"]["relayProtocol"], "tls", "Bo reaches TURN over TLS on 443: {bo_path}");
            if !sfu {
                assert_eq!(self_test, "tls", "the self-test names TLS as the working path: {said}");
            }
        }
        _ => {}
    }
    if matches!(topology, Topology::Open | Topology::BothNat) && !sfu {
        assert_eq!(self_test, "udp", "{said}");
    }
    // Ana's tile on Bo's screen says how her media reaches him, as it really does.
    let details = b.connection_details(&ida).await;
    let upper = |v: &serde_json::Value| v.as_str().unwrap_or("udp").to_uppercase();
    let expected = match (bo_path["local"]["type"].as_str(), sfu) {
        (Some("relay"), false) => format!("relayed, TURN over {}", upper(&bo_path["local"]["relayProtocol"])),
        (Some("relay"), true) => format!("relayed by TURN over {}", upper(&bo_path["local"]["relayProtocol"])),
        (_, true) => format!("through the meeting server (SFU) over {}", upper(&bo_path["local"]["protocol"])),
        (_, false) => format!("direct over {}", upper(&bo_path["local"]["protocol"])),
    };
    assert!(details.contains(&expected), "{}: Bo's popover for Ana should say {expected:?}: {details}", topology.describe());
    drop((a, b));
    drop(node);
    Cell { topology, sfu, media_after, self_test, ana: paths.0, bo: paths.1 }
}

/// Every candidate pair of the SFU connection: local → remote, state, nominated.
const SFU_PAIRS: &str = "return (async () => { const st = await window.confabCall.sfu.pc.getStats(); const c = (id) => { const x = st.get(id); return x ? `${x.candidateType}/${x.protocol}${x.relayProtocol ? '/' + x.relayProtocol : ''} ${x.address}:${x.port}` : id; }; const out = []; st.forEach((s) => { if (s.type === 'local-candidate' || s.type === 'remote-candidate') out.push(`${s.type} ${c(s.id)} ${s.tcpType ?? ''}`); if (s.type === 'candidate-pair') out.push(`${c(s.localCandidateId)} -> ${c(s.remoteCandidateId)} ${s.state}${s.nominated ? ' nominated' : ''} req ${s.requestsSent}/resp ${s.responsesReceived}`); }); const cands = (d) => (d?.sdp ?? '').split('\\r\\n').filter((l) => l.startsWith('a=candidate')).join(' | '); out.push(`remote SDP: ${cands(window.confabCall.sfu.pc.remoteDescription)}`, `local SDP: ${cands(window.confabCall.sfu.pc.localDescription)}`); return out.join('; '); })();";

/// (d): Bo may reach the node over TCP only; (e): only TCP port 443.
fn firewall(net: &Network, topology: Topology) {
    let Some(ns) = &net.ns else { return };
    match topology {
        // Every TCP port: HTTPS, TURN over TCP, the SFU's ICE-TCP.
        Topology::UdpBlocked => ns.allow_only(&[(Protocol::Tcp, 0)]),
        Topology::Tcp443Only => ns.allow_only(&[(Protocol::Tcp, 443)]),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_topology_connects_in_mesh_and_sfu() {
    let _browsers = confab_tests::browser::exclusive().await;
    // CONFAB_MATRIX=de runs only those topologies (while debugging one); CI runs all.
    let only = std::env::var("CONFAB_MATRIX").unwrap_or_else(|_| "abcde".into());
    let mut cells = Vec::new();
    let all = [Topology::Open, Topology::BothNat, Topology::Symmetric, Topology::UdpBlocked, Topology::Tcp443Only];
    for topology in all.into_iter().filter(|t| only.contains(&t.describe()[1..2])) {
        for sfu in [false, true] {
            cells.push(cell(topology, sfu).await);
        }
    }
    println!("\n| Topology | Mode | Media after | Bo's self-test | Ana's path (local → remote) | Bo's path (local → remote) |");
    println!("|---|---|---|---|---|---|");
    for c in &cells {
        let mode = if c.sfu { "SFU" } else { "mesh" };
        println!("| {} | {mode} | {:.1} s | {} | {} | {} |", c.topology.describe(), c.media_after.as_secs_f64(), c.self_test, c.ana, c.bo);
    }
}

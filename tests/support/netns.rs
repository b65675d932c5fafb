//! Linux network namespaces that a test creates for itself and always removes: each is
//! joined to the test's own namespace by a veth pair on a private /30, so that a browser (or
//! anything else) started inside it reaches the node over a link the test can shape with
//! `tc`. Nothing is routed beyond the two ends of the pair.
//!
//! Every veth end comes up with `addrgenmode none`: no IPv6 link-local address appears a
//! second or two later, which browsers take for a network change (Chromium then fails the
//! page it is loading with ERR_NETWORK_CHANGED).
//!
//! Needs root (CAP_NET_ADMIN), as CI has; without it the test fails and says so. Dropping the
//! [`Namespace`] deletes it (and with it the veth pair), also when the test panics; a run
//! that was killed outright leaves namespaces behind, and the next run removes those whose
//! process is gone.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Every namespace these tests create is named `PREFIX<pid>-<n>`.
const PREFIX: &str = "confab-t";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

pub struct Namespace {
    pub name: String,
    /// The veth end in the test's own namespace, and its address.
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    /// The address inside the namespace.
    pub ns_ip: Ipv4Addr,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if out.status.success() { Ok(()) } else { Err(format!("`{}` failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim())) }
}

fn must(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("{e}\n(network namespace tests need root, or CAP_NET_ADMIN, and iproute2)");
    }
}

/// Deletes namespaces left by earlier runs that were killed before they could clean up
/// (a NAT's inside namespace carries its router's name and a suffix).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

impl Namespace {
    /// A new namespace with loopback up and a veth link to ours: host end `.1`, namespace
    /// end `.2` of its own /30 in 10.213.0.0/16, default route through the link.
    pub fn create() -> Namespace {
        remove_stale();
        let (n, offset) = slot();
        let pid = std::process::id();
        let base = in_range([10, 213], offset);
        let ns = Namespace {
            name: format!("{PREFIX}{pid}-{n}"),
            host_if: format!("cfv{}-{n}", pid % 1_000_000),
            host_ip: Ipv4Addr::from(base + 1),
            ns_ip: Ipv4Addr::from(base + 2),
        };
        // From here on, Drop removes whatever part of this was made.
        let peer = format!("{}p", ns.host_if);
        let (host_cidr, ns_cidr) = (format!("{}/30", ns.host_ip), format!("{}/30", ns.ns_ip));
        must(&["ip", "netns", "add", &ns.name]);
        must(&["ip", "link", "add", &ns.host_if, "type", "veth", "peer", "name", &peer]);
        must(&["ip", "link", "set", &peer, "netns", &ns.name]);
        must(&["ip", "addr", "add", &host_cidr, "dev", &ns.host_if]);
        must(&["ip", "link", "set", "dev", &ns.host_if, "addrgenmode", "none", "up"]);
        ns.must(&["ip", "link", "set", "lo", "up"]);
        ns.must(&["ip", "addr", "add", &ns_cidr, "dev", &peer]);
        ns.must(&["ip", "link", "set", "dev", &peer, "addrgenmode", "none", "up"]);
        ns.must(&["ip", "route", "add", "default", "via", &ns.host_ip.to_string()]);
        ns
    }

    /// Gives the namespace a new address, as a phone moving from Wi-Fi to mobile data: the
    /// address inside is replaced by one on a new /30 in 10.216/16 (connections bound to the
    /// old one break), whose host end is a second address of ours on the same link; the
    /// default route goes through it, so `host_ip` is reached as before.
    pub fn change_address(&mut self) {
        let (_, offset) = slot();
        let base = in_range([10, 216], offset);
        let (gateway, inside) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let peer = format!("{}p", self.host_if);
        must(&["ip", "addr", "add", &format!("{gateway}/30"), "dev", &self.host_if]);
        self.must(&["ip", "addr", "add", &format!("{inside}/30"), "dev", &peer]);
        self.must(&["ip", "route", "replace", "default", "via", &gateway.to_string()]);
        self.must(&["ip", "addr", "del", &format!("{}/30", self.ns_ip), "dev", &peer]);
        self.ns_ip = inside;
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    fn must(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        must(&all);
    }

    /// Caps UDP towards the namespace (its downlink; media only: HTTPS, WebSocket and
    /// WebDriver over TCP are left alone) at `kbit` kbit/s, with a queue of about 100 ms.
    /// Replaces any downlink cap or firewall (0: none); an uplink cap stays.
    pub fn limit_udp_downlink(&self, kbit: u32) {
        let _ = run(&["tc", "qdisc", "del", "dev", &self.host_if, "root"]);
        if kbit > 0 {
            cap_udp(&["tc"], &self.host_if, kbit);
        }
    }

    /// The same for UDP leaving the namespace (its uplink). Replaces any uplink cap (0:
    /// none).
    pub fn limit_udp_uplink(&self, kbit: u32) {
        let inside = format!("{}p", self.host_if);
        let _ = run(&["ip", "netns", "exec", &self.name, "tc", "qdisc", "del", "dev", &inside, "root"]);
        if kbit > 0 {
            cap_udp(&["ip", "netns", "exec", &self.name, "tc"], &inside, kbit);
        }
    }

    /// A firewall at the namespace's link (replacing any cap): of IP traffic (IPv6 is all
    /// dropped), only connections from inside to the host end's `services` (protocol and
    /// port; port 0: any) pass (with their replies); everything else is dropped in both
    /// directions. Direct connections between a browser inside and one outside fail, as
    /// behind a strict firewall; the node stays reachable. (A browser's WebDriver server is
    /// reached through the namespace's loopback, not this link.)
    pub fn allow_only(&self, services: &[(Protocol, u16)]) {
        self.unlimit();
        let inside = format!("{}p", self.host_if);
        // Egress of each end: from the host towards the namespace, and from the namespace out.
        for (dev, in_ns) in [(self.host_if.as_str(), false), (inside.as_str(), true)] {
            let tc = |args: &[&str]| {
                let mut all: Vec<&str> = if in_ns { vec!["ip", "netns", "exec", &self.name, "tc"] } else { vec!["tc"] };
                all.extend_from_slice(args);
                must(&all);
            };
            // Without tc actions (not every kernel has them): what may pass is classified
            // into an open class, and everything else falls into one whose queue holds nothing.
            tc(&["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "30"]);
            tc(&["class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit"]);
            tc(&["class", "add", "dev", dev, "parent", "1:", "classid", "1:30", "htb", "rate", "10gbit"]);
            tc(&["qdisc", "add", "dev", dev, "parent", "1:30", "handle", "30:", "pfifo", "limit", "0"]);
            tc(&["filter", "add", "dev", dev, "parent", "1:", "protocol", "arp", "prio", "1", "u32", "match", "u32", "0", "0", "flowid", "1:10"]);
            let mut pass = Vec::new();
            for (protocol, port) in services {
                // Out of the namespace the service is the destination; into it, the source.
                pass.push((protocol.number(), if in_ns { "dport" } else { "sport" }, *port));
            }
            for (protocol, direction, port) in pass {
                let (protocol, port) = (protocol.to_string(), port.to_string());
                if port == "0" {
                    // Port 0: every port of that protocol.
                    tc(&[
                        "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "2", "u32", "match", "ip", "protocol", &protocol, "0xff",
                        "flowid", "1:10",
                    ]);
                } else {
                    tc(&[
                        "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "2", "u32", "match", "ip", "protocol", &protocol, "0xff",
                        "match", "ip", direction, &port, "0xffff", "flowid", "1:10",
                    ]);
                }
            }
        }
    }

    /// Drops `percent` % of the UDP datagrams that arrive in the namespace, each at random
    /// (nftables `numgen random`: this kernel has no netem). TCP (HTTPS, WebSocket,
    /// WebDriver) is left alone. 0 removes the loss; 100 drops all of it.
    pub fn lose_udp(&self, percent: u32) {
        self.lose("confab_loss", "input", percent);
    }

    /// The same for the UDP datagrams that leave the namespace (its uplink).
    pub fn lose_udp_out(&self, percent: u32) {
        self.lose("confab_loss_out", "output", percent);
    }

    /// The same for the UDP datagrams that arrive from namespace `other` only (the link
    /// between two nodes of a cluster, one way: the cascade's media and the control plane).
    pub fn lose_udp_from(&self, other: &Namespace, percent: u32) {
        self.lose_matching("confab_loss_from", "input", percent, &["ip", "saddr", &other.ns_ip.to_string()]);
    }

    fn lose(&self, table: &str, hook: &str, percent: u32) {
        self.lose_matching(table, hook, percent, &[]);
    }

    fn lose_matching(&self, table: &str, hook: &str, percent: u32, matching: &[&str]) {
        assert!(percent <= 100, "a share of {percent} %");
        let _ = run(&["ip", "netns", "exec", &self.name, "nft", "delete", "table", "inet", table]);
        if percent == 0 {
            return;
        }
        let (percent, chain) = (percent.to_string(), format!("{{ type filter hook {hook} priority 0 ; }}"));
        self.must(&["nft", "add", "table", "inet", table]);
        self.must(&["nft", "add", "chain", "inet", table, hook, &chain]);
        let mut rule = vec!["nft", "add", "rule", "inet", table, hook];
        rule.extend_from_slice(matching);
        rule.extend(["meta", "l4proto", "udp"]);
        if percent != "100" {
            // All of it at 100 (`numgen … < 100` is out of nftables' range).
            rule.extend(["numgen", "random", "mod", "100", "<", &percent]);
        }
        rule.push("drop");
        self.must(&rule);
    }

    /// Drops every packet between this namespace and `other` (a partition between two nodes
    /// of a cluster; both keep reaching everyone else); `false` heals it.
    pub fn cut_off_from(&self, other: &Namespace, cut: bool) {
        let _ = run(&["ip", "netns", "exec", &self.name, "nft", "delete", "table", "inet", "confab_cut"]);
        if !cut {
            return;
        }
        let peer = other.ns_ip.to_string();
        self.must(&["nft", "add", "table", "inet", "confab_cut"]);
        self.must(&["nft", "add", "chain", "inet", "confab_cut", "input", "{ type filter hook input priority 0 ; }"]);
        self.must(&["nft", "add", "chain", "inet", "confab_cut", "output", "{ type filter hook output priority 0 ; }"]);
        self.must(&["nft", "add", "rule", "inet", "confab_cut", "input", "ip", "saddr", &peer, "drop"]);
        self.must(&["nft", "add", "rule", "inet", "confab_cut", "output", "ip", "daddr", &peer, "drop"]);
    }

    /// Counts (nftables) the UDP bytes that reach this namespace from port `port` of
    /// `other`, from now on.
    pub fn count_udp_from(&self, other: &Namespace, port: u16) {
        let _ = run(&["ip", "netns", "exec", &self.name, "nft", "delete", "table", "inet", "confab_count"]);
        let (peer, port) = (other.ns_ip.to_string(), port.to_string());
        self.must(&["nft", "add", "table", "inet", "confab_count"]);
        self.must(&["nft", "add", "chain", "inet", "confab_count", "input", "{ type filter hook input priority -10 ; }"]);
        self.must(&["nft", "add", "rule", "inet", "confab_count", "input", "ip", "saddr", &peer, "udp", "sport", &port, "counter"]);
    }

    /// The bytes counted since [`Namespace::count_udp_from`] (IP packets, headers included).
    pub fn udp_bytes_counted(&self) -> u64 {
        let out = Command::new("ip").args(["netns", "exec", &self.name, "nft", "list", "chain", "inet", "confab_count", "input"]).output().expect("nft runs");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "bytes")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter in the namespace's nftables: {text}"))
    }

    /// Removes any cap or firewall.
    pub fn unlimit(&self) {
        let _ = run(&["tc", "qdisc", "del", "dev", &self.host_if, "root"]);
        let inside = format!("{}p", self.host_if);
        let _ = run(&["ip", "netns", "exec", &self.name, "tc", "qdisc", "del", "dev", &inside, "root"]);
    }
}

/// An htb class at `kbit` for UDP leaving `dev` (run with the `tc` of `tc`), everything
/// else unlimited.
fn cap_udp(tc: &[&str], dev: &str, kbit: u32) {
    let (rate, burst) = (format!("{kbit}kbit"), format!("{}", (kbit as usize * 1000 / 8 / 10).max(3000)));
    let must_tc = |args: &[&str]| {
        let mut all = tc.to_vec();
        all.extend_from_slice(args);
        must(&all);
    };
    must_tc(&["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10"]);
    must_tc(&["class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit"]);
    must_tc(&["class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb", "rate", &rate, "ceil", &rate, "burst", &burst]);
    must_tc(&["qdisc", "add", "dev", dev, "parent", "1:20", "handle", "20:", "bfifo", "limit", &burst]);
    must_tc(&["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "u32", "match", "ip", "protocol", "17", "0xff", "flowid", "1:20"]);
}

/// A namespace behind a NAT: `router` masquerades what `inside` sends out, as a home router
/// does. UDP from outside reaches `inside` only as the reply to something it sent (to the
/// same address and port). The test's namespace has a route to `inside` through the router
/// so that it can reach a WebDriver there (ChromeDriver accepts requests only for its own
/// addresses): TCP connections from outside pass, new UDP flows from outside are dropped.
/// `inside.host_ip` is the node's address as seen from inside (where the node listens),
/// `inside.ns_ip` the address inside.
pub struct Nat {
    pub inside: Namespace,
    pub router: Namespace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Linux's masquerade keeps a flow's source port where it can: one mapping whatever the
    /// destination (endpoint-independent), so STUN's answer is what peers see.
    Cone,
    /// A new random port for every destination (`masquerade fully-random`): the mapping STUN
    /// reports is useless to peers, and only a relay connects two such clients.
    Symmetric,
}

/// A /30 in each of 10.213/16 (links to the test's namespace), 10.214/16 (links behind a
/// NAT), 10.215/16 (links to a [`Wan`]) and 10.216/16 (a namespace's address after
/// [`Namespace::change_address`]), unique to this process and call.
fn slot() -> (u32, u32) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(n < 256, "too many namespaces in one test run");
    (n, ((std::process::id() % 64) * 256 + n) * 4)
}

fn in_range(first: [u8; 2], offset: u32) -> u32 {
    u32::from(Ipv4Addr::new(first[0], first[1], 0, 0)) + offset
}

impl Nat {
    /// A NAT whose router is linked to the test's namespace. Needs `nft` (Debian's
    /// nftables, which tests/run.sh installs).
    pub fn create() -> Nat {
        let router = Namespace::create();
        let offset = u32::from(router.host_ip) - u32::from(Ipv4Addr::new(10, 213, 0, 1));
        let uplink = format!("{}p", router.host_if);
        let nat = Nat::behind(router, &uplink, offset, Mapping::Cone);
        must(&["ip", "route", "add", &format!("{}/30", Ipv4Addr::from(in_range([10, 214], offset))), "via", &nat.router.ns_ip.to_string()]);
        nat
    }

    /// The inside namespace, its link to `router` (whose link upstream is `uplink`), and
    /// the router's rules.
    fn behind(router: Namespace, uplink: &str, offset: u32, mapping: Mapping) -> Nat {
        let n = router.name.rsplit('-').next().unwrap_or("0").to_string();
        let pid = std::process::id() % 1_000_000;
        let (link, peer) = (format!("cfn{pid}-{n}"), format!("cfn{pid}-{n}p"));
        let base = in_range([10, 214], offset);
        let (gateway, address) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let inside = Namespace { name: format!("{}n", router.name), host_if: link.clone(), host_ip: router.host_ip, ns_ip: address };
        must(&["ip", "netns", "add", &inside.name]);
        router.must(&["ip", "link", "add", &link, "type", "veth", "peer", "name", &peer]);
        router.must(&["ip", "link", "set", &peer, "netns", &inside.name]);
        router.must(&["ip", "addr", "add", &format!("{gateway}/30"), "dev", &link]);
        router.must(&["ip", "link", "set", "dev", &link, "addrgenmode", "none", "up"]);
        router.must(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        inside.must(&["ip", "link", "set", "lo", "up"]);
        inside.must(&["ip", "addr", "add", &format!("{address}/30"), "dev", &peer]);
        inside.must(&["ip", "link", "set", "dev", &peer, "addrgenmode", "none", "up"]);
        inside.must(&["ip", "route", "add", "default", "via", &gateway.to_string()]);
        let masquerade = match mapping {
            Mapping::Cone => "masquerade",
            Mapping::Symmetric => "masquerade fully-random",
        };
        let rules = format!(
            "table ip nat {{\n chain post {{ type nat hook postrouting priority srcnat; oifname \"{uplink}\" {masquerade}; }}\n}}\n\
             table ip filter {{\n chain forward {{ type filter hook forward priority filter; \
             iifname \"{uplink}\" oifname \"{link}\" ct state new meta l4proto udp drop; }}\n}}\n"
        );
        let file = std::env::temp_dir().join(format!("{}.nft", inside.name));
        std::fs::write(&file, rules).expect("a temporary file for the NAT rules");
        router.must(&["nft", "-f", &file.display().to_string()]);
        let _ = std::fs::remove_file(&file);
        Nat { inside, router }
    }
}

/// A stand-in for the Internet between several NATs and the node: a namespace linked to
/// the test's namespace that forwards between its links (the test's namespace itself
/// forwards nothing). The node listens on `link.host_ip`.
pub struct Wan {
    pub link: Namespace,
}

impl Wan {
    pub fn create() -> Wan {
        let link = Namespace::create();
        link.must(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        Wan { link }
    }

    /// A NAT whose router hangs off this WAN.
    pub fn nat(&self, mapping: Mapping) -> Nat {
        let (n, offset) = slot();
        let pid = std::process::id();
        let base = in_range([10, 215], offset);
        let (wan_end, router_end) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let (wan_if, uplink) = (format!("cfw{}-{n}", pid % 1_000_000), format!("cfw{}-{n}p", pid % 1_000_000));
        // host_if names the WAN's end, which lives in the WAN namespace: deleting the
        // router's namespace deletes the pair.
        let router = Namespace { name: format!("{PREFIX}{pid}-{n}"), host_if: wan_if.clone(), host_ip: self.link.host_ip, ns_ip: router_end };
        must(&["ip", "netns", "add", &router.name]);
        self.link.must(&["ip", "link", "add", &wan_if, "type", "veth", "peer", "name", &uplink]);
        self.link.must(&["ip", "link", "set", &uplink, "netns", &router.name]);
        self.link.must(&["ip", "addr", "add", &format!("{wan_end}/30"), "dev", &wan_if]);
        self.link.must(&["ip", "link", "set", "dev", &wan_if, "addrgenmode", "none", "up"]);
        router.must(&["ip", "link", "set", "lo", "up"]);
        router.must(&["ip", "addr", "add", &format!("{router_end}/30"), "dev", &uplink]);
        router.must(&["ip", "link", "set", "dev", &uplink, "addrgenmode", "none", "up"]);
        router.must(&["ip", "route", "add", "default", "via", &wan_end.to_string()]);
        let nat = Nat::behind(router, &uplink, offset, mapping);
        // The way to the router's uplink (masqueraded traffic comes from there) and, for
        // WebDriver, to the inside: through the WAN, from the test's namespace and the WAN.
        let inside_net = format!("{}/30", Ipv4Addr::from(in_range([10, 214], offset)));
        let wan_gateway = self.link.ns_ip.to_string();
        must(&["ip", "route", "add", &format!("{}/30", Ipv4Addr::from(base)), "via", &wan_gateway]);
        must(&["ip", "route", "add", &inside_net, "via", &wan_gateway]);
        self.link.must(&["ip", "route", "add", &inside_net, "via", &router_end.to_string()]);
        nat
    }
}

/// The namespace every browser of this test process runs in unless its test puts it
/// elsewhere, and whose host end (`host_ip`) nodes listen on by default: browsers then reach
/// the node, the relay and each other only over this link, never at this machine's own
/// addresses (a browser on the host gathers candidates on them, and its mesh pairs and the
/// relay's default-route address would carry the media there).
///
/// Made on first use, removed when the process exits (also after failed tests: libtest ends
/// with `exit`, which runs the handler); a killed run's copy goes with [`remove_stale`].
/// Packets between it and the namespaces a test makes for the other participant pass
/// through the test's own namespace, so this turns on IPv4 forwarding there (restored at
/// exit).
pub fn browsers() -> &'static Namespace {
    static SHARED: std::sync::OnceLock<Namespace> = std::sync::OnceLock::new();
    extern "C" fn remove_at_exit() {
        if let Some(ns) = SHARED.get() {
            let _ = run(&["ip", "netns", "del", &ns.name]);
            let _ = run(&["ip", "link", "del", &ns.host_if]);
        }
    }
    SHARED.get_or_init(|| {
        forward_between_namespaces();
        let ns = Namespace::create();
        // SAFETY: registers a plain function with no arguments, run once at exit.
        unsafe { libc::atexit(remove_at_exit) };
        ns
    })
}

/// Turns on IPv4 forwarding in the test's own namespace, so that namespaces joined to it
/// reach each other through it (browsers and nodes, or the nodes of a cluster); put back as
/// it was when the process exits.
pub fn forward_between_namespaces() {
    static FORWARDING: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    extern "C" fn restore_at_exit() {
        if let Some(before) = FORWARDING.get() {
            let _ = std::fs::write(IP_FORWARD, before);
        }
    }
    FORWARDING.get_or_init(|| {
        let before = std::fs::read_to_string(IP_FORWARD).unwrap_or_else(|e| panic!("cannot read {IP_FORWARD}: {e}"));
        std::fs::write(IP_FORWARD, "1").unwrap_or_else(|e| panic!("cannot turn on forwarding ({IP_FORWARD}, needs root): {e}"));
        // SAFETY: registers a plain function with no arguments, run once at exit.
        unsafe { libc::atexit(restore_at_exit) };
        before.trim().to_string()
    });
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth end inside it, and so the pair.
        let _ = run(&["ip", "netns", "del", &self.name]);
        let _ = run(&["ip", "link", "del", &self.host_if]);
    }
}

//! A cluster on one machine: each node in its own network namespace (joined to the test's
//! namespace, which forwards between them), one operator directory with the operator key and
//! the membership, and per node a copy of the membership it reads (the operator "copies the
//! file to the node" by writing that copy).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::netns::Namespace;
use crate::node::{Node, confab_bin};

/// The UDP port each node's control plane listens on (inside its own namespace).
pub const CLUSTER_PORT: u16 = 7000;

/// Fields drop in order: the node stops before its namespace goes.
pub struct Member {
    pub node: Option<Node>,
    pub ns: Namespace,
    pub data_dir: PathBuf,
    /// The node's public key, hex.
    pub key: String,
    /// The membership copy this node reads (`--membership`).
    pub membership: PathBuf,
}

impl Member {
    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("this member is running")
    }

    /// `ip:port` of its control plane, as the membership lists it.
    pub fn address(&self) -> String {
        format!("{}:{CLUSTER_PORT}", self.ns.ns_ip)
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// The operator key's public half.
    pub operator: String,
    pub members: Vec<Member>,
}

fn confab(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(confab_bin()).current_dir(dir).args(args).env_remove("CONFAB_CONFIG").output().unwrap();
    assert!(out.status.success(), "confab {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

impl Cluster {
    /// `n` nodes prepared (namespaces, keys, data directories) and `members` of them added to
    /// the membership, the first with the accounts role; none started.
    pub fn prepare(n: usize, members: usize) -> Cluster {
        crate::netns::forward_between_namespaces();
        let dir = tempfile::tempdir().unwrap();
        let out = confab(dir.path(), &["cluster", "init"]);
        let operator = out.split("(public ").nth(1).and_then(|r| r.split(')').next()).expect("init prints the operator key's public half").to_string();
        let mut cluster = Cluster { dir, operator, members: Vec::new() };
        for i in 0..n {
            let data_dir = cluster.dir.path().join(format!("node{}", i + 1));
            let key = confab(cluster.dir.path(), &["node-key", "--data-dir", data_dir.to_str().unwrap()]).trim().to_string();
            let membership = cluster.dir.path().join(format!("node{}.cfm", i + 1));
            cluster.members.push(Member { node: None, ns: Namespace::create(), data_dir, key, membership });
        }
        for i in 0..members {
            cluster.add(i);
        }
        for m in &cluster.members {
            std::fs::copy(cluster.dir.path().join("membership.cfm"), &m.membership).unwrap();
        }
        cluster
    }

    /// The operator adds member `i` (a new epoch in the operator's file only): the first
    /// holds the accounts.
    pub fn add(&self, i: usize) {
        self.add_as(i, if i == 0 { "accounts,media" } else { "media" });
    }

    /// The operator adds member `i`, or changes its roles (`accounts,media`, `media`).
    pub fn add_as(&self, i: usize, roles: &str) {
        self.add_with(i, &["--roles", roles]);
    }

    /// The operator adds member `i` with more options of `cluster add` (`--expires 10s`).
    pub fn add_with(&self, i: usize, options: &[&str]) {
        let m = &self.members[i];
        let address = m.address();
        let mut args = vec!["cluster", "add", "--node-key", m.key.as_str(), "--address", address.as_str()];
        args.extend_from_slice(options);
        confab(self.dir.path(), &args);
    }

    /// The operator removes member `i` (a new epoch in the operator's file only).
    pub fn remove(&self, i: usize) {
        confab(self.dir.path(), &["cluster", "remove", "--node-key", &self.members[i].key]);
    }

    /// The operator copies the current membership to node `i`.
    pub fn publish_to(&self, i: usize) {
        let m = &self.members[i];
        let tmp = m.membership.with_extension("new");
        std::fs::copy(self.dir.path().join("membership.cfm"), &tmp).unwrap();
        std::fs::rename(&tmp, &m.membership).unwrap();
    }

    /// Starts node `i` in its namespace, HTTPS on port 8443 of its address.
    pub async fn start(&mut self, i: usize, extra: &[&str]) {
        let m = &self.members[i];
        let ip = m.ns.ns_ip.to_string();
        let listen = format!("{ip}:8443");
        let cluster_listen = m.address();
        let mut options = vec![
            "--listen",
            &listen,
            "--relay-ip",
            &ip,
            "--cluster-operator",
            &self.operator,
            "--membership",
            m.membership.to_str().unwrap(),
            "--cluster-listen",
            &cluster_listen,
        ];
        options.extend_from_slice(extra);
        let node = Node::start_in_namespace(&m.ns, &m.data_dir, &options).await;
        self.members[i].node = Some(node);
    }

    pub async fn start_all(&mut self) {
        for i in 0..self.members.len() {
            self.start(i, &[]).await;
        }
    }

    pub fn node(&self, i: usize) -> &Node {
        self.members[i].node()
    }

    /// Waits until each of the first `members` nodes is connected to the others, on the
    /// control plane and by the media cascade.
    pub async fn wait_formed(&self, members: usize) {
        for i in 0..members {
            self.wait_peers(i, members as u64 - 1, Duration::from_secs(20)).await;
            let node = self.node(i);
            let links = members as u64 - 1;
            crate::eventually_or(&format!("node {} to have {links} cascade links", i + 1), Duration::from_secs(20), || async move {
                let now = node.metric("confab_cascade_links").await;
                if now == links { Ok(()) } else { Err(format!("{now} links")) }
            })
            .await;
        }
    }

    /// Seats each running node holds (`confab_participants`: the meetings it runs).
    pub async fn seats(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for m in self.members.iter().filter(|m| m.node.is_some()) {
            out.push(m.node().metric("confab_participants").await);
        }
        out
    }

    /// Waits until the nodes' seats are `expected`, naming `what` if they never are.
    pub async fn wait_seats(&self, expected: &[u64], what: &str, within: Duration) {
        crate::eventually_or(what, within, || async {
            let seats = self.seats().await;
            if seats == expected { Ok(()) } else { Err(format!("seats {seats:?}")) }
        })
        .await
    }

    /// A room name (`prefix-N`) whose home, as node 1 tells its admin, is `home` (a node
    /// key, hex).
    pub async fn room_homed_at(&self, admin: &reqwest::Client, prefix: &str, home: &str) -> String {
        for n in 0..64 {
            let room = format!("{prefix}-{n}");
            let res = admin.get(self.node(0).api(&format!("/api/cluster?room={room}"))).send().await.unwrap();
            let status: serde_json::Value = res.json().await.unwrap();
            if status["home"] == home {
                return room;
            }
        }
        panic!("no room of 64 has its home at {home}");
    }

    /// The accounts node (node 1) makes a guest invite to `room`, and every node of `on`
    /// admits it (the accounts node's tables reached them).
    pub async fn invite(&self, admin: &reqwest::Client, room: &str, on: &[usize]) -> String {
        let key = confab_keys::AccountKey::from_seed([3; 32]);
        let invite = crate::node::make_invite(admin, self.node(0), &key, room, 3600).await;
        for &i in on {
            let node = self.node(i);
            let invite = invite.as_str();
            crate::eventually_or("the invite to be admitted", Duration::from_secs(15), || async move {
                let (status, code) = crate::node::check_invite(node, room, invite).await;
                if status == 200 { Ok(()) } else { Err(format!("{status} {code}")) }
            })
            .await;
        }
        invite
    }

    /// Waits until node `i` counts `peers` connected members.
    pub async fn wait_peers(&self, i: usize, peers: u64, within: Duration) {
        let node = self.node(i);
        crate::eventually_or(&format!("node {} to have {peers} peers", i + 1), within, || async move {
            let now = node.metric("confab_cluster_peers").await;
            if now == peers { Ok(()) } else { Err(format!("{now} peers")) }
        })
        .await
    }
}

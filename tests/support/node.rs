//! The `confab` binary under test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

/// Path of the `confab` binary, built once per test process with the same profile as the
/// tests (so `cargo test` always exercises the current code).
pub fn confab_bin() -> PathBuf {
    crate::timing::mark();
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(path) = std::env::var("CONFAB_BIN") {
            return PathBuf::from(path);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf();
        let release = cfg!(not(debug_assertions));
        let mut build = Command::new(env!("CARGO"));
        build.current_dir(&workspace).args(["build", "--quiet", "-p", "confab-node", "--bin", "confab"]);
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("cannot run cargo to build the confab binary");
        assert!(status.success(), "building the confab binary failed");
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
        target.join(if release { "release" } else { "debug" }).join("confab")
    })
    .clone()
}

/// A running node with its own data directory.
pub struct Node {
    child: Option<Child>,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    pub url: String,
    /// The first-start token, if this start printed one.
    pub first_token: Option<String>,
    stdout_lines: Vec<String>,
}

impl Node {
    /// One unlabelled value from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        self.metric_if_any(name).await.unwrap_or_else(|| panic!("no {name} in /metrics"))
    }

    /// The same, or `None` if this node has no such metric (a benchmark run against an
    /// older build).
    pub async fn metric_if_any(&self, name: &str) -> Option<u64> {
        let text = client().get(self.api("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' '))).map(|v| v.parse().unwrap())
    }

    /// The sum of a metric's lines in /metrics whose name and labels start with `prefix`
    /// (all shards, all peers). There must be at least one: a misspelt name fails rather
    /// than reading as 0.
    pub async fn metric_sum(&self, prefix: &str) -> u64 {
        let text = client().get(self.api("/metrics")).send().await.unwrap().text().await.unwrap();
        let values: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("not a count: {l}")))
            .collect();
        assert!(!values.is_empty(), "no {prefix} in /metrics:\n{text}");
        values.into_iter().sum()
    }

    pub async fn start() -> Node {
        Node::start_with(&[]).await
    }

    /// Starts on a new data directory with extra `serve` options (`--listen` among them
    /// replaces the default, a free port on the browsers' link, see
    /// [`crate::netns::browsers`]; `--relay-ip` or `--relay-listen` replaces the relay's
    /// announced address, by default the listening one).
    pub async fn start_with(options: &[&str]) -> Node {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("data");
        let options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        let bin = confab_bin();
        let mut node = tokio::task::spawn_blocking(move || Node::spawn(&bin, &dir, &options)).await.unwrap();
        node._temp = Some(temp);
        node
    }

    /// Starts on an existing (or new) data directory, on a free port of the browsers' link.
    pub async fn start_in(data_dir: &Path) -> Node {
        Node::start_in_with(data_dir, &[]).await
    }

    /// Starts on an existing (or new) data directory with extra `serve` options (e.g. the
    /// `--listen` address of an earlier start, to come back where browsers look for it).
    pub async fn start_in_with(data_dir: &Path, options: &[&str]) -> Node {
        let (bin, dir) = (confab_bin(), data_dir.to_path_buf());
        let options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        tokio::task::spawn_blocking(move || Node::spawn(&bin, &dir, &options)).await.unwrap()
    }

    /// Starts inside the network namespace `ns` (`ip netns exec`, which becomes the node:
    /// its pid is the node's) on an existing (or new) data directory; `options` must say
    /// where to listen (an address inside the namespace).
    pub async fn start_in_namespace(ns: &crate::netns::Namespace, data_dir: &Path, options: &[&str]) -> Node {
        let (bin, dir, ns) = (confab_bin(), data_dir.to_path_buf(), ns.name.clone());
        let options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        tokio::task::spawn_blocking(move || Node::spawn_in(Some(&ns), &bin, &dir, &options)).await.unwrap()
    }

    fn spawn(bin: &Path, data_dir: &Path, options: &[String]) -> Node {
        Node::spawn_in(None, bin, data_dir, options)
    }

    fn spawn_in(ns: Option<&str>, bin: &Path, data_dir: &Path, options: &[String]) -> Node {
        let mut command = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .arg("serve")
            // A free port on the browsers' link, unless the test says where to listen.
            .args(if options.iter().any(|o| o == "--listen") { Vec::new() } else { vec!["--listen".to_string(), format!("{}:0", listen_ip(options))] })
            // The relay announced at that address, not at this machine's default-route one.
            .args(if options.iter().any(|o| o == "--relay-ip" || o == "--relay-listen") {
                Vec::new()
            } else {
                vec!["--relay-ip".to_string(), listen_ip(options)]
            })
            // TURN on a free port of the same address, unless the test says otherwise.
            .args(if options.iter().any(|o| o == "--turn-listen") {
                Vec::new()
            } else {
                vec!["--turn-listen".to_string(), format!("{}:0", listen_ip(options))]
            })
            .arg("--log")
            // CONFAB_TEST_LOG (e.g. `warn,confab_relay=debug`) shows more of the node's log.
            .arg(std::env::var("CONFAB_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .args(options)
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("CONFAB_CONFIG")
            .current_dir(data_dir.parent().unwrap_or(data_dir))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start confab");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // `serve` prints the first-start token (if any) and then, last, the "serving" line.
        let mut lines = Vec::new();
        let mut url = None;
        let mut first_token = None;
        while url.is_none() {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else { break };
            if let Some(tok) = line.trim().strip_prefix("cft_") {
                first_token = Some(format!("cft_{tok}"));
            }
            if let Some(addr) = line.split("(listening on ").nth(1) {
                url = Some(format!("https://{}", addr.trim_end_matches(')')));
            }
            lines.push(line);
        }
        let url = url.unwrap_or_else(|| panic!("confab did not report its address; stdout was: {lines:?}"));
        Node { child: Some(child), data_dir: data_dir.to_path_buf(), _temp: None, url, first_token, stdout_lines: lines }
    }

    /// `IP:PORT` where it listens for HTTPS (to start again at the same place).
    pub fn listen(&self) -> String {
        self.url.trim_start_matches("https://").trim_end_matches('/').to_string()
    }

    /// The HTTPS port (also the first relay shard's UDP port, by default).
    /// The IP it listens on (HTTPS), for clients on this machine to bind to: a link the
    /// tests made, never one of this machine's own addresses.
    pub fn ip(&self) -> String {
        self.listen().rsplit_once(':').map(|(ip, _)| ip.trim_matches(['[', ']']).to_string()).expect("IP:PORT")
    }

    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).expect("the node's URL ends with its port")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn stdout(&self) -> &[String] {
        &self.stdout_lines
    }

    /// SIGKILL: no chance to clean up, as in a crash or power loss.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The exit status, once the process has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is running").id()
    }

    /// Runs a CLI subcommand against this node's data directory; returns stdout, or panics
    /// with stderr if it failed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(out.status.success(), "confab {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn cli_output(&self, args: &[&str]) -> std::process::Output {
        Command::new(confab_bin())
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--public-url")
            .arg(&self.url)
            .env_remove("CONFAB_CONFIG")
            .output()
            .unwrap()
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Signs up the first (admin) account with the first-start token and returns its client.
    pub async fn admin(&self) -> reqwest::Client {
        let c = client();
        let token = self.first_token.clone().expect("this start printed no first-start token");
        let res = signup(&c, self, "admin", "admin password", &token).await;
        assert_eq!(res.status(), 201, "admin sign-up failed: {}", res.text().await.unwrap());
        c
    }

    /// Issues a token through the API with a ticketmaster's client.
    pub async fn issue_token(&self, ticketmaster: &reqwest::Client) -> String {
        let res = ticketmaster.post(self.api("/api/tokens")).json(&json!({"note": "test"})).send().await.unwrap();
        assert_eq!(res.status(), 201);
        res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string()
    }

    /// A fresh logged-in account (signed up with a token the admin client issues).
    pub async fn account(&self, admin: &reqwest::Client, username: &str) -> reqwest::Client {
        let token = self.issue_token(admin).await;
        let c = client();
        let res = signup(&c, self, username, "a long password", &token).await;
        assert_eq!(res.status(), 201, "sign-up of {username} failed: {}", res.text().await.unwrap());
        c
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTPS client that accepts the node's self-signed certificate and keeps cookies.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().danger_accept_invalid_certs(true).cookie_store(true).timeout(Duration::from_secs(30)).build().unwrap()
}

pub async fn signup(c: &reqwest::Client, node: &Node, username: &str, password: &str, token: &str) -> reqwest::Response {
    c.post(node.api("/api/signup")).json(&json!({"username": username, "password": password, "token": token})).send().await.unwrap()
}

pub async fn login(c: &reqwest::Client, node: &Node, username: &str, password: &str) -> reqwest::Response {
    c.post(node.api("/api/login")).json(&json!({"username": username, "password": password})).send().await.unwrap()
}

/// Acts as a browser would: certifies `key` for the logged-in account, creates `room` if
/// needed, signs a guest invite valid for `secs`, registers it, and returns its text.
pub async fn make_invite(c: &reqwest::Client, node: &Node, key: &confab_keys::AccountKey, room: &str, secs: u64) -> String {
    make_invite_as(c, node, key, room, secs, confab_keys::Role::Guest).await
}

/// `make_invite` for a chosen role.
pub async fn make_invite_as(c: &reqwest::Client, node: &Node, key: &confab_keys::AccountKey, room: &str, secs: u64, role: confab_keys::Role) -> String {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).unwrap();
    let (text, res) = register_invite(c, node, key, room, secs, role, confab_keys::CapabilityId(id)).await;
    assert_eq!(res.status(), 201, "register invite: {}", res.text().await.unwrap());
    text
}

/// As a browser would, but with the invite id chosen by the caller (as a hostile client may):
/// certifies `key`, creates `room` if needed, signs and registers the invite; returns its
/// text and the node's answer to the registration.
pub async fn register_invite(
    c: &reqwest::Client,
    node: &Node,
    key: &confab_keys::AccountKey,
    room: &str,
    secs: u64,
    role: confab_keys::Role,
    id: confab_keys::CapabilityId,
) -> (String, reqwest::Response) {
    register_invite_with(c, node, key, room, secs, role, id, json!({})).await
}

/// A guest invite registered as made for one person (`for`), which a host may revoke with
/// a removal.
pub async fn make_personal_invite(c: &reqwest::Client, node: &Node, key: &confab_keys::AccountKey, room: &str, for_whom: &str) -> String {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).unwrap();
    let (text, res) = register_invite_with(c, node, key, room, 3600, confab_keys::Role::Guest, confab_keys::CapabilityId(id), json!({"for": for_whom})).await;
    assert_eq!(res.status(), 201, "register a personal invite: {}", res.text().await.unwrap());
    text
}

/// `register_invite` with more fields in the registration (`extra`).
#[allow(clippy::too_many_arguments, reason = "register_invite's inputs and the extra fields")]
async fn register_invite_with(
    c: &reqwest::Client,
    node: &Node,
    key: &confab_keys::AccountKey,
    room: &str,
    secs: u64,
    role: confab_keys::Role,
    id: confab_keys::CapabilityId,
    extra: Value,
) -> (String, reqwest::Response) {
    use base64::Engine;
    let _ = c.post(node.api("/api/meetings")).json(&json!({"room": room})).send().await.unwrap();
    let public = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.public());
    let res = c.post(node.api("/api/certificate")).json(&json!({"public_key": public})).send().await.unwrap();
    assert_eq!(res.status(), 201, "certificate: {}", res.text().await.unwrap());
    let cert_text = res.json::<Value>().await.unwrap()["certificate"].as_str().unwrap().to_string();
    let cert = confab_keys::AccountCertificate::from_text(&cert_text).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let invite =
        key.invite(&cert, confab_keys::InviteBody { id, room: confab_keys::RoomName::parse(room).unwrap(), role, not_before: now, expires: now + secs });
    let text = invite.to_text();
    let mut body = json!({"invite": text});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let res = c.post(node.api("/api/invites")).json(&body).send().await.unwrap();
    (text, res)
}

/// The resident set of process `pid`, in KiB (VmRSS in /proc/PID/status).
pub fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is running");
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmRSS in /proc/PID/status")
}

/// What `/api/invites/check` says: the status and the error code (or "ok").
pub async fn check_invite(node: &Node, room: &str, invite: &str) -> (u16, String) {
    let res = client().post(node.api("/api/invites/check")).json(&json!({"room": room, "invite": invite})).send().await.unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    let code = body.get("error").and_then(Value::as_str).unwrap_or("ok").to_string();
    (status, code)
}

/// The IP of `--listen IP:PORT` among `options`, or the host end of the browsers' link
/// ([`crate::netns::browsers`]).
fn listen_ip(options: &[String]) -> String {
    let given = options.iter().position(|o| o == "--listen").and_then(|i| options.get(i + 1));
    given.and_then(|l| l.parse::<std::net::SocketAddr>().ok()).map_or_else(|| crate::netns::browsers().host_ip.to_string(), |a| a.ip().to_string())
}

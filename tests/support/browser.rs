//! Real browsers for end-to-end tests: headless Chromium through chromedriver (Debian's
//! `chromium` and `chromium-driver`, which `tests/run.sh` installs). A missing browser fails
//! the test with instructions; it never skips.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::netns::Namespace;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const FIREFOX: &str = "/usr/bin/firefox-esr";

/// geckodriver comes from crates.io (`cargo install geckodriver`), so it lives in cargo's
/// bin directory.
fn geckodriver() -> String {
    let home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap_or_default()));
    format!("{home}/bin/geckodriver")
}

/// Held by each test that runs several browsers at once, so that two such tests in one test
/// binary take turns: on a 2-core machine, six browsers with live video starve each other
/// and every timing the tests print would measure the machine, not Confab.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
    let guard = LOCK.get_or_init(|| tokio::sync::Mutex::new(())).lock().await;
    // The test's clock starts once it holds the machine, not while it waits for it.
    crate::timing::mark();
    guard
}

/// A WAV file of synthetic speech, which Chromium's fake microphone plays in a loop: every
/// Chromium participant "speaks" until muted, so the SFU's speaker detection has real audio
/// levels to work on (the built-in fake beeps for 20 ms a second). Four syllables a second,
/// each 200 ms of voice (a moving pitch with harmonics shaped by a formant that changes per
/// syllable) and 50 ms of silence. A steady tone would not do: the browser's noise
/// suppression learns it as background within seconds and keeps removing it, so the
/// "speaker" seems to stop and start again every few seconds.
fn voice() -> std::path::PathBuf {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        use std::f64::consts::{PI, TAU};
        const RATE: u32 = 48_000;
        const SYLLABLE: u32 = RATE / 4;
        let mut phase = 0.0f64;
        let raw: Vec<f64> = (0..RATE * 6)
            .map(|i| {
                let syllable = (i / SYLLABLE) as f64;
                let within = (i % SYLLABLE) as f64 / SYLLABLE as f64;
                let pitch = 110.0 + 30.0 * (syllable * 7.0 % 5.0) + 20.0 * (TAU * 0.5 * i as f64 / RATE as f64).sin();
                phase += TAU * pitch / RATE as f64;
                let formant = 400.0 + 150.0 * (syllable * 3.0 % 7.0);
                let envelope = if within < 0.8 { (PI * within / 0.8).sin() } else { 0.0 };
                let harmonics: f64 = (1..=12)
                    .map(|h| {
                        let h = h as f64;
                        (phase * h).sin() / (1.0 + ((pitch * h - formant) / 150.0).powi(2))
                    })
                    .sum();
                harmonics * envelope
            })
            .collect();
        let peak = raw.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let samples: Vec<i16> = raw.iter().map(|x| (x / peak * 0.5 * i16::MAX as f64) as i16).collect();
        let data = samples.len() as u32 * 2;
        let mut wav = Vec::with_capacity(44 + data as usize);
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&(36 + data).to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
        wav.extend_from_slice(&1u16.to_le_bytes()); // mono
        wav.extend_from_slice(&RATE.to_le_bytes());
        wav.extend_from_slice(&(RATE * 2).to_le_bytes());
        wav.extend_from_slice(&2u16.to_le_bytes());
        wav.extend_from_slice(&16u16.to_le_bytes());
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&data.to_le_bytes());
        for s in samples {
            wav.extend_from_slice(&s.to_le_bytes());
        }
        // One file for every run (same bytes each time), replaced atomically.
        let path = std::env::temp_dir().join("confab-test-voice.wav");
        let partial = std::env::temp_dir().join(format!("confab-test-voice-{}.partial", std::process::id()));
        std::fs::write(&partial, wav).and_then(|()| std::fs::rename(&partial, &path)).expect("writing the test voice");
        path
    })
    .clone()
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the test browsers with `tests/run.sh` (apt-get install chromium chromium-driver firefox-esr; cargo install geckodriver)"
    );
}

/// A port free on our loopback, and a thread that passes each connection to it on to the
/// same port on the loopback inside namespace `name` (through a thread that enters the
/// namespace): a browser's WebDriver server there stays reachable whatever happens to the
/// namespace's link (a firewall, a cap, a new address), and nothing of the tests' own
/// traffic crosses that link. The same port both sides, as geckodriver checks the `Host`
/// header's.
fn loopback_into(name: &str) -> u16 {
    use std::io::copy;
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let namespace = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        for outside in listener.incoming().flatten() {
            let namespace = namespace.clone();
            std::thread::spawn(move || {
                let Ok(file) = std::fs::File::open(&namespace) else { return };
                // SAFETY: setns with a namespace file's descriptor, on this thread alone.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return;
                }
                let Ok(inside) = TcpStream::connect(("127.0.0.1", port)) else { return };
                let (Ok(mut outside_r), Ok(mut inside_w)) = (outside.try_clone(), inside.try_clone()) else { return };
                let upstream = std::thread::spawn(move || {
                    let _ = copy(&mut outside_r, &mut inside_w);
                    let _ = inside_w.shutdown(std::net::Shutdown::Write);
                });
                let (mut inside_r, mut outside_w) = (inside, outside);
                let _ = copy(&mut inside_r, &mut outside_w);
                let _ = outside_w.shutdown(std::net::Shutdown::Write);
                let _ = upstream.join();
            });
        }
    });
    port
}

impl Browser {
    /// A fresh headless Chromium with its own profile, fake camera and microphone, and trust
    /// for the node's self-signed certificate.
    /// It runs in [`crate::netns::browsers`], as every browser does unless a test puts it in
    /// a namespace of its own.
    pub async fn chromium() -> Browser {
        Browser::chromium_in(crate::netns::browsers()).await
    }

    /// The same, run inside the network namespace `ns` (its driver too, which the test
    /// reaches across the namespace's link).
    pub async fn chromium_in(ns: &Namespace) -> Browser {
        Browser::chromium_inside(ns).await
    }

    /// Chromium emulating a Pixel 7 (chromedriver's mobile emulation: its screen size and
    /// pixel ratio, touch, a phone's user agent), with two fake cameras as a phone has.
    pub async fn chromium_phone() -> Browser {
        Browser::chromium_with(crate::netns::browsers(), Some(json!({ "deviceName": "Pixel 7" }))).await
    }

    async fn chromium_inside(ns: &Namespace) -> Browser {
        Browser::chromium_with(ns, None).await
    }

    async fn chromium_with(ns: &Namespace, mobile: Option<Value>) -> Browser {
        require(CHROMIUM);
        require(CHROMEDRIVER);
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--use-fake-device-for-media-stream".into(),
            "--use-fake-ui-for-media-stream".into(),
            format!("--use-file-for-fake-audio-capture={}", voice().display()),
            "--ignore-certificate-errors".into(),
            "--window-size=1200,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut options = json!({ "binary": CHROMIUM });
        if let Some(device) = mobile {
            args.retain(|a| !a.starts_with("--window-size") && a != "--use-fake-device-for-media-stream");
            args.push("--use-fake-device-for-media-stream=device-count=2".into());
            options["mobileEmulation"] = device;
        }
        options["args"] = json!(args);
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert("goog:chromeOptions".into(), options);
        Browser::start(ns, ns.command(CHROMEDRIVER), caps, profile).await
    }

    /// A fresh headless Firefox ESR (Debian's `firefox-esr`, driven by geckodriver) with fake
    /// camera and microphone and no permission prompts.
    pub async fn firefox() -> Browser {
        Browser::firefox_sized(1200, 900).await
    }

    /// The same with a window of `width` × `height` CSS pixels (390 × 844: a phone's).
    pub async fn firefox_sized(width: u32, height: u32) -> Browser {
        Browser::firefox_inside(crate::netns::browsers(), width, height).await
    }

    /// Firefox ESR inside the network namespace `ns` (its driver too).
    pub async fn firefox_in(ns: &Namespace) -> Browser {
        Browser::firefox_inside(ns, 1200, 900).await
    }

    async fn firefox_inside(ns: &Namespace, width: u32, height: u32) -> Browser {
        require(FIREFOX);
        let driver = geckodriver();
        require(&driver);
        let profile = tempfile::tempdir().unwrap();
        // Firefox's own chrome keeps its windows at least 500 pixels wide: a user style
        // sheet in the profile lifts that, so that the page gets a phone's width.
        let chrome = profile.path().join("chrome");
        std::fs::create_dir_all(&chrome).unwrap();
        std::fs::write(chrome.join("userChrome.css"), "* { min-width: 0 !important; }\n").unwrap();
        let prefs = json!({
            "toolkit.legacyUserProfileCustomizations.stylesheets": true,
            "media.navigator.streams.fake": true,
            "media.navigator.permission.disabled": true,
            "media.autoplay.default": 0,
            "media.peerconnection.ice.obfuscate_host_addresses": false,
            "network.dns.disableIPv6": false,
            "browser.shell.checkDefaultBrowser": false,
            "app.update.enabled": false,
            "datareporting.policy.dataSubmissionEnabled": false,
            "toolkit.telemetry.enabled": false,
            "network.captive-portal-service.enabled": false,
            "network.connectivity-service.enabled": false,
        });
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "moz:firefoxOptions".into(),
            json!({
                "binary": FIREFOX,
                "args": ["-headless".to_string(), format!("-width={width}"), format!("-height={height}"), "-profile".to_string(), profile.path().display().to_string()],
                "prefs": prefs,
            }),
        );
        let mut driver = ns.command(&driver);
        driver.args(["--log", "error"]);
        Browser::start(ns, driver, caps, profile).await
    }

    /// Starts `driver` (a command run in `ns`) on the namespace's loopback and opens a
    /// session with it through [`loopback_into`].
    async fn start(ns: &Namespace, mut driver: Command, caps: serde_json::Map<String, Value>, profile: tempfile::TempDir) -> Browser {
        // fantoccini and reqwest bring different rustls providers; rustls then needs one chosen.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let port = loopback_into(&ns.name);
        // The driver leads a process group of its own, which the browser it starts joins: on
        // drop the whole group goes, so no browser outlives its test.
        let driver = driver
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver:?}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let client = crate::eventually("the WebDriver server to accept a session", Duration::from_secs(30), || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                let mut builder = ClientBuilder::rustls().ok()?;
                builder.capabilities(caps);
                // A browser that died while starting leaves the request unanswered.
                tokio::time::timeout(ANSWER_WITHIN, builder.connect(&url)).await.ok()?.ok()
            }
        })
        .await;
        Browser { client, driver, _profile: profile }
    }

    /// Runs `script` (which may return a promise) and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        answered(&format!("the script {script:.80}"), self.client.execute(script, vec![])).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    pub async fn goto(&self, url: &str) {
        answered(&format!("opening {url}"), self.client.goto(url)).await.unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// Waits until `css` matches an element that is shown (not inside `hidden`), and returns
    /// its text.
    pub async fn wait_visible(&self, css: &str) -> String {
        // Not yet: what the page shows instead, for the failure message.
        let script = "const e = document.querySelector(arguments[0]); \
                      if (e && !e.closest('[hidden]')) return { found: e.textContent }; \
                      return { page: `${location.href.split('#')[0]} (${document.readyState}): ${(document.body?.innerText ?? '').replace(/\\s+/g, ' ').slice(0, 300)}` };";
        crate::eventually_or(&format!("{css} to be visible"), Duration::from_secs(20), || async {
            match answered(&format!("looking for {css}"), self.client.execute(script, vec![json!(css)])).await {
                Ok(value) => match value["found"].as_str() {
                    Some(text) => Ok(text.to_string()),
                    None => Err(value["page"].as_str().unwrap_or("?").to_string()),
                },
                Err(e) => Err(format!("the browser did not answer: {e}")),
            }
        })
        .await
    }

    pub async fn fill(&self, css: &str, text: &str) {
        answered(&format!("filling {css}"), async {
            let field = self.client.wait().for_element(Locator::Css(css)).await.unwrap();
            field.clear().await.unwrap();
            field.send_keys(text).await.unwrap();
        })
        .await;
    }

    pub async fn click(&self, css: &str) {
        self.wait_visible(css).await;
        answered(&format!("a click on {css}"), async { self.client.find(Locator::Css(css)).await.unwrap().click().await.unwrap() }).await;
    }

    pub async fn value(&self, css: &str) -> String {
        answered(&format!("the value of {css}"), async { self.client.find(Locator::Css(css)).await.unwrap().prop("value").await.unwrap().unwrap_or_default() })
            .await
    }

    pub async fn path(&self) -> String {
        answered("the page's address", async { self.client.current_url().await.unwrap().path().to_string() }).await
    }

    /// Ends the session politely; dropping the browser kills the driver and the browser anyway.
    pub async fn close(&self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-s", "KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// How long a WebDriver request may go unanswered: a browser that hung or died leaves it
/// so, and fantoccini waits for ever (a suite once sat 20 minutes on one).
const ANSWER_WITHIN: Duration = Duration::from_secs(90);

/// `request`'s outcome, or a panic naming `what` if the browser did not answer within
/// [`ANSWER_WITHIN`]: the test fails instead of the suite hanging.
async fn answered<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(ANSWER_WITHIN, request).await.unwrap_or_else(|_| panic!("the browser did not answer {what} within {ANSWER_WITHIN:?}: it hung or died"))
}

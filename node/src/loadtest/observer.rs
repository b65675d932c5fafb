//! `confab loadtest --observer`: one headless Chromium joins the meeting beside the bots, as
//! a person would (the prejoin page, a fake camera), and reports what a real browser makes
//! of the load test: frames decoded, freezes (`freezeCount`), and how much audio it had to
//! conceal. Driven over the Chrome DevTools Protocol (a WebSocket), with no other tooling.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// What the observer's browser counted, cumulatively.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Sample {
    pub frames_decoded: f64,
    pub freezes: f64,
    pub freeze_secs: f64,
    /// Video receivers that have decoded anything.
    pub videos: f64,
    pub concealed_samples: f64,
    pub audio_samples: f64,
}

/// The observer's figures over the measured window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observed {
    pub frames_decoded_per_sec: f64,
    pub videos_decoding: u32,
    pub freezes: u32,
    pub freeze_secs: f64,
    pub concealed_audio_percent: f64,
}

impl Observed {
    pub fn between(a: Sample, b: Sample, secs: f64) -> Observed {
        let samples = b.audio_samples - a.audio_samples;
        Observed {
            frames_decoded_per_sec: (b.frames_decoded - a.frames_decoded) / secs.max(1e-9),
            videos_decoding: b.videos as u32,
            freezes: (b.freezes - a.freezes).max(0.0) as u32,
            freeze_secs: (b.freeze_secs - a.freeze_secs).max(0.0),
            concealed_audio_percent: if samples > 0.0 { (b.concealed_samples - a.concealed_samples) * 100.0 / samples } else { 0.0 },
        }
    }
}

/// Reads the browser's receive statistics once: a promise for `Runtime.evaluate`.
const SAMPLE: &str = r#"(async () => {
  const sfu = window.confabCall && window.confabCall.sfu;
  if (!sfu) return null;
  const v = { frames_decoded: 0, freezes: 0, freeze_secs: 0, videos: 0, concealed_samples: 0, audio_samples: 0 };
  (await sfu.pc.getStats()).forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") {
      v.frames_decoded += s.framesDecoded ?? 0;
      v.freezes += s.freezeCount ?? 0;
      v.freeze_secs += s.totalFreezesDuration ?? 0;
      if ((s.framesDecoded ?? 0) > 0) v.videos += 1;
    } else if (s.kind === "audio") {
      v.concealed_samples += s.concealedSamples ?? 0;
      v.audio_samples += s.totalSamplesReceived ?? 0;
    }
  });
  return v;
})()"#;

pub struct Observer {
    child: Child,
    profile: PathBuf,
    socket: Socket,
    next_id: u64,
}

impl Observer {
    /// Starts `chromium` headless on the meeting `link` and joins as `name`.
    pub async fn join(chromium: &Path, link: &str, name: &str) -> anyhow::Result<Observer> {
        let profile = std::env::temp_dir().join(format!("confab-observer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile)?;
        let child = Command::new(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--ignore-certificate-errors",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(link)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {} (apt-get install chromium)", chromium.display()))?;
        let socket = match connect(&profile).await {
            Ok(s) => s,
            Err(e) => {
                let mut child = child;
                let _ = child.kill();
                return Err(e);
            }
        };
        let mut observer = Observer { child, profile, socket, next_id: 1 };
        observer.prejoin(name).await?;
        Ok(observer)
    }

    async fn prejoin(&mut self, name: &str) -> anyhow::Result<()> {
        let name = serde_json::to_string(name)?;
        self.until("the prejoin page", "!!document.querySelector('#prejoin') && !document.querySelector('#prejoin').hidden").await?;
        self.eval(&format!("(() => {{ const i = document.querySelector('#display-name'); i.value = {name}; i.dispatchEvent(new Event('input', {{ bubbles: true }})); return true; }})()"))
            .await?;
        self.until("the Join button", "!document.querySelector('#join').disabled").await?;
        self.eval("document.querySelector('#join').click(), true").await?;
        self.until("a seat in the meeting", "!!(window.confabCall && window.confabCall.me && window.confabCall.me.id)").await
    }

    /// Waits up to 30 s for `condition` (a JavaScript expression) to be true.
    async fn until(&mut self, what: &str, condition: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.eval(condition).await? == json!(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the observer's browser did not show {what} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn sample(&mut self) -> anyhow::Result<Sample> {
        let value = self.eval(SAMPLE).await?;
        Ok(serde_json::from_value(value).unwrap_or_default())
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    async fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let call = json!({"id": id, "method": "Runtime.evaluate", "params": {"expression": expression, "awaitPromise": true, "returnByValue": true}});
        self.socket.send(Message::text(call.to_string())).await.context("the observer's browser went away")?;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.socket.next()).await.context("the observer's browser did not answer")?;
            let Some(Ok(Message::Text(text))) = message else {
                match message {
                    Some(Ok(_)) => continue,
                    _ => bail!("the observer's browser closed its DevTools connection"),
                }
            };
            let reply: Value = serde_json::from_str(&text)?;
            if reply["id"] != json!(id) {
                continue;
            }
            if let Some(e) = reply["result"]["exceptionDetails"].as_object() {
                bail!("the observer's page threw: {}", Value::from(e.clone()));
            }
            return Ok(reply["result"]["result"]["value"].clone());
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Connects to the page Chromium opened: its DevTools port is in the profile once it is up.
async fn connect(profile: &Path) -> anyhow::Result<Socket> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let port = loop {
        if let Ok(text) = std::fs::read_to_string(profile.join("DevToolsActivePort"))
            && let Some(port) = text.lines().next().and_then(|l| l.trim().parse::<u16>().ok())
        {
            break port;
        }
        if Instant::now() > deadline {
            bail!("Chromium did not open its DevTools port within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let page = loop {
        let targets = http_get(port, "/json/list").await?;
        let targets: Value = serde_json::from_str(&targets).context("Chromium's target list is not JSON")?;
        if let Some(url) = targets.as_array().into_iter().flatten().find(|t| t["type"] == "page").and_then(|t| t["webSocketDebuggerUrl"].as_str()) {
            break url.to_string();
        }
        if Instant::now() > deadline {
            bail!("Chromium opened no page");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (socket, _) = tokio_tungstenite::connect_async(page.as_str()).await.context("cannot reach the observer's page over DevTools")?;
    Ok(socket)
}

async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    Ok(text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_gives_rates_freezes_and_concealment() {
        let a = Sample { frames_decoded: 100.0, freezes: 1.0, freeze_secs: 0.5, videos: 9.0, concealed_samples: 480.0, audio_samples: 48_000.0 };
        let b = Sample { frames_decoded: 2800.0, freezes: 3.0, freeze_secs: 1.0, videos: 9.0, concealed_samples: 960.0, audio_samples: 96_000.0 };
        let o = Observed::between(a, b, 10.0);
        assert_eq!(o.frames_decoded_per_sec, 270.0);
        assert_eq!((o.videos_decoding, o.freezes, o.freeze_secs), (9, 2, 0.5));
        assert_eq!(o.concealed_audio_percent, 1.0);
    }
}

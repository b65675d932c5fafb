//! A bot in a Confab meeting: it joins through the node's real signaling with a real invite,
//! waits for the room's SFU mode (a room starts as a mesh below the threshold), offers its
//! media and receive slots to the relay, and shows the others as the browser client's
//! Speaker view does: the dominant speaker's tile large, the others as thumbnails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::peer::{Peer, Publish};
use super::{BotOutcome, Shared, Timeline};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Receive slots per kind: what the browser client offers.
const SLOTS: usize = 9;
/// Tile heights of Speaker view: the dominant speaker, and everyone else.
const SPEAKER_HEIGHT: u32 = 720;
const THUMBNAIL_HEIGHT: u32 = 180;

/// A meeting link `https://HOST/m/ROOM#INVITE`, taken apart.
#[derive(Debug, Clone)]
pub struct Link {
    pub base: String,
    pub room: String,
    pub invite: String,
}

impl Link {
    pub fn parse(link: &str) -> anyhow::Result<Link> {
        let (base, rest) = link.split_once("/m/").context("a meeting link looks like https://HOST/m/ROOM#INVITE")?;
        let (room, invite) = rest.split_once('#').context("the meeting link has no invite after '#'")?;
        if !base.starts_with("https://") || room.is_empty() || invite.is_empty() {
            bail!("a meeting link looks like https://HOST/m/ROOM#INVITE");
        }
        Ok(Link { base: base.to_string(), room: room.to_string(), invite: invite.to_string() })
    }
}

pub async fn connect(link: &Link, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<Socket> {
    let url = format!("{}/ws/{}", link.base.replacen("https://", "wss://", 1), link.room);
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, false, Some(Connector::Rustls(tls)))
        .await
        .with_context(|| format!("cannot open {url}"))?;
    Ok(socket)
}

/// Connects and joins as `name`, with the welcome. A node that says to come back later
/// (`join_rate_limited`: fresh joins from one address come 20 at once, then one a second)
/// is asked again a second later, as the web client does.
async fn join(link: &Link, tls: Arc<rustls::ClientConfig>, name: &str) -> anyhow::Result<(Socket, Value)> {
    for _ in 0..JOIN_TRIES {
        let mut socket = connect(link, tls.clone()).await?;
        send(&mut socket, json!({"type": "join", "v": 1, "invite": link.invite, "name": name, "audio": true, "video": true})).await?;
        let welcome = next(&mut socket).await?;
        if welcome["type"] == "welcome" {
            return Ok((socket, welcome));
        }
        if welcome["code"] != "join_rate_limited" {
            bail!("the node refused the join: {welcome}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("the node kept refusing the join as too many at once ({JOIN_TRIES} tries)")
}

/// How often a bot asks again to join after `join_rate_limited`.
const JOIN_TRIES: usize = 300;

async fn send(socket: &mut Socket, message: Value) -> anyhow::Result<()> {
    socket.send(Message::text(message.to_string())).await.context("the signaling connection dropped")
}

/// The next JSON message from the node; an error when it closes.
async fn next(socket: &mut Socket) -> anyhow::Result<Value> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).context("the node sent something that is not JSON"),
            Some(Ok(Message::Close(frame))) => bail!("the node closed the connection: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("the signaling connection failed: {e}"),
            None => bail!("the signaling connection ended"),
        }
    }
}

pub struct Bot {
    pub index: usize,
    pub name: String,
    pub link: Link,
    pub tls: Arc<rustls::ClientConfig>,
    pub ip: std::net::IpAddr,
    pub publish: Publish,
}

impl Bot {
    pub async fn run(self, shared: Arc<Shared>, timeline: Timeline) -> BotOutcome {
        let started = Instant::now();
        let mut outcome = BotOutcome { name: self.name.clone(), ..Default::default() };
        if let Err(e) = self.session(&shared, &timeline, started, &mut outcome).await {
            outcome.error = Some(format!("{e:#}"));
        }
        outcome
    }

    async fn session(&self, shared: &Shared, timeline: &Timeline, started: Instant, outcome: &mut BotOutcome) -> anyhow::Result<()> {
        let (mut socket, welcome) = join(&self.link, self.tls.clone(), &self.name).await?;
        outcome.joined_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
        shared.joined.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let me = welcome["you"]["id"].as_str().unwrap_or_default().to_string();
        let mut others: Vec<String> = welcome["participants"].as_array().into_iter().flatten().filter_map(|p| p["id"].as_str().map(String::from)).collect();
        others.retain(|p| *p != me);

        // A room below the mesh threshold is a mesh, which a bot does not do: wait for the SFU.
        let mut mode = welcome["mode"].as_str().unwrap_or_default().to_string();
        let mut speakers = Stage::new(&me);
        let mut slots: BTreeMap<String, String> = BTreeMap::new();
        while mode != "sfu" {
            let m = next(&mut socket).await?;
            match m["type"].as_str() {
                Some("mode") => mode = m["mode"].as_str().unwrap_or_default().to_string(),
                Some("joined") => others.extend(m["participant"]["id"].as_str().map(String::from)),
                Some("left") => others.retain(|p| Some(p.as_str()) != m["participant"].as_str()),
                _ => {}
            }
        }

        let mut peer = Peer::bind(self.ip).await?;
        let mut layers = None;
        let (offer, pending) = peer.offer(Some(self.publish.clone()), SLOTS);
        send(&mut socket, json!({"type": "sfu-offer", "sdp": offer.to_sdp_string()})).await?;
        loop {
            let m = next(&mut socket).await?;
            match m["type"].as_str() {
                Some("sfu-answer") => {
                    peer.accept_answer(pending, m["sdp"].as_str().unwrap_or_default())?;
                    break;
                }
                Some("error") => bail!("the node refused our SFU offer: {m}"),
                Some("joined") => others.extend(m["participant"]["id"].as_str().map(String::from)),
                Some("left") => others.retain(|p| Some(p.as_str()) != m["participant"].as_str()),
                Some("sfu-slots") => slots = slot_map(&m),
                Some("speaker") => speakers.speaker(m["participant"].as_str()),
                Some("sfu-layers") => layers = Some(m),
                _ => {}
            }
        }
        if let Some(m) = layers {
            peer.set_active_layers(&active_layers(&m));
        }

        // The tiles change when someone comes or goes or the speaker changes: only then is
        // a new `sfu-view` due.
        let mut view_due = true;
        let mut ping = tokio::time::interval(Duration::from_secs(10));
        let mut counted_connected = false;
        let mut counted_media = false;
        loop {
            let now = Instant::now();
            if now >= timeline.end {
                break;
            }
            let speaking = timeline.speaker(now) == self.index;
            let next_wake = peer.drive(speaking, timeline.measuring(now)).min(timeline.end);
            if !peer.alive() {
                bail!("{}", peer.failed.clone().unwrap_or_else(|| "the WebRTC connection closed".into()));
            }
            if !counted_connected && let Some(t) = peer.connected_at {
                counted_connected = true;
                outcome.connected_ms = Some(t.duration_since(started).as_secs_f64() * 1000.0);
            }
            if !counted_media && let Some(t) = peer.first_video_at {
                counted_media = true;
                outcome.first_frame_ms = Some(t.duration_since(started).as_secs_f64() * 1000.0);
                shared.receiving.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if std::mem::take(&mut view_due) {
                send(&mut socket, view(&others, speakers.on_stage())).await?;
            }
            tokio::select! {
                received = peer.receive() => received.context("the bot's UDP socket failed")?,
                _ = tokio::time::sleep_until(next_wake.into()) => {}
                _ = ping.tick() => send(&mut socket, json!({"type": "ping"})).await?,
                m = next(&mut socket) => {
                    let m = m?;
                    view_due = matches!(m["type"].as_str(), Some("joined" | "left" | "speaker"));
                    match m["type"].as_str() {
                        Some("joined") => others.extend(m["participant"]["id"].as_str().map(String::from)),
                        Some("left") => others.retain(|p| Some(p.as_str()) != m["participant"].as_str()),
                        Some("sfu-slots") => slots = slot_map(&m),
                        Some("speaker") => speakers.speaker(m["participant"].as_str()),
                        Some("sfu-layers") => peer.set_active_layers(&active_layers(&m)),
                        Some("mode") if m["mode"] != "sfu" => bail!("the room left SFU mode: {m}"),
                        _ => {}
                    }
                }
            }
        }

        outcome.add_receipts(&peer.receipts, &peer.receiving, |mid| slots.get(mid).cloned());
        // Leave properly: the node closes with 1000 once it has seen `leave`.
        send(&mut socket, json!({"type": "leave"})).await?;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(m)) = socket.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
        Ok(())
    }
}

/// Who Speaker view shows large: the dominant speaker, or while that is us, the last one
/// before us (as the browser client does: nobody needs to watch themselves large).
#[derive(Debug)]
struct Stage {
    me: String,
    on_stage: Option<String>,
}

impl Stage {
    fn new(me: &str) -> Stage {
        Stage { me: me.to_string(), on_stage: None }
    }

    /// The room's dominant speaker is now `participant`.
    fn speaker(&mut self, participant: Option<&str>) {
        if let Some(p) = participant.filter(|p| *p != self.me) {
            self.on_stage = Some(p.to_string());
        }
    }

    fn on_stage(&self) -> Option<&str> {
        self.on_stage.as_deref()
    }
}

fn active_layers(m: &Value) -> Vec<String> {
    m["active"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(String::from)).collect()
}

fn slot_map(m: &Value) -> BTreeMap<String, String> {
    m["slots"].as_array().into_iter().flatten().filter_map(|s| Some((s["mid"].as_str()?.to_string(), s["participant"].as_str()?.to_string()))).collect()
}

/// Speaker view: the one on stage large, everyone else as a thumbnail.
fn view(others: &[String], speaker: Option<&str>) -> Value {
    let tiles: Vec<Value> =
        others.iter().map(|p| json!({"participant": p, "height": if Some(p.as_str()) == speaker { SPEAKER_HEIGHT } else { THUMBNAIL_HEIGHT }})).collect();
    json!({"type": "sfu-view", "tiles": tiles})
}

/// A hostile seat in another meeting (`--flood-link`): it joins, waits for the SFU, then
/// sends the same `sfu-offer` again and again at a fixed rate until `end`, counting what the
/// node answered. It never connects its media: what it costs is the relay's work per offer.
pub struct Flooder {
    pub name: String,
    pub link: Link,
    pub tls: Arc<rustls::ClientConfig>,
    pub ip: std::net::IpAddr,
    pub publish: Publish,
    pub per_second: f64,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FloodOutcome {
    pub sent: u64,
    pub answered: u64,
    pub refused: u64,
    pub error: Option<String>,
}

impl Flooder {
    pub async fn run(self, end: Instant) -> FloodOutcome {
        let mut outcome = FloodOutcome::default();
        if let Err(e) = self.session(end, &mut outcome).await {
            outcome.error = Some(format!("{e:#}"));
        }
        outcome
    }

    async fn session(&self, end: Instant, outcome: &mut FloodOutcome) -> anyhow::Result<()> {
        let (mut socket, welcome) = join(&self.link, self.tls.clone(), &self.name).await?;
        let mut mode = welcome["mode"].as_str().unwrap_or_default().to_string();
        while mode != "sfu" {
            let m = next(&mut socket).await?;
            if m["type"] == "mode" {
                mode = m["mode"].as_str().unwrap_or_default().to_string();
            }
        }
        let mut peer = Peer::bind(self.ip).await?;
        let (offer, _pending) = peer.offer(Some(self.publish.clone()), SLOTS);
        let offer = json!({"type": "sfu-offer", "sdp": offer.to_sdp_string()});
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / self.per_second.max(0.01)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(end.into()) => break,
                _ = tick.tick() => {
                    send(&mut socket, offer.clone()).await?;
                    outcome.sent += 1;
                }
                m = next(&mut socket) => {
                    let m = m?;
                    match m["type"].as_str() {
                        Some("sfu-answer") => outcome.answered += 1,
                        Some("error") => outcome.refused += 1,
                        _ => {}
                    }
                }
            }
        }
        let _ = send(&mut socket, json!({"type": "leave"})).await;
        Ok(())
    }
}

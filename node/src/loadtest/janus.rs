//! The same bots against Janus' VideoRoom plugin, so that one load compares both SFUs.
//!
//! Each bot opens a Janus session over its WebSocket transport (`janus-protocol`), publishes
//! the same media as in a Confab meeting on one handle, and on a second handle subscribes
//! to nine other bots' audio and video, as many slots as Confab's client has: the next bot's
//! video in the highest layer (the speaker's tile) and eight more in the lowest (the
//! thumbnails). Janus has no last-N and no speaker-driven layer choice, so the subscriptions
//! are fixed for the run.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::peer::{Peer, Publish};
use super::{BotOutcome, Shared, Timeline};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Feeds each bot subscribes to: as many as Confab's receive slots.
const SUBSCRIPTIONS: usize = 9;

/// A Janus session on one WebSocket: requests matched to replies by transaction, and the
/// events nobody asked for kept in order.
pub struct Session {
    socket: Socket,
    id: u64,
    next_transaction: u64,
    unsolicited: VecDeque<Value>,
}

impl Session {
    pub async fn open(url: &str) -> anyhow::Result<Session> {
        let mut request = url.into_client_request().with_context(|| format!("{url} is not a WebSocket URL"))?;
        request.headers_mut().insert("Sec-WebSocket-Protocol", "janus-protocol".parse().expect("a valid header"));
        let (socket, _) = tokio_tungstenite::connect_async(request).await.with_context(|| format!("cannot open {url}"))?;
        let mut session = Session { socket, id: 0, next_transaction: 0, unsolicited: VecDeque::new() };
        let created = session.call(json!({"janus": "create"})).await?;
        session.id = created["data"]["id"].as_u64().context("Janus gave no session id")?;
        Ok(session)
    }

    /// Sends `message` (with a transaction and the session) and returns Janus' final reply
    /// to it: `success`, or the plugin's `event`; `error` is an error.
    pub async fn call(&mut self, mut message: Value) -> anyhow::Result<Value> {
        self.next_transaction += 1;
        let transaction = format!("t{}", self.next_transaction);
        message["transaction"] = json!(transaction);
        if self.id != 0 {
            message["session_id"] = json!(self.id);
        }
        self.socket.send(Message::text(message.to_string())).await.context("the Janus connection dropped")?;
        loop {
            let m = self.next_raw().await?;
            if m["transaction"] != json!(transaction) {
                self.unsolicited.push_back(m);
                continue;
            }
            match m["janus"].as_str() {
                Some("ack") => continue,
                Some("error") => bail!("Janus refused {message}: {m}"),
                _ => {
                    if let Some(error) = m["plugindata"]["data"].get("error") {
                        bail!("the VideoRoom refused {}: {error}", message["body"]);
                    }
                    return Ok(m);
                }
            }
        }
    }

    pub async fn attach(&mut self) -> anyhow::Result<u64> {
        let attached = self.call(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"})).await?;
        attached["data"]["id"].as_u64().context("Janus gave no handle id")
    }

    pub async fn message(&mut self, handle: u64, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let mut message = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some(jsep) = jsep {
            message["jsep"] = jsep;
        }
        self.call(message).await
    }

    /// The next message Janus sent that no request was waiting for.
    pub async fn event(&mut self) -> anyhow::Result<Value> {
        match self.unsolicited.pop_front() {
            Some(m) => Ok(m),
            None => self.next_raw().await,
        }
    }

    async fn next_raw(&mut self) -> anyhow::Result<Value> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).context("Janus sent something that is not JSON"),
                Some(Ok(Message::Close(frame))) => bail!("Janus closed the connection: {frame:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("the Janus connection failed: {e}"),
                None => bail!("the Janus connection ended"),
            }
        }
    }

    async fn keepalive(&mut self) -> anyhow::Result<()> {
        self.next_transaction += 1;
        let message = json!({"janus": "keepalive", "session_id": self.id, "transaction": format!("t{}", self.next_transaction)});
        self.socket.send(Message::text(message.to_string())).await.context("the Janus connection dropped")
    }
}

/// Creates the room every bot joins, large enough for `publishers` and with no bitrate cap
/// below what the bots send.
pub async fn create_room(url: &str, publishers: usize) -> anyhow::Result<u64> {
    let mut session = Session::open(url).await?;
    let handle = session.attach().await?;
    let room = 1_000_000 + u64::from(std::process::id());
    let body = json!({
        "request": "create", "room": room, "publishers": publishers + 1, "bitrate": 4_000_000,
        "videocodec": "vp8", "audiocodec": "opus", "audiolevel_ext": true, "transport_wide_cc_ext": true,
        "notify_joining": false,
    });
    session.message(handle, body, None).await.context("cannot create the Janus room")?;
    Ok(room)
}

pub struct Bot {
    pub index: usize,
    pub bots: usize,
    pub name: String,
    pub url: String,
    pub room: u64,
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
        let mut session = Session::open(&self.url).await?;
        let publisher = session.attach().await?;
        let joined = session.message(publisher, json!({"request": "join", "ptype": "publisher", "room": self.room, "display": self.name}), None).await?;
        outcome.joined_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
        shared.joined.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut feeds: BTreeMap<String, u64> = BTreeMap::new();
        note_publishers(&joined["plugindata"]["data"], &mut feeds);

        // Janus reads simulcast layers in SDP order as high, medium, low.
        let mut publish = self.publish.clone();
        publish.layers.reverse();
        let mut sender = Peer::bind(self.ip).await?;
        let (offer, pending) = sender.offer(Some(publish), 0);
        let configured = session
            .message(publisher, json!({"request": "publish", "audio": true, "video": true}), Some(json!({"type": "offer", "sdp": offer.to_sdp_string()})))
            .await?;
        let answer = configured["jsep"]["sdp"].as_str().context("Janus did not answer our offer")?;
        sender.accept_answer(pending, answer)?;

        // Whom to watch: the next nine bots after us, the first of them large.
        let wanted: Vec<String> = (1..self.bots).map(|k| format!("bot-{:03}", (self.index + k) % self.bots)).take(SUBSCRIPTIONS).collect();
        let mut receiver: Option<Peer> = None;
        let mut subscriber = None;
        let mut mids: BTreeMap<String, String> = BTreeMap::new();
        let mut keepalive = tokio::time::interval(Duration::from_secs(20));
        let mut counted_connected = false;
        let mut counted_media = false;
        loop {
            let now = Instant::now();
            if now >= timeline.end {
                break;
            }
            if receiver.is_none() && wanted.iter().all(|w| feeds.contains_key(w)) {
                let handle = session.attach().await?;
                let streams: Vec<Value> =
                    wanted.iter().enumerate().map(|(i, w)| json!({"feed": feeds[w], "substream": if i == 0 { 2 } else { 0 }, "temporal": 2})).collect();
                let attached = session.message(handle, json!({"request": "join", "ptype": "subscriber", "room": self.room, "streams": streams}), None).await?;
                let offer = attached["jsep"]["sdp"].as_str().context("Janus offered no streams to subscribe to")?;
                let mut peer = Peer::bind(self.ip).await?;
                let answer = peer.answer(offer)?;
                for s in attached["plugindata"]["data"]["streams"].as_array().into_iter().flatten() {
                    if let (Some(mid), Some(display)) = (s["mid"].as_str(), s["feed_display"].as_str()) {
                        mids.insert(mid.to_string(), display.to_string());
                    }
                }
                session.message(handle, json!({"request": "start"}), Some(json!({"type": "answer", "sdp": answer}))).await?;
                receiver = Some(peer);
                subscriber = Some(handle);
            }
            let speaking = timeline.speaker(now) == self.index;
            let measuring = timeline.measuring(now);
            let mut next_wake = sender.drive(speaking, measuring).min(timeline.end);
            if let Some(r) = receiver.as_mut() {
                next_wake = next_wake.min(r.drive(false, measuring));
                if !counted_connected && let Some(t) = r.connected_at {
                    counted_connected = true;
                    outcome.connected_ms = Some(t.duration_since(started).as_secs_f64() * 1000.0);
                }
                if !counted_media && let Some(t) = r.first_video_at {
                    counted_media = true;
                    outcome.first_frame_ms = Some(t.duration_since(started).as_secs_f64() * 1000.0);
                    shared.receiving.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            for peer in std::iter::once(&sender).chain(receiver.as_ref()) {
                if !peer.alive() {
                    bail!("{}", peer.failed.clone().unwrap_or_else(|| "the WebRTC connection closed".into()));
                }
            }
            let receiving = async {
                match receiver.as_mut() {
                    Some(r) => r.receive().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = sender.receive() => received.context("the bot's UDP socket failed")?,
                received = receiving => received.context("the bot's UDP socket failed")?,
                _ = tokio::time::sleep_until(next_wake.into()) => {}
                _ = keepalive.tick() => session.keepalive().await?,
                m = session.event() => {
                    let m = m?;
                    note_publishers(&m["plugindata"]["data"], &mut feeds);
                }
            }
        }
        let _ = subscriber;
        if let Some(r) = &receiver {
            outcome.add_receipts(&r.receipts, &r.receiving, |mid| mids.get(mid).cloned());
        }
        outcome.keyframe_requests += sender.receipts.keyframe_requests;
        outcome.send_hold.merge(&sender.receipts.send_hold);
        let _ = session.message(publisher, json!({"request": "leave"}), None).await;
        Ok(())
    }
}

/// Publishers listed in a `joined` or `event` message, by display name.
fn note_publishers(data: &Value, feeds: &mut BTreeMap<String, u64>) {
    for p in data["publishers"].as_array().into_iter().flatten() {
        if let (Some(display), Some(id)) = (p["display"].as_str(), p["id"].as_u64()) {
            feeds.insert(display.to_string(), id);
        }
    }
}

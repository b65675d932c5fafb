//! Participants in a meeting, each a real browser on the invite link, and what they see and
//! receive: tiles from the page, figures from `getStats` (via `window.confabCall.stats()`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Node;
use crate::browser::Browser;
use crate::node::{make_invite, make_invite_as};

/// A node started with `options`, a meeting `room` on it, and a guest link and a host link.
pub async fn start_meeting(options: &[&str], room: &str) -> (Node, String, String) {
    let (node, mut links) = start_meetings(options, &[room]).await;
    let (guest, host) = links.remove(0);
    (node, guest, host)
}

/// `start_meeting` for several meetings on one node: each one's guest and host links.
pub async fn start_meetings(options: &[&str], rooms: &[&str]) -> (Node, Vec<(String, String)>) {
    let (node, links, _) = start_meetings_owned(options, rooms).await;
    (node, links)
}

/// `start_meeting`, then the owner changes the meeting's settings (`/api/meetings/ROOM/settings`,
/// e.g. `{"lobby": true}`).
pub async fn start_meeting_with(options: &[&str], room: &str, settings: Value) -> (Node, String, String) {
    let (node, mut links, owner) = start_meetings_owned(options, &[room]).await;
    let res = owner.post(node.api(&format!("/api/meetings/{room}/settings"))).json(&settings).send().await.unwrap();
    assert_eq!(res.status(), 200, "settings {settings}: {}", res.text().await.unwrap());
    let (guest, host) = links.remove(0);
    (node, guest, host)
}

/// `start_meeting`, with the owner's logged-in client (to change the meeting's settings).
pub async fn start_meeting_owned(options: &[&str], room: &str) -> (Node, String, String, reqwest::Client) {
    let (node, mut links, owner) = start_meetings_owned(options, &[room]).await;
    let (guest, host) = links.remove(0);
    (node, guest, host, owner)
}

async fn start_meetings_owned(options: &[&str], rooms: &[&str]) -> (Node, Vec<(String, String)>, reqwest::Client) {
    let node = Node::start_with(options).await;
    let admin = node.admin().await;
    let key = confab_keys::AccountKey::from_seed([3; 32]);
    let mut links = Vec::new();
    for room in rooms {
        let guest = make_invite(&admin, &node, &key, room, 3600).await;
        let host = make_invite_as(&admin, &node, &key, room, 3600, confab_keys::Role::Host).await;
        links.push((format!("{}/m/{room}#{guest}", node.url), format!("{}/m/{room}#{host}", node.url)));
    }
    (node, links, admin)
}

/// Waits until each of `people` decodes video and receives audio from every other one;
/// prints and returns what each receives from each (receiver, sender id, figures).
pub async fn each_receives_the_others<'a>(people: &[&'a Participant]) -> Vec<(&'a Participant, String, PeerStats)> {
    let mut all = Vec::new();
    for p in people {
        let others: Vec<&str> = people.iter().filter(|o| o.id() != p.id()).map(|o| o.id()).collect();
        let stats = p.wait_receiving(&others).await;
        for id in others {
            let s = stats[id].clone();
            println!("{} ← {id} via {}: {} frames ({}p), {} samples, path {}", p.name, s.via, s.frames_decoded, s.frame_height, s.samples_received, s.path);
            for end in ["local", "remote"] {
                let address = s.path[end]["address"].as_str().unwrap_or_default();
                assert!(inside_the_tests(address), "{} ← {id}: the {end} end {address:?} is outside the tests' own links: {}", p.name, s.path);
            }
            all.push((*p, id.to_string(), s));
        }
    }
    all
}

/// The presenter clicks Share (or Stop sharing) and each watcher waits until the share's
/// tile is there (or gone). Returns the window in which the switch may disturb playback
/// (from the click to 2 s after the last watcher saw it, Unix ms) and how long it took.
pub async fn toggle_share(presenter: &Participant, watchers: &[&Participant], on: bool) -> ((u64, u64), Duration) {
    let (clicked, started) = (unix_ms(), Instant::now());
    presenter.browser.click("#toggle-screen").await;
    for p in watchers {
        if on {
            p.wait_screen(presenter.id()).await;
        } else {
            p.wait_screen_gone(presenter.id()).await;
        }
    }
    ((clicked, unix_ms() + 2_000), started.elapsed())
}

/// Whether a candidate's address (empty when the browser hides it) is loopback or on the
/// links the tests make (10.0.0.0/8, see [`crate::netns`]): media never goes to this
/// machine's own addresses.
fn inside_the_tests(address: &str) -> bool {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.octets()[0] == 10,
        Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback(),
        Err(_) => address.is_empty(),
    }
}

/// The longest time a receiver went without a newly decoded frame from one sender while
/// sampling, and whether the sender's tile stayed on screen throughout.
#[derive(Debug)]
pub struct Gap {
    pub from: String,
    pub longest: Duration,
    pub tile_kept: bool,
    pub samples: usize,
}

/// The freezes of one participant's camera stream (over the direct connection, or through the SFU: its receive slot) as the receiving browser's video
/// pipeline counted them (WebRTC stats `freezeCount`, `totalFreezesDuration`: a rendered
/// frame later than max(3 × the mean frame interval, mean + 150 ms)), unaffected by how late
/// the page's timers run on a loaded machine.
#[derive(Debug)]
pub struct Freezes {
    pub count: u64,
    pub total: Duration,
    pub frames_decoded: u64,
    /// Each look that saw new freezes: when (Unix ms), how many, and how long they lasted
    /// together (exact for one; for several, a bound on the longest).
    pub seen: Vec<(u64, u64, Duration)>,
    /// Every look: when (Unix ms), and the frames decoded so far.
    pub looks: Vec<(u64, u64)>,
}

impl Freezes {
    /// The longest freeze seen (exact, or a bound where one look saw several).
    pub fn longest(&self) -> Duration {
        self.seen.iter().map(|s| s.2).max().unwrap_or_default()
    }

    /// Frames decoded between the first and the last look within `from..to` (Unix ms).
    pub fn decoded_within(&self, (from, to): (u64, u64)) -> u64 {
        let inside: Vec<u64> = self.looks.iter().filter(|(at, _)| from <= *at && *at <= to).map(|(_, f)| *f).collect();
        inside.last().zip(inside.first()).map_or(0, |(last, first)| last - first)
    }

    /// The same, counting only freezes seen within `windows` (Unix ms, from..to).
    pub fn longest_within(&self, windows: &[(u64, u64)]) -> Duration {
        self.seen.iter().filter(|(at, _, _)| windows.iter().any(|(a, b)| a <= at && at <= b)).map(|s| s.2).max().unwrap_or_default()
    }
}

/// Now, in Unix milliseconds (to compare with the pages' `Date.now()`).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub struct Participant {
    pub browser: Browser,
    pub name: String,
    pub id: Option<String>,
}

/// What one connection receives and over which path.
#[derive(Debug, Clone, Default)]
pub struct PeerStats {
    pub id: String,
    pub connection_state: String,
    pub frames_decoded: u64,
    pub samples_received: u64,
    pub frames_sent: u64,
    pub collisions: u64,
    /// "mesh" (a direct connection) or "sfu" (through the node).
    pub via: String,
    pub frame_height: u64,
    pub path: Value,
}

/// A tile as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    pub id: String,
    pub name: String,
    pub audio: bool,
    pub video: bool,
    pub connected: bool,
    /// Whether the "Muted" label is on screen.
    pub shows_muted: bool,
}

impl Participant {
    pub async fn chromium(link: &str, name: &str) -> Participant {
        Participant::open(Browser::chromium().await, link, name).await
    }

    /// A Chromium participant inside the network namespace `ns`.
    pub async fn chromium_in(ns: &crate::netns::Namespace, link: &str, name: &str) -> Participant {
        Participant::open(Browser::chromium_in(ns).await, link, name).await
    }

    pub async fn firefox(link: &str, name: &str) -> Participant {
        Participant::open(Browser::firefox().await, link, name).await
    }

    /// Opens the invite link and fills in the prejoin, up to a Join button that works.
    pub async fn open(browser: Browser, link: &str, name: &str) -> Participant {
        let p = Participant { browser, name: name.to_string(), id: None };
        p.prejoin(link).await;
        p
    }

    pub async fn prejoin(&self, link: &str) {
        // Going to the same link again would only change the fragment, not load the page.
        self.browser.goto("about:blank").await;
        self.browser.goto(link).await;
        self.browser.wait_visible("#prejoin").await;
        self.browser.fill("#display-name", &self.name).await;
        crate::eventually("the Join button to be enabled", Duration::from_secs(20), || async {
            (self.browser.eval("return !document.querySelector('#join').disabled").await == json!(true)).then_some(())
        })
        .await;
    }

    /// Clicks Join and waits for the seat; returns our participant id.
    pub async fn join(&mut self) -> String {
        self.click_join().await;
        self.wait_seated().await
    }

    pub async fn click_join(&self) {
        self.browser.click("#join").await;
    }

    pub async fn wait_seated(&mut self) -> String {
        let id = crate::eventually(&format!("{} to be seated", self.name), Duration::from_secs(20), || async {
            self.browser.eval("return window.confabCall?.me?.id ?? null").await.as_str().map(str::to_string)
        })
        .await;
        self.id = Some(id.clone());
        id
    }

    /// The participant's browser, to open another page in it.
    pub fn into_browser(self) -> Browser {
        self.browser
    }

    pub fn id(&self) -> &str {
        self.id.as_deref().expect("joined")
    }

    pub async fn stats(&self) -> HashMap<String, PeerStats> {
        let value = self.browser.eval("return window.confabCall ? window.confabCall.stats() : []").await;
        let mut out = HashMap::new();
        for s in value.as_array().cloned().unwrap_or_default() {
            let n = |k: &str| s[k].as_f64().unwrap_or(0.0) as u64;
            let stats = PeerStats {
                id: s["id"].as_str().unwrap_or_default().to_string(),
                connection_state: s["connectionState"].as_str().unwrap_or_default().to_string(),
                frames_decoded: n("framesDecoded"),
                samples_received: n("totalSamplesReceived"),
                frames_sent: n("framesSent"),
                collisions: n("collisions"),
                via: s["via"].as_str().unwrap_or_default().to_string(),
                frame_height: n("frameHeight"),
                path: s["path"].clone(),
            };
            out.insert(stats.id.clone(), stats);
        }
        out
    }

    /// Waits until video frames are decoded and audio samples received from every one of
    /// `from`, both rising over the wait.
    pub async fn wait_receiving(&self, from: &[&str]) -> HashMap<String, PeerStats> {
        let before = self.stats().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.stats().await;
            let rising = from.iter().all(|id| {
                let (Some(n), b) = (now.get(*id), before.get(*id).cloned().unwrap_or_default()) else { return false };
                n.connection_state == "connected" && n.frames_decoded > b.frames_decoded && n.samples_received > b.samples_received
            });
            if rising {
                return now;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not receive audio and video from all of {from:?} within 30 s.\nbefore: {before:#?}\nnow: {now:#?}\nconsole:\n{}",
                    self.name,
                    self.log().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The meeting's own log lines in the page (`window.confabLog`).
    pub async fn log(&self) -> String {
        self.browser.eval("return (window.confabLog ?? []).join('\\n')").await.as_str().unwrap_or_default().to_string()
    }

    pub async fn tiles(&self) -> Vec<Tile> {
        let script = "return [...document.querySelectorAll('#tiles .tile[data-participant]')].map(t => ({ \
            id: t.dataset.participant, name: t.querySelector('.name').textContent, audio: t.dataset.audio === 'on', \
            video: t.dataset.video === 'on', connected: t.dataset.connected === 'yes', \
            shows_muted: !t.querySelector('.mic-off').hidden }))";
        let value = self.browser.eval(script).await;
        value
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| Tile {
                id: t["id"].as_str().unwrap_or_default().into(),
                name: t["name"].as_str().unwrap_or_default().into(),
                audio: t["audio"] == json!(true),
                video: t["video"] == json!(true),
                connected: t["connected"] == json!(true),
                shows_muted: t["shows_muted"] == json!(true),
            })
            .collect()
    }

    pub async fn tile(&self, id: &str) -> Option<Tile> {
        self.tiles().await.into_iter().find(|t| t.id == id)
    }

    /// Waits until the tile of `id` satisfies `check`.
    pub async fn wait_tile(&self, id: &str, what: &str, check: impl Fn(&Tile) -> bool) -> Tile {
        crate::eventually(&format!("{}: tile {id} {what}", self.name), Duration::from_secs(20), || async { self.tile(id).await.filter(|t| check(t)) }).await
    }

    /// The line a tile shows over its picture (why its video is paused, or on our own that
    /// our uplink is poor), if one is shown.
    pub async fn tile_note(&self, id: &str) -> Option<String> {
        let script =
            format!("const n = document.querySelector('#tiles .tile[data-participant=\"{id}\"] .note'); return n && !n.hidden ? n.textContent : null;");
        self.browser.eval(&script).await.as_str().map(String::from)
    }

    /// Waits until the tile of `id` shows a note that satisfies `check` (`None`: no note).
    pub async fn wait_note(&self, id: &str, what: &str, check: impl Fn(Option<&str>) -> bool) -> Option<String> {
        crate::eventually_or(&format!("{}: the note on tile {id} {what}", self.name), Duration::from_secs(30), || async {
            let note = self.tile_note(id).await;
            if check(note.as_deref()) { Ok(note) } else { Err(format!("the note is {note:?}")) }
        })
        .await
    }

    /// The tile's quality indicator ("good", "fair", "poor", "lost"), once it has one.
    pub async fn tile_quality(&self, id: &str) -> Option<String> {
        let script = format!("return document.querySelector('#tiles .tile[data-participant=\"{id}\"]')?.dataset.quality ?? null;");
        self.browser.eval(&script).await.as_str().map(String::from)
    }

    /// Waits until the tile of `id` is gone and returns how long that took.
    pub async fn wait_tile_gone(&self, id: &str, within: Duration) -> Duration {
        let started = Instant::now();
        crate::eventually(&format!("{}: tile {id} to go within {within:?}", self.name), within, || async { self.tile(id).await.is_none().then_some(()) }).await;
        started.elapsed()
    }

    /// Sizes the browser window (CSS pixels), as a person resizing it or a phone would.
    pub async fn set_window(&self, width: u32, height: u32) {
        self.browser.client.set_window_size(width, height).await.unwrap();
    }

    /// Prejoin: unticks "Microphone on", so we join muted.
    pub async fn microphone_off_before_joining(&self) {
        self.browser.click("#mic-on").await;
    }

    /// In the meeting: the Mute / Unmute button.
    pub async fn toggle_microphone(&self) {
        self.browser.click("#toggle-mic").await;
    }

    /// The cameras the SFU link decodes right now, as (participant, frame height): those
    /// whose decoded-frame count rises over one second (shared screens are not counted).
    pub async fn videos_decoding(&self) -> Vec<(String, u64)> {
        let script = "return (async () => { const sfu = window.confabCall?.sfu; if (!sfu) return []; const snap = async () => { const m = new Map(); (await sfu.pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') m.set(s.mid, [s.framesDecoded ?? 0, s.frameHeight ?? 0]); }); return m; }; const a = await snap(); await new Promise((r) => setTimeout(r, 1000)); const b = await snap(); const who = new Map(sfu.slots.filter((s) => s.kind === 'video').map((s) => [s.mid, s.participant])); const screens = new Set(sfu.slots.filter((s) => s.kind === 'screen').map((s) => s.mid)); return [...b].filter(([mid, [f]]) => !screens.has(mid) && f > (a.get(mid)?.[0] ?? 0)).map(([mid, [, h]]) => [who.get(mid) ?? `unassigned ${mid}`, h]); })();";
        serde_json::from_value(self.browser.eval(script).await).unwrap()
    }

    /// Marks the page's current SFU link as old: [`Participant::sfu_frames_decoded`] counts
    /// only a link made after this.
    pub async fn mark_sfu_link_old(&self) {
        self.browser.eval("if (window.confabCall?.sfu) window.confabCall.sfu.markedOld = true; return null;").await;
    }

    /// Video frames the page's current SFU link has decoded so far, per participant (cameras
    /// only; nothing for a link marked old, or while the page swaps links).
    pub async fn sfu_frames_decoded(&self) -> HashMap<String, u64> {
        let script = "return (async () => { try { const sfu = window.confabCall?.sfu; if (!sfu || sfu.markedOld) return {}; const who = new Map(sfu.slots.filter((s) => s.kind === 'video').map((s) => [s.mid, s.participant])); const out = {}; (await sfu.pc.getStats()).forEach((s) => { const p = s.type === 'inbound-rtp' && s.kind === 'video' && who.get(s.mid); if (p) out[p] = (out[p] ?? 0) + (s.framesDecoded ?? 0); }); return out; } catch (e) { return {}; } })();";
        serde_json::from_value(self.browser.eval(script).await).unwrap_or_default()
    }

    /// The connection popover of `id`'s tile (ours, for our own id), as its text once it
    /// shows figures: opens it if it is closed.
    pub async fn connection_details(&self, id: &str) -> String {
        let script = "const tile = document.querySelector(`#tiles [data-participant=\"${arguments[0]}\"]`); \
                      if (!tile) return null; const pop = tile.querySelector('.popover'); \
                      if (pop.hidden) tile.querySelector('.info').click(); \
                      return pop.textContent.includes('Path') ? pop.innerText : null;";
        crate::eventually(&format!("{}'s connection details for {id}", self.name), Duration::from_secs(10), || async {
            self.browser.client.execute(script, vec![serde_json::json!(id)]).await.ok()?.as_str().map(str::to_string)
        })
        .await
    }

    /// Counters of every inbound video stream on all of this page's connections, summed:
    /// packets, loss, NACKs and PLIs sent, retransmissions received, frames received,
    /// decoded and dropped.
    pub async fn inbound_video_counters(&self) -> Value {
        let script = "return (async () => { const call = window.confabCall; const pcs = [...call.peers.values()].map((p) => p.pc); \
            if (call.sfu) pcs.push(call.sfu.pc); const keys = ['packetsReceived', 'packetsLost', 'nackCount', 'pliCount', 'retransmittedPacketsReceived', \
            'framesReceived', 'framesDecoded', 'framesDropped', 'keyFramesDecoded', 'fecPacketsReceived']; const sum = Object.fromEntries(keys.map((k) => [k, 0])); \
            for (const pc of pcs) { (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') for (const k of keys) sum[k] += s[k] ?? 0; }); } \
            return sum; })();";
        self.browser.eval(script).await
    }

    /// What the tiles without moving video show instead: (participant, initials shown, name
    /// shown) for each such tile, read from what is rendered.
    pub async fn tiles_without_video(&self) -> Vec<(String, String, String)> {
        let script = "return [...document.querySelectorAll('#tiles .tile[data-participant]')].filter((t) => t.dataset.showing === 'no' && !t.hidden) \
                      .map((t) => { const a = t.querySelector('.avatar'); const n = t.querySelector('.name'); \
                        return [t.dataset.participant, getComputedStyle(a).display !== 'none' ? a.innerText : '', n.offsetParent ? n.innerText : '']; });";
        serde_json::from_value(self.browser.eval(script).await).unwrap()
    }

    /// A PNG of the page, in `target/screenshots/NAME.png` (printed).
    pub async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        let png = self.browser.client.screenshot().await.expect("a screenshot");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        path
    }

    /// For a failure message: per video transceiver of the SFU link, what has arrived so far
    /// (packets, frames received and decoded, keyframes, PLIs sent) and the pair in use.
    pub async fn sfu_video_report(&self) -> String {
        let script = "return (async () => { const sfu = window.confabCall?.sfu; if (!sfu) return 'no SFU link'; const out = []; const all = await sfu.pc.getStats(); all.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') out.push(`${s.mid}: ${s.packetsReceived ?? 0} packets, ${s.framesReceived ?? 0} frames, ${s.framesDecoded ?? 0} decoded, ${s.keyFramesDecoded ?? 0} key, ${s.pliCount ?? 0} PLI`); if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') { const st = (id) => { const c = all.get(id); return c ? `${c.candidateType}/${c.protocol}${c.relayProtocol ? '/' + c.relayProtocol : ''}` : id; }; out.push(`pair ${st(s.localCandidateId)} -> ${st(s.remoteCandidateId)}, ${s.availableIncomingBitrate ?? '?'} bit/s in, ${s.availableOutgoingBitrate ?? '?'} bit/s out`); } }); return `${sfu.pc.connectionState}; ` + out.join('; '); })();";
        self.browser.eval(script).await.as_str().unwrap_or_default().to_string()
    }

    /// Starts recording, every 100 ms in the page, the frames decoded from each of `from`
    /// (whatever the path) and whether their tiles are on screen.
    pub async fn start_sampling(&self, from: &[&str]) {
        let script = "const from = arguments[0]; window.__samples = []; \
            window.__sampler = setInterval(async () => { \
              const stats = await window.confabCall.stats(); \
              window.__samples.push([performance.now(), from.map(id => { const s = stats.find(x => x.id === id); return s ? s.framesDecoded : -1; }), \
                from.map(id => document.querySelector(`[data-participant=\"${id}\"]`) ? 1 : 0)]); \
            }, 100);";
        self.browser.client.execute(script, vec![json!(from)]).await.unwrap();
    }

    /// How many samples the recording has so far.
    pub async fn samples(&self) -> u64 {
        self.browser.eval("return window.__samples.length").await.as_u64().unwrap_or(0)
    }

    /// Stops the recording; the gap per sender. A counter that changes to another positive
    /// value counts as new frames: the tile moved to another path, which decodes.
    pub async fn stop_sampling(&self, from: &[&str]) -> Vec<Gap> {
        let samples = self.browser.eval("clearInterval(window.__sampler); return window.__samples").await;
        let samples: Vec<(f64, Vec<f64>, Vec<f64>)> = serde_json::from_value(samples).unwrap();
        from.iter()
            .enumerate()
            .map(|(i, id)| {
                let mut longest = 0.0f64;
                let mut last = samples[0].0;
                for pair in samples.windows(2) {
                    let (before, now) = (pair[0].1[i], pair[1].1[i]);
                    if now > 0.0 && now != before {
                        longest = longest.max(pair[1].0 - last);
                        last = pair[1].0;
                    }
                }
                longest = longest.max(samples.last().unwrap().0 - last);
                let tile_kept = samples.iter().all(|s| s.2[i] == 1.0);
                Gap { from: id.to_string(), longest: Duration::from_secs_f64(longest / 1000.0), tile_kept, samples: samples.len() }
            })
            .collect()
    }

    /// Waits until `sharer`'s screen shows as its own tile here, with moving video.
    pub async fn wait_screen(&self, sharer: &str) {
        let script = "const v = document.querySelector(`#tiles [data-screen=\"${arguments[0]}\"] video`); \
                      if (!v) return { frames: -1 }; \
                      return { frames: Math.max(v.getVideoPlaybackQuality?.().totalVideoFrames ?? 0, v.mozDecodedFrames ?? 0, v.framesPainted ?? 0), width: v.videoWidth };";
        // Moving: the tile's decoded-frame count rises between two looks.
        let first = std::sync::Mutex::new(None);
        crate::eventually_or(&format!("{} to show {sharer}'s screen", self.name), Duration::from_secs(20), || async {
            let seen = self.browser.client.execute(script, vec![json!(sharer)]).await.map_err(|e| e.to_string())?;
            let frames = seen["frames"].as_i64().unwrap_or(-1);
            let mut first = first.lock().unwrap();
            match *first {
                Some(f) if frames > f && seen["width"].as_u64().unwrap_or(0) > 0 => Ok(()),
                Some(_) => Err(format!("{seen}")),
                None => {
                    if frames >= 0 {
                        *first = Some(frames);
                    }
                    Err(format!("{seen}"))
                }
            }
        })
        .await;
    }

    /// Waits until the tile of `sharer`'s screen has gone.
    pub async fn wait_screen_gone(&self, sharer: &str) {
        crate::eventually(&format!("{}'s tile for {sharer}'s screen to go", self.name), Duration::from_secs(10), || async {
            (self.browser.eval(&format!("return document.querySelector('#tiles [data-screen=\"{sharer}\"]') === null")).await == json!(true)).then_some(())
        })
        .await;
    }

    /// Starts looking, four times a second, at the freeze counters of the camera arriving
    /// over the direct connection from `from`.
    pub async fn watch_freezes(&self, from: &str) {
        let script = "const from = arguments[0]; window.__freezes = []; \
            window.__freezeTimer = setInterval(async () => { \
              const call = window.confabCall; const peer = call.peers.get(from); \
              const pc = peer ? peer.pc : call.sfu?.pc; if (!pc) return; \
              const camera = peer ? peer.transceivers.video?.mid \
                : call.sfu.slots.find((s) => s.participant === from && s.kind === 'video')?.mid; \
              (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.mid === camera) \
                window.__freezes.push([s.freezeCount ?? -1, s.totalFreezesDuration ?? -1, s.framesDecoded ?? 0, Date.now()]); }); \
            }, 250);";
        self.browser.client.execute(script, vec![json!(from)]).await.unwrap();
    }

    /// Stops looking; what froze since `watch_freezes`.
    pub async fn freezes(&self) -> Freezes {
        let rows = self.browser.eval("clearInterval(window.__freezeTimer); return window.__freezes").await;
        let rows: Vec<(f64, f64, f64, f64)> = serde_json::from_value(rows).unwrap();
        assert!(rows.len() >= 2, "{}: too few looks at the freeze counters: {rows:?}", self.name);
        assert!(rows.iter().all(|r| r.0 >= 0.0 && r.1 >= 0.0), "{}'s browser does not count freezes (freezeCount)", self.name);
        let (first, last) = (rows[0], rows[rows.len() - 1]);
        let seen = rows
            .windows(2)
            .filter(|w| w[1].0 > w[0].0)
            .map(|w| (w[1].3 as u64, (w[1].0 - w[0].0) as u64, Duration::from_secs_f64((w[1].1 - w[0].1).max(0.0))))
            .collect();
        let looks = rows.iter().map(|r| (r.3 as u64, r.2 as u64)).collect();
        Freezes { count: (last.0 - first.0) as u64, total: Duration::from_secs_f64(last.1 - first.1), frames_decoded: (last.2 - first.2) as u64, seen, looks }
    }

    pub async fn leave(&self) {
        self.browser.click("#leave").await;
        self.browser.wait_visible("#ended").await;
    }
}

//! What a participant's browser receives from one other, read from its own `getStats()`, the
//! figures of a window between two readings, and what comes back after an outage: the
//! network-conditions benchmark (`benches/networks.rs`) and the impairment tests measure
//! with these.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::meeting::Participant;
use crate::netns::Namespace;

/// Cumulative counters of the camera and microphone one page receives from `from`, on
/// whichever connection carries them now (the direct one, or the SFU's slot).
#[derive(Debug, Clone, Default)]
pub struct Reception {
    /// "mesh" or "sfu".
    pub path: String,
    pub frames_decoded: u64,
    pub freeze_count: u64,
    pub freezes: Duration,
    pub frame_height: u64,
    pub nacks: u64,
    pub plis: u64,
    pub retransmitted: u64,
    pub samples: u64,
    pub concealed: u64,
    /// The round trip of the connection's selected candidate pair, in seconds.
    pub rtt: f64,
}

const RECEPTION: &str = "const from = arguments[0]; return (async () => { \
    const call = window.confabCall; if (!call) return null; const peer = call.peers.get(from); \
    const pc = peer ? peer.pc : call.sfu?.pc; if (!pc) return null; \
    const slot = (kind) => call.sfu.slots.find((s) => s.participant === from && s.kind === kind)?.mid; \
    const video = peer ? peer.transceivers.video?.mid : slot('video'); \
    const audio = peer ? peer.transceivers.audio?.mid : slot('audio'); \
    const out = { path: peer ? 'mesh' : 'sfu' }; \
    const trackOf = (mid) => pc.getTransceivers().find((t) => t.mid === mid)?.receiver.track.id; \
    const [videoTrack, audioTrack] = [trackOf(video), trackOf(audio)]; \
    const all = await Promise.race([pc.getStats(), new Promise((r) => setTimeout(() => r(null), 1000))]); if (!all) return null; \
    all.forEach((s) => { \
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') out.rtt = s.currentRoundTripTime ?? 0; \
      if (s.type !== 'inbound-rtp') return; \
      if ((s.mid ?? '') !== '' ? s.mid === video : s.trackIdentifier === videoTrack) Object.assign(out, { framesDecoded: s.framesDecoded ?? 0, freezeCount: s.freezeCount ?? 0, \
        freezes: s.totalFreezesDuration ?? 0, frameHeight: s.frameHeight ?? 0, \
        nacks: s.nackCount ?? 0, plis: s.pliCount ?? 0, retransmitted: s.retransmittedPacketsReceived ?? 0 }); \
      if ((s.mid ?? '') !== '' ? s.mid === audio : s.trackIdentifier === audioTrack) Object.assign(out, { samples: s.totalSamplesReceived ?? 0, concealed: s.concealedSamples ?? 0 }); \
    }); \
    return out; })();";

impl Participant {
    /// What this page has received from `from` so far, or `None` while no connection
    /// carries them.
    pub async fn reception(&self, from: &str) -> Option<Reception> {
        let v: Value = self.browser.client.execute(RECEPTION, vec![json!(from)]).await.expect("the page answers");
        if v.is_null() {
            return None;
        }
        let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
        Some(Reception {
            path: v["path"].as_str().unwrap_or_default().to_string(),
            frames_decoded: n("framesDecoded") as u64,
            freeze_count: n("freezeCount") as u64,
            freezes: Duration::from_secs_f64(n("freezes").max(0.0)),
            frame_height: n("frameHeight") as u64,
            nacks: n("nacks") as u64,
            plis: n("plis") as u64,
            retransmitted: n("retransmitted") as u64,
            samples: n("samples") as u64,
            concealed: n("concealed") as u64,
            rtt: n("rtt"),
        })
    }

    /// Camera frames this page has sent towards `to`: through the SFU, its busiest simulcast
    /// layer (every layer runs at the camera's rate); in the mesh, what it sent `to`.
    pub async fn frames_sent_to(&self, to: &str) -> u64 {
        if self.browser.eval("return !!window.confabCall?.sfu && !window.confabCall.peers.size").await == json!(true) {
            let sent = self.browser.eval("return window.confabCall.sfu.sent()").await;
            sent.as_object().map(|layers| layers.values().filter_map(|l| l["framesSent"].as_u64()).max().unwrap_or(0)).unwrap_or(0)
        } else {
            self.stats().await.get(to).map_or(0, |s| s.frames_sent)
        }
    }
}

/// What one participant received of another's media over a window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub sent: u64,
    pub decoded: u64,
    /// Freezes: the receiver's (`freezeCount`, `totalFreezesDuration`), and one still going
    /// on when the window ends (no frame for [`ONGOING_FREEZE`] or more), which it would
    /// count only later.
    pub freeze_count: u64,
    pub frozen: Duration,
    /// The longest freeze within the window, from the receiver's counters read every
    /// quarter second (exact where one look saw one freeze end; where it saw several, their
    /// sum: a bound), or the one going on at the end.
    pub longest_freeze: Duration,
    pub samples: u64,
    pub concealed: u64,
    pub nacks: u64,
    pub plis: u64,
    pub retransmitted: u64,
    /// At the end of the window.
    pub frame_height: u64,
    pub rtt: f64,
    pub path: String,
}

impl Window {
    /// The share of the frames sent that were decoded (1.0 at most: a window's edges can
    /// count a frame sent before it and decoded within it).
    pub fn decoded_share(&self) -> f64 {
        (self.decoded as f64 / self.sent.max(1) as f64).min(1.0)
    }

    /// The share of audio samples played out that were concealment.
    pub fn concealed_share(&self) -> f64 {
        self.concealed as f64 / self.samples.max(1) as f64
    }
}

/// No frame decoded for this long at the end of a window counts as a freeze going on (the
/// receiver's own freeze counters would count it only once a frame comes; Chromium's
/// threshold is ~200 ms at 30 frames a second, this leaves room for the quarter-second
/// polling).
const ONGOING_FREEZE: Duration = Duration::from_millis(500);

/// Measures what `receiver` gets from `sender` (whose id is `from`; the receiver's is `to`)
/// over `length`.
pub async fn window(sender: &Participant, receiver: &Participant, from: &str, to: &str, length: Duration) -> Window {
    let read = || async {
        let got = receiver.reception(from).await.unwrap_or_default();
        (sender.frames_sent_to(to).await, got)
    };
    let (sent0, r0) = read().await;
    let end = tokio::time::Instant::now() + length;
    let (mut last, mut longest_freeze) = (r0.freezes, Duration::ZERO);
    // When a frame was last seen decoded: the receiver counts a freeze only once the next
    // frame comes, so one still going on at the end of the window is counted here.
    let (mut frames, mut frame_at) = (r0.frames_decoded, tokio::time::Instant::now());
    while tokio::time::Instant::now() + Duration::from_millis(250) < end {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(now) = receiver.reception(from).await {
            longest_freeze = longest_freeze.max(now.freezes.saturating_sub(last));
            last = now.freezes;
            if now.frames_decoded > frames {
                (frames, frame_at) = (now.frames_decoded, tokio::time::Instant::now());
            }
        }
    }
    tokio::time::sleep_until(end).await;
    let (sent1, r1) = read().await;
    longest_freeze = longest_freeze.max(r1.freezes.saturating_sub(last));
    let mut frozen = r1.freezes.saturating_sub(r0.freezes);
    let mut freeze_count = r1.freeze_count.saturating_sub(r0.freeze_count);
    let ongoing = if r1.frames_decoded > frames { Duration::ZERO } else { end.saturating_duration_since(frame_at) };
    if ongoing >= ONGOING_FREEZE {
        frozen += ongoing;
        freeze_count += 1;
        longest_freeze = longest_freeze.max(ongoing);
    }
    Window {
        sent: sent1.saturating_sub(sent0),
        decoded: r1.frames_decoded.saturating_sub(r0.frames_decoded),
        freeze_count,
        frozen,
        longest_freeze,
        samples: r1.samples.saturating_sub(r0.samples),
        concealed: r1.concealed.saturating_sub(r0.concealed),
        nacks: r1.nacks.saturating_sub(r0.nacks),
        plis: r1.plis.saturating_sub(r0.plis),
        retransmitted: r1.retransmitted.saturating_sub(r0.retransmitted),
        frame_height: r1.frame_height,
        rtt: r1.rtt,
        path: r1.path,
    }
}

/// What came back after an outage, and when (from the moment the link was back; polled as
/// fast as the pages answer, ~20-60 ms).
#[derive(Debug, Clone, Default)]
pub struct Outage {
    /// The receiver hears the sender again: samples that are not concealment.
    pub audio: Option<Duration>,
    /// The receiver decodes a frame of the sender's again.
    pub video: Option<Duration>,
    /// The other way: the sender decodes a frame of the receiver's (whose link it was).
    pub video_back: Option<Duration>,
    /// What the receiver got of the sender over the 5 s after.
    pub after: Window,
}

/// Every UDP datagram to and from `ns` (where `receiver` is) dropped for 2 s, then the link
/// back: how soon media flows again each way (`from` and `to` are the sender's and the
/// receiver's ids). Waits 3 s first, so that whatever came before has settled.
pub async fn outage(ns: &Namespace, sender: &Participant, receiver: &Participant, from: &str, to: &str) -> Outage {
    tokio::time::sleep(Duration::from_secs(3)).await;
    ns.lose_udp(100);
    ns.lose_udp_out(100);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = tokio::join!(receiver.reception(from), sender.reception(to));
    ns.lose_udp(0);
    ns.lose_udp_out(0);
    back(sender, receiver, from, to, before, Instant::now()).await
}

/// The receiver's namespace `ns` moves to a new address ([`Namespace::change_address`]):
/// how soon media flows again each way, from the moment of the change. What the pages'
/// buffers still play out is not media back: the figures count from the first two readings,
/// 100 ms apart, in which nothing moved (at most 2 s after the change; a return sooner
/// than that reads late). Waits 3 s first, as [`outage`]. Connections replaced on the way
/// (new counters) count from zero.
pub async fn address_change(ns: &mut Namespace, sender: &Participant, receiver: &Participant, from: &str, to: &str) -> Outage {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let changed = Instant::now();
    let utc = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    println!(
        "(the address changes at {:02}:{:02}:{:02}.{:03} UTC)",
        utc.as_secs() / 3600 % 24,
        utc.as_secs() / 60 % 60,
        utc.as_secs() % 60,
        utc.subsec_millis()
    );
    ns.change_address();
    // Until what the buffers still hold has played out: two readings alike.
    let mut before = tokio::join!(receiver.reception(from), sender.reception(to));
    while changed.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = tokio::join!(receiver.reception(from), sender.reception(to));
        let still = |a: &Option<Reception>, b: &Option<Reception>| {
            let (a, b) = (a.clone().unwrap_or_default(), b.clone().unwrap_or_default());
            a.frames_decoded == b.frames_decoded && a.samples.saturating_sub(a.concealed) == b.samples.saturating_sub(b.concealed)
        };
        let settled = still(&now.0, &before.0) && still(&now.1, &before.1);
        before = now;
        if settled {
            break;
        }
    }
    back(sender, receiver, from, to, before, changed).await
}

/// Polls both pages until the receiver hears and sees the sender again, and the sender sees
/// the receiver, each counted from `since`; at most 10 s after it. Then a 5 s window.
async fn back(sender: &Participant, receiver: &Participant, from: &str, to: &str, before: (Option<Reception>, Option<Reception>), since: Instant) -> Outage {
    let (here0, there0) = (before.0.unwrap_or_default(), before.1.unwrap_or_default());
    let heard = |r: &Reception| r.samples.saturating_sub(r.concealed);
    // A count that moved: up on the same connection, or anything on a new one (from zero).
    let moved = |now: u64, then: u64| now > 0 && now != then;
    let mut o = Outage::default();
    while since.elapsed() < Duration::from_secs(10) && (o.audio.is_none() || o.video.is_none() || o.video_back.is_none()) {
        let (here, there) = tokio::join!(receiver.reception(from), sender.reception(to));
        let (here, there) = (here.unwrap_or_default(), there.unwrap_or_default());
        let now = since.elapsed();
        if o.audio.is_none() && moved(heard(&here), heard(&here0)) {
            o.audio = Some(now);
        }
        if o.video.is_none() && moved(here.frames_decoded, here0.frames_decoded) {
            o.video = Some(now);
        }
        if o.video_back.is_none() && moved(there.frames_decoded, there0.frames_decoded) {
            o.video_back = Some(now);
        }
    }
    o.after = window(sender, receiver, from, to, Duration::from_secs(5)).await;
    o
}

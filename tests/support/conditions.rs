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
    const all = await pc.getStats(); \
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
    pub freeze_count: u64,
    pub frozen: Duration,
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

/// Measures what `receiver` gets from `sender` (whose id is `from`; the receiver's is `to`)
/// over `length`.
pub async fn window(sender: &Participant, receiver: &Participant, from: &str, to: &str, length: Duration) -> Window {
    let read = || async {
        let got = receiver.reception(from).await.unwrap_or_default();
        (sender.frames_sent_to(to).await, got)
    };
    let (sent0, r0) = read().await;
    tokio::time::sleep(length).await;
    let (sent1, r1) = read().await;
    Window {
        sent: sent1.saturating_sub(sent0),
        decoded: r1.frames_decoded.saturating_sub(r0.frames_decoded),
        freeze_count: r1.freeze_count.saturating_sub(r0.freeze_count),
        frozen: r1.freezes.saturating_sub(r0.freezes),
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
    let heard = |r: &Reception| r.samples.saturating_sub(r.concealed);
    ns.lose_udp(100);
    ns.lose_udp_out(100);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (here0, there0) = tokio::join!(receiver.reception(from), sender.reception(to));
    let (here0, there0) = (here0.unwrap_or_default(), there0.unwrap_or_default());
    ns.lose_udp(0);
    ns.lose_udp_out(0);
    let back = Instant::now();
    let mut o = Outage::default();
    while back.elapsed() < Duration::from_secs(10) && (o.audio.is_none() || o.video.is_none() || o.video_back.is_none()) {
        let (here, there) = tokio::join!(receiver.reception(from), sender.reception(to));
        let (here, there) = (here.unwrap_or_default(), there.unwrap_or_default());
        let now = back.elapsed();
        if o.audio.is_none() && heard(&here) > heard(&here0) {
            o.audio = Some(now);
        }
        if o.video.is_none() && here.frames_decoded > here0.frames_decoded {
            o.video = Some(now);
        }
        if o.video_back.is_none() && there.frames_decoded > there0.frames_decoded {
            o.video_back = Some(now);
        }
    }
    o.after = window(sender, receiver, from, to, Duration::from_secs(5)).await;
    o
}

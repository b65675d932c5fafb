//! What a participant's browser receives from one other, read from its own `getStats()`, and
//! the figures of a window between two readings: the network-conditions benchmark
//! (`benches/networks.rs`) and the impairment tests measure with these.

use std::time::Duration;

use serde_json::{Value, json};

use crate::meeting::Participant;

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

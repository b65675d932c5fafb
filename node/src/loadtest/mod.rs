//! `confab loadtest`: bot participants that join a meeting through the node's real HTTPS
//! and WebSocket signaling with a real invite, publish synthetic simulcast video and audio
//! over real WebRTC (str0m), subscribe as the browser client's Speaker view does, never
//! decode, and report what they received and what it cost the server and themselves.
//!
//! - `media.rs`, `stats.rs`: what is sent and what is measured (sans-IO, unit-tested).
//! - `peer.rs`: one WebRTC connection on its own UDP socket.
//! - `confab.rs`: a bot in a Confab meeting; `janus.rs`: the same bot in a Janus VideoRoom.
//! - this file: options, pacing, the progress line, and the report.

mod confab;
mod janus;
mod media;
mod observer;
mod peer;
mod scrape;
mod stats;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use str0m::media::{MediaKind, Mid};

use crate::duration::Span;
use peer::{Publish, Receipts};
use stats::{Histogram, quantile};

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["link", "janus"]))]
pub struct LoadtestOptions {
    /// The meeting link to join (https://HOST/m/ROOM#INVITE), as a host shares it. Every bot
    /// joins with its invite.
    #[arg(long, value_name = "LINK")]
    pub link: Option<String>,

    /// The same meeting's link on another node of a cluster (repeatable): the bots join
    /// through `--link` and these in turn (bot 0 through `--link`, bot 1 through the first of
    /// these, ...), so that what each receives from the others crosses the media cascade.
    #[arg(long, value_name = "LINK", requires = "link")]
    pub also_link: Vec<String>,

    /// Drive a Janus server's VideoRoom instead, through its WebSocket API (e.g.
    /// ws://10.213.0.2:8188; libnice offers no loopback candidates, so run Janus where the
    /// bots reach it on another address, e.g. in a network namespace, as `cargo bench
    /// --bench sfu -- --janus` does). A room for the bots is created.
    #[arg(long, value_name = "URL")]
    pub janus: Option<String>,

    /// How many bots join.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub bots: u32,

    /// Milliseconds between one bot's join and the next.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    pub join_every_ms: u64,

    /// After the last join, how long before measuring starts.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub warmup: Span,

    /// How long to measure.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub duration: Span,

    /// Bots take turns to speak, each for this long, in join order.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub speaker_every: Span,

    /// What the bots' video is: `clips`, real VP8 (a two-second loop per layer, about 150,
    /// 500 and 1500 kbit/s, which a browser joining the test decodes), or `synthetic`, frames
    /// sized to `--layers` that only an SFU can read.
    #[arg(long, default_value = "clips", value_name = "KIND", value_parser = ["clips", "synthetic"])]
    pub video: String,

    /// Bitrates of the three synthetic simulcast layers (320×180, 640×360, 1280×720), kbit/s.
    #[arg(long, default_value = "150,500,1500", value_name = "L,M,H", value_delimiter = ',', num_args = 3)]
    pub layers: Vec<u32>,

    /// Video frames per second in every layer.
    #[arg(long, default_value_t = 30, value_name = "FPS", value_parser = clap::value_parser!(u32).range(1..=60))]
    pub fps: u32,

    /// Audio bitrate (one packet every 20 ms), kbit/s.
    #[arg(long, default_value_t = 32, value_name = "KBPS")]
    pub audio_kbps: u32,

    /// The server's process id, to read its CPU time and memory from /proc.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// The local IP the bots' WebRTC sockets bind to. [default: the address this machine
    /// uses to reach the link's host]
    #[arg(long, value_name = "IP")]
    pub bind_ip: Option<std::net::IpAddr>,

    /// Accept any TLS certificate (a node on its self-signed default).
    #[arg(long)]
    pub insecure: bool,

    /// Also join with one headless Chromium (the prejoin page, a fake camera) and report
    /// what a real browser decodes of the test: frames, freezes, concealed audio.
    #[arg(long)]
    pub observer: bool,

    /// The Chromium the observer runs.
    #[arg(long, default_value = "/usr/bin/chromium", value_name = "PATH")]
    pub chromium: std::path::PathBuf,

    /// Visitors come and go beside the bots: every DURATION one more joins, stays for
    /// `--churn-stay` and leaves, from the first join to the end (a soak: memory, descriptors
    /// and shards must not notice). Visitors are not in the report's figures.
    #[arg(long, value_name = "DURATION")]
    pub churn_every: Option<Span>,

    /// How long each visitor stays.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub churn_stay: Span,

    /// A link to another meeting on the same node, where `--flooders` hostile seats send
    /// `sfu-offer`s at `--flood-rate` each for the whole test: how much does a meeting feel a
    /// flood next door? (Run the node with one relay shard so that both share it.)
    #[arg(long, value_name = "LINK")]
    pub flood_link: Option<String>,

    /// How many seats flood (`--flood-link`).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub flooders: u32,

    /// `sfu-offer`s per second from each flooder, whatever the node answers.
    #[arg(long, default_value_t = 50.0, value_name = "PER_SECOND")]
    pub flood_rate: f64,

    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
}

/// When the bots measure, and who speaks when.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub measure_from: Instant,
    pub end: Instant,
    speaker_every: Duration,
    bots: usize,
    start: Instant,
}

impl Timeline {
    fn measuring(&self, now: Instant) -> bool {
        now >= self.measure_from
    }

    fn speaker(&self, now: Instant) -> usize {
        media::speaker_at(now.saturating_duration_since(self.start), self.speaker_every, self.bots)
    }
}

/// Live counts for the progress line.
#[derive(Debug, Default)]
pub struct Shared {
    joined: AtomicUsize,
    receiving: AtomicUsize,
}

/// What one bot saw.
#[derive(Debug, Default, Clone, Serialize)]
pub struct BotOutcome {
    pub name: String,
    pub error: Option<String>,
    /// From opening the WebSocket to `welcome`.
    pub joined_ms: Option<f64>,
    /// To the WebRTC connection (ICE and DTLS) being up.
    pub connected_ms: Option<f64>,
    /// To the first video frame from anyone.
    pub first_frame_ms: Option<f64>,
    /// Frames received from each participant while measuring: (audio, video).
    pub from: BTreeMap<String, (u64, u64)>,
    pub packets: u64,
    pub lost: u64,
    pub bytes: u64,
    /// Of `bytes`, video.
    pub video_bytes: u64,
    pub jitter_ms: f64,
    pub keyframe_requests: u64,
    #[serde(skip)]
    pub audio_latency: Histogram,
    #[serde(skip)]
    pub send_hold: Histogram,
    #[serde(skip)]
    pub receive_hold: Histogram,
}

impl BotOutcome {
    fn add_receipts(&mut self, receipts: &Receipts, kinds: &HashMap<Mid, MediaKind>, source: impl Fn(&str) -> Option<String>) {
        let mut jitters = Vec::new();
        for (mid, stream) in &receipts.streams {
            self.packets += stream.packets;
            self.lost += stream.lost();
            self.bytes += stream.bytes;
            let video = kinds.get(mid) == Some(&MediaKind::Video);
            if video {
                jitters.push(stream.jitter_ms());
                self.video_bytes += stream.bytes;
            }
            if let Some(who) = source(mid) {
                let entry = self.from.entry(who).or_default();
                if video { entry.1 += stream.frames } else { entry.0 += stream.frames }
            }
        }
        self.jitter_ms = if jitters.is_empty() { 0.0 } else { jitters.iter().sum::<f64>() / jitters.len() as f64 };
        self.keyframe_requests += receipts.keyframe_requests;
        self.audio_latency.merge(&receipts.audio_latency);
        self.send_hold.merge(&receipts.send_hold);
        self.receive_hold.merge(&receipts.receive_hold);
    }

    pub fn loss(&self) -> f64 {
        let expected = self.packets + self.lost;
        if expected == 0 { 0.0 } else { self.lost as f64 / expected as f64 }
    }
}

/// A process's CPU time and memory, read from /proc.
#[derive(Debug, Clone, Copy)]
struct ProcSample {
    at: Instant,
    cpu_secs: f64,
    rss_kib: u64,
    open_files: usize,
}

fn sample(pid: &str) -> Option<ProcSample> {
    let (cpu_secs, rss_kib) = crate::procfs::process(pid)?;
    Some(ProcSample { at: Instant::now(), cpu_secs, rss_kib, open_files: crate::procfs::open_files(pid).unwrap_or(0) })
}

/// CPU use between two samples, in cores (1.0 = one core busy).
fn cores(a: ProcSample, b: ProcSample) -> f64 {
    (b.cpu_secs - a.cpu_secs) / b.at.duration_since(a.at).as_secs_f64().max(1e-9)
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub bots: usize,
    pub joined: usize,
    pub failed: usize,
    pub measured_secs: f64,
    pub join_ms_p50: Option<f64>,
    pub join_ms_p95: Option<f64>,
    pub first_frame_ms_p50: Option<f64>,
    pub first_frame_ms_p95: Option<f64>,
    pub received_kbps_per_bot_p50: Option<f64>,
    /// The bot that received least.
    pub received_kbps_per_bot_min: Option<f64>,
    /// Video alone (payload bytes), per bot: P50 and the least.
    pub video_kbps_per_bot_p50: Option<f64>,
    pub video_kbps_per_bot_min: Option<f64>,
    /// The fewest participants any bot received video from.
    pub video_sources_min: usize,
    pub loss_percent: f64,
    pub worst_loss_percent: f64,
    pub jitter_ms_p50: Option<f64>,
    pub audio_latency_ms_p50: Option<f64>,
    pub audio_latency_ms_p95: Option<f64>,
    pub audio_latency_ms_p99: Option<f64>,
    /// How long the bots' own send path (audio due → datagram sent) and receive path
    /// (datagram at the socket → handled) held packets.
    pub bot_send_hold_ms_p95: Option<f64>,
    pub bot_receive_hold_ms_p95: Option<f64>,
    /// A Confab node's own hop, arrival to departure to each subscriber (histogram bounds).
    pub relay_hop_ms_p50: Option<f64>,
    pub relay_hop_ms_p95: Option<f64>,
    pub relay_hop_ms_p99: Option<f64>,
    /// A Confab node's relay shard threads, each in cores (their own CPU clocks).
    pub shard_cores: Vec<f64>,
    /// Packets the bots received per second of relay shard CPU.
    pub egress_pps_per_shard_core: Option<f64>,
    pub stalled_shards: Option<u64>,
    /// What the Chromium observer decoded while measuring (`--observer`).
    pub observer: Option<observer::Observed>,
    /// Media packets the bots received per second: what the server forwarded to them.
    pub forwarded_pps: f64,
    pub server_cores: Option<f64>,
    pub server_rss_mib: Option<f64>,
    /// Server memory growth from before the first join to the end, per participant.
    pub server_kib_per_participant: Option<f64>,
    /// Server CPU time per forwarded packet.
    pub server_us_per_packet: Option<f64>,
    /// The server before the first join, when measuring started, at the end, and 3 s after
    /// everyone left: resident MiB and open descriptors (a leak shows as the last pair
    /// above the first).
    pub server_lifecycle: Option<[(f64, usize); 4]>,
    /// Visitors who came and went (`--churn-every`), and how many of them failed.
    pub visitors: Option<(usize, usize)>,
    /// The flood next door (`--flood-link`): each flooder's offers sent, answered, refused.
    pub flood: Option<Vec<confab::FloodOutcome>>,
    pub bot_cores: f64,
    pub outcomes: Vec<BotOutcome>,
}

/// Who the bots meet.
#[derive(Clone)]
enum Target {
    /// The meeting's link, then the same meeting's links on other nodes (`--also-link`).
    Confab {
        link: confab::Link,
        others: Vec<confab::Link>,
        tls: Arc<rustls::ClientConfig>,
    },
    Janus {
        url: String,
        room: u64,
    },
}

pub fn run(options: LoadtestOptions) -> anyhow::Result<()> {
    let (target, host) = match (&options.link, &options.janus) {
        (Some(link), _) => {
            let link = confab::Link::parse(link)?;
            let others = options.also_link.iter().map(|l| confab::Link::parse(l).context("--also-link")).collect::<anyhow::Result<_>>()?;
            let host = link.base.trim_start_matches("https://").split('/').next().unwrap_or_default().to_string();
            (Target::Confab { link, others, tls: Arc::new(tls_config(options.insecure)) }, host)
        }
        (None, Some(url)) => {
            let host = url.split("://").nth(1).unwrap_or_default().split('/').next().unwrap_or_default().to_string();
            (Target::Janus { url: url.clone(), room: 0 }, host)
        }
        (None, None) => anyhow::bail!("give --link or --janus"),
    };
    let ip = match options.bind_ip {
        Some(ip) => ip,
        None => local_ip_towards(&host).with_context(|| format!("cannot tell which local address reaches {host}; give --bind-ip"))?,
    };
    let publish = Publish {
        layers: media::layers([options.layers[0], options.layers[1], options.layers[2]]),
        fps: options.fps,
        audio_kbps: options.audio_kbps,
        clips: options.video == "clips",
    };
    str0m::crypto::from_feature_flags().install_process_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(async {
        let target = match target {
            Target::Janus { url, .. } => Target::Janus { room: janus::create_room(&url, options.bots as usize).await?, url },
            confab => confab,
        };
        drive(&options, target, ip, publish).await
    })?;
    print_report(&report);
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

async fn drive(options: &LoadtestOptions, target: Target, ip: std::net::IpAddr, publish: Publish) -> anyhow::Result<Report> {
    let bots = options.bots as usize;
    let start = Instant::now();
    peer::epoch();
    let join_every = Duration::from_millis(options.join_every_ms);
    let measure_from = start + join_every * bots as u32 + Duration::from_secs(options.warmup.secs());
    let timeline = Timeline {
        measure_from,
        end: measure_from + Duration::from_secs(options.duration.secs()),
        speaker_every: Duration::from_secs(options.speaker_every.secs()),
        bots,
        start,
    };
    let server = options.server_pid.map(|p| p.to_string());
    let server_before = server.as_deref().and_then(sample);
    if server.is_some() && server_before.is_none() {
        anyhow::bail!("cannot read /proc for --server-pid {}", options.server_pid.unwrap_or_default());
    }
    // A Confab node's own figures, from its /metrics.
    let metrics = match &target {
        Target::Confab { link, tls, .. } => Some((link.base.clone(), tls.clone())),
        Target::Janus { .. } => None,
    };
    let scrape = || async {
        let (base, tls) = metrics.clone()?;
        scrape::fetch(&base, tls).await.map_err(|e| eprintln!("cannot read the node's /metrics: {e:#}")).ok()
    };
    let mut watcher = match (&target, options.observer) {
        (Target::Confab { link, .. }, true) => {
            let url = format!("{}/m/{}#{}", link.base, link.room, link.invite);
            Some(observer::Observer::join(&options.chromium, &url, "observer").await.context("the observer could not join")?)
        }
        (Target::Janus { .. }, true) => anyhow::bail!("--observer watches a Confab meeting (--link)"),
        _ => None,
    };
    let mut watched_from = None;
    let shared = Arc::new(Shared::default());
    let mut tasks = Vec::new();
    for index in 0..bots {
        let name = format!("bot-{index:03}");
        let (shared, timeline, target, publish) = (shared.clone(), timeline.clone(), target.clone(), publish.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until((start + join_every * index as u32).into()).await;
            match target {
                Target::Confab { link, others, tls } => {
                    // Through --link and each --also-link in turn.
                    let link = match index % (others.len() + 1) {
                        0 => link,
                        k => others[k - 1].clone(),
                    };
                    confab::Bot { index, name, link, tls, ip, publish }.run(shared, timeline).await
                }
                Target::Janus { url, room } => janus::Bot { index, bots, name, url, room, ip, publish }.run(shared, timeline).await,
            }
        }));
    }

    // Visitors, if asked for: one more every `--churn-every`, each staying `--churn-stay`.
    let visitors = match (&target, options.churn_every.map(|e| Duration::from_secs(e.secs()))) {
        (Target::Confab { link, tls, .. }, Some(every)) if !every.is_zero() => {
            let (link, tls, publish, timeline) = (link.clone(), tls.clone(), publish.clone(), timeline.clone());
            let stay = Duration::from_secs(options.churn_stay.secs());
            let seen = Arc::new(Shared::default());
            let counted = seen.clone();
            let task = tokio::spawn(async move {
                let mut visits = Vec::new();
                let mut at = start + every;
                let mut k = 0usize;
                while at + stay < timeline.end {
                    tokio::time::sleep_until(at.into()).await;
                    let mut visit = timeline.clone();
                    visit.end = Instant::now() + stay;
                    let bot =
                        confab::Bot { index: bots + k, name: format!("visitor-{k:04}"), link: link.clone(), tls: tls.clone(), ip, publish: publish.clone() };
                    let seen = seen.clone();
                    visits.push(tokio::spawn(async move { bot.run(seen, visit).await }));
                    k += 1;
                    at += every;
                }
                let mut failed = 0;
                for visit in visits {
                    if visit.await.map_or(true, |o| o.error.is_some()) {
                        failed += 1;
                    }
                }
                (k, failed)
            });
            Some((task, counted))
        }
        (Target::Janus { .. }, Some(_)) => anyhow::bail!("--churn-every drives a Confab meeting (--link)"),
        _ => None,
    };

    // Flooders, if asked for: from the first join to the end, in the meeting next door.
    let flooders = match (&target, &options.flood_link) {
        (Target::Confab { tls, .. }, Some(flood_link)) => {
            let link = confab::Link::parse(flood_link).context("--flood-link")?;
            let tasks: Vec<_> = (0..options.flooders)
                .map(|k| {
                    let flooder = confab::Flooder {
                        name: format!("flooder-{k}"),
                        link: link.clone(),
                        tls: tls.clone(),
                        ip,
                        publish: publish.clone(),
                        per_second: options.flood_rate,
                    };
                    tokio::spawn(flooder.run(timeline.end))
                })
                .collect();
            Some(tasks)
        }
        (Target::Janus { .. }, Some(_)) => anyhow::bail!("--flood-link drives a Confab meeting (--link)"),
        _ => None,
    };

    // The progress line, once a second, and the samples at the edges of the measurement.
    let mut server_from = None;
    let mut bots_from = None;
    let mut scrape_from = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = (sample("self"), server.as_deref().and_then(sample));
    while Instant::now() < timeline.end {
        tick.tick().await;
        let now = Instant::now();
        let current = (sample("self"), server.as_deref().and_then(sample));
        if now >= measure_from && bots_from.is_none() {
            bots_from = current.0;
            server_from = current.1;
            scrape_from = scrape().await;
            if let Some(w) = watcher.as_mut() {
                watched_from = w.sample().await.map_err(|e| eprintln!("the observer: {e:#}")).ok();
            }
        }
        let phase = if now < measure_from { "warming up" } else { "measuring" };
        let mut line = format!(
            "{:>4.0}s {phase}: {}/{bots} joined, {} receiving",
            now.duration_since(start).as_secs_f64(),
            shared.joined.load(Ordering::Relaxed),
            shared.receiving.load(Ordering::Relaxed)
        );
        if let (Some(a), Some(b)) = (last.0, current.0) {
            line += &format!("; bots {:.0}% CPU", cores(a, b) * 100.0);
        }
        if let (Some(a), Some(b)) = (last.1, current.1) {
            line += &format!("; server {:.0}% CPU, {:.0} MiB, {} open files", cores(a, b) * 100.0, b.rss_kib as f64 / 1024.0, b.open_files);
        }
        if let Some((_, seen)) = &visitors {
            line += &format!("; {} visitors so far", seen.joined.load(Ordering::Relaxed));
        }
        eprintln!("{line}");
        last = current;
    }
    let bots_to = sample("self");
    let scrape_to = scrape().await;
    let mut watched_to = None;
    if let Some(w) = watcher.as_mut() {
        watched_to = w.sample().await.map_err(|e| eprintln!("the observer: {e:#}")).ok();
    }
    drop(watcher);
    let server_to = server.as_deref().and_then(sample);
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|e| BotOutcome { error: Some(format!("the bot panicked: {e}")), ..Default::default() }));
    }

    let churn = match visitors {
        Some((task, _)) => Some(task.await.unwrap_or((0, 0))),
        None => None,
    };
    let mut flood = None;
    for task in flooders.into_iter().flatten() {
        let outcome = task.await.unwrap_or_else(|e| confab::FloodOutcome { error: Some(format!("the flooder panicked: {e}")), ..Default::default() });
        flood.get_or_insert_with(Vec::new).push(outcome);
    }
    // Everyone has left: what the server holds now, against before the first join.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server_after = server.as_deref().and_then(sample);

    let measured_secs = timeline.end.duration_since(measure_from).as_secs_f64();
    let joined: Vec<&BotOutcome> = outcomes.iter().filter(|o| o.joined_ms.is_some()).collect();
    let values = |f: &dyn Fn(&BotOutcome) -> Option<f64>| outcomes.iter().filter_map(f).collect::<Vec<f64>>();
    let join = values(&|o| o.joined_ms);
    let first = values(&|o| o.first_frame_ms);
    let kbps = values(&|o| (o.error.is_none()).then(|| o.bytes as f64 * 8.0 / 1000.0 / measured_secs));
    let jitter = values(&|o| (o.error.is_none()).then_some(o.jitter_ms));
    let video_kbps = values(&|o| (o.error.is_none()).then(|| o.video_bytes as f64 * 8.0 / 1000.0 / measured_secs));
    let mut latency = Histogram::default();
    let (mut send_hold, mut receive_hold) = (Histogram::default(), Histogram::default());
    let (mut packets, mut lost) = (0u64, 0u64);
    for o in &outcomes {
        latency.merge(&o.audio_latency);
        send_hold.merge(&o.send_hold);
        receive_hold.merge(&o.receive_hold);
        packets += o.packets;
        lost += o.lost;
    }
    let forwarded_pps = packets as f64 / measured_secs;
    let server_cores = server_from.zip(server_to).map(|(a, b)| cores(a, b));
    let scrapes = scrape_from.as_ref().zip(scrape_to.as_ref());
    let shard_cores = scrapes.map(|(a, b)| b.shard_cores(a, measured_secs)).unwrap_or_default();
    let shard_total: f64 = shard_cores.iter().sum();
    Ok(Report {
        bots,
        joined: joined.len(),
        failed: outcomes.iter().filter(|o| o.error.is_some()).count(),
        measured_secs,
        join_ms_p50: quantile(&join, 0.5),
        join_ms_p95: quantile(&join, 0.95),
        first_frame_ms_p50: quantile(&first, 0.5),
        first_frame_ms_p95: quantile(&first, 0.95),
        received_kbps_per_bot_p50: quantile(&kbps, 0.5),
        received_kbps_per_bot_min: quantile(&kbps, 0.0),
        video_kbps_per_bot_p50: quantile(&video_kbps, 0.5),
        video_kbps_per_bot_min: quantile(&video_kbps, 0.0),
        video_sources_min: outcomes.iter().map(|o| o.from.values().filter(|(_, v)| *v > 0).count()).min().unwrap_or(0),
        loss_percent: if packets + lost == 0 { 0.0 } else { lost as f64 * 100.0 / (packets + lost) as f64 },
        worst_loss_percent: outcomes.iter().map(|o| o.loss() * 100.0).fold(0.0, f64::max),
        jitter_ms_p50: quantile(&jitter, 0.5),
        audio_latency_ms_p50: latency.quantile(0.5),
        audio_latency_ms_p95: latency.quantile(0.95),
        audio_latency_ms_p99: latency.quantile(0.99),
        bot_send_hold_ms_p95: send_hold.quantile(0.95),
        bot_receive_hold_ms_p95: receive_hold.quantile(0.95),
        relay_hop_ms_p50: scrapes.and_then(|(a, b)| b.hop_quantile_ms(a, 0.5)),
        relay_hop_ms_p95: scrapes.and_then(|(a, b)| b.hop_quantile_ms(a, 0.95)),
        relay_hop_ms_p99: scrapes.and_then(|(a, b)| b.hop_quantile_ms(a, 0.99)),
        egress_pps_per_shard_core: (shard_total > 0.0).then(|| forwarded_pps / shard_total),
        shard_cores,
        stalled_shards: scrape_to.as_ref().map(|s| s.stalled_shards),
        observer: watched_from.zip(watched_to).map(|(a, b)| observer::Observed::between(a, b, measured_secs)),
        forwarded_pps,
        server_cores,
        server_rss_mib: server_to.map(|s| s.rss_kib as f64 / 1024.0),
        server_kib_per_participant: server_before.zip(server_to).map(|(a, b)| (b.rss_kib as f64 - a.rss_kib as f64) / bots as f64),
        server_us_per_packet: server_cores.filter(|_| forwarded_pps > 0.0).map(|c| c * 1e6 / forwarded_pps),
        server_lifecycle: match (server_before, server_from, server_to, server_after) {
            (Some(a), Some(b), Some(c), Some(d)) => Some([a, b, c, d].map(|s| (s.rss_kib as f64 / 1024.0, s.open_files))),
            _ => None,
        },
        visitors: churn,
        flood,
        bot_cores: bots_from.zip(bots_to).map(|(a, b)| cores(a, b)).unwrap_or(0.0),
        outcomes,
    })
}

fn print_report(r: &Report) {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ms"));
    println!("bot       joined  first frame  from (a/v)         kbit/s  loss %  jitter ms  PLI  error");
    for o in &r.outcomes {
        let from: Vec<String> = o.from.values().map(|(a, v)| format!("{a}/{v}")).collect();
        let from = if from.len() > 2 { format!("{} sources", from.len()) } else { from.join(" ") };
        println!(
            "{:<9} {:>6}  {:>11}  {:<17} {:>7.0}  {:>6.2}  {:>9.1}  {:>3}  {}",
            o.name,
            ms(o.joined_ms),
            ms(o.first_frame_ms),
            from,
            o.bytes as f64 * 8.0 / 1000.0 / r.measured_secs,
            o.loss() * 100.0,
            o.jitter_ms,
            o.keyframe_requests,
            o.error.as_deref().unwrap_or("")
        );
    }
    println!();
    println!("bots: {} joined of {}, {} failed; measured {:.0} s", r.joined, r.bots, r.failed, r.measured_secs);
    println!("join: P50 {}, P95 {}; first frame: P50 {}, P95 {}", ms(r.join_ms_p50), ms(r.join_ms_p95), ms(r.first_frame_ms_p50), ms(r.first_frame_ms_p95));
    println!(
        "received per bot: P50 {:.0} kbit/s; loss {:.3} % (worst bot {:.3} %); jitter P50 {:.1} ms; audio latency P50 {}, P95 {}",
        r.received_kbps_per_bot_p50.unwrap_or(0.0),
        r.loss_percent,
        r.worst_loss_percent,
        r.jitter_ms_p50.unwrap_or(0.0),
        ms(r.audio_latency_ms_p50),
        ms(r.audio_latency_ms_p95)
    );
    let ms1 = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    println!(
        "least received by a bot: {:.0} kbit/s; video alone: P50 {:.0} kbit/s, least {:.0}; fewest video sources: {}; audio latency P99 {}; bots' own paths held packets up to {} (send, P95) and {} (receive, P95)",
        r.received_kbps_per_bot_min.unwrap_or(0.0),
        r.video_kbps_per_bot_p50.unwrap_or(0.0),
        r.video_kbps_per_bot_min.unwrap_or(0.0),
        r.video_sources_min,
        ms(r.audio_latency_ms_p99),
        ms1(r.bot_send_hold_ms_p95),
        ms1(r.bot_receive_hold_ms_p95)
    );
    if r.relay_hop_ms_p50.is_some() {
        println!(
            "relay: arrival to departure ≤ {} (P50), ≤ {} (P95), ≤ {} (P99); shard threads {} cores; {:.0} packets/s per shard core; stalled shards: {}",
            ms1(r.relay_hop_ms_p50),
            ms1(r.relay_hop_ms_p95),
            ms1(r.relay_hop_ms_p99),
            r.shard_cores.iter().map(|c| format!("{c:.2}")).collect::<Vec<_>>().join(" + "),
            r.egress_pps_per_shard_core.unwrap_or(0.0),
            r.stalled_shards.unwrap_or(0)
        );
    }
    if let Some(o) = &r.observer {
        println!(
            "observer (Chromium): decodes {} videos, {:.0} frames/s; {} freezes ({:.1} s); {:.2} % of audio concealed",
            o.videos_decoding, o.frames_decoded_per_sec, o.freezes, o.freeze_secs, o.concealed_audio_percent
        );
    }
    print!("forwarded: {:.0} packets/s to the bots", r.forwarded_pps);
    if let (Some(c), Some(rss)) = (r.server_cores, r.server_rss_mib) {
        print!("; server {:.0}% CPU ({:.2} cores), {rss:.0} MiB", c * 100.0, c);
        if let Some(us) = r.server_us_per_packet {
            print!(", {us:.1} µs CPU per forwarded packet");
        }
        if let Some(kib) = r.server_kib_per_participant {
            print!(", {kib:.0} KiB per participant");
        }
    }
    println!();
    if let Some([before, from, to, after]) = r.server_lifecycle {
        println!(
            "server memory and descriptors: {:.0} MiB / {} before the first join, {:.0} / {} when measuring began, {:.0} / {} at the end, {:.0} / {} after everyone left",
            before.0, before.1, from.0, from.1, to.0, to.1, after.0, after.1
        );
    }
    if let Some((visitors, failed)) = r.visitors {
        println!("visitors: {visitors} came and went, {failed} failed");
    }
    if let Some(flood) = &r.flood {
        let sum = |f: fn(&confab::FloodOutcome) -> u64| flood.iter().map(f).sum::<u64>();
        let failed: Vec<&str> = flood.iter().filter_map(|o| o.error.as_deref()).collect();
        println!(
            "flood next door: {} seats sent {} sfu-offers, {} answered, {} refused{}",
            flood.len(),
            sum(|o| o.sent),
            sum(|o| o.answered),
            sum(|o| o.refused),
            if failed.is_empty() { String::new() } else { format!("; failed: {}", failed.join("; ")) }
        );
    }
    println!("bots' own CPU: {:.0}% ({:.2} cores): if that is most of the machine, the bots, not the server, are the limit", r.bot_cores * 100.0, r.bot_cores);
}

/// The local address the kernel would use towards `host` (a name or an IP, with a port).
fn local_ip_towards(host: &str) -> anyhow::Result<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let with_port = if host.contains(':') && !host.ends_with(']') { host.to_string() } else { format!("{host}:443") };
    let target = with_port.to_socket_addrs()?.next().context("the host has no address")?;
    let probe = std::net::UdpSocket::bind(if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    probe.connect(target)?;
    Ok(probe.local_addr()?.ip())
}

fn tls_config(insecure: bool) -> rustls::ClientConfig {
    if insecure {
        return rustls::ClientConfig::builder().dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny)).with_no_client_auth();
    }
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()
}

/// `--insecure`: any certificate is accepted (signatures are still checked).
#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

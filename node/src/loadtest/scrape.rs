//! What a load test reads from a Confab node's `/metrics` at the start and the end of the
//! measured window: each relay shard's CPU time and the relay's arrival-to-departure
//! histogram, so the report shows the server's own hop beside the bots' end-to-end figures.

use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The figures of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// Per shard, CPU seconds so far.
    pub shard_cpu: Vec<f64>,
    /// The hop histogram: (upper bound in seconds, cumulative count), then the total.
    pub hop: Vec<(f64, u64)>,
    pub hop_count: u64,
    pub stalled_shards: u64,
}

impl Scrape {
    /// Reads Prometheus text.
    pub fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            if let Some(shard) = label(name, "confab_relay_shard_cpu_seconds_total", "shard").and_then(|s| s.parse::<usize>().ok()) {
                if scrape.shard_cpu.len() <= shard {
                    scrape.shard_cpu.resize(shard + 1, 0.0);
                }
                scrape.shard_cpu[shard] = value;
            } else if let Some(le) = label(name, "confab_media_hop_latency_seconds_bucket", "le") {
                match le {
                    "+Inf" => scrape.hop_count = value as u64,
                    bound => scrape.hop.extend(bound.parse::<f64>().ok().map(|b| (b, value as u64))),
                }
            } else if name == "confab_relay_stalled_shards" {
                scrape.stalled_shards = value as u64;
            }
        }
        scrape
    }

    /// The hop latency's `q`-quantile (an upper bound, in ms) between `before` and `self`.
    pub fn hop_quantile_ms(&self, before: &Scrape, q: f64) -> Option<f64> {
        let total = self.hop_count.checked_sub(before.hop_count).filter(|n| *n > 0)?;
        let want = (total as f64 * q).ceil() as u64;
        for (i, (bound, n)) in self.hop.iter().enumerate() {
            let earlier = before.hop.get(i).map_or(0, |(_, n)| *n);
            if n.saturating_sub(earlier) >= want {
                return Some(bound * 1000.0);
            }
        }
        Some(f64::INFINITY)
    }

    /// Each shard's CPU between `before` and `self`, in cores over `secs`.
    pub fn shard_cores(&self, before: &Scrape, secs: f64) -> Vec<f64> {
        self.shard_cpu.iter().enumerate().map(|(i, cpu)| (cpu - before.shard_cpu.get(i).copied().unwrap_or(0.0)) / secs.max(1e-9)).collect()
    }
}

/// `name{key="value"}` → `value`, when the metric is `metric`.
fn label<'a>(name: &'a str, metric: &str, key: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(metric)?.strip_prefix('{')?.strip_suffix('}')?;
    rest.split(',').find_map(|pair| pair.strip_prefix(key)?.strip_prefix("=\"")?.strip_suffix('"'))
}

/// GETs `https://HOST/metrics` (`base` is `https://HOST`).
pub async fn fetch(base: &str, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<Scrape> {
    let host = base.trim_start_matches("https://").trim_end_matches('/');
    let (name, _) = host.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()).unwrap_or((host, "443"));
    let address = if host.contains(':') { host.to_string() } else { format!("{host}:443") };
    let tcp = tokio::net::TcpStream::connect(&address).await.with_context(|| format!("cannot reach {address}"))?;
    let server = rustls::pki_types::ServerName::try_from(name.trim_start_matches('[').trim_end_matches(']').to_string())?;
    let mut stream = tokio_rustls::TlsConnector::from(tls).connect(server, tcp).await?;
    stream.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP response from /metrics")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "/metrics answered {}", head.lines().next().unwrap_or_default());
    Ok(Scrape::parse(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE confab_relay_shard_cpu_seconds_total counter\n\
        confab_relay_shard_cpu_seconds_total{shard=\"0\"} 1.000\n\
        confab_relay_shard_cpu_seconds_total{shard=\"1\"} 2.000\n\
        confab_media_hop_latency_seconds_bucket{le=\"0.001\"} 10\n\
        confab_media_hop_latency_seconds_bucket{le=\"0.005\"} 10\n\
        confab_media_hop_latency_seconds_bucket{le=\"+Inf\"} 10\n\
        confab_relay_stalled_shards 0\n";

    #[test]
    fn the_window_between_two_scrapes_gives_cpu_per_shard_and_hop_quantiles() {
        let before = Scrape::parse(BEFORE);
        assert_eq!(before.shard_cpu, vec![1.0, 2.0]);
        assert_eq!(before.hop_count, 10);
        let after = Scrape::parse(
            &BEFORE
                .replace("\"0\"} 1.000", "\"0\"} 11.000")
                .replace("\"1\"} 2.000", "\"1\"} 7.000")
                .replace("\"0.001\"} 10", "\"0.001\"} 100")
                .replace("\"0.005\"} 10", "\"0.005\"} 110")
                .replace("\"+Inf\"} 10", "\"+Inf\"} 110"),
        );
        assert_eq!(after.shard_cores(&before, 10.0), vec![1.0, 0.5]);
        // 90 of the 100 new samples are under 1 ms, all under 5 ms.
        assert_eq!(after.hop_quantile_ms(&before, 0.5), Some(1.0));
        assert_eq!(after.hop_quantile_ms(&before, 0.95), Some(5.0));
        assert_eq!(before.hop_quantile_ms(&before, 0.5), None, "no samples in between");
    }
}

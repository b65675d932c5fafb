//! What a bot measures on what it receives, and how the report sums it up. Sans-IO: the
//! bot hands in RTP packets (sequence number, size, marker, RTP time, arrival) and audio
//! latencies.

/// One received RTP stream (a receive slot).
///
/// Loss is counted on sequence numbers: a packet is lost when it never arrived, so one that
/// a NACK recovered is not lost.
#[derive(Debug, Default, Clone)]
pub struct StreamReceipt {
    first_seq: Option<u64>,
    highest_seq: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Frames (video) or packets (audio) that ended: RTP marker bits, for video.
    pub frames: u64,
    /// RFC 3550 interarrival jitter (seconds), on the first packet of each frame.
    jitter: f64,
    last_transit: Option<f64>,
    last_rtp_time: Option<u64>,
}

impl StreamReceipt {
    /// A packet `seq`, `bytes` long, with RTP time `rtp_time` on a `clock_rate` clock, that
    /// arrived `arrival` seconds after some fixed instant; `ends_frame` for a video packet
    /// with the marker bit, or any audio packet.
    pub fn packet(&mut self, seq: u64, bytes: usize, ends_frame: bool, rtp_time: u64, clock_rate: u64, arrival: f64) {
        self.first_seq = Some(self.first_seq.map_or(seq, |f| f.min(seq)));
        let newest = seq >= self.highest_seq;
        self.highest_seq = self.highest_seq.max(seq);
        self.packets += 1;
        self.bytes += bytes as u64;
        if ends_frame {
            self.frames += 1;
        }
        // A frame's first packet (in order): its transit time against the previous frame's.
        if newest && self.last_rtp_time.is_none_or(|t| rtp_time > t) {
            self.last_rtp_time = Some(rtp_time);
            let transit = arrival - rtp_time as f64 / clock_rate.max(1) as f64;
            if let Some(last) = self.last_transit {
                self.jitter += ((transit - last).abs() - self.jitter) / 16.0;
            }
            self.last_transit = Some(transit);
        }
    }

    pub fn expected(&self) -> u64 {
        self.first_seq.map_or(0, |f| self.highest_seq - f + 1)
    }

    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.packets)
    }

    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0
    }
}

/// Latencies in 0.1 ms steps up to 2 s (more is counted as 2 s): enough for percentiles
/// without keeping every sample.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u32>,
    pub count: u64,
}

const STEPS_PER_MS: f64 = 10.0;
const MAX_MS: f64 = 2000.0;

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: vec![0; (MAX_MS * STEPS_PER_MS) as usize + 1], count: 0 }
    }
}

impl Histogram {
    pub fn record(&mut self, ms: f64) {
        let i = (ms.clamp(0.0, MAX_MS) * STEPS_PER_MS).round() as usize;
        self.buckets[i] += 1;
        self.count += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
    }

    /// The `q`-quantile (0..=1) in ms, or None without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += *n as u64;
            if seen >= rank {
                return Some(i as f64 / STEPS_PER_MS);
            }
        }
        Some(MAX_MS)
    }
}

/// The `q`-quantile of `values` (nearest rank), or None when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_counts_packets_that_never_arrived() {
        let mut s = StreamReceipt::default();
        for seq in [10, 11, 12, 13, 16, 17, 18] {
            s.packet(seq, 1000, seq == 13 || seq == 18, seq / 3 * 3000, 90_000, 0.0);
        }
        assert_eq!((s.expected(), s.packets, s.lost(), s.frames), (9, 7, 2, 2));
        // A retransmission fills its hole late.
        s.packet(14, 1000, false, 12_000, 90_000, 0.2);
        assert_eq!(s.lost(), 1);
    }

    #[test]
    fn jitter_is_zero_for_a_steady_stream_and_grows_with_variation() {
        let mut steady = StreamReceipt::default();
        let mut shaky = StreamReceipt::default();
        for i in 0..100u64 {
            // Two packets a frame, the second 1 ms after the first: frames count, not packets.
            for (k, late) in [(0, 0.0), (1, 0.001)] {
                steady.packet(2 * i + k, 100, k == 1, i * 3000, 90_000, i as f64 / 30.0 + late);
                let wobble = if i % 2 == 0 { 0.010 } else { 0.0 };
                shaky.packet(2 * i + k, 100, k == 1, i * 3000, 90_000, i as f64 / 30.0 + wobble + late);
            }
        }
        assert!(steady.jitter_ms() < 1e-6);
        assert!((shaky.jitter_ms() - 10.0).abs() < 1.0, "{}", shaky.jitter_ms());
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(ms as f64);
        }
        h.record(5000.0);
        assert_eq!(h.quantile(0.5), Some(51.0));
        assert_eq!(h.quantile(1.0), Some(2000.0));
        assert_eq!(Histogram::default().quantile(0.5), None);
        assert_eq!(quantile(&[3.0, 1.0, 2.0, 4.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0, 4.0], 0.95), Some(4.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}

//! How many messages a connection may send: a token bucket, sans-IO (time passed in). A
//! participant flooding the node gets `rate_limited` errors instead of filling the others'
//! queues. The burst covers a browser's offers and candidates for a whole mesh at once (a few
//! dozen per peer).

use super::room::Millis;

pub const BURST: f64 = 200.0;
pub const PER_SECOND: f64 = 50.0;

#[derive(Debug, Clone)]
pub struct Budget {
    tokens: f64,
    last: Millis,
}

impl Budget {
    pub fn new(now: Millis) -> Budget {
        Budget { tokens: BURST, last: now }
    }

    /// Takes one message's worth; false when the connection is over its budget.
    pub fn take(&mut self, now: Millis) -> bool {
        let elapsed = now.saturating_sub(self.last) as f64 / 1000.0;
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * PER_SECOND).min(BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let mut b = Budget::new(0);
        assert_eq!((0..600).filter(|_| b.take(0)).count(), 200);
        assert!(!b.take(0));
        assert_eq!((0..200).filter(|_| b.take(1_000)).count(), 50);
        assert_eq!((0..1000).filter(|_| b.take(60_000)).count(), 200, "refills only up to the burst");
    }

    #[test]
    fn time_going_backwards_gives_nothing() {
        let mut b = Budget::new(10_000);
        for _ in 0..200 {
            b.take(10_000);
        }
        assert!(!b.take(5_000));
    }
}

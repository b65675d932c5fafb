//! How many messages a connection may send: a token bucket, sans-IO (time passed in). A
//! participant flooding the node gets `rate_limited` errors instead of filling the others'
//! queues. The burst covers a browser's offers and candidates for a whole mesh at once (a few
//! dozen per peer).

/// Monotonic milliseconds, from whatever origin the caller chose: the clock of budgets and
/// rooms alike.
pub type Millis = u64;

pub const BURST: f64 = 200.0;
pub const PER_SECOND: f64 = 50.0;

/// `sfu-offer`s: each costs the relay milliseconds on a forwarding thread. A browser sends
/// one when the meeting moves to the SFU and again on an ICE restart.
pub const SFU_OFFER_BURST: f64 = 4.0;
pub const SFU_OFFERS_PER_SECOND: f64 = 0.2;

/// Fresh seats from one network address in one meeting (resumes are not counted): a whole
/// office behind one NAT joining at ten o'clock, not a script filling the room.
pub const JOIN_BURST: f64 = 20.0;
pub const JOINS_PER_SECOND: f64 = 1.0;

/// Chat messages per seat: a few lines pasted in a row, not a wall of them.
pub const CHAT_BURST: f64 = 10.0;
pub const CHATS_PER_SECOND: f64 = 1.0;

#[derive(Debug, Clone)]
pub struct Budget {
    tokens: f64,
    last: Millis,
    burst: f64,
    per_second: f64,
}

impl Budget {
    /// Signaling messages: [`BURST`], then [`PER_SECOND`].
    pub fn new(now: Millis) -> Budget {
        Budget::with(now, BURST, PER_SECOND)
    }

    pub fn with(now: Millis, burst: f64, per_second: f64) -> Budget {
        Budget { tokens: burst, last: now, burst, per_second }
    }

    /// Whether the bucket would be full at `now` (nothing spent that has not come back).
    pub fn is_full(&self, now: Millis) -> bool {
        let elapsed = now.saturating_sub(self.last) as f64 / 1000.0;
        self.tokens + elapsed * self.per_second >= self.burst
    }

    /// Takes one message's worth; false when the connection is over its budget.
    pub fn take(&mut self, now: Millis) -> bool {
        let elapsed = now.saturating_sub(self.last) as f64 / 1000.0;
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
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

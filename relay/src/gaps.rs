//! Packets of a feed from another node that the cascade lost on the way: noticed as a jump
//! in the publisher's numbering (a node receives every packet of the feeds it wants, in
//! order but for loss), asked for again from the publisher's node, and again if the copy is
//! lost too, a few times, as long as that node still keeps them. Sans-IO.

use std::time::{Duration, Instant};

/// A jump of at most this many packets is loss; a longer one is a feed starting again (a
/// layer resumed after a pause), as is a feed not seen for [`STALE`].
pub const GAP_MAX: u64 = 64;
pub const STALE: Duration = Duration::from_secs(1);
/// How many times a packet is asked for before it is given up (the subscriber's keyframe
/// request then repairs the picture).
const TRIES: u8 = 3;
/// A packet asked for is asked for again once this many round trips of the cascade have
/// passed without it (measured from the copies that came), and never sooner than
/// [`AGAIN_AT_LEAST`].
const AGAIN_AFTER_ROUND_TRIPS: u32 = 2;
const AGAIN_AT_LEAST: Duration = Duration::from_millis(20);
/// The round trip assumed until a copy has come back.
const FIRST_ROUND_TRIP: Duration = Duration::from_millis(50);
/// At most this many packets wait to be asked for again (a longer stretch is beyond repair
/// by copies).
const MISSING_MAX: usize = 2 * GAP_MAX as usize;

/// One feed from another node, as this node receives it.
#[derive(Debug, Clone, Default)]
pub struct Gaps {
    /// The highest packet number seen, and when.
    highest: Option<(u64, Instant)>,
    /// Packets missing: number, when last asked for, how many times.
    missing: Vec<(u64, Instant, u8)>,
    /// Smoothed time from asking for a packet to its copy's arrival.
    round_trip: Option<Duration>,
}

impl Gaps {
    /// Packet `seq` arrived `now`: the packets to ask the publisher's node for now (those
    /// its arrival shows lost, and those asked for long enough ago that did not come).
    pub fn arrived(&mut self, seq: u64, now: Instant) -> Vec<u64> {
        let mut ask = Vec::new();
        match self.highest {
            Some((highest, at)) if seq > highest => {
                let gap = seq - highest - 1;
                if gap > GAP_MAX || now.saturating_duration_since(at) >= STALE {
                    self.missing.clear();
                } else {
                    for lost in highest + 1..seq {
                        self.missing.push((lost, now, 1));
                        ask.push(lost);
                    }
                }
                self.highest = Some((seq, now));
            }
            Some(_) => {
                // Late: a copy (or reordered on the way).
                if let Some(i) = self.missing.iter().position(|m| m.0 == seq) {
                    let (_, asked, _) = self.missing.remove(i);
                    let sample = now.saturating_duration_since(asked);
                    self.round_trip = Some(self.round_trip.map_or(sample, |rt| (rt * 7 + sample) / 8));
                }
            }
            None => self.highest = Some((seq, now)),
        }
        let again = (self.round_trip.unwrap_or(FIRST_ROUND_TRIP) * AGAIN_AFTER_ROUND_TRIPS).max(AGAIN_AT_LEAST);
        for (lost, asked, tries) in &mut self.missing {
            if now.saturating_duration_since(*asked) >= again && *tries < TRIES {
                *asked = now;
                *tries += 1;
                ask.push(*lost);
            }
        }
        self.missing.retain(|(_, asked, tries)| *tries < TRIES || now.saturating_duration_since(*asked) < again);
        if self.missing.len() > MISSING_MAX {
            self.missing.drain(..self.missing.len() - MISSING_MAX);
        }
        ask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(start: Instant, n: u64) -> Instant {
        start + Duration::from_millis(n)
    }

    #[test]
    fn packets_in_order_ask_for_nothing() {
        let start = Instant::now();
        let mut gaps = Gaps::default();
        for seq in 100..200 {
            assert!(gaps.arrived(seq, ms(start, seq)).is_empty());
        }
    }

    #[test]
    fn a_jump_asks_for_what_it_skipped_once_and_a_copy_that_comes_is_not_asked_again() {
        let start = Instant::now();
        let mut gaps = Gaps::default();
        gaps.arrived(10, start);
        assert_eq!(gaps.arrived(13, ms(start, 1)), vec![11, 12]);
        assert!(gaps.arrived(14, ms(start, 2)).is_empty(), "asked already");
        assert!(gaps.arrived(11, ms(start, 5)).is_empty(), "a copy");
        assert!(gaps.arrived(12, ms(start, 6)).is_empty(), "a copy");
        assert!(gaps.arrived(15, ms(start, 500)).is_empty(), "nothing missing any more");
    }

    #[test]
    fn a_copy_lost_too_is_asked_for_again_after_two_round_trips_then_given_up() {
        let start = Instant::now();
        let mut gaps = Gaps::default();
        gaps.arrived(1, start);
        // One copy comes back after 10 ms: the round trip is 10 ms.
        assert_eq!(gaps.arrived(3, ms(start, 0)), vec![2]);
        gaps.arrived(2, ms(start, 10));
        gaps.arrived(4, ms(start, 15));
        // 5 is lost, and so is its copy.
        assert_eq!(gaps.arrived(6, ms(start, 20)), vec![5]);
        assert!(gaps.arrived(7, ms(start, 30)).is_empty(), "not yet: 20 ms is two round trips");
        assert_eq!(gaps.arrived(8, ms(start, 40)), vec![5], "asked again");
        assert_eq!(gaps.arrived(9, ms(start, 60)), vec![5], "a third time");
        assert!(gaps.arrived(10, ms(start, 80)).is_empty(), "then given up");
        assert!(gaps.arrived(11, ms(start, 200)).is_empty());
    }

    #[test]
    fn a_long_jump_or_a_feed_back_after_a_pause_is_a_new_start() {
        let start = Instant::now();
        let mut gaps = Gaps::default();
        gaps.arrived(1, start);
        assert!(gaps.arrived(1 + GAP_MAX + 2, ms(start, 10)).is_empty(), "a layer resumed");
        assert!(gaps.arrived(100 + GAP_MAX, ms(start, 2000)).is_empty(), "a second without it");
        assert_eq!(gaps.arrived(102 + GAP_MAX, ms(start, 2001)), vec![101 + GAP_MAX]);
    }
}

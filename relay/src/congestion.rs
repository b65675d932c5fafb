//! A subscriber's downlink that we overload, told apart from one that merely loses at random
//! or is far away. Sans-IO: each review passes in what BWE measures.
//!
//! Random loss lowers BWE's loss-based estimate and leaves the queue empty; so do jitter and
//! distance. A link we send more than it carries fills its queue, drops what overflows, and
//! its delay-based estimate (which reads the growth of the queue, not its height) stays where
//! it was. The sign is a queue that stands: the shortest one-way delay of the last half
//! second above the shortest of the last few, net of jitter (str0m patch 7,
//! `Bwe::standing_queue`), seen [`STREAK`] reviews in a row while the subscriber loses.
//! Then:
//!
//! - what the link acknowledged while the queue stood is its *ceiling*: what we send it is
//!   held under that, rising by [`RISE`] a second while no queue stands (a standing queue
//!   lowers it again), until it no longer binds (above both of BWE's estimates) and no
//!   queue stood for [`CONGESTED_FOR`];
//! - a quiet subscriber (whose silent sources reach it as DTX) stays quiet while congested;
//! - while the queue stands, video pauses at once (not after a dip has lasted);
//! - as long as a ceiling holds, the subscriber gets no audio copies and RED's primary
//!   alone (restored each time a queue had not stood for a while, RED alone overloaded a
//!   150 kbit/s link again: the speaker lost 7-20 % of her sound, 1-3 % with it held back);
//!
//! A queue that stands but loses nothing is not ours to fix: a path whose delay grew at a
//! stroke (a new route) shows one for a few seconds. With loss beside it, it looks the same,
//! until the minimum it is measured against has moved too. Telling the two apart by what
//! the queue does when we send less was tried and taken back: a link that only just carries
//! the audio we cut down to keeps a full queue that hardly overflows, as a longer path does,
//! and undoing the pauses there left the overload unseen (docs/decisions.md, "A downlink we
//! overload"). A path's step costs some seconds of paused video instead: when the ceiling is
//! forgotten, what a standing queue paused is BWE's again (the router resumes it slot by
//! slot as the estimate allows, and the first in line at once when nothing else plays and
//! the estimate has room for it: BWE, which fell while little went, might otherwise resume
//! none under jitter; all at once overloaded the link anew).

use std::time::{Duration, Instant};

/// A queue this long that does not drain for half a second is a standing one. Random jitter
/// of ± 50 ms leaves a few milliseconds; a 400 kbit/s link with 100 ms of buffer overloaded
/// by a third, tens.
pub const STANDING_QUEUE: Duration = Duration::from_millis(20);
/// How many reviews in a row (200 ms apart) must see a queue before it counts as standing:
/// under ± 50 ms of jitter the shortest delay of half a second now and then stood tens of
/// milliseconds above the floor for one review.
const STREAK: u32 = 3;
/// How long the worst loss a subscriber's streams report stands for its downlink's (they
/// report every second or so).
const LOSS_LATELY: Duration = Duration::from_millis(1_500);
/// The loss (fraction) from which a standing queue counts as overflowing: 1 %.
const OVERFLOWS: f32 = 0.01;
/// How fast the ceiling rises while no queue stands, bit/s a second: additive, as TCP's
/// congestion avoidance, so that a thin link is tried again no sooner than a thick one.
const RISE: u64 = 20_000;
/// How long a downlink counts as congested after a standing queue was last seen. (Its loss still reaches the publishers: their Opus in-band
/// FEC, within the same bitrate, is then all that protects its audio; without it, the
/// speaker on a 150 kbit/s link lost 6-23 % of her sound instead of 1-3 %.)
pub const CONGESTED_FOR: Duration = Duration::from_secs(10);

/// One subscriber's downlink, as congestion goes.
#[derive(Debug, Default, Clone)]
pub struct Congestion {
    /// What the link carried when a queue last stood (bit/s; 0: no ceiling), and since when
    /// the ceiling rises.
    carried: u64,
    rises_from: Option<Instant>,
    /// Whether a queue stood at the last review, and when one last did; how many reviews
    /// in a row saw one.
    standing: bool,
    streak: u32,
    seen_at: Option<Instant>,
    /// The worst loss (a fraction) the subscriber's receiver reports showed lately, and when.
    lost: Option<(f32, Instant)>,
}

impl Congestion {
    /// A receiver report from the subscriber, on any of its streams (they share one
    /// downlink): `loss`, the fraction it lost.
    pub fn reported(&mut self, now: Instant, loss: f32) {
        if self.lost.is_none_or(|(l, t)| loss >= l || now.saturating_duration_since(t) >= LOSS_LATELY) {
            self.lost = Some((loss, now));
        }
    }

    /// One review: the standing queue BWE measures (`None` before it has enough feedback)
    /// and what the subscriber acknowledged receiving lately (bit/s). Whether a queue of
    /// ours stands: one that overflows, its receiver reports losing [`OVERFLOWS`] or more
    /// lately; a longer path with nothing lost is no congestion.
    pub fn review(&mut self, now: Instant, queue: Option<Duration>, acked: Option<u64>) -> bool {
        let loss = self.lost.filter(|(_, t)| now.saturating_duration_since(*t) < LOSS_LATELY).map_or(0.0, |(l, _)| l);
        let (Some(_), Some(acked)) = (queue.filter(|q| *q >= STANDING_QUEUE && loss >= OVERFLOWS), acked) else {
            self.standing = false;
            self.streak = 0;
            return false;
        };
        // Seen in one review only, a jittery path's minimum that wandered.
        self.streak += 1;
        if self.streak < STREAK && !self.standing {
            return false;
        }
        // Each review the queue still stands, 15 % lower, or what the link acknowledged if
        // that is more: the acknowledged rate lags (at first it still tells of a link that
        // carried more), and a queue that stands after a cut needs a deeper one.
        self.carried = match self.ceiling(now) {
            None => acked,
            Some(ceiling) => acked.max(ceiling * 85 / 100),
        };
        self.rises_from = Some(now);
        self.standing = true;
        self.seen_at = Some(now);
        true
    }

    /// Whether a queue stood at the last review.
    pub fn standing(&self) -> bool {
        self.standing
    }

    /// Whether a queue stood in the last [`CONGESTED_FOR`].
    pub fn congested(&self, now: Instant) -> bool {
        self.seen_at.is_some_and(|t| now.saturating_duration_since(t) < CONGESTED_FOR)
    }

    /// The most the downlink is given now, if anything holds it: what it carried under the
    /// last standing queue, risen since by [`RISE`] a second (a link overloaded at 400
    /// kbit/s, ~280 kbit/s of payload, tries again ~6 s later; one that a path's step made
    /// look congested gets 200 kbit/s back in 10 s).
    pub fn ceiling(&self, now: Instant) -> Option<u64> {
        let from = self.rises_from.filter(|_| self.carried > 0)?;
        if self.standing {
            return Some(self.carried);
        }
        let millis = now.saturating_duration_since(from).as_millis() as u64;
        Some(self.carried + RISE * millis / 1_000)
    }

    /// Forgets the ceiling once it no longer binds (above what BWE allows, both parts: its
    /// loss-based part is lifted by probes, its delay-based part stays above an overload
    /// and falls under jitter), with no queue for [`CONGESTED_FOR`].
    /// Whether it did.
    pub fn release(&mut self, now: Instant, allowed: u64) -> bool {
        if self.ceiling(now).is_some_and(|c| c >= allowed) && !self.congested(now) {
            self.carried = 0;
            self.rises_from = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(start: Instant, millis: u64) -> Instant {
        start + MS * millis as u32
    }

    /// A receiver report losing `loss` comes in, then a review.
    fn review(c: &mut Congestion, now: Instant, queue: Option<Duration>, acked: Option<u64>, loss: f32) -> bool {
        c.reported(now, loss);
        c.review(now, queue, acked)
    }

    /// A queue seen by [`STREAK`] reviews 200 ms apart, the last at the returned instant.
    fn stands(c: &mut Congestion, queue: Duration, acked: u64) -> Instant {
        let start = Instant::now();
        for i in 0..STREAK as u64 {
            let standing = review(c, at(start, 200 * i), Some(queue), Some(acked), 0.1);
            assert_eq!(standing, i + 1 == STREAK as u64, "review {i}");
        }
        at(start, 200 * (STREAK as u64 - 1))
    }

    #[test]
    fn a_queue_that_stands_but_loses_nothing_is_a_longer_path() {
        let start = Instant::now();
        let mut c = Congestion::default();
        for i in 0..5 {
            assert!(!review(&mut c, at(start, 200 * i), Some(MS * 100), Some(300_000), 0.005));
        }
        assert_eq!(c.ceiling(at(start, 1_000)), None);
        // Loss reported long enough ago is no longer the link's.
        c.reported(at(start, 1_000), 0.1);
        for i in 0..3 {
            assert!(!c.review(at(start, 2_600 + 200 * i), Some(MS * 100), Some(300_000)), "a report 1.6 s old or more");
        }
        assert!(!review(&mut c, at(start, 3_200), Some(MS * 100), Some(300_000), 0.02));
        assert!(!review(&mut c, at(start, 3_400), Some(MS * 100), Some(300_000), 0.0), "the worst of the last 1.5 s stands");
        assert!(review(&mut c, at(start, 3_600), Some(MS * 100), Some(300_000), 0.0), "a fresh one, on the third review in a row");
    }

    #[test]
    fn random_loss_and_jitter_leave_no_standing_queue_and_no_ceiling() {
        let start = Instant::now();
        let mut c = Congestion::default();
        // One review's wandering minimum, then none: no queue.
        for (i, queue) in [None, Some(MS * 3), Some(MS * 50), Some(MS * 12), Some(MS * 40), Some(Duration::ZERO)].into_iter().enumerate() {
            assert!(!review(&mut c, at(start, 200 * i as u64), queue, Some(300_000), 0.2));
        }
        assert_eq!(c.ceiling(at(start, 1_200)), None);
        assert!(!c.congested(at(start, 1_200)));
    }

    #[test]
    fn a_queue_that_stands_sets_a_ceiling_of_what_the_link_carried_which_rises_once_it_drains() {
        let mut c = Congestion::default();
        let start = stands(&mut c, MS * 80, 280_000);
        assert!(c.standing() && c.congested(start));
        assert_eq!(c.ceiling(start), Some(280_000));
        // We cut what we send; the queue drains.
        assert!(!review(&mut c, at(start, 400), Some(MS * 2), Some(260_000), 0.1));
        assert!(!c.standing());
        assert!(c.congested(at(start, 400)), "no copies, no RED for a while yet");
        assert_eq!(c.ceiling(at(start, 5_000)), Some(280_000 + 5 * 20_000), "20 kbit/s a second since the queue last stood");
        assert_eq!(c.ceiling(at(start, 10_000)), Some(480_000));
        assert!(!c.congested(at(start, 10_000)));
        assert!(!c.release(at(start, 5_000), 100_000), "too soon after the queue stood");
        assert!(!c.release(at(start, 10_400), 500_000), "BWE allows more: it still binds");
        assert!(c.release(at(start, 10_400), 480_000), "it no longer binds: forgotten");
        assert_eq!(c.ceiling(at(start, 10_400)), None);
    }

    #[test]
    fn a_queue_that_keeps_standing_lowers_the_ceiling_each_review_by_at_most_fifteen_percent() {
        let mut c = Congestion::default();
        let start = stands(&mut c, MS * 80, 1_000_000);
        assert_eq!(c.ceiling(start), Some(1_000_000), "the acknowledged rate lags: a link that carried more");
        review(&mut c, at(start, 200), Some(MS * 80), Some(300_000), 0.1);
        assert_eq!(c.ceiling(at(start, 200)), Some(850_000));
        for i in 2..8 {
            review(&mut c, at(start, 200 * i), Some(MS * 80), Some(300_000), 0.1);
        }
        assert_eq!(c.ceiling(at(start, 1_400)), Some(320_576), "in a second and a half, near what it carries");
        review(&mut c, at(start, 1_600), Some(MS * 80), Some(300_000), 0.1);
        assert_eq!(c.ceiling(at(start, 1_600)), Some(300_000), "and no lower");
    }

    #[test]
    fn a_path_that_grew_longer_with_loss_beside_costs_some_seconds_under_a_ceiling() {
        let mut c = Congestion::default();
        // The one-way delay steps up by 100 ms on a lossy link: it stands against the last
        // three seconds' minimum until that minimum has moved too; meanwhile video pauses and
        // the link acknowledges the audio alone.
        let start = stands(&mut c, MS * 100, 250_000);
        for i in 1..12 {
            review(&mut c, at(start, 200 * i), Some(MS * 100), Some(60_000), 0.1);
        }
        assert_eq!(c.ceiling(at(start, 2_200)), Some(60_000));
        assert!(!review(&mut c, at(start, 2_400), Some(MS), Some(60_000), 0.1));
        assert_eq!(c.ceiling(at(start, 12_200)), Some(260_000), "200 kbit/s more in 10 s");
        assert!(c.release(at(start, 12_400), 100_000), "above what BWE allows: forgotten, and what it paused resumes");
    }
}

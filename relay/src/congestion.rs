//! A subscriber's downlink that we overload, told apart from one that merely loses at random
//! or is far away. Sans-IO: each review passes in what BWE measures.
//!
//! Random loss lowers BWE's loss-based estimate and leaves the queue empty; so do jitter and
//! distance. A link we send more than it carries fills its queue, drops what overflows, and
//! its delay-based estimate (which reads the growth of the queue, not its height) stays where
//! it was. The sign is a queue that stands: the shortest one-way delay of the last half
//! second above the shortest of the last few (str0m patch 7, `Bwe::standing_queue`). Then:
//!
//! - what the link acknowledged while the queue stood is its *ceiling*: what we send it is
//!   held under that, rising by [`GROWTH`] a second (a standing queue again lowers it),
//!   until BWE's own estimate, which probes keep lifting, reaches it;
//! - while the queue stands, video pauses at once (not after a dip has lasted), and for
//!   [`CONGESTED_FOR`] the subscriber gets no audio copies and RED's primary alone.
//!
//! A path whose delay grows at a stroke (a new route) looks the same for a moment. What tells
//! it apart: once we cut what we send by half, a queue of ours shrinks and that one does not.
//! An episode judged so ([`Verdict::NotOurs`]) is undone: the router resumes what it paused
//! since, has BWE measure the queue afresh from the new delay, and for [`TRUST_FOR`] the
//! link is trusted with what we sent it when the episode began (BWE's estimates fell while
//! little went out, and would otherwise keep the video paused).

use std::time::{Duration, Instant};

/// A queue this long that does not drain for half a second is a standing one. Random jitter
/// of ± 50 ms leaves a few milliseconds; a 400 kbit/s link with 100 ms of buffer overloaded
/// by a third, tens.
pub const STANDING_QUEUE: Duration = Duration::from_millis(20);
/// How long a downlink counts as congested after a standing queue was last seen: no audio
/// copies, RED's primary alone.
pub const CONGESTED_FOR: Duration = Duration::from_secs(10);
/// How fast the ceiling rises while no queue stands, in hundredths a second: 5 % (a link
/// overloaded at 400 kbit/s tries again ~7 s later).
const GROWTH: u64 = 5;
/// How long an episode lasts before it can be judged not ours.
const VERIFY: Duration = Duration::from_millis(1_500);
/// How long, after an episode that was not ours, the link is trusted with what we sent it
/// before.
pub const TRUST_FOR: Duration = Duration::from_secs(10);

/// What one review found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No queue stands.
    Clear,
    /// A queue stands and it is ours: the ceiling is set from what the link carried.
    Congested,
    /// The queue that stood since then is the path's own (it did not drain when we sent
    /// half as much): undo what was done for it, measure it afresh.
    NotOurs { since: Instant },
}

#[derive(Debug, Clone, Copy)]
struct Episode {
    since: Instant,
    queue: Duration,
    sending: u64,
}

/// One subscriber's downlink, as congestion goes.
#[derive(Debug, Default, Clone)]
pub struct Congestion {
    /// What the link carried when a queue last stood (bit/s; 0: no ceiling), and since when
    /// the ceiling rises.
    carried: u64,
    rises_from: Option<Instant>,
    episode: Option<Episode>,
    seen_at: Option<Instant>,
    /// After an episode that was not ours: what we sent before it (bit/s, on the wire), and
    /// when it was judged.
    trusted: Option<(u64, Instant)>,
}

impl Congestion {
    /// One review: the standing queue BWE measures (`None` before it has enough feedback),
    /// what the subscriber acknowledged receiving lately and what we sent it since the last
    /// review (bit/s).
    pub fn review(&mut self, now: Instant, queue: Option<Duration>, acked: Option<u64>, sending: u64) -> Verdict {
        let (Some(queue), Some(acked)) = (queue.filter(|q| *q >= STANDING_QUEUE), acked) else {
            self.episode = None;
            return Verdict::Clear;
        };
        let episode = *self.episode.get_or_insert(Episode { since: now, queue, sending });
        if now.saturating_duration_since(episode.since) >= VERIFY && sending < episode.sending / 2 && queue >= episode.queue * 9 / 10 {
            self.episode = None;
            self.seen_at = None;
            self.carried = 0;
            self.rises_from = None;
            self.trusted = Some((episode.sending, now));
            return Verdict::NotOurs { since: episode.since };
        }
        self.carried = match self.ceiling(now) {
            Some(ceiling) => acked.max(ceiling * 85 / 100),
            None => acked,
        };
        self.rises_from = Some(now);
        self.seen_at = Some(now);
        Verdict::Congested
    }

    /// Whether a queue stands now (the last review saw one that is ours).
    pub fn standing(&self) -> bool {
        self.episode.is_some() && self.seen_at.is_some()
    }

    /// Whether a queue of ours stood in the last [`CONGESTED_FOR`].
    pub fn congested(&self, now: Instant) -> bool {
        self.seen_at.is_some_and(|t| now.saturating_duration_since(t) < CONGESTED_FOR)
    }

    /// The most the downlink is given now, if anything holds it: what it carried under the
    /// last standing queue, risen since.
    pub fn ceiling(&self, now: Instant) -> Option<u64> {
        let from = self.rises_from.filter(|_| self.carried > 0)?;
        let millis = now.saturating_duration_since(from).as_millis() as u64;
        Some(self.carried + self.carried * GROWTH * millis / 100_000)
    }

    /// What the link is trusted with whatever BWE says, for a while after an episode that
    /// was not ours: what we sent it before, less a sixth (the wire's headers, which BWE
    /// does not count).
    pub fn floor(&self, now: Instant) -> Option<u64> {
        let (sending, at) = self.trusted?;
        (now.saturating_duration_since(at) < TRUST_FOR).then_some(sending * 5 / 6)
    }

    /// Forgets the ceiling once BWE's own estimate (probes find room above it) has risen to
    /// it, with no queue of ours for [`CONGESTED_FOR`].
    pub fn release(&mut self, now: Instant, estimate: u64) {
        if self.ceiling(now).is_some_and(|c| estimate >= c) && !self.congested(now) {
            self.carried = 0;
            self.rises_from = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(start: Instant, millis: u64) -> Instant {
        start + MS * millis as u32
    }

    #[test]
    fn random_loss_and_jitter_leave_no_standing_queue_and_no_ceiling() {
        let start = Instant::now();
        let mut c = Congestion::default();
        for (i, queue) in [None, Some(MS * 3), Some(MS * 12), Some(Duration::ZERO)].into_iter().enumerate() {
            assert_eq!(c.review(at(start, 200 * i as u64), queue, Some(300_000), 400_000), Verdict::Clear);
        }
        assert_eq!(c.ceiling(at(start, 1_000)), None);
        assert!(!c.congested(at(start, 1_000)));
    }

    #[test]
    fn a_queue_that_stands_sets_a_ceiling_of_what_the_link_carried_which_rises_once_it_drains() {
        let start = Instant::now();
        let mut c = Congestion::default();
        assert_eq!(c.review(start, Some(MS * 80), Some(280_000), 700_000), Verdict::Congested);
        assert!(c.standing() && c.congested(start));
        assert_eq!(c.ceiling(start), Some(280_000));
        // We cut what we send; the queue drains.
        assert_eq!(c.review(at(start, 400), Some(MS * 2), Some(260_000), 250_000), Verdict::Clear);
        assert!(!c.standing());
        assert!(c.congested(at(start, 400)), "no copies, no RED for a while yet");
        assert_eq!(c.ceiling(at(start, 10_000)), Some(280_000 + 140_000), "5 % a second since the queue last stood");
        assert!(!c.congested(at(start, 10_400)));
        c.release(at(start, 5_000), 500_000);
        assert!(c.ceiling(at(start, 5_000)).is_some(), "too soon after the queue stood");
        c.release(at(start, 10_400), 400_000);
        assert!(c.ceiling(at(start, 10_400)).is_some(), "BWE allows less");
        c.release(at(start, 10_400), 430_000);
        assert_eq!(c.ceiling(at(start, 10_400)), None, "BWE found as much room: forgotten");
    }

    #[test]
    fn a_queue_standing_again_lowers_the_ceiling_by_at_most_fifteen_percent_a_review() {
        let start = Instant::now();
        let mut c = Congestion::default();
        c.review(start, Some(MS * 80), Some(400_000), 700_000);
        c.review(at(start, 200), Some(MS * 80), Some(100_000), 600_000);
        assert_eq!(c.ceiling(at(start, 200)), Some(404_000 * 85 / 100), "one low reading of the acknowledged rate (of a ceiling risen 1 % in 200 ms)");
        c.review(at(start, 400), Some(MS * 80), Some(330_000), 500_000);
        assert_eq!(c.ceiling(at(start, 400)), Some(330_000));
    }

    #[test]
    fn a_path_that_grew_longer_is_not_ours_once_sending_half_as_much_does_not_drain_it() {
        let start = Instant::now();
        let mut c = Congestion::default();
        assert_eq!(c.review(start, Some(MS * 100), Some(150_000), 200_000), Verdict::Congested);
        // Video paused: we send a quarter; the queue stays.
        assert_eq!(c.review(at(start, 1_000), Some(MS * 100), Some(50_000), 50_000), Verdict::Congested, "too early to judge");
        assert_eq!(c.review(at(start, 1_600), Some(MS * 98), Some(50_000), 50_000), Verdict::NotOurs { since: start });
        assert!(!c.standing() && !c.congested(at(start, 1_600)));
        assert_eq!(c.ceiling(at(start, 1_600)), None);
        assert_eq!(c.floor(at(start, 1_600)), Some(200_000 * 5 / 6), "what went before is trusted");
        assert_eq!(c.floor(at(start, 11_600)), None, "for a while");
    }

    #[test]
    fn a_queue_that_drains_as_we_send_less_is_ours_however_long_it_takes() {
        let start = Instant::now();
        let mut c = Congestion::default();
        c.review(start, Some(MS * 140), Some(100_000), 250_000);
        assert_eq!(c.review(at(start, 2_000), Some(MS * 90), Some(60_000), 100_000), Verdict::Congested, "it drains");
        assert_eq!(c.review(at(start, 3_000), Some(MS * 130), Some(60_000), 200_000), Verdict::Congested, "we did not send half as much");
    }
}

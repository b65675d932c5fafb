//! Audio sent again for a subscriber whose downlink loses and who gets plain Opus (Firefox
//! takes no RED; Chromium gets plain Opus from a publisher that sends no RED): beside each
//! audio packet the relay sends the one before it again (and the one before that when a
//! copy is not enough), with the same sequence number. Where the first copy arrived, the
//! receiver's SRTP replay check drops the second; where it was lost, the second fills the
//! gap 20 ms late, inside the jitter buffer. Redundancy without RED, paid in bytes only for
//! the subscribers who lose (docs/decisions.md, "Audio sent twice"). Sans-IO.
//!
//! What decides it is the `fraction lost` in the subscriber's receiver reports, on any of
//! its streams (they share one downlink; video reports come every second, audio's every
//! five). A report of audio that is already repeated counts what the copies did not repair,
//! so it alone may ask for a second copy.

use std::time::{Duration, Instant};

/// At most this many earlier packets go again beside each one.
pub const MAX_COPIES: usize = 2;
/// A report's `fraction lost` (256ths) from which one copy goes (about 1.2 %: more than one
/// packet in a report of ~50).
const FIRST_COPY_FROM: u8 = 3;
/// Repeated audio still losing this much (about 3 %, a link losing ~17 %) gets a second copy.
const SECOND_COPY_FROM: u8 = 8;
/// Copies stop one at a time once no report has shown loss for this long: a link repaired
/// by its copies reports little, and rarely nothing at all for long while it still loses.
pub const REPEAT_FOR: Duration = Duration::from_secs(30);

/// How many copies one subscriber's plain audio gets, from its receiver reports.
#[derive(Debug, Default, Clone)]
pub struct Repeat {
    copies: usize,
    /// When a report last called for the copies there are.
    since: Option<Instant>,
}

impl Repeat {
    /// How many earlier packets to send again beside each audio packet.
    pub fn copies(&self) -> usize {
        self.copies
    }

    /// A receiver report from the subscriber: `fraction` lost (256ths) on one of its
    /// streams, `repeated` if that stream is audio the copies already protect.
    pub fn report(&mut self, now: Instant, fraction: u8, repeated: bool) {
        let step_up = match self.copies {
            0 => fraction >= FIRST_COPY_FROM,
            1 => repeated && fraction >= SECOND_COPY_FROM,
            _ => false,
        };
        if step_up {
            self.copies += 1;
            self.since = Some(now);
        } else if self.copies > 0 && fraction > 0 {
            self.since = Some(now);
        } else if self.copies > 0 && self.since.is_none_or(|since| now.saturating_duration_since(since) >= REPEAT_FOR) {
            self.copies -= 1;
            self.since = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    #[test]
    fn a_clean_link_and_a_single_lost_packet_get_no_copy() {
        let start = Instant::now();
        let mut repeat = Repeat::default();
        repeat.report(start, 0, false);
        assert_eq!(repeat.copies(), 0);
        repeat.report(at(start, 1), 2, false);
        assert_eq!(repeat.copies(), 0, "under 1 % is a packet now and then");
    }

    #[test]
    fn loss_on_any_stream_brings_one_copy_and_what_the_copy_does_not_repair_a_second() {
        let start = Instant::now();
        let mut repeat = Repeat::default();
        repeat.report(start, 13, false);
        assert_eq!(repeat.copies(), 1, "5 % on a video stream");
        repeat.report(at(start, 1), 40, false);
        assert_eq!(repeat.copies(), 1, "video reports loss before repair: it cannot ask for more");
        repeat.report(at(start, 2), 5, true);
        assert_eq!(repeat.copies(), 1, "2 % of repeated audio still lost: one copy is enough");
        repeat.report(at(start, 3), 10, true);
        assert_eq!(repeat.copies(), 2, "4 % still lost through one copy");
        repeat.report(at(start, 4), 60, true);
        assert_eq!(repeat.copies(), MAX_COPIES);
    }

    #[test]
    fn copies_stop_one_at_a_time_once_no_report_has_shown_loss_for_a_while() {
        let start = Instant::now();
        let mut repeat = Repeat::default();
        repeat.report(start, 20, false);
        repeat.report(start, 20, true);
        assert_eq!(repeat.copies(), 2);
        repeat.report(at(start, 20), 1, true);
        repeat.report(at(start, 45), 0, true);
        assert_eq!(repeat.copies(), 2, "a packet lost 25 s ago keeps them");
        repeat.report(at(start, 50), 0, false);
        assert_eq!(repeat.copies(), 1, "30 s without loss: one copy less");
        repeat.report(at(start, 60), 0, false);
        assert_eq!(repeat.copies(), 1, "the next step waits as long again");
        repeat.report(at(start, 80), 0, false);
        assert_eq!(repeat.copies(), 0);
    }
}

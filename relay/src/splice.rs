//! One receive slot's outgoing stream, spliced from whatever feeds it. Sans-IO.
//!
//! A slot is one plain RTP stream to the subscriber, but what feeds it changes: the relay
//! forwards one simulcast layer of one publisher at a time, moves to another layer when the
//! subscriber's tile or bandwidth calls for it, and to another publisher when last-N moves.
//! Each incoming packet is forwarded as it is (the payload is shared, never copied here);
//! only its numbering is rewritten so the subscriber sees one continuous stream:
//!
//! - sequence numbers continue by one across every switch, so a switch is never a loss;
//! - RTP timestamps continue by the wall-clock time between the last packet written and the
//!   first of the new feed;
//! - VP8 PictureID and TL0PICIDX continue by one, so the decoder never sees a picture from
//!   "the past".
//!
//! A switch happens only where a decoder can start: on the first packet of a keyframe of
//! the new feed (any audio packet). Until then the old feed keeps flowing, so a slot that
//! changes hands never goes dark while it waits. When the relay must drop a stale backlog
//! (`resync`), the slot stops at once and restarts on the next keyframe, numbered as if
//! nothing had been dropped.

use std::time::{Duration, Instant};

use str0m::media::{Mid, Rid};

use crate::vp8::{PictureId, Vp8Info};

/// Where a packet comes from: the publisher, its m-line, and the simulcast layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Feed {
    pub publisher: u64,
    pub mid: Mid,
    pub layer: Option<Rid>,
}

/// What the splicer needs to know about one incoming packet.
#[derive(Debug, Clone, Copy)]
pub struct Incoming {
    pub feed: Feed,
    /// Extended sequence number (no wrap-around) in the feed's own numbering.
    pub seq: u64,
    pub timestamp: u32,
    /// A decoder can start here: the first packet of a keyframe, or any audio packet.
    pub start: bool,
    /// When the packet reached the relay.
    pub arrival: Instant,
    pub vp8: Option<Vp8Info>,
}

/// The numbering a forwarded packet goes out with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub seq: u64,
    pub timestamp: u32,
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
    /// The first packet after a switch (or a restart).
    pub switched: bool,
}

/// What to do with one incoming packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward(Rewritten),
    /// Not for this slot (another layer, another publisher, or from before a switch).
    Drop,
    /// Dropped: the slot waits for a keyframe of this feed before it can (re)start.
    NeedKeyframe(Feed),
}

#[derive(Debug, Clone, Copy)]
struct Current {
    feed: Feed,
    seq_offset: u64,
    ts_offset: u32,
    pid_offset: u16,
    tl0_offset: u8,
    /// Packets of the feed numbered below this came before the switch.
    from_seq: u64,
}

/// The newest packet written.
#[derive(Debug, Clone, Copy)]
struct Last {
    seq: u64,
    timestamp: u32,
    at: Instant,
    picture_id: Option<PictureId>,
    tl0_pic_idx: Option<u8>,
}

#[derive(Debug, Clone)]
pub struct Splicer {
    clock_rate: u32,
    current: Option<Current>,
    target: Option<Feed>,
    /// Dropping until the current feed's next keyframe (after `resync`).
    resyncing: bool,
    last: Option<Last>,
}

impl Splicer {
    pub fn new(clock_rate: u32) -> Splicer {
        Splicer { clock_rate, current: None, target: None, resyncing: false, last: None }
    }

    /// Asks for `feed` from now on; the slot changes to it on its next keyframe and keeps
    /// forwarding what it forwards now until then.
    pub fn target(&mut self, feed: Feed) {
        self.target = Some(feed);
    }

    pub fn targeted(&self) -> Option<Feed> {
        self.target
    }

    /// The feed forwarded now.
    pub fn current(&self) -> Option<Feed> {
        self.current.map(|c| c.feed)
    }

    /// Whether the slot is waiting for a keyframe (of its target, or to restart).
    pub fn waiting(&self) -> Option<Feed> {
        if self.resyncing {
            return self.target.or(self.current());
        }
        self.target.filter(|t| Some(*t) != self.current())
    }

    /// Stops forwarding anything (the slot lost its source).
    pub fn clear(&mut self) {
        self.current = None;
        self.target = None;
        self.resyncing = false;
    }

    /// Drops everything until the next keyframe, then continues the numbering as if nothing
    /// had been dropped (a backlog was too old to be worth delivering).
    pub fn resync(&mut self) {
        if self.current.is_some() {
            self.resyncing = true;
        }
    }

    /// `out`, just forwarded by [`Splicer::packet`], is not sent after all (silence kept
    /// back): the next packet takes its number, so the subscriber sees no loss. Only the
    /// newest packet can be withdrawn; false for any other.
    pub fn withdraw(&mut self, out: &Rewritten) -> bool {
        let (Some(current), Some(last)) = (self.current.as_mut(), self.last.as_mut()) else { return false };
        if last.seq != out.seq {
            return false;
        }
        current.seq_offset = current.seq_offset.wrapping_sub(1);
        last.seq = last.seq.wrapping_sub(1);
        true
    }

    pub fn packet(&mut self, p: &Incoming) -> Verdict {
        let is_current = self.current.is_some_and(|c| c.feed == p.feed);
        let is_target = self.target == Some(p.feed);
        let restart = match is_current {
            // The feed the slot is to change to.
            false => is_target,
            // The current feed, restarting after a resync.
            true => self.resyncing,
        };
        if restart {
            if !p.start {
                return Verdict::NeedKeyframe(p.feed);
            }
            self.splice(p);
        } else if !is_current || self.resyncing {
            return Verdict::Drop;
        }
        let current = self.current.expect("set above or by an earlier splice");
        if p.seq < current.from_seq {
            return Verdict::Drop;
        }
        let seq = p.seq.wrapping_add(current.seq_offset);
        let timestamp = p.timestamp.wrapping_add(current.ts_offset);
        let picture_id =
            p.vp8.and_then(|v| v.picture_id).map(|pid| PictureId { value: pid.value.wrapping_add(current.pid_offset) % pid.modulus(), wide: pid.wide });
        let tl0_pic_idx = p.vp8.and_then(|v| v.tl0_pic_idx).map(|t| t.wrapping_add(current.tl0_offset));
        if self.last.is_none_or(|l| seq > l.seq) {
            self.last = Some(Last {
                seq,
                timestamp,
                at: p.arrival,
                picture_id: picture_id.or(self.last.and_then(|l| l.picture_id)),
                tl0_pic_idx: tl0_pic_idx.or(self.last.and_then(|l| l.tl0_pic_idx)),
            });
        }
        Verdict::Forward(Rewritten { seq, timestamp, picture_id: picture_id.map(|p| p.value), tl0_pic_idx, switched: restart })
    }

    /// Makes `p` (a starting point) the first packet of the current feed, numbered right
    /// after the last packet written.
    fn splice(&mut self, p: &Incoming) {
        let (seq_offset, ts_offset, pid_offset, tl0_offset) = match self.last {
            None => (0, 0, 0, 0),
            Some(last) => {
                let elapsed = ticks(p.arrival.saturating_duration_since(last.at), self.clock_rate).max(1);
                let pid = p.vp8.and_then(|v| v.picture_id);
                let pid_offset = match (pid, last.picture_id) {
                    (Some(pid), Some(before)) => (before.value.wrapping_add(1) % pid.modulus()).wrapping_sub(pid.value) % pid.modulus(),
                    _ => 0,
                };
                let tl0_offset = match (p.vp8.and_then(|v| v.tl0_pic_idx), last.tl0_pic_idx) {
                    (Some(tl0), Some(before)) => before.wrapping_add(1).wrapping_sub(tl0),
                    _ => 0,
                };
                (last.seq.wrapping_add(1).wrapping_sub(p.seq), last.timestamp.wrapping_add(elapsed).wrapping_sub(p.timestamp), pid_offset, tl0_offset)
            }
        };
        self.current = Some(Current { feed: p.feed, seq_offset, ts_offset, pid_offset, tl0_offset, from_seq: p.seq });
        self.resyncing = false;
        if self.target.is_none() {
            self.target = Some(p.feed);
        }
    }
}

fn ticks(d: Duration, clock_rate: u32) -> u32 {
    (d.as_micros() as u64 * u64::from(clock_rate) / 1_000_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(publisher: u64, layer: &str) -> Feed {
        Feed { publisher, mid: Mid::from("1"), layer: Some(Rid::from(layer)) }
    }

    /// A packet of `f`, numbered `seq` and `timestamp` in its own feed, arriving `ms` in.
    fn packet(f: Feed, seq: u64, timestamp: u32, start: bool, t0: Instant, ms: u64, pid: u16) -> Incoming {
        let vp8 =
            Vp8Info { frame_start: start, keyframe: start, size: None, picture_id: Some(PictureId { value: pid, wide: true }), tl0_pic_idx: Some(pid as u8) };
        Incoming { feed: f, seq, timestamp, start, arrival: t0 + Duration::from_millis(ms), vp8: Some(vp8) }
    }

    fn forwarded(v: Verdict) -> Rewritten {
        match v {
            Verdict::Forward(r) => r,
            other => panic!("expected a forwarded packet, got {other:?}"),
        }
    }

    #[test]
    fn a_withdrawn_packet_leaves_no_gap_in_the_numbering_but_keeps_the_time() {
        let t0 = Instant::now();
        let l = feed(7, "l");
        let mut s = Splicer::new(48_000);
        s.target(l);
        forwarded(s.packet(&packet(l, 10, 960, true, t0, 0, 1)));
        let kept_back = forwarded(s.packet(&packet(l, 11, 1_920, false, t0, 20, 1)));
        assert!(s.withdraw(&kept_back));
        let also = forwarded(s.packet(&packet(l, 12, 2_880, false, t0, 40, 1)));
        assert!(s.withdraw(&also));
        let next = forwarded(s.packet(&packet(l, 13, 3_840, false, t0, 60, 1)));
        assert_eq!((next.seq, next.timestamp), (11, 3_840), "numbered on from 10, at its own time");
        let late = forwarded(s.packet(&packet(l, 12, 2_880, false, t0, 61, 1)));
        assert!(!s.withdraw(&late), "only the newest can be withdrawn");
    }

    #[test]
    fn nothing_goes_out_before_the_first_keyframe_and_then_numbering_is_the_feeds() {
        let t0 = Instant::now();
        let (l, h) = (feed(7, "l"), feed(7, "h"));
        let mut s = Splicer::new(90_000);
        s.target(l);
        assert_eq!(s.packet(&packet(l, 100, 1_000, false, t0, 0, 40)), Verdict::NeedKeyframe(l));
        assert_eq!(s.packet(&packet(h, 900, 5_000, true, t0, 0, 9)), Verdict::Drop, "not the target");
        let first = forwarded(s.packet(&packet(l, 101, 4_000, true, t0, 33, 41)));
        assert_eq!((first.seq, first.timestamp, first.picture_id, first.switched), (101, 4_000, Some(41), true));
        let next = forwarded(s.packet(&packet(l, 102, 4_000, false, t0, 34, 41)));
        assert_eq!((next.seq, next.switched), (102, false));
    }

    #[test]
    fn a_layer_switch_waits_for_a_keyframe_and_keeps_every_number_continuous() {
        let t0 = Instant::now();
        let (l, h) = (feed(7, "l"), feed(7, "h"));
        let mut s = Splicer::new(90_000);
        s.target(l);
        forwarded(s.packet(&packet(l, 10, 3_000, true, t0, 0, 500)));
        forwarded(s.packet(&packet(l, 11, 6_000, false, t0, 33, 501)));
        // Up to "h": the low layer keeps flowing until "h" has a keyframe.
        s.target(h);
        assert_eq!(s.waiting(), Some(h));
        assert_eq!(s.packet(&packet(h, 70_000, 800_000, false, t0, 40, 9_000)), Verdict::NeedKeyframe(h));
        assert_eq!(forwarded(s.packet(&packet(l, 12, 9_000, false, t0, 66, 502))).seq, 12);
        // The keyframe 33 ms later: the next sequence number, 33 ms of 90 kHz later, the next
        // PictureID and TL0PICIDX, whatever "h"'s own numbering was.
        let key = forwarded(s.packet(&packet(h, 70_001, 803_000, true, t0, 99, 9_001)));
        assert_eq!((key.seq, key.timestamp, key.picture_id, key.tl0_pic_idx, key.switched), (13, 9_000 + 2_970, Some(503), Some(247), true));
        let after = forwarded(s.packet(&packet(h, 70_002, 806_000, false, t0, 132, 9_002)));
        assert_eq!((after.seq, after.timestamp, after.picture_id), (14, 11_970 + 3_000, Some(504)));
        // The old layer is no longer forwarded, nor is anything "h" sent before the switch.
        assert_eq!(s.packet(&packet(l, 13, 12_000, false, t0, 132, 503)), Verdict::Drop);
        assert_eq!(s.packet(&packet(h, 70_000, 800_000, false, t0, 133, 9_000)), Verdict::Drop);
        assert_eq!((s.current(), s.waiting()), (Some(h), None));
    }

    #[test]
    fn a_slot_changing_publisher_keeps_showing_the_old_one_until_the_new_keyframe() {
        let t0 = Instant::now();
        let (old, new) = (feed(1, "l"), feed(2, "l"));
        let mut s = Splicer::new(90_000);
        s.target(old);
        forwarded(s.packet(&packet(old, 5, 100, true, t0, 0, 1)));
        s.target(new);
        for i in 0..30 {
            assert_eq!(s.packet(&packet(new, 60_000 + i, 0, false, t0, 10 + i, 7)), Verdict::NeedKeyframe(new));
            assert_eq!(forwarded(s.packet(&packet(old, 6 + i, 100, false, t0, 10 + i, 1))).seq, 6 + i, "the old source stays on screen");
        }
        assert_eq!(forwarded(s.packet(&packet(new, 60_030, 0, true, t0, 50, 7))).seq, 36);
    }

    #[test]
    fn sequence_numbers_stay_contiguous_across_wraps_and_backwards_bases() {
        let t0 = Instant::now();
        let (a, b) = (feed(1, "l"), feed(2, "l"));
        let mut s = Splicer::new(90_000);
        s.target(a);
        forwarded(s.packet(&packet(a, 65_535, u32::MAX - 10, true, t0, 0, 0x7fff)));
        let wrapped = forwarded(s.packet(&packet(a, 65_536, 5, false, t0, 1, 0)));
        assert_eq!((wrapped.seq, wrapped.timestamp, wrapped.picture_id), (65_536, 5, Some(0)));
        // A feed whose numbers are far below: the slot's numbers still go on by one.
        s.target(b);
        let spliced = forwarded(s.packet(&packet(b, 3, 1, true, t0, 20, 3)));
        assert_eq!((spliced.seq, spliced.picture_id), (65_537, Some(1)));
        assert_eq!(forwarded(s.packet(&packet(b, 4, 1, false, t0, 20, 3))).seq, 65_538);
    }

    #[test]
    fn a_retransmission_keeps_its_place_and_does_not_move_time() {
        let t0 = Instant::now();
        let l = feed(1, "l");
        let mut s = Splicer::new(90_000);
        s.target(l);
        forwarded(s.packet(&packet(l, 10, 0, true, t0, 0, 1)));
        forwarded(s.packet(&packet(l, 12, 3_000, false, t0, 33, 2)));
        // 11 was lost upstream and repaired: it fills its own place.
        assert_eq!(forwarded(s.packet(&packet(l, 11, 0, false, t0, 60, 1))).seq, 11);
        // The next switch still starts after 12, the newest written.
        s.target(feed(2, "l"));
        assert_eq!(forwarded(s.packet(&packet(feed(2, "l"), 500, 0, true, t0, 66, 9))).seq, 13);
    }

    #[test]
    fn a_resync_drops_until_the_next_keyframe_and_leaves_no_gap() {
        let t0 = Instant::now();
        let l = feed(1, "l");
        let mut s = Splicer::new(90_000);
        s.target(l);
        forwarded(s.packet(&packet(l, 10, 0, true, t0, 0, 1)));
        s.resync();
        assert_eq!(s.waiting(), Some(l));
        assert_eq!(s.packet(&packet(l, 11, 3_000, false, t0, 33, 2)), Verdict::NeedKeyframe(l));
        assert_eq!(s.packet(&packet(l, 12, 6_000, false, t0, 66, 3)), Verdict::NeedKeyframe(l));
        let restart = forwarded(s.packet(&packet(l, 13, 9_000, true, t0, 100, 4)));
        assert_eq!((restart.seq, restart.timestamp, restart.picture_id, restart.switched), (11, 9_000, Some(2), true));
        assert_eq!(s.waiting(), None);
    }

    #[test]
    fn audio_switches_at_once_and_clearing_stops_everything() {
        let t0 = Instant::now();
        let (a, b) = (Feed { publisher: 1, mid: Mid::from("0"), layer: None }, Feed { publisher: 2, mid: Mid::from("0"), layer: None });
        let audio = |f, seq, ts, ms| Incoming { feed: f, seq, timestamp: ts, start: true, arrival: t0 + Duration::from_millis(ms), vp8: None };
        let mut s = Splicer::new(48_000);
        s.target(a);
        assert_eq!(forwarded(s.packet(&audio(a, 1, 960, 0))).timestamp, 960);
        s.target(b);
        let first = forwarded(s.packet(&audio(b, 77, 123_456, 20)));
        assert_eq!((first.seq, first.timestamp, first.switched), (2, 960 + 960, true));
        s.clear();
        assert_eq!(s.packet(&audio(b, 78, 124_416, 40)), Verdict::Drop);
        assert_eq!(s.current(), None);
    }
}

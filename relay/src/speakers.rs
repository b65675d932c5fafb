//! Who is speaking in a room, from the audio levels publishers put in their packets
//! (RFC 6464: 0 is the loudest, -127 silence, in dBov). Sans-IO.
//!
//! A participant *speaks* when at least [`SPEECH_PACKETS`] of their packets in the last
//! [`SPEECH_WINDOW`] were above [`SPEECH_LEVEL`], which ignores clicks and breaths. Someone
//! who starts speaking after [`PAUSE`] of silence moves to the front of the room's speaker
//! order, which decides whose video is forwarded (last-N) and whose audio comes first;
//! people talking over each other keep their places, so the forwarded set does not churn.
//! The dominant speaker is the one with the most speech in the last [`DOMINANT_WINDOW`],
//! and changes only when someone else has clearly more.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

pub const SPEECH_LEVEL: i8 = -50;
pub const SPEECH_WINDOW: Duration = Duration::from_millis(400);
pub const SPEECH_PACKETS: usize = 5;
pub const DOMINANT_WINDOW: Duration = Duration::from_millis(1500);
pub const PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Voice {
    /// When their recent packets above the speech level arrived.
    loud: VecDeque<Instant>,
    last_spoke: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Speakers {
    voices: BTreeMap<u64, Voice>,
    /// Speakers by their latest start, most recent first.
    rank: Vec<u64>,
    dominant: Option<u64>,
}

impl Speakers {
    /// One audio packet from `participant` with level `level` (dBov, ≤ 0).
    pub fn observe(&mut self, participant: u64, level: i8, now: Instant) {
        let voice = self.voices.entry(participant).or_default();
        if level >= SPEECH_LEVEL {
            voice.loud.push_back(now);
        }
        while voice.loud.front().is_some_and(|t| now.saturating_duration_since(*t) > DOMINANT_WINDOW) {
            voice.loud.pop_front();
        }
        let recent = voice.loud.iter().rev().take_while(|t| now.saturating_duration_since(**t) <= SPEECH_WINDOW).count();
        if recent >= SPEECH_PACKETS {
            let starts = voice.last_spoke.is_none_or(|t| now.saturating_duration_since(t) > PAUSE);
            voice.last_spoke = Some(now);
            if starts {
                tracing::debug!(participant, "starts speaking");
                self.rank.retain(|p| *p != participant);
                self.rank.insert(0, participant);
            }
        }
    }

    pub fn forget(&mut self, participant: u64) {
        self.voices.remove(&participant);
        self.rank.retain(|p| *p != participant);
        if self.dominant == Some(participant) {
            self.dominant = None;
        }
    }

    /// `candidates` ordered for forwarding: the most recent speakers first, then the rest
    /// in the order given (join order: the longest-present first).
    pub fn order(&self, candidates: &[u64]) -> Vec<u64> {
        let mut ordered: Vec<(usize, u64)> = candidates.iter().copied().enumerate().collect();
        ordered.sort_by_key(|&(i, p)| (self.rank.iter().position(|r| *r == p).unwrap_or(usize::MAX), i));
        ordered.into_iter().map(|(_, p)| p).collect()
    }

    /// Re-evaluates the dominant speaker; returns it when it changed.
    pub fn update_dominant(&mut self, now: Instant) -> Option<u64> {
        let speech = |v: &Voice| v.loud.iter().filter(|t| now.saturating_duration_since(**t) <= DOMINANT_WINDOW).count();
        let current = self.dominant.and_then(|d| self.voices.get(&d)).map(speech).unwrap_or(0);
        let best = self.voices.iter().filter(|(_, v)| v.last_spoke.is_some()).map(|(p, v)| (*p, speech(v))).max_by_key(|&(p, n)| (n, std::cmp::Reverse(p)));
        match best {
            // A challenger needs half as much speech again as the current speaker, and real speech.
            Some((p, n)) if Some(p) != self.dominant && n >= SPEECH_PACKETS * 2 && n * 2 > current * 3 => {
                self.dominant = Some(p);
                Some(p)
            }
            _ => None,
        }
    }

    pub fn dominant(&self) -> Option<u64> {
        self.dominant
    }

    /// Whether `participant` has ever spoken (their place in the order is from speech).
    pub fn has_spoken(&self, participant: u64) -> bool {
        self.rank.contains(&participant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` packets 20 ms apart from `p` at `level`, starting at `t`; returns the time after.
    fn talk(s: &mut Speakers, p: u64, level: i8, n: u32, t: Instant) -> Instant {
        for i in 0..n {
            s.observe(p, level, t + Duration::from_millis(20 * i as u64));
        }
        t + Duration::from_millis(20 * n as u64)
    }

    #[test]
    fn silence_and_clicks_are_not_speech() {
        let t0 = Instant::now();
        let mut s = Speakers::default();
        let t = talk(&mut s, 1, -127, 100, t0);
        let t = talk(&mut s, 2, -10, 3, t);
        talk(&mut s, 2, -127, 50, t);
        assert_eq!(s.order(&[1, 2, 3]), vec![1, 2, 3], "nobody spoke: join order");
        assert_eq!(s.update_dominant(t0 + Duration::from_secs(3)), None);
    }

    #[test]
    fn the_latest_speaker_comes_first_and_earlier_ones_follow() {
        let t0 = Instant::now();
        let mut s = Speakers::default();
        let t = talk(&mut s, 3, -20, 25, t0);
        let t = talk(&mut s, 5, -30, 25, t);
        talk(&mut s, 4, -127, 25, t);
        assert_eq!(s.order(&[1, 2, 3, 4, 5]), vec![5, 3, 1, 2, 4]);
        // Last-N of 3 is the first three of that order.
        assert_eq!(&s.order(&[1, 2, 3, 4, 5])[..3], &[5, 3, 1]);
    }

    #[test]
    fn the_dominant_speaker_changes_only_for_clearly_more_speech() {
        let t0 = Instant::now();
        let mut s = Speakers::default();
        let t = talk(&mut s, 1, -20, 50, t0);
        assert_eq!(s.update_dominant(t), Some(1));
        assert_eq!(s.update_dominant(t), None, "no change, no event");
        // 2 interjects briefly while 1 goes on: 1 stays.
        for i in 0..15u64 {
            let at = t + Duration::from_millis(20 * i);
            s.observe(1, -20, at);
            s.observe(2, -20, at);
        }
        let t = t + Duration::from_millis(300);
        assert_eq!(s.update_dominant(t), None);
        // 1 stops, 2 keeps talking: 2 takes over.
        let t = talk(&mut s, 2, -20, 60, t);
        assert_eq!(s.update_dominant(t), Some(2));
        assert_eq!(s.dominant(), Some(2));
        s.forget(2);
        assert_eq!(s.dominant(), None);
    }

    #[test]
    fn people_talking_at_once_keep_their_places_and_a_restart_after_a_pause_moves_ahead() {
        let t0 = Instant::now();
        let mut s = Speakers::default();
        // 1 starts, then 2, then 3; all keep talking for two seconds.
        for i in 0..100u64 {
            let at = t0 + Duration::from_millis(20 * i);
            s.observe(1, -20, at);
            if i >= 10 {
                s.observe(2, -20, at);
            }
            if i >= 20 {
                s.observe(3, -20, at);
            }
            if i > 30 {
                assert_eq!(s.order(&[1, 2, 3, 4]), vec![3, 2, 1, 4], "stable while everyone talks");
            }
        }
        // 1 pauses for two seconds and starts again: 1 is the latest start.
        let t = t0 + Duration::from_secs(4);
        talk(&mut s, 1, -20, 20, t);
        assert_eq!(s.order(&[1, 2, 3, 4]), vec![1, 3, 2, 4]);
        // 2 starts; pauses briefly (under PAUSE) while 3 starts; 2 goes on: no new start.
        let t = talk(&mut s, 2, -20, 20, t + Duration::from_millis(400));
        assert_eq!(s.order(&[1, 2, 3, 4]), vec![2, 1, 3, 4]);
        let t = talk(&mut s, 3, -20, 15, t);
        talk(&mut s, 2, -20, 20, t);
        assert_eq!(s.order(&[1, 2, 3, 4]), vec![3, 2, 1, 4]);
    }
}

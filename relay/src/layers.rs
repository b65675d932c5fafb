//! Simulcast for one subscriber's receive slot: which of a publisher's layers to forward,
//! and how to splice layers (and successive publishers) into one continuous stream. Sans-IO.
//!
//! Browsers publish each camera as up to three VP8 encodings (rids `l`, `m`, `h`), each
//! with its own SSRC, sequence numbers and RTP timestamp base. A subscriber's slot is one
//! plain stream: the relay forwards one layer at a time, changes layer only on a keyframe of
//! the new one (a decoder cannot start elsewhere), and rewrites timestamps so they keep
//! advancing by wall-clock time across the splice. The outgoing SSRC and sequence numbers
//! are the slot's own: str0m packetizes every forwarded frame afresh on the slot's stream.

use std::time::{Duration, Instant};

/// One published layer as the relay has seen it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The rid (`None` for a publisher without simulcast).
    pub rid: Option<String>,
    /// Frame height from the layer's last keyframe.
    pub height: u32,
    /// Bitrate measured over the last second, in bit/s.
    pub bitrate: u64,
}

/// The layer to forward to a subscriber: the smallest one that fills the tile it shows it
/// in, up to [`UPSCALE`] (or the tallest, if none does), stepped down while it needs more
/// than `budget` bit/s. Returns the index into `layers`, or `None` when there is none.
pub fn choose(layers: &[Layer], wanted_height: u32, budget: Option<u64>) -> Option<usize> {
    let mut by_height: Vec<usize> = (0..layers.len()).collect();
    by_height.sort_by_key(|&i| (layers[i].height, layers[i].bitrate));
    let fills = |h: u32| h as u64 * UPSCALE.0 >= wanted_height as u64 * UPSCALE.1;
    let fits = by_height.iter().position(|&i| fills(layers[i].height)).unwrap_or(by_height.len().checked_sub(1)?);
    let affordable = match budget {
        Some(budget) => by_height[..=fits].iter().rposition(|&i| layers[i].bitrate <= budget).unwrap_or(0),
        None => fits,
    };
    Some(by_height[affordable])
}

/// One video slot of a subscriber, for [`allocate`]: the layers its source publishes now
/// and the height of the tile it is shown in.
#[derive(Debug, Clone)]
pub struct SlotDemand {
    pub layers: Vec<Layer>,
    pub wanted_height: u32,
}

/// Shares one subscriber's downlink `budget` (bit/s) among its video slots: every slot
/// first gets its smallest layer, then the tallest tiles are raised first, each as far as
/// [`choose`] would go with no budget while the total still fits. So a Speaker view keeps
/// the speaker sharp and the thumbnails small rather than everyone equally blurred.
/// Returns, per slot, the bit rate it may use (for [`choose`]): halfway between its layer's
/// rate and the next layer's (twice its own for the top one), so that the small swings of a
/// layer's measured rate between reviews do not change the choice. `None` for a slot with
/// no layers.
pub fn allocate(slots: &[SlotDemand], budget: u64) -> Vec<Option<u64>> {
    let ordered: Vec<Vec<usize>> = slots
        .iter()
        .map(|s| {
            let mut by_height: Vec<usize> = (0..s.layers.len()).collect();
            by_height.sort_by_key(|&i| (s.layers[i].height, s.layers[i].bitrate));
            by_height
        })
        .collect();
    // Each slot's position in its own height order: 0 (smallest) to start with.
    let mut at: Vec<usize> = vec![0; slots.len()];
    let rate = |slot: usize, pos: usize| slots[slot].layers[ordered[slot][pos]].bitrate;
    let mut total: u64 = (0..slots.len()).filter(|&i| !ordered[i].is_empty()).map(|i| rate(i, 0)).sum();
    let mut priority: Vec<usize> = (0..slots.len()).filter(|&i| !ordered[i].is_empty()).collect();
    priority.sort_by_key(|&i| std::cmp::Reverse(slots[i].wanted_height));
    for slot in priority {
        let Some(ideal) = choose(&slots[slot].layers, slots[slot].wanted_height, None) else { continue };
        let ideal = ordered[slot].iter().position(|&i| i == ideal).unwrap_or(0);
        for pos in (at[slot] + 1..=ideal).rev() {
            let more = rate(slot, pos).saturating_sub(rate(slot, at[slot]));
            if total + more <= budget {
                total += more;
                at[slot] = pos;
                break;
            }
        }
    }
    (0..slots.len())
        .map(|i| {
            let n = ordered[i].len();
            (n > 0).then(|| if at[i] + 1 < n { (rate(i, at[i]) + rate(i, at[i] + 1)) / 2 } else { rate(i, at[i]) * 2 })
        })
        .collect()
}

/// How much a tile may enlarge a layer before the next one up is worth its bits: 5/4, so
/// a 180-line layer serves tiles up to 225 lines.
pub const UPSCALE: (u64, u64) = (5, 4);

/// Rewrites one slot's stream: what it forwards, and the timestamps it forwards them with.
#[derive(Debug, Clone)]
pub struct Splicer {
    clock_rate: u64,
    /// What the slot forwards now: (source, layer) and the offset added to its timestamps.
    current: Option<((u64, Option<String>), i64)>,
    /// What it should forward; the change happens on that layer's next keyframe.
    target: Option<(u64, Option<String>)>,
    /// The last timestamp written and when.
    last_out: Option<(u64, Instant)>,
}

/// What to do with one incoming frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it with this timestamp.
    Forward(u64),
    /// Drop it.
    Drop,
    /// Drop it; the target layer needs a keyframe before the slot can change to it.
    NeedKeyframe,
}

impl Splicer {
    pub fn new(clock_rate: u32) -> Splicer {
        Splicer { clock_rate: clock_rate as u64, current: None, target: None, last_out: None }
    }

    /// Asks for `layer` of `source` from now on (takes effect on its next keyframe).
    pub fn target(&mut self, source: u64, layer: Option<String>) {
        self.target = Some((source, layer));
    }

    pub fn targeted(&self) -> Option<&(u64, Option<String>)> {
        self.target.as_ref()
    }

    /// The layer forwarded now.
    pub fn current(&self) -> Option<&(u64, Option<String>)> {
        self.current.as_ref().map(|(c, _)| c)
    }

    /// Stops forwarding anything (the slot lost its source).
    pub fn clear(&mut self) {
        self.current = None;
        self.target = None;
    }

    /// Decides about a frame of `layer` from `source` with RTP timestamp `time` (extended,
    /// at the slot's clock rate), arriving at `now`.
    pub fn frame(&mut self, source: u64, layer: Option<&str>, time: u64, keyframe: bool, now: Instant) -> Verdict {
        let this = (source, layer.map(str::to_string));
        let is_target = self.target.as_ref() == Some(&this);
        let is_current = self.current.as_ref().is_some_and(|(c, _)| *c == this);
        if is_target && !is_current {
            if !keyframe {
                return Verdict::NeedKeyframe;
            }
            // Splice: the new layer's first frame follows the last one written by the time
            // that has passed since (at least one tick, so timestamps never repeat).
            let out = match self.last_out {
                Some((last, at)) => last + ticks(now.saturating_duration_since(at), self.clock_rate).max(1),
                None => time,
            };
            self.current = Some((this, out as i64 - time as i64));
        } else if !is_current {
            return Verdict::Drop;
        }
        let (_, offset) = self.current.as_ref().expect("set above");
        let out = (time as i64 + offset).max(0) as u64;
        if let Some((last, _)) = self.last_out
            && out <= last
            && !keyframe
        {
            // Reordered or late frame of the current layer: writing it would move time back.
            return Verdict::Drop;
        }
        self.last_out = Some((out, now));
        Verdict::Forward(out)
    }
}

fn ticks(d: Duration, clock_rate: u64) -> u64 {
    (d.as_micros() as u64).saturating_mul(clock_rate) / 1_000_000
}

/// Reads the frame size from a VP8 keyframe (RFC 6386 §9.1): 3-byte frame tag, start code
/// 9d 01 2a, then 14-bit width and height.
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width as u32, height as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(rid: &str, height: u32, kbps: u64) -> Layer {
        Layer { rid: Some(rid.into()), height, bitrate: kbps * 1000 }
    }

    fn three() -> Vec<Layer> {
        // Out of order on purpose: the choice must not depend on the order seen.
        vec![layer("h", 720, 1500), layer("l", 180, 150), layer("m", 360, 500)]
    }

    #[test]
    fn the_smallest_layer_that_fills_the_tile_is_chosen() {
        let layers = three();
        assert_eq!(choose(&layers, 90, None), Some(1));
        assert_eq!(choose(&layers, 180, None), Some(1));
        assert_eq!(choose(&layers, 225, None), Some(1), "a quarter enlarged is still fine");
        assert_eq!(choose(&layers, 226, None), Some(2));
        assert_eq!(choose(&layers, 450, None), Some(2));
        assert_eq!(choose(&layers, 451, None), Some(0));
        assert_eq!(choose(&layers, 2000, None), Some(0), "the tallest when none is tall enough");
    }

    #[test]
    fn a_small_budget_steps_the_layer_down() {
        let layers = three();
        assert_eq!(choose(&layers, 720, Some(2_000_000)), Some(0));
        assert_eq!(choose(&layers, 720, Some(1_000_000)), Some(2));
        assert_eq!(choose(&layers, 720, Some(200_000)), Some(1));
        assert_eq!(choose(&layers, 720, Some(10_000)), Some(1), "the lowest when none fits");
        assert_eq!(choose(&layers, 180, Some(2_000_000)), Some(1), "never above the tile's need");
    }

    #[test]
    fn without_layers_there_is_no_choice_and_one_layer_is_always_it() {
        assert_eq!(choose(&[], 360, None), None);
        let single = [Layer { rid: None, height: 480, bitrate: 900_000 }];
        assert_eq!(choose(&single, 1080, Some(100_000)), Some(0));
    }

    #[test]
    fn a_layer_switch_waits_for_a_keyframe_and_keeps_time_continuous() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut s = Splicer::new(90_000);
        s.target(7, Some("l".into()));
        // Nothing until the first keyframe of the target.
        assert_eq!(s.frame(7, Some("l"), 1_000, false, ms(0)), Verdict::NeedKeyframe);
        assert_eq!(s.frame(7, Some("h"), 555_000, true, ms(0)), Verdict::Drop);
        assert_eq!(s.frame(7, Some("l"), 4_000, true, ms(33)), Verdict::Forward(4_000));
        assert_eq!(s.frame(7, Some("l"), 7_000, false, ms(66)), Verdict::Forward(7_000));
        // Switch up: "l" keeps flowing until "h" has a keyframe.
        s.target(7, Some("h".into()));
        assert_eq!(s.frame(7, Some("h"), 561_000, false, ms(99)), Verdict::NeedKeyframe);
        assert_eq!(s.frame(7, Some("l"), 10_000, false, ms(99)), Verdict::Forward(10_000));
        // The keyframe arrives 33 ms later: its timestamp is 10_000 + 33 ms at 90 kHz,
        // whatever "h"'s own base was, and "h" continues from there.
        assert_eq!(s.frame(7, Some("h"), 564_000, true, ms(132)), Verdict::Forward(10_000 + 2_970));
        assert_eq!(s.frame(7, Some("h"), 567_000, false, ms(165)), Verdict::Forward(15_970));
        assert_eq!(s.frame(7, Some("l"), 13_000, false, ms(165)), Verdict::Drop);
        assert_eq!(s.current(), Some(&(7, Some("h".into()))));
    }

    #[test]
    fn a_new_source_in_the_slot_continues_the_timeline() {
        let t0 = Instant::now();
        let mut s = Splicer::new(48_000);
        s.target(1, None);
        assert_eq!(s.frame(1, None, 100_000, true, t0), Verdict::Forward(100_000));
        s.target(2, None);
        // The new source's base is far below: output still moves forward by 20 ms.
        assert_eq!(s.frame(2, None, 5, true, t0 + Duration::from_millis(20)), Verdict::Forward(100_960));
        assert_eq!(s.frame(2, None, 965, true, t0 + Duration::from_millis(40)), Verdict::Forward(101_920));
        assert_eq!(s.frame(1, None, 101_920, true, t0 + Duration::from_millis(40)), Verdict::Drop);
    }

    #[test]
    fn time_never_goes_backwards_or_repeats() {
        let t0 = Instant::now();
        let mut s = Splicer::new(90_000);
        s.target(1, Some("m".into()));
        assert_eq!(s.frame(1, Some("m"), 9_000, true, t0), Verdict::Forward(9_000));
        // A late frame of the same layer is dropped rather than written behind.
        assert_eq!(s.frame(1, Some("m"), 6_000, false, t0), Verdict::Drop);
        // A splice at the same instant still advances by one tick.
        s.target(1, Some("l".into()));
        assert_eq!(s.frame(1, Some("l"), 1, true, t0), Verdict::Forward(9_001));
        // Extended timestamps far apart (a publisher's clock jump) are simply followed.
        assert_eq!(s.frame(1, Some("l"), 1 + 90_000, false, t0), Verdict::Forward(99_001));
    }

    #[test]
    fn clearing_stops_everything() {
        let t0 = Instant::now();
        let mut s = Splicer::new(90_000);
        s.target(1, None);
        assert_eq!(s.frame(1, None, 10, true, t0), Verdict::Forward(10));
        s.clear();
        assert_eq!(s.frame(1, None, 20, true, t0), Verdict::Drop);
        assert_eq!(s.current(), None);
    }

    #[test]
    fn the_budget_goes_to_the_tallest_tile_first() {
        let camera = || vec![layer("l", 180, 150), layer("m", 360, 500), layer("h", 720, 1500)];
        let speaker = SlotDemand { layers: camera(), wanted_height: 720 };
        let thumbnail = SlotDemand { layers: camera(), wanted_height: 180 };
        let mut slots = vec![thumbnail.clone(); 8];
        slots.insert(3, speaker);
        let layer_of = |allotted: &[Option<u64>], i: usize| choose(&slots[i].layers, slots[i].wanted_height, allotted[i]).unwrap();
        // 8 × 150 k + 1500 k = 2.7 Mbit/s: everyone gets what their tile needs.
        let plenty = allocate(&slots, 3_000_000);
        assert_eq!(layer_of(&plenty, 3), 2);
        assert!((0..9).all(|i| i == 3 || layer_of(&plenty, i) == 0));
        // 2 Mbit/s: the speaker steps down to 360p, the thumbnails stay as they are; an
        // equal split (222 k each) would have shown the speaker at 180p.
        let tight = allocate(&slots, 2_000_000);
        assert_eq!(layer_of(&tight, 3), 1);
        assert!((0..9).all(|i| i == 3 || layer_of(&tight, i) == 0));
        // The allowance sits between two layers' rates, so a layer whose measured rate
        // wobbles by a few percent keeps being chosen.
        assert_eq!(tight[3], Some(1_000_000));
        let mut wobbly = camera();
        wobbly[1].bitrate = 560_000;
        assert_eq!(choose(&wobbly, 720, tight[3]), Some(1));
        // Below the sum of the smallest layers, everyone still gets the smallest.
        let starved = allocate(&slots, 100_000);
        assert!((0..9).all(|i| layer_of(&starved, i) == 0));
        // A slot whose source publishes nothing yet gets nothing.
        assert_eq!(allocate(&[SlotDemand { layers: vec![], wanted_height: 720 }], 1_000_000), vec![None]);
    }

    #[test]
    fn vp8_keyframe_sizes_are_read_and_anything_else_is_not() {
        // Frame tag (keyframe bit 0), start code, 640 × 360 with scaling bits set.
        let frame = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x42, 0x68, 0x81, 0x00];
        assert_eq!(vp8_keyframe_size(&frame), Some((640, 360)));
        let mut inter = frame;
        inter[0] |= 1;
        assert_eq!(vp8_keyframe_size(&inter), None);
        assert_eq!(vp8_keyframe_size(&frame[..9]), None);
        assert_eq!(vp8_keyframe_size(&[0u8; 16]), None);
    }
}

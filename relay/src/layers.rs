//! Simulcast for one subscriber: which of a publisher's layers each receive slot forwards,
//! and how one subscriber's downlink is shared among its slots. Sans-IO.
//!
//! Browsers publish each camera as up to three VP8 encodings (rids `l`, `m`, `h`). The relay
//! forwards one of them per slot (`splice.rs` joins them into one stream): the smallest that
//! fills the tile the subscriber shows it in, as far as the subscriber's bandwidth allows.

use str0m::media::Rid;

/// One published layer as the relay has seen it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The rid (`None` for a publisher without simulcast).
    pub rid: Option<Rid>,
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

/// One video slot of a subscriber, for [`allocate`]: the layers its source publishes now,
/// the height of the tile it is shown in, whether [`allocate`] paused it last time, and
/// how lately its source spoke (0: the dominant speaker, 1: spoke a moment ago, 2: not).
#[derive(Debug, Clone)]
pub struct SlotDemand {
    pub layers: Vec<Layer>,
    pub wanted_height: u32,
    pub paused: bool,
    pub speaking: u8,
}

/// What [`allocate`] gives one video slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// Forward a layer of at most this many bit/s (for [`choose`]).
    Rate(u64),
    /// Forward nothing: not even the smallest layer fits in what the slots before it left.
    Paused,
    /// The source publishes no layer yet.
    Unknown,
}

impl Share {
    /// The budget to pass to [`choose`] (none: the smallest layer, for a slot that has not
    /// paused yet).
    pub fn budget(self) -> Option<u64> {
        match self {
            Share::Rate(rate) => Some(rate),
            Share::Paused => Some(0),
            Share::Unknown => None,
        }
    }
}

/// Shares one subscriber's downlink `budget` (bit/s) among its video slots. The tallest
/// tiles come first, and among tiles alike (a grid) those who speak: each gets its smallest layer while the total fits (to within
/// [`PAUSE_SHORTFALL`]), and a slot for which even that does not fit is paused (so a thin downlink is left to audio rather than to
/// video that could not play anyway); a paused slot resumes only once its smallest layer
/// fits with [`RESUME_HEADROOM`] to spare, so that it does not flap. Then the tallest tiles
/// are raised first, each as far as [`choose`] would go with no budget while the total still
/// fits. So a Speaker view keeps the speaker sharp and the thumbnails small rather than
/// everyone equally blurred.
/// A slot's [`Share::Rate`] lies halfway between its layer's rate and the next layer's
/// (twice its own for the top one), so that the small swings of a layer's measured rate
/// between reviews do not change the choice.
pub fn allocate(slots: &[SlotDemand], budget: u64) -> Vec<Share> {
    let ordered: Vec<Vec<usize>> = slots
        .iter()
        .map(|s| {
            let mut by_height: Vec<usize> = (0..s.layers.len()).collect();
            by_height.sort_by_key(|&i| (s.layers[i].height, s.layers[i].bitrate));
            by_height
        })
        .collect();
    let rate = |slot: usize, pos: usize| slots[slot].layers[ordered[slot][pos]].bitrate;
    let priority = priority(slots);
    // The smallest layers, tallest tiles first, while they fit.
    let mut total: u64 = 0;
    let mut shown = vec![false; slots.len()];
    for &slot in &priority {
        let need = rate(slot, 0);
        let (num, den) = if slots[slot].paused { RESUME_HEADROOM } else { PAUSE_SHORTFALL };
        if total + need * num / den <= budget {
            total += need;
            shown[slot] = true;
        }
    }
    // Each shown slot's position in its own height order: 0 (smallest) to start with.
    let mut at: Vec<usize> = vec![0; slots.len()];
    for &slot in priority.iter().filter(|&&s| shown[s]) {
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
            if n == 0 {
                Share::Unknown
            } else if !shown[i] {
                Share::Paused
            } else if at[i] + 1 < n {
                Share::Rate((rate(i, at[i]) + rate(i, at[i] + 1)) / 2)
            } else {
                Share::Rate(rate(i, at[i]) * 2)
            }
        })
        .collect()
}

/// The order in which `allocate` gives slots room: tallest tiles first, among tiles alike
/// the dominant speaker, then those who spoke lately, then the rest; slots without a known
/// layer are left out.
pub fn priority(slots: &[SlotDemand]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..slots.len()).filter(|&i| !slots[i].layers.is_empty()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(slots[i].wanted_height), slots[i].speaking));
    order
}

/// How much more than its smallest layer's rate a paused slot needs before it resumes: 5/4.
pub const RESUME_HEADROOM: (u64, u64) = (5, 4);

/// How far below its smallest layer's rate a playing slot's room may fall before it pauses:
/// to 3/4. A layer's measured rate is its peak's neighbour (keyframes), and an estimate
/// wobbles; a slot that pauses and resumes with every wobble freezes more than one that
/// overshoots a little.
pub const PAUSE_SHORTFALL: (u64, u64) = (3, 4);

/// How much a tile may enlarge a layer before the next one up is worth its bits: 5/4, so
/// a 180-line layer serves tiles up to 225 lines.
pub const UPSCALE: (u64, u64) = (5, 4);

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(rid: &str, height: u32, kbps: u64) -> Layer {
        Layer { rid: Some(Rid::from(rid)), height, bitrate: kbps * 1000 }
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
    fn the_order_of_room_is_tile_height_then_speech_and_tiles_without_layers_are_left_out() {
        let camera = || vec![layer("l", 180, 150), layer("m", 360, 500)];
        let tile = |wanted_height, speaking| SlotDemand { layers: camera(), wanted_height, paused: false, speaking };
        let none = SlotDemand { layers: Vec::new(), wanted_height: 720, paused: false, speaking: 0 };
        let slots = [tile(180, 2), tile(180, 1), none, tile(360, 2), tile(180, 0), tile(180, 2)];
        assert_eq!(priority(&slots), vec![3, 4, 1, 0, 5], "the taller tile, then the dominant speaker, those who spoke, the rest in their order");
    }

    #[test]
    fn the_budget_goes_to_the_tallest_tile_first() {
        let camera = || vec![layer("l", 180, 150), layer("m", 360, 500), layer("h", 720, 1500)];
        let speaker = SlotDemand { layers: camera(), wanted_height: 720, paused: false, speaking: 2 };
        let thumbnail = SlotDemand { layers: camera(), wanted_height: 180, paused: false, speaking: 2 };
        let mut slots = vec![thumbnail.clone(); 8];
        slots.insert(3, speaker);
        let layer_of = |shares: &[Share], i: usize| choose(&slots[i].layers, slots[i].wanted_height, shares[i].budget()).unwrap();
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
        assert_eq!(tight[3], Share::Rate(1_000_000));
        let mut wobbly = camera();
        wobbly[1].bitrate = 560_000;
        assert_eq!(choose(&wobbly, 720, tight[3].budget()), Some(1));
        // A slot whose source publishes nothing yet gets nothing.
        assert_eq!(allocate(&[SlotDemand { layers: vec![], wanted_height: 720, paused: false, speaking: 2 }], 1_000_000), vec![Share::Unknown]);
    }

    #[test]
    fn in_a_grid_the_one_speaking_keeps_their_video_first_but_a_taller_tile_comes_before() {
        let camera = || vec![layer("l", 180, 150), layer("m", 360, 500)];
        let mut grid = vec![SlotDemand { layers: camera(), wanted_height: 180, paused: false, speaking: 2 }; 4];
        grid[3].speaking = 0;
        grid[1].speaking = 1;
        let shares = allocate(&grid, 200_000);
        assert_ne!(shares[3], Share::Paused, "the dominant speaker");
        assert_eq!(shares.iter().filter(|s| **s != Share::Paused).count(), 1);
        let shares = allocate(&grid, 350_000);
        assert!(shares[3] != Share::Paused && shares[1] != Share::Paused, "then who spoke a moment ago");
        assert_eq!(shares.iter().filter(|s| **s != Share::Paused).count(), 2);
        // A shared screen (a taller tile) of someone silent still comes before the speaker.
        grid[0].wanted_height = 720;
        let shares = allocate(&grid, 200_000);
        assert_ne!(shares[0], Share::Paused);
        assert_eq!(shares[3], Share::Paused);
    }

    #[test]
    fn below_the_smallest_layers_the_smallest_tiles_pause_first_and_resume_with_room_to_spare() {
        let camera = || vec![layer("l", 180, 150), layer("m", 360, 500), layer("h", 720, 1500)];
        let mut slots = vec![SlotDemand { layers: camera(), wanted_height: 180, paused: false, speaking: 2 }; 4];
        slots[2].wanted_height = 720;
        // 400 kbit/s: the speaker and one thumbnail keep their smallest layer, the two others
        // pause rather than everyone getting a layer that does not fit.
        let shares = allocate(&slots, 400_000);
        assert_eq!(shares.iter().filter(|s| **s == Share::Paused).count(), 2);
        assert_ne!(shares[2], Share::Paused, "the speaker is the last to pause");
        // 100 kbit/s: nothing fits; every slot pauses, audio keeps what there is.
        assert!(allocate(&slots, 100_000).iter().all(|s| *s == Share::Paused));
        // Between 112.5 and 187.5 kbit/s a slot stays as it was: a playing one plays on
        // (a wobbling estimate does not stop it), a paused one waits for a quarter to spare.
        let alone = |paused| vec![SlotDemand { layers: camera(), wanted_height: 720, paused, speaking: 2 }];
        assert_eq!(allocate(&alone(false), 112_500), vec![Share::Rate(325_000)]);
        assert_eq!(allocate(&alone(false), 112_000), vec![Share::Paused]);
        assert_eq!(allocate(&alone(true), 187_000), vec![Share::Paused]);
        assert_eq!(allocate(&alone(true), 187_500), vec![Share::Rate(325_000)]);
    }
}

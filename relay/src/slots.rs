//! Which publisher's track goes out on which of a subscriber's receive slots. Sans-IO.
//!
//! A subscriber offers a fixed number of receive-only audio and video m-lines ("slots"), so
//! the SFU never has to make an offer of its own: as people come and go it only changes
//! which source feeds which slot, and tells the client. Assignments are stable: a source
//! keeps its slot for as long as it exists, and new sources take the lowest free slot.

use std::collections::BTreeMap;

use str0m::media::Mid;

/// A source track: who publishes it and its m-line in the publisher's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    pub participant: u64,
    pub mid: Mid,
}

/// Slot m-line → source.
pub type Assignment = BTreeMap<Mid, Source>;

/// Recomputes the assignment for one kind (audio or video): `slots` are the subscriber's
/// receive mids of that kind in order; `sources` are the tracks available to it, in
/// priority order (the first ones win when there are more sources than slots).
pub fn assign(previous: &Assignment, slots: &[Mid], sources: &[Source]) -> Assignment {
    let allowed: Vec<&Source> = sources.iter().take(slots.len()).collect();
    let mut next: Assignment =
        previous.iter().filter(|(slot, source)| slots.contains(slot) && allowed.contains(source)).map(|(slot, source)| (*slot, *source)).collect();
    for source in allowed {
        if next.values().any(|s| s == source) {
            continue;
        }
        if let Some(free) = slots.iter().find(|slot| !next.contains_key(*slot)) {
            next.insert(*free, *source);
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(p: u64) -> Source {
        Source { participant: p, mid: "1".into() }
    }

    fn slots(n: usize) -> Vec<Mid> {
        (0..n).map(|i| Mid::from(format!("s{i}").as_str())).collect()
    }

    #[test]
    fn sources_fill_the_lowest_free_slots_and_keep_them() {
        let a = assign(&Assignment::new(), &slots(3), &[src(1), src(2)]);
        assert_eq!(a.get(&Mid::from("s0")), Some(&src(1)));
        assert_eq!(a.get(&Mid::from("s1")), Some(&src(2)));
        // 1 leaves, 3 arrives: 2 stays where it was, 3 takes the freed slot.
        let b = assign(&a, &slots(3), &[src(2), src(3)]);
        assert_eq!(b.get(&Mid::from("s1")), Some(&src(2)));
        assert_eq!(b.get(&Mid::from("s0")), Some(&src(3)));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn with_more_sources_than_slots_the_first_ones_win() {
        let a = assign(&Assignment::new(), &slots(2), &[src(1), src(2), src(3)]);
        assert_eq!(a.values().copied().collect::<Vec<_>>(), vec![src(1), src(2)]);
        // 3 moves ahead of 2: it takes 2's slot; 1 keeps its own.
        let b = assign(&a, &slots(2), &[src(1), src(3), src(2)]);
        assert_eq!(b.get(&Mid::from("s0")), Some(&src(1)));
        assert_eq!(b.get(&Mid::from("s1")), Some(&src(3)));
    }
}

//! Which node is a meeting's home, sans-IO: weighted rendezvous hashing over the live media
//! members. Every node that sees the same live set computes the same home for a room without
//! asking anyone; when a node dies only its own meetings move, and when it comes back they
//! move back to it.

use sha2::{Digest, Sha256};

/// A live member that may be a meeting's home, with its weight: its spare capacity (any
/// positive figure; equal weights give equal shares).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub node: [u8; 32],
    pub weight: f64,
}

/// The home of `room` among `candidates`: the highest `weight / -ln(u)`, where `u` in (0, 1)
/// hashes the room and the node (the weighted rendezvous hash, which gives each node a share
/// of rooms in proportion to its weight). None when there is no candidate with a weight.
pub fn home(room: &str, candidates: &[Candidate]) -> Option<[u8; 32]> {
    candidates
        .iter()
        .filter(|c| c.weight > 0.0 && c.weight.is_finite())
        .map(|c| (score(room, c), c.node))
        // Ties (practically impossible) go to the lower key, the same on every node.
        .max_by(|(a, ka), (b, kb)| a.total_cmp(b).then(kb.cmp(ka)))
        .map(|(_, node)| node)
}

fn score(room: &str, candidate: &Candidate) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(b"confab/placement/v1\0");
    hasher.update(room.as_bytes());
    hasher.update([0]);
    hasher.update(candidate.node);
    let digest = hasher.finalize();
    let bits = u64::from_be_bytes(digest[..8].try_into().expect("eight bytes"));
    // 53 bits into (0, 1): never 0 (ln 0) and never 1 (a zero denominator).
    let unit = ((bits >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    candidate.weight / -unit.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: u8) -> Vec<Candidate> {
        (1..=n).map(|i| Candidate { node: [i; 32], weight: 1.0 }).collect()
    }

    #[test]
    fn every_node_agrees_whatever_order_it_lists_the_members_in() {
        let mut c = nodes(5);
        let homes: Vec<_> = (0..50).map(|i| home(&format!("room-{i}"), &c).unwrap()).collect();
        c.reverse();
        let again: Vec<_> = (0..50).map(|i| home(&format!("room-{i}"), &c).unwrap()).collect();
        assert_eq!(homes, again);
    }

    #[test]
    fn rooms_spread_over_nodes_and_only_a_dead_nodes_rooms_move() {
        let all = nodes(3);
        let rooms: Vec<String> = (0..3000).map(|i| format!("room-{i}")).collect();
        let before: Vec<_> = rooms.iter().map(|r| home(r, &all).unwrap()).collect();
        for n in 1..=3u8 {
            let share = before.iter().filter(|h| h[0] == n).count();
            assert!((800..1200).contains(&share), "node {n} is home to {share} of 3000 rooms");
        }
        let without_2: Vec<Candidate> = all.iter().copied().filter(|c| c.node[0] != 2).collect();
        for (room, was) in rooms.iter().zip(&before) {
            let now = home(room, &without_2).unwrap();
            if was[0] != 2 {
                assert_eq!(&now, was, "{room} moved though its home lives");
            }
        }
    }

    #[test]
    fn weight_sets_the_share_and_nothing_is_home_without_weight() {
        let c = vec![Candidate { node: [1; 32], weight: 3.0 }, Candidate { node: [2; 32], weight: 1.0 }];
        let ones = (0..4000).filter(|i| home(&format!("r{i}"), &c).unwrap()[0] == 1).count();
        assert!((2800..3200).contains(&ones), "{ones} of 4000 on the node with three times the weight");
        let idle = vec![Candidate { node: [1; 32], weight: 0.0 }, Candidate { node: [2; 32], weight: f64::NAN }];
        assert_eq!(home("r", &idle), None);
        assert_eq!(home("r", &[]), None);
    }
}

//! A room's plan: who is in it and on which shard, who speaks, which layers each publisher
//! sends, and which source feeds each subscriber's receive slots. Sans-IO.
//!
//! One shard (the room's home) keeps the [`Planner`]; every shard with participants in the
//! room follows the [`Plan`] it publishes. Publishers' shards report what they see (speech,
//! layer sizes and rates); subscribers' shards report which layers they forward, so that
//! layers nobody watches can be paused at the source.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use str0m::media::{MediaKind, Mid, Rid};

use crate::layers::Layer;
use crate::slots::{Assignment, Source, assign};
use crate::speakers::Speakers;
use crate::{NodeId, ShardId};

/// One participant as the home shard knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub shard: ShardId,
    /// What they publish: their send m-lines.
    pub tracks: Vec<(Mid, MediaKind)>,
    /// The simulcast layers each video track offers, in the order of its SDP.
    pub rids: Vec<(Mid, Vec<Rid>)>,
    /// Their receive slots, in m-line order.
    pub slots: Vec<(Mid, MediaKind)>,
    /// The send m-lines of their screen share: after the first send m-line of each kind
    /// (microphone, camera), the next ones carry the screen and its sound.
    pub screen: Vec<Mid>,
    /// Whether they share their screen now (the node tells the relay).
    pub sharing: bool,
    /// What a host holds back of them (microphone, camera): it goes to nobody until they
    /// turn it on again.
    pub held: crate::Held,
}

/// What the home shard tells every shard of the room.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Participants in join order, with their shards (on any node of the cluster).
    pub members: Vec<(u64, ShardId)>,
    pub dominant: Option<u64>,
    /// Subscriber → its slots' sources.
    pub assignments: HashMap<u64, Vec<(Mid, MediaKind, Source)>>,
    /// The layers each video track publishes now.
    pub layers: HashMap<(u64, Mid), Arc<[Layer]>>,
    /// The tracks of every screen being shared.
    pub screens: HashSet<(u64, Mid)>,
    /// Per node, the feeds (publisher, track, layer) its shards forward or wait for: a
    /// publisher's shard sends another node only those, once each.
    pub wanted: HashMap<NodeId, HashSet<(u64, Mid, Option<Rid>)>>,
}

impl Plan {
    pub fn shard_of(&self, participant: u64) -> Option<ShardId> {
        self.members.iter().find(|(p, _)| *p == participant).map(|(_, s)| *s)
    }

    /// The shards with participants in the room, each once, in order of first member.
    pub fn shards(&self) -> Vec<ShardId> {
        let mut shards: Vec<ShardId> = Vec::new();
        for (_, s) in &self.members {
            if !shards.contains(s) {
                shards.push(*s);
            }
        }
        shards
    }

    /// Whether `node` forwards (or waits for) this feed.
    pub fn wanted_by(&self, node: NodeId, publisher: u64, mid: Mid, layer: Option<Rid>) -> bool {
        self.wanted.get(&node).is_some_and(|w| w.contains(&(publisher, mid, layer)))
    }
}

/// The layers of a publisher's track that some shard forwards (or is about to).
pub type Demand = HashMap<(u64, Mid), Vec<Option<Rid>>>;

#[derive(Debug)]
pub struct Planner {
    last_n: usize,
    members: Vec<(u64, Member)>,
    speakers: Speakers,
    layers: HashMap<(u64, Mid), Arc<[Layer]>>,
    assigned: HashMap<u64, [Assignment; 2]>,
    demand: BTreeMap<ShardId, Demand>,
}

fn kind_index(kind: MediaKind) -> usize {
    usize::from(kind == MediaKind::Video)
}

impl Planner {
    pub fn new(last_n: usize) -> Planner {
        Planner { last_n, members: Vec::new(), speakers: Speakers::default(), layers: HashMap::new(), assigned: HashMap::new(), demand: BTreeMap::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// `participant` is (again) in the room with this media. Until their layers are seen,
    /// the plan lists those their SDP offers, unsized.
    pub fn join(&mut self, participant: u64, member: Member) {
        for (mid, rids) in &member.rids {
            if !rids.is_empty() && !self.layers.contains_key(&(participant, *mid)) {
                let offered: Vec<Layer> = rids.iter().map(|rid| Layer { rid: Some(*rid), height: 0, bitrate: 0 }).collect();
                self.layers.insert((participant, *mid), offered.into());
            }
        }
        match self.members.iter_mut().find(|(p, _)| *p == participant) {
            Some((_, m)) => *m = member,
            None => self.members.push((participant, member)),
        }
    }

    /// Whether `participant` shares their screen now (ignored until they have joined).
    pub fn share(&mut self, participant: u64, on: bool) {
        if let Some((_, member)) = self.members.iter_mut().find(|(p, _)| *p == participant) {
            member.sharing = on;
        }
    }

    pub fn leave(&mut self, participant: u64) {
        self.members.retain(|(p, _)| *p != participant);
        self.assigned.remove(&participant);
        self.layers.retain(|(p, _), _| *p != participant);
        self.speakers.forget(participant);
        for demand in self.demand.values_mut() {
            demand.retain(|(p, _), _| *p != participant);
        }
    }

    /// An audio level (RFC 6464) from `participant`'s microphone.
    pub fn speech(&mut self, participant: u64, level: i8, at: Instant) {
        self.speakers.observe(participant, level, at);
    }

    /// The layers `participant`'s track `mid` sends now. A layer its offer announced that
    /// has not been seen yet stays listed, unsized: a browser starts its higher layers only
    /// as its bandwidth estimate grows, and a layer paused before it was ever seen would
    /// otherwise be forgotten, so that nobody could ask for it again.
    pub fn layers(&mut self, participant: u64, mid: Mid, layers: Vec<Layer>) {
        if !self.members.iter().any(|(p, _)| *p == participant) {
            return;
        }
        let mut layers = layers;
        if let Some(before) = self.layers.get(&(participant, mid)) {
            let unseen: Vec<Layer> = before.iter().filter(|b| !layers.iter().any(|l| l.rid == b.rid)).cloned().collect();
            layers.extend(unseen);
        }
        self.layers.insert((participant, mid), layers.into());
    }

    /// Re-evaluates the dominant speaker; returns it when it changed.
    pub fn update_dominant(&mut self, now: Instant) -> Option<u64> {
        self.speakers.update_dominant(now)
    }

    /// What `shard` forwards now (replacing what it said before).
    pub fn demand(&mut self, shard: ShardId, demand: Demand) {
        self.demand.insert(shard, demand);
    }

    /// The layers of `participant`'s `mid` someone forwards or waits for, or the speakers'
    /// whole set: the first `keep_speakers` in speaking order keep every layer, so that the
    /// one who just started to talk is sent at full size before anyone asks.
    pub fn wanted_layers(&self, participant: u64, mid: Mid, keep_speakers: usize) -> Vec<Option<Rid>> {
        let order = self.speakers.order(&self.members.iter().map(|(p, _)| *p).collect::<Vec<_>>());
        let spoke = self.speakers.has_spoken(participant);
        let mut wanted: Vec<Option<Rid>> = Vec::new();
        if spoke && order.iter().take(keep_speakers).any(|p| *p == participant) {
            wanted.extend(self.layers.get(&(participant, mid)).into_iter().flat_map(|l| l.iter().map(|l| l.rid)));
        }
        for demand in self.demand.values() {
            for rid in demand.get(&(participant, mid)).into_iter().flatten() {
                if !wanted.contains(rid) {
                    wanted.push(*rid);
                }
            }
        }
        wanted
    }

    /// Recomputes every subscriber's slots and returns the plan: screens being shared come
    /// first (a presenter who stops talking stays on every screen), then the cameras of the
    /// last N speakers; everyone's microphone, and the sound of every share. Assignments
    /// are stable where they can be.
    pub fn plan(&mut self) -> Plan {
        let joined: Vec<u64> = self.members.iter().map(|(p, _)| *p).collect();
        let order = self.speakers.order(&joined);
        let by_id: HashMap<u64, &Member> = self.members.iter().map(|(p, m)| (*p, m)).collect();
        // Shared screens in join order, each kind's.
        let screens = |kind: MediaKind| -> Vec<Source> {
            self.members
                .iter()
                .filter(|(_, m)| m.sharing)
                .flat_map(|(who, m)| {
                    m.tracks.iter().filter(move |(mid, k)| *k == kind && m.screen.contains(mid)).map(move |(mid, _)| Source { participant: *who, mid: *mid })
                })
                .collect()
        };
        // Every participant's own track of each kind, in speaking order.
        let own = |kind: MediaKind| -> Vec<Source> {
            order
                .iter()
                .filter_map(|who| Some((*who, by_id.get(who)?)))
                // What a host holds back goes to nobody.
                .filter(|(_, m)| if kind == MediaKind::Audio { !m.held.audio } else { !m.held.video })
                .flat_map(|(who, m)| {
                    m.tracks.iter().filter(move |(mid, k)| *k == kind && !m.screen.contains(mid)).map(move |(mid, _)| Source { participant: who, mid: *mid })
                })
                .collect()
        };
        let shared = [screens(MediaKind::Audio), screens(MediaKind::Video)];
        let ranked = [own(MediaKind::Audio), own(MediaKind::Video)];
        let mut assignments = HashMap::new();
        for (subscriber, member) in &self.members {
            let previous = self.assigned.remove(subscriber).unwrap_or_default();
            let mut next: [Assignment; 2] = Default::default();
            let mut slots_of_subscriber = Vec::new();
            for kind in [MediaKind::Audio, MediaKind::Video] {
                let limit = if kind == MediaKind::Video { self.last_n } else { usize::MAX };
                let others = |s: &&Source| s.participant != *subscriber;
                let sources: Vec<Source> =
                    shared[kind_index(kind)].iter().filter(others).chain(ranked[kind_index(kind)].iter().filter(others).take(limit)).copied().collect();
                let slots: Vec<Mid> = member.slots.iter().filter(|(_, k)| *k == kind).map(|(m, _)| *m).collect();
                let assignment = assign(&previous[kind_index(kind)], &slots, &sources);
                slots_of_subscriber.extend(assignment.iter().map(|(slot, source)| (*slot, kind, *source)));
                next[kind_index(kind)] = assignment;
            }
            assignments.insert(*subscriber, slots_of_subscriber);
            self.assigned.insert(*subscriber, next);
        }
        let mut wanted: HashMap<NodeId, HashSet<(u64, Mid, Option<Rid>)>> = HashMap::new();
        for (shard, demand) in &self.demand {
            let feeds = wanted.entry(shard.node).or_default();
            for ((publisher, mid), layers) in demand {
                feeds.extend(layers.iter().map(|layer| (*publisher, *mid, *layer)));
            }
        }
        Plan {
            members: self.members.iter().map(|(p, m)| (*p, m.shard)).collect(),
            dominant: self.speakers.dominant(),
            assignments,
            layers: self.layers.clone(),
            screens: shared.iter().flatten().map(|s| (s.participant, s.mid)).collect(),
            wanted,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn shard(index: usize) -> ShardId {
        ShardId { node: NodeId::default(), index }
    }

    fn member(index: usize) -> Member {
        let mut slots = Vec::new();
        for i in 0..2 {
            slots.push((Mid::from(format!("a{i}").as_str()), MediaKind::Audio));
            slots.push((Mid::from(format!("v{i}").as_str()), MediaKind::Video));
        }
        Member {
            shard: shard(index),
            tracks: vec![(Mid::from("0"), MediaKind::Audio), (Mid::from("1"), MediaKind::Video)],
            rids: vec![],
            slots,
            screen: vec![],
            sharing: false,
            held: crate::Held::default(),
        }
    }

    fn sources(plan: &Plan, subscriber: u64, kind: MediaKind) -> Vec<u64> {
        let mut s: Vec<(Mid, u64)> = plan.assignments[&subscriber].iter().filter(|(_, k, _)| *k == kind).map(|(m, _, s)| (*m, s.participant)).collect();
        s.sort();
        s.into_iter().map(|(_, p)| p).collect()
    }

    #[test]
    fn everyone_is_assigned_the_others_up_to_their_slots_and_last_n() {
        let mut planner = Planner::new(1);
        for p in 1..=3 {
            planner.join(p, member(p as usize % 2));
        }
        let plan = planner.plan();
        assert_eq!(plan.members, vec![(1, shard(1)), (2, shard(0)), (3, shard(1))]);
        assert_eq!(plan.shards(), vec![shard(1), shard(0)]);
        assert_eq!(sources(&plan, 1, MediaKind::Audio), vec![2, 3]);
        assert_eq!(sources(&plan, 1, MediaKind::Video), vec![2], "last-N of one");
        assert_eq!(sources(&plan, 2, MediaKind::Video), vec![1]);
    }

    #[test]
    fn a_new_speaker_takes_a_video_slot_and_the_others_keep_theirs() {
        let t0 = Instant::now();
        let mut planner = Planner::new(2);
        for p in 1..=4 {
            planner.join(p, member(0));
        }
        assert_eq!(sources(&planner.plan(), 1, MediaKind::Video), vec![2, 3]);
        for i in 0..25u64 {
            planner.speech(4, -20, t0 + Duration::from_millis(20 * i));
        }
        let plan = planner.plan();
        // 4 speaks: it replaces the last of the order (3) in 3's slot; 2 stays in place.
        assert_eq!(sources(&plan, 1, MediaKind::Video), vec![2, 4]);
        assert_eq!(planner.update_dominant(t0 + Duration::from_millis(500)), Some(4));
        assert_eq!(planner.plan().dominant, Some(4));
    }

    #[test]
    fn a_shared_screen_reaches_everyone_ahead_of_the_last_n_cameras_whoever_speaks() {
        let t0 = Instant::now();
        let (screen, sound) = (Mid::from("2"), Mid::from("3"));
        let tracks = vec![(Mid::from("0"), MediaKind::Audio), (Mid::from("1"), MediaKind::Video), (screen, MediaKind::Video), (sound, MediaKind::Audio)];
        let mut planner = Planner::new(2);
        planner.join(1, Member { tracks: tracks.clone(), screen: vec![screen, sound], ..member(0) });
        for p in 2..=4 {
            planner.join(p, member(0));
        }
        let forwarded =
            |plan: &Plan, subscriber: u64| -> Vec<(u64, Mid)> { plan.assignments[&subscriber].iter().map(|(_, _, s)| (s.participant, s.mid)).collect() };
        let plan = planner.plan();
        assert!(plan.screens.is_empty());
        assert!(!forwarded(&plan, 2).iter().any(|(_, mid)| *mid == screen || *mid == sound), "a screen not shared goes nowhere");
        planner.share(1, true);
        // The presenter falls silent; the three others speak, the latest last.
        for (turn, p) in [2u64, 3, 4].into_iter().enumerate() {
            for i in 0..25u64 {
                planner.speech(p, -20, t0 + Duration::from_millis(1000 * turn as u64 + 20 * i));
            }
        }
        let plan = planner.plan();
        assert_eq!(plan.screens, HashSet::from([(1, screen), (1, sound)]));
        for subscriber in 2..=4 {
            let got = forwarded(&plan, subscriber);
            assert!(got.contains(&(1, screen)) && got.contains(&(1, sound)), "{subscriber} gets the screen and its sound: {got:?}");
            let cameras = got.iter().filter(|(p, mid)| *mid == Mid::from("1") && *p != 1).count();
            assert_eq!(cameras, 1, "{subscriber}: two video slots, the screen takes one: {got:?}");
        }
        assert!(!forwarded(&plan, 1).contains(&(1, screen)), "nobody receives their own screen");
        planner.share(1, false);
        let plan = planner.plan();
        assert!(plan.screens.is_empty());
        assert!(!forwarded(&plan, 2).contains(&(1, screen)), "a share that stopped is no longer forwarded");
    }

    #[test]
    fn what_a_host_holds_back_goes_to_nobody_until_they_turn_it_on_again() {
        let mut planner = Planner::new(9);
        for p in 1..=3 {
            planner.join(p, member(0));
        }
        planner.join(2, Member { held: crate::Held { audio: true, video: false }, ..member(0) });
        let plan = planner.plan();
        for subscriber in [1, 3] {
            assert_eq!(sources(&plan, subscriber, MediaKind::Audio), vec![if subscriber == 1 { 3 } else { 1 }], "nobody hears 2");
            assert!(sources(&plan, subscriber, MediaKind::Video).contains(&2), "2's camera still goes");
        }
        planner.join(2, Member { held: crate::Held { audio: false, video: true }, ..member(0) });
        assert!(!sources(&planner.plan(), 1, MediaKind::Video).contains(&2), "a camera a host stopped goes to nobody");
        planner.join(2, member(0));
        let mut heard = sources(&planner.plan(), 1, MediaKind::Audio);
        heard.sort();
        assert_eq!(heard, vec![2, 3], "2 unmuted: heard again");
    }

    #[test]
    fn whoever_leaves_is_forgotten_everywhere() {
        let t0 = Instant::now();
        let mut planner = Planner::new(9);
        planner.join(1, member(0));
        planner.join(2, member(1));
        planner.layers(2, Mid::from("1"), vec![Layer { rid: Some(Rid::from("l")), height: 180, bitrate: 150_000 }]);
        planner.speech(2, -20, t0);
        planner.leave(2);
        let plan = planner.plan();
        assert_eq!(plan.members, vec![(1, shard(0))]);
        assert!(plan.assignments[&1].is_empty());
        assert!(plan.layers.is_empty());
        planner.layers(2, Mid::from("1"), vec![]);
        assert!(planner.plan().layers.is_empty(), "reports from someone gone are ignored");
    }

    #[test]
    fn layers_are_wanted_when_a_shard_forwards_them_or_their_publisher_just_spoke() {
        let t0 = Instant::now();
        let mid = Mid::from("1");
        let (l, h) = (Some(Rid::from("l")), Some(Rid::from("h")));
        let mut planner = Planner::new(9);
        planner.join(1, member(0));
        planner.join(2, member(1));
        planner.layers(2, mid, vec![Layer { rid: l, height: 180, bitrate: 150_000 }, Layer { rid: h, height: 720, bitrate: 1_500_000 }]);
        assert!(planner.wanted_layers(2, mid, 1).is_empty(), "nobody forwards anything of 2's");
        planner.demand(shard(0), HashMap::from([((2, mid), vec![l])]));
        planner.demand(ShardId { node: NodeId(7), index: 1 }, HashMap::from([((2, mid), vec![l])]));
        assert_eq!(planner.wanted_layers(2, mid, 1), vec![l]);
        let plan = planner.plan();
        assert!(plan.wanted_by(NodeId(7), 2, mid, l), "node 7 forwards 2's l");
        assert!(!plan.wanted_by(NodeId(7), 2, mid, h), "and nothing else");
        for i in 0..10u64 {
            planner.speech(2, -20, t0 + Duration::from_millis(20 * i));
        }
        assert_eq!(planner.wanted_layers(2, mid, 1), vec![l, h], "a new speaker sends everything");
        assert_eq!(planner.wanted_layers(2, mid, 0), vec![l]);
    }

    #[test]
    fn an_offered_layer_not_seen_yet_stays_in_the_plan_for_a_speaker_to_resume() {
        // 2's offer announces l, m and h; only l has arrived so far (the browser starts its
        // higher layers as its estimate grows, and the relay may pause them before that).
        let t0 = Instant::now();
        let mid = Mid::from("1");
        let (l, m, h) = (Some(Rid::from("l")), Some(Rid::from("m")), Some(Rid::from("h")));
        let mut planner = Planner::new(9);
        planner.join(1, member(0));
        planner.join(2, Member { rids: vec![(mid, vec![Rid::from("l"), Rid::from("m"), Rid::from("h")])], ..member(1) });
        planner.layers(2, mid, vec![Layer { rid: l, height: 180, bitrate: 150_000 }]);
        for i in 0..10u64 {
            planner.speech(2, -20, t0 + Duration::from_millis(20 * i));
        }
        let wanted = planner.wanted_layers(2, mid, 1);
        assert_eq!(wanted.len(), 3, "{wanted:?}");
        assert!([l, m, h].iter().all(|r| wanted.contains(r)), "the speaker is asked for every layer it offered: {wanted:?}");
    }
}

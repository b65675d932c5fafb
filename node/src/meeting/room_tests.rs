use super::*;
use crate::meeting::protocol::{IceCandidate, SdpKind, SessionDescription};

/// Everyone holds the same link, each from their own address unless a test says otherwise.
fn seat(name: &str, role: Role) -> Seat {
    let origin = IpAddr::from([192, 0, 2, name.bytes().fold(0u8, |h, b| h.wrapping_mul(31).wrapping_add(b))]);
    seat_from(name, role, "link", origin)
}

fn seat_from(name: &str, role: Role, invite: &str, origin: IpAddr) -> Seat {
    Seat { name: name.into(), role, audio: true, video: true, invite: invite.into(), origin, personal: false }
}

const OFFICE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

fn config(threshold: usize) -> RoomConfig {
    RoomConfig { mesh_threshold: threshold, reconnect_grace_ms: 30_000, sfu_hold_down_ms: 15_000, capacity: 10, seats_per_address: 20 }
}

fn join(room: &mut Room, conn: ConnId, name: &str, now: Millis) -> ParticipantId {
    room.join(conn, seat(name, Role::Guest), format!("secret-{conn}"), &|_| vec![], now).unwrap()
}

fn offer() -> SignalPayload {
    SignalPayload::Description(SessionDescription { kind: SdpKind::Offer, sdp: "v=0".into() })
}

/// The messages each connection received, in order.
fn sent(effects: &[Effect]) -> Vec<(ConnId, &ServerMessage)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { conn, message } => Some((*conn, message)),
            Effect::Close { .. } | Effect::Departed { .. } | Effect::Held { .. } => None,
        })
        .collect()
}

fn types(effects: &[Effect], conn: ConnId) -> Vec<&'static str> {
    sent(effects)
        .into_iter()
        .filter(|(c, _)| *c == conn)
        .map(|(_, m)| match m {
            ServerMessage::Welcome { .. } => "welcome",
            ServerMessage::Joined { .. } => "joined",
            ServerMessage::Updated { .. } => "updated",
            ServerMessage::Left { .. } => "left",
            ServerMessage::Signal { .. } => "signal",
            ServerMessage::Mode { .. } => "mode",
            ServerMessage::Removed { .. } => "removed",
            ServerMessage::Error { .. } => "error",
            ServerMessage::Pong {} => "pong",
            ServerMessage::Nodes { .. } => "nodes",
            ServerMessage::SfuAnswer { .. } => "sfu-answer",
            ServerMessage::SfuSlots { .. } => "sfu-slots",
            ServerMessage::Speaker { .. } => "speaker",
            ServerMessage::SfuLayers { .. } => "sfu-layers",
            ServerMessage::SfuPaused { .. } => "sfu-paused",
            ServerMessage::Chat { .. } => "chat",
            ServerMessage::Muted { .. } => "muted",
            ServerMessage::Locked { .. } => "locked",
            ServerMessage::Lobby { .. } => "lobby",
            ServerMessage::Waiting { .. } => "waiting",
            ServerMessage::Denied { .. } => "denied",
            ServerMessage::JoinedMuted { .. } => "joined-muted",
        })
        .collect()
}

#[test]
fn join_welcomes_the_newcomer_and_tells_the_others() {
    let mut room = Room::new("standup", config(4));
    let a = join(&mut room, 1, "Ana", 0);
    room.take_effects();
    let b = join(&mut room, 2, "Bo", 10);
    let effects = room.take_effects();
    assert_ne!(a, b);
    let Effect::Send { conn: 2, message: ServerMessage::Welcome { you, participants, resumed: false, mode: MediaMode::Mesh, resume_secret, .. } } = &effects[0]
    else {
        panic!("first effect is the welcome: {effects:?}")
    };
    assert_eq!((you.id, you.name.as_str()), (b, "Bo"));
    assert_eq!(resume_secret, "secret-2");
    assert_eq!(participants.iter().map(|p| p.id).collect::<Vec<_>>(), vec![a]);
    assert_eq!(types(&effects, 1), vec!["joined"]);
    assert_eq!(room.seat_of(2), Some(b));
}

#[test]
fn a_connection_takes_one_seat_and_a_full_room_refuses() {
    let mut room = Room::new("r", RoomConfig { capacity: 2, ..config(4) });
    join(&mut room, 1, "A", 0);
    assert_eq!(room.join(1, seat("A again", Role::Guest), "s".into(), &|_| vec![], 0), Err(RoomError::AlreadySeated));
    join(&mut room, 2, "B", 0);
    assert_eq!(room.join(3, seat("C", Role::Guest), "s".into(), &|_| vec![], 0), Err(RoomError::Full(2)));
    assert_eq!(room.len(), 2);
}

#[test]
fn leave_closes_the_leaver_and_tells_the_others() {
    let mut room = Room::new("r", config(4));
    let a = join(&mut room, 1, "A", 0);
    join(&mut room, 2, "B", 0);
    room.take_effects();
    room.leave(1, 5).unwrap();
    let effects = room.take_effects();
    assert!(effects.contains(&Effect::Close { conn: 1, why: CloseWhy::Left }));
    assert!(effects.iter().any(|e| matches!(e, Effect::Departed { participant, .. } if *participant == a)));
    assert!(effects.contains(&Effect::Send { conn: 2, message: ServerMessage::Left { participant: a, reason: LeftReason::Left } }));
    assert_eq!(types(&effects, 1), Vec::<&str>::new());
    assert_eq!(room.leave(1, 6), Err(RoomError::NotSeated));
    room.leave(2, 7).unwrap();
    assert!(room.is_empty());
}

#[test]
fn signals_go_to_the_named_participant_only() {
    let mut room = Room::new("r", config(4));
    let a = join(&mut room, 1, "A", 0);
    let b = join(&mut room, 2, "B", 0);
    join(&mut room, 3, "C", 0);
    room.take_effects();
    room.signal(1, b, offer()).unwrap();
    let effects = room.take_effects();
    assert_eq!(sent(&effects), vec![(2, &ServerMessage::signal(a, offer()))]);
    assert_eq!(room.signal(1, ParticipantId(99), offer()), Err(RoomError::NoSuchParticipant(ParticipantId(99))));
    assert_eq!(room.signal(1, a, offer()), Err(RoomError::NoSuchParticipant(a)));
    assert_eq!(room.signal(42, a, offer()), Err(RoomError::NotSeated));
    assert!(room.take_effects().is_empty());
}

#[test]
fn media_changes_are_shown_to_the_others_once() {
    let mut room = Room::new("r", config(4));
    let a = join(&mut room, 1, "A", 0);
    join(&mut room, 2, "B", 0);
    room.take_effects();
    room.set_media(1, false, true, false).unwrap();
    room.set_media(1, false, true, false).unwrap();
    let effects = room.take_effects();
    assert_eq!(effects.len(), 1);
    let (2, ServerMessage::Updated { participant }) = sent(&effects)[0] else { panic!("{effects:?}") };
    assert_eq!((participant.id, participant.audio, participant.video), (a, false, true));
    room.set_media(1, false, true, true).unwrap();
    let effects = room.take_effects();
    let (2, ServerMessage::Updated { participant }) = sent(&effects)[0] else { panic!("{effects:?}") };
    assert!(participant.screen, "a share shows in the participant's state");
}

#[test]
fn a_dropped_connection_keeps_its_seat_for_the_grace_period_and_resumes() {
    let mut room = Room::new("r", config(4));
    let a = join(&mut room, 1, "A", 0);
    let b = join(&mut room, 2, "B", 0);
    room.take_effects();

    room.disconnected(1, 1_000);
    let effects = room.take_effects();
    let (2, ServerMessage::Updated { participant }) = sent(&effects)[0] else { panic!("{effects:?}") };
    assert!(!participant.connected);
    assert_eq!(room.len(), 2);
    assert_eq!(room.next_deadline(), Some(31_000));

    // While A is away, B's offer is held for it; B's media change is not (the welcome will say).
    room.signal(2, a, offer()).unwrap();
    room.set_media(2, false, false, false).unwrap();
    assert!(room.take_effects().is_empty());

    room.tick(30_999);
    assert_eq!(room.len(), 2);
    let resumed = room.resume_or_join(7, a, "secret-1", seat("A", Role::Guest), "fresh".into(), &|_| vec![], 30_999).unwrap();
    assert_eq!(resumed, a);
    let effects = room.take_effects();
    assert_eq!(types(&effects, 7), vec!["welcome", "signal"]);
    let (7, ServerMessage::Welcome { resumed: true, participants, .. }) = sent(&effects)[0] else { panic!("{effects:?}") };
    assert_eq!((participants[0].id, participants[0].audio), (b, false));
    let (2, ServerMessage::Updated { participant }) = sent(&effects)[2] else { panic!("{effects:?}") };
    assert!(participant.connected);
    assert_eq!(room.next_deadline(), None);
    assert_eq!(room.seat_of(7), Some(a));
}

#[test]
fn the_seat_ends_when_the_grace_period_does() {
    let mut room = Room::new("r", config(4));
    let a = join(&mut room, 1, "A", 0);
    join(&mut room, 2, "B", 0);
    room.disconnected(1, 1_000);
    room.take_effects();
    room.tick(31_000);
    let effects = room.take_effects();
    assert_eq!(sent(&effects), vec![(2, &ServerMessage::Left { participant: a, reason: LeftReason::TimedOut })]);
    assert!(effects.iter().any(|e| matches!(e, Effect::Departed { participant, .. } if *participant == a)));
    // Coming back after that is a fresh seat with a new id.
    let again = room.resume_or_join(9, a, "secret-1", seat("A", Role::Guest), "fresh".into(), &|_| vec![], 40_000).unwrap();
    assert_ne!(again, a);
    let effects = room.take_effects();
    assert!(matches!(sent(&effects)[0], (9, ServerMessage::Welcome { resumed: false, .. })));
    assert_eq!(types(&effects, 2), vec!["joined"]);
}

#[test]
fn a_resumed_seat_takes_the_role_of_the_invite_presented_now() {
    let mut room = Room::new("r", config(4));
    let a = room.join(1, seat("A", Role::Host), "secret-1".into(), &|_| vec![], 0).unwrap();
    let b = join(&mut room, 2, "B", 0);
    room.disconnected(1, 1_000);
    room.take_effects();
    // A comes back with a guest link: no longer a host, and everyone is told.
    room.resume_or_join(3, a, "secret-1", seat("A", Role::Guest), "x".into(), &|_| vec![], 2_000).unwrap();
    let effects = room.take_effects();
    let (2, ServerMessage::Updated { participant }) = sent(&effects)[1] else { panic!("{effects:?}") };
    assert_eq!((participant.id, participant.role), (a, "guest"));
    assert_eq!(room.remove(3, b, false, 3_000), Err(RoomError::NotHost));
}

#[test]
fn a_wrong_resume_secret_gets_a_new_seat_not_the_old_one() {
    let mut room = Room::new("r", config(4));
    let a = join(&mut room, 1, "A", 0);
    room.disconnected(1, 0);
    let other = room.resume_or_join(5, a, "secret-2", seat("Mallory", Role::Guest), "s5".into(), &|_| vec![], 1).unwrap();
    assert_ne!(other, a);
    assert_eq!(room.len(), 2);
}

#[test]
fn resuming_a_seat_whose_old_connection_lingers_closes_the_old_one() {
    let mut room = Room::new("r", config(4));
    let a = join(&mut room, 1, "A", 0);
    join(&mut room, 2, "B", 0);
    room.take_effects();
    room.resume_or_join(3, a, "secret-1", seat("A", Role::Guest), "x".into(), &|_| vec![], 10).unwrap();
    let effects = room.take_effects();
    assert!(effects.contains(&Effect::Close { conn: 1, why: CloseWhy::Replaced }));
    assert_eq!(types(&effects, 2), Vec::<&str>::new(), "nobody else notices");
    // The old connection's late close does not disturb the resumed seat.
    room.disconnected(1, 11);
    assert!(room.take_effects().is_empty());
    assert_eq!(room.seat_of(3), Some(a));
}

#[test]
fn with_no_grace_a_drop_is_a_departure() {
    let mut room = Room::new("r", RoomConfig { reconnect_grace_ms: 0, ..config(4) });
    join(&mut room, 1, "A", 0);
    join(&mut room, 2, "B", 0);
    room.take_effects();
    room.disconnected(1, 0);
    assert_eq!(types(&room.take_effects(), 2), vec!["left"]);
}

#[test]
fn hosts_remove_guests_and_guests_remove_nobody() {
    let mut room = Room::new("r", config(4));
    let host = room.join(1, seat("Host", Role::Host), "h".into(), &|_| vec![], 0).unwrap();
    let guest = join(&mut room, 2, "Guest", 0);
    join(&mut room, 3, "Other", 0);
    room.take_effects();
    assert_eq!(room.remove(2, host, false, 1), Err(RoomError::NotHost));
    assert_eq!(room.remove(1, host, false, 1), Err(RoomError::CannotRemoveSelf));
    assert_eq!(room.remove(1, ParticipantId(77), false, 1), Err(RoomError::NoSuchParticipant(ParticipantId(77))));
    room.remove(1, guest, false, 1).unwrap();
    let effects = room.take_effects();
    assert_eq!(effects[0], Effect::Send { conn: 2, message: ServerMessage::Removed { by: "Host".into() } });
    assert_eq!(effects[1], Effect::Close { conn: 2, why: CloseWhy::Removed });
    assert!(matches!(&effects[2], Effect::Departed { participant, .. } if *participant == guest), "{effects:?}");
    assert_eq!(types(&effects, 1), vec!["left"]);
    assert_eq!(types(&effects, 3), vec!["left"]);
    assert_eq!(room.len(), 2);
}

fn modes(effects: &[Effect]) -> Vec<(ConnId, MediaMode)> {
    sent(effects)
        .into_iter()
        .filter_map(|(c, m)| match m {
            ServerMessage::Mode { mode } => Some((c, *mode)),
            _ => None,
        })
        .collect()
}

#[test]
fn passing_the_threshold_switches_everyone_to_the_sfu_at_once() {
    let mut room = Room::new("r", config(2));
    join(&mut room, 1, "A", 0);
    join(&mut room, 2, "B", 0);
    assert!(modes(&room.take_effects()).is_empty());
    assert_eq!(room.mode(), MediaMode::Mesh);
    join(&mut room, 3, "C", 100);
    let effects = room.take_effects();
    // Those present switch before they hear of the newcomer, whose welcome says SFU: nobody
    // opens a mesh connection to C only to close it.
    assert_eq!(modes(&effects), vec![(1, MediaMode::Sfu), (2, MediaMode::Sfu)]);
    assert_eq!(types(&effects, 1), vec!["mode", "joined"]);
    assert!(matches!(sent(&effects)[2], (3, ServerMessage::Welcome { mode: MediaMode::Sfu, .. })));
    assert_eq!(room.mode(), MediaMode::Sfu);
}

#[test]
fn returning_to_mesh_waits_for_the_hold_down() {
    let mut room = Room::new("r", config(2));
    for c in 1..=3 {
        join(&mut room, c, "P", 0);
    }
    room.take_effects();
    room.leave(3, 1_000).unwrap();
    assert_eq!(room.mode(), MediaMode::Sfu);
    assert_eq!(room.next_deadline(), Some(16_000));
    room.tick(15_999);
    assert_eq!(room.mode(), MediaMode::Sfu);
    assert!(modes(&room.take_effects()).is_empty());
    room.tick(16_000);
    assert_eq!(room.mode(), MediaMode::Mesh);
    assert_eq!(modes(&room.take_effects()), vec![(1, MediaMode::Mesh), (2, MediaMode::Mesh)]);
    assert_eq!(room.next_deadline(), None);
}

#[test]
fn flapping_at_the_threshold_does_not_flap_the_mode() {
    let mut room = Room::new("r", config(2));
    join(&mut room, 1, "A", 0);
    join(&mut room, 2, "B", 0);
    let mut switches = 0;
    let mut now = 0;
    for round in 0..20 {
        let conn = 100 + round;
        join(&mut room, conn, "Flapper", now);
        now += 2_000;
        room.tick(now);
        room.leave(conn, now).unwrap();
        now += 2_000;
        room.tick(now);
        switches += modes(&room.take_effects()).len();
    }
    // One switch to the SFU (sent to the 2 present; the flapper's welcome carries it), none
    // back while the flapping goes on.
    assert_eq!(switches, 2);
    assert_eq!(room.mode(), MediaMode::Sfu);
    room.tick(now + 15_000);
    assert_eq!(room.mode(), MediaMode::Mesh);
}

#[test]
fn a_drop_is_not_a_departure_for_the_mode() {
    let mut room = Room::new("r", config(2));
    for c in 1..=3 {
        join(&mut room, c, "P", 0);
    }
    room.disconnected(3, 0);
    room.tick(20_000);
    assert_eq!(room.mode(), MediaMode::Sfu, "the away seat still counts");
    room.tick(30_000);
    assert_eq!(room.len(), 2);
    room.tick(45_000);
    assert_eq!(room.mode(), MediaMode::Mesh);
}

#[test]
fn threshold_zero_means_always_sfu() {
    let mut room = Room::new("r", config(0));
    assert_eq!(room.mode(), MediaMode::Sfu);
    join(&mut room, 1, "A", 0);
    let effects = room.take_effects();
    assert!(matches!(sent(&effects)[0], (1, ServerMessage::Welcome { mode: MediaMode::Sfu, .. })));
    assert!(modes(&effects).is_empty());
    room.leave(1, 1).unwrap();
    room.tick(100_000);
    assert_eq!(room.mode(), MediaMode::Sfu);
}

#[test]
fn an_emptied_room_has_no_pending_work() {
    let mut room = Room::new("r", config(1));
    join(&mut room, 1, "A", 0);
    join(&mut room, 2, "B", 0);
    room.leave(1, 0).unwrap();
    room.leave(2, 0).unwrap();
    assert!(room.is_empty());
    assert_eq!(room.mode(), MediaMode::Mesh);
    assert_eq!(room.next_deadline(), None);
}

#[test]
fn held_signals_are_bounded() {
    let mut room = Room::new("r", config(4));
    let a = join(&mut room, 1, "A", 0);
    join(&mut room, 2, "B", 0);
    room.disconnected(1, 0);
    let candidate =
        |i: usize| SignalPayload::Candidate(IceCandidate { candidate: format!("c{i}"), sdp_mid: None, sdp_m_line_index: None, username_fragment: None });
    for i in 0..MAX_HELD_MESSAGES + 50 {
        room.signal(2, a, candidate(i)).unwrap();
    }
    room.take_effects();
    room.resume_or_join(3, a, "secret-1", seat("A", Role::Guest), "x".into(), &|_| vec![], 1).unwrap();
    let effects = room.take_effects();
    let signals: Vec<_> = sent(&effects).into_iter().filter(|(_, m)| matches!(m, ServerMessage::Signal { .. })).collect();
    assert_eq!(signals.len(), MAX_HELD_MESSAGES);
    assert_eq!(*signals[0].1, ServerMessage::signal(ParticipantId(2), candidate(50)), "the oldest were dropped");
}

#[test]
fn a_dominant_speaker_event_reaches_everyone_connected_but_not_the_away() {
    let mut room = Room::new("standup", config(0));
    let a = join(&mut room, 1, "Ana", 0);
    join(&mut room, 2, "Bo", 0);
    join(&mut room, 3, "Cy", 0);
    room.disconnected(3, 10);
    room.take_effects();
    room.notify_all(ServerMessage::Speaker { participant: a });
    let effects = room.take_effects();
    assert_eq!(types(&effects, 1), vec!["speaker"]);
    assert_eq!(types(&effects, 2), vec!["speaker"]);
    assert!(types(&effects, 3).is_empty());
}

#[test]
fn a_pair_that_cannot_connect_moves_a_small_room_to_the_sfu_until_one_of_them_leaves() {
    let mut room = Room::new("r", config(4));
    let a = join(&mut room, 1, "A", 0);
    let b = join(&mut room, 2, "B", 0);
    join(&mut room, 3, "C", 0);
    room.take_effects();
    assert!(matches!(room.mesh_failed(1, a, 10), Err(RoomError::NoSuchParticipant(_))), "not with oneself");
    assert!(matches!(room.mesh_failed(1, ParticipantId(99), 10), Err(RoomError::NoSuchParticipant(_))));
    assert_eq!(room.mode(), MediaMode::Mesh);
    room.mesh_failed(2, a, 100).unwrap();
    assert_eq!(room.mode(), MediaMode::Sfu);
    assert_eq!(modes(&room.take_effects()), vec![(1, MediaMode::Sfu), (2, MediaMode::Sfu), (3, MediaMode::Sfu)]);
    // Well under the threshold, and past the hold-down: still SFU while A and B are both here.
    room.tick(60_000);
    assert_eq!(room.mode(), MediaMode::Sfu);
    // B leaves: the usual hold-down, then mesh again.
    let _ = b;
    room.leave(2, 61_000).unwrap();
    room.tick(75_999);
    assert_eq!(room.mode(), MediaMode::Sfu);
    room.tick(76_000);
    assert_eq!(room.mode(), MediaMode::Mesh);
}

#[test]
fn sfu_offers_only_in_sfu_mode_and_not_too_often() {
    let mut room = Room::new("r", config(2));
    join(&mut room, 1, "A", 0);
    assert_eq!(room.sfu_offer(1, 0), Err(RoomError::NotSfu), "a mesh meeting has no SFU to offer to");
    assert_eq!(room.sfu_offer(9, 0), Err(RoomError::NotSeated));
    join(&mut room, 2, "B", 0);
    join(&mut room, 3, "C", 0);
    assert_eq!(room.mode(), MediaMode::Sfu);
    let granted = (0..20).filter(|_| room.sfu_offer(1, 1_000).is_ok()).count();
    assert_eq!(granted, 4, "a burst of four");
    assert_eq!(room.sfu_offer(1, 1_000), Err(RoomError::TooManyOffers));
    assert!(room.sfu_offer(2, 1_000).is_ok(), "each seat has its own budget");
    assert!(room.sfu_offer(1, 6_000).is_ok(), "then one every five seconds");
    assert_eq!(room.sfu_offer(1, 6_000), Err(RoomError::TooManyOffers));
}

#[test]
fn a_full_meeting_gives_the_oldest_away_seat_to_a_newcomer() {
    let mut room = Room::new("r", RoomConfig { capacity: 3, ..config(4) });
    let a = join(&mut room, 1, "A", 0);
    let b = join(&mut room, 2, "B", 0);
    join(&mut room, 3, "C", 0);
    assert_eq!(room.join(4, seat("D", Role::Guest), "s4".into(), &|_| vec![], 10), Err(RoomError::Full(3)));
    room.disconnected(2, 100);
    room.disconnected(1, 200);
    room.take_effects();
    // B dropped first: B's seat goes.
    let d = room.join(4, seat("D", Role::Guest), "s4".into(), &|_| vec![], 300).unwrap();
    let effects = room.take_effects();
    assert!(effects.iter().any(|e| matches!(e, Effect::Departed { participant, .. } if *participant == b)), "{effects:?}");
    assert_eq!(room.len(), 3);
    assert!(room.resume_or_join(5, a, "secret-1", seat("A", Role::Guest), "x".into(), &|_| vec![], 400).is_ok());
    assert_ne!(d, b);
}

#[test]
fn a_removed_link_holder_gets_no_new_seat_from_the_same_network_and_others_with_the_link_still_do() {
    let mut room = Room::new("r", config(4));
    let host = room.join(1, seat_from("Host", Role::Host, "host-link", OFFICE), "h".into(), &|_| vec![], 0).unwrap();
    let troll = room.join(2, seat_from("Troll", Role::Guest, "link", OFFICE), "t".into(), &|_| vec![], 0).unwrap();
    room.remove(1, troll, false, 10).unwrap();
    assert_eq!(room.join(3, seat_from("Troll", Role::Guest, "link", OFFICE), "t2".into(), &|_| vec![], 20), Err(RoomError::Barred));
    assert_eq!(
        room.resume_or_join(3, troll, "t", seat_from("Troll", Role::Guest, "link", OFFICE), "t3".into(), &|_| vec![], 30),
        Err(RoomError::Barred),
        "the removed seat's resume secret is worth nothing"
    );
    assert_eq!(RoomError::Barred.to_protocol().code, "removed");
    let elsewhere = IpAddr::from([203, 0, 113, 9]);
    assert!(room.join(4, seat_from("Friend", Role::Guest, "link", elsewhere), "f".into(), &|_| vec![], 40).is_ok(), "the same link elsewhere");
    assert!(room.join(5, seat_from("Colleague", Role::Guest, "other-link", OFFICE), "c".into(), &|_| vec![], 50).is_ok(), "another link there");
    assert_eq!(room.len(), 3);
    assert!(room.seat_of(1) == Some(host));
}

#[test]
fn one_address_holds_at_most_its_share_of_guest_seats_and_its_away_seats_yield_first() {
    let mut room = Room::new("r", RoomConfig { seats_per_address: 3, ..config(4) });
    for conn in 1..=3 {
        room.join(conn, seat_from(&format!("G{conn}"), Role::Guest, "link", OFFICE), format!("s{conn}"), &|_| vec![], 0).unwrap();
    }
    assert_eq!(room.join(4, seat_from("G4", Role::Guest, "link", OFFICE), "s4".into(), &|_| vec![], 10), Err(RoomError::AddressFull(3)));
    assert_eq!(RoomError::AddressFull(3).to_protocol().code, "address_full");
    assert!(room.join(5, seat_from("Host", Role::Host, "host-link", OFFICE), "h".into(), &|_| vec![], 10).is_ok(), "hosts are not counted");
    let loopback = IpAddr::from([127, 0, 0, 1]);
    for conn in 6..=9 {
        assert!(room.join(conn, seat_from("Bot", Role::Guest, "link", loopback), format!("s{conn}"), &|_| vec![], 10).is_ok(), "loopback is not limited");
    }
    room.disconnected(2, 20);
    room.take_effects();
    assert!(room.join(10, seat_from("G4", Role::Guest, "link", OFFICE), "s10".into(), &|_| vec![], 30).is_ok());
    let effects = room.take_effects();
    assert!(effects.iter().any(|e| matches!(e, Effect::Departed { participant, .. } if *participant == ParticipantId(2))), "{effects:?}");
    let room_unlimited = &mut Room::new("r", RoomConfig { seats_per_address: 0, ..config(4) });
    for conn in 1..=10 {
        assert!(room_unlimited.join(conn, seat_from("G", Role::Guest, "link", OFFICE), "s".into(), &|_| vec![], 0).is_ok(), "0: no limit");
    }
}

#[test]
fn fresh_joins_from_one_address_come_in_a_burst_then_one_a_second_and_resumes_are_not_counted() {
    let mut room = Room::new("r", RoomConfig { capacity: 100, seats_per_address: 0, ..config(4) });
    let mut seated = Vec::new();
    let mut conn = 0;
    let mut refused = None;
    while refused.is_none() {
        conn += 1;
        match room.join(conn, seat_from("G", Role::Guest, "link", OFFICE), format!("s{conn}"), &|_| vec![], 0) {
            Ok(id) => seated.push((conn, id)),
            Err(e) => refused = Some(e),
        }
    }
    assert_eq!((seated.len(), refused), (20, Some(RoomError::TooManyJoins)));
    assert_eq!(RoomError::TooManyJoins.to_protocol().code, "join_rate_limited");
    let (first_conn, first) = seated[0];
    room.disconnected(first_conn, 100);
    assert!(room.resume_or_join(500, first, &format!("s{first_conn}"), seat_from("G", Role::Guest, "link", OFFICE), "x".into(), &|_| vec![], 200).is_ok());
    assert!(room.join(501, seat_from("G", Role::Guest, "link", IpAddr::from([203, 0, 113, 9])), "y".into(), &|_| vec![], 200).is_ok(), "other addresses");
    assert!(room.join(502, seat_from("G", Role::Guest, "link", OFFICE), "z".into(), &|_| vec![], 1_100).is_ok(), "a second later, one more");
    assert_eq!(room.join(503, seat_from("G", Role::Guest, "link", OFFICE), "w".into(), &|_| vec![], 1_100), Err(RoomError::TooManyJoins));
}

/// The chat history in the welcome sent to `conn`.
fn welcome_chat(effects: &[Effect], conn: ConnId) -> Vec<ServerMessage> {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Send { conn: c, message: ServerMessage::Welcome { chat, .. } } if *c == conn => Some(chat.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no welcome for connection {conn}: {effects:?}"))
}

fn chats(effects: &[Effect], conn: ConnId) -> Vec<(ParticipantId, String, Option<ParticipantId>)> {
    sent(effects)
        .into_iter()
        .filter(|(c, _)| *c == conn)
        .filter_map(|(_, m)| match m {
            ServerMessage::Chat { from, text, to, .. } => Some((*from, text.clone(), *to)),
            _ => None,
        })
        .collect()
}

#[test]
fn chat_reaches_everyone_a_private_message_only_its_two_ends_and_a_late_joiner_sees_the_public_history() {
    let mut room = Room::new("r", config(4));
    let a = join(&mut room, 1, "Ana", 0);
    let b = join(&mut room, 2, "Bo", 0);
    join(&mut room, 3, "Cy", 0);
    room.take_effects();
    room.chat(1, None, "hello all".into(), 1_700_000_000_000, 10).unwrap();
    room.chat(1, Some(b), "psst, Bo".into(), 1_700_000_000_001, 20).unwrap();
    let effects = room.take_effects();
    for conn in [1, 2, 3] {
        assert!(chats(&effects, conn).contains(&(a, "hello all".into(), None)), "conn {conn}");
    }
    assert!(chats(&effects, 2).contains(&(a, "psst, Bo".into(), Some(b))));
    assert!(chats(&effects, 1).contains(&(a, "psst, Bo".into(), Some(b))), "the sender sees it too");
    assert_eq!(chats(&effects, 3).len(), 1, "Cy never sees the private one");
    assert_eq!(room.chat(1, Some(a), "me".into(), 0, 30), Err(RoomError::NoSuchParticipant(a)));
    assert_eq!(room.chat(1, Some(ParticipantId(99)), "ghost".into(), 0, 30), Err(RoomError::NoSuchParticipant(ParticipantId(99))));
    assert_eq!(room.chat(9, None, "who".into(), 0, 30), Err(RoomError::NotSeated));

    join(&mut room, 4, "Di", 40);
    let effects = room.take_effects();
    let chat = welcome_chat(&effects, 4);
    assert_eq!(chat.len(), 1);
    assert!(
        matches!(&chat[0], ServerMessage::Chat { id: 1, from, name, text, at: 1_700_000_000_000, to: None } if *from == a && name == "Ana" && text == "hello all")
    );
}

#[test]
fn chat_is_rate_limited_per_seat_and_the_history_is_bounded() {
    let mut room = Room::new("r", config(4));
    join(&mut room, 1, "Ana", 0);
    join(&mut room, 2, "Bo", 0);
    let sent = (0..30).filter(|i| room.chat(1, None, format!("m{i}"), 0, 0).is_ok()).count();
    assert_eq!(sent, 10);
    assert_eq!(room.chat(1, None, "more".into(), 0, 0), Err(RoomError::TooManyChats));
    assert_eq!(RoomError::TooManyChats.to_protocol().code, "rate_limited");
    assert!(room.chat(2, None, "Bo is not limited by Ana".into(), 0, 0).is_ok());
    for i in 0..(CHAT_HISTORY as u64 + 50) {
        room.chat(2, None, format!("n{i}"), 0, 1_000 * (i + 1)).unwrap();
    }
    room.take_effects();
    join(&mut room, 3, "Cy", 10_000_000);
    let effects = room.take_effects();
    let chat = welcome_chat(&effects, 3);
    assert_eq!(chat.len(), CHAT_HISTORY);
    assert!(matches!(chat.last(), Some(ServerMessage::Chat { text, .. }) if text == "n249"));
}

#[test]
fn a_private_message_to_someone_reconnecting_waits_for_them() {
    let mut room = Room::new("r", config(4));
    join(&mut room, 1, "Ana", 0);
    let b = join(&mut room, 2, "Bo", 0);
    room.disconnected(2, 10);
    room.chat(1, Some(b), "still there?".into(), 0, 20).unwrap();
    room.take_effects();
    room.resume_or_join(5, b, "secret-2", seat("Bo", Role::Guest), "x".into(), &|_| vec![], 30).unwrap();
    let effects = room.take_effects();
    assert_eq!(chats(&effects, 5).len(), 1, "{effects:?}");
}

fn hands(room: &mut Room) -> Vec<(ParticipantId, Option<u64>)> {
    let effects = room.take_effects();
    sent(&effects)
        .into_iter()
        .filter_map(|(_, m)| match m {
            ServerMessage::Updated { participant } => Some((participant.id, participant.hand)),
            _ => None,
        })
        .collect()
}

#[test]
fn hands_queue_in_the_order_raised_and_only_their_owner_or_a_host_lowers_them() {
    let mut room = Room::new("r", config(4));
    let host = room.join(1, seat("Host", Role::Host), "h".into(), &|_| vec![], 0).unwrap();
    let a = join(&mut room, 2, "Ana", 0);
    let b = join(&mut room, 3, "Bo", 0);
    room.take_effects();
    room.hand(3, true).unwrap();
    room.hand(2, true).unwrap();
    room.hand(1, true).unwrap();
    let updates = hands(&mut room);
    // Each raise reaches all three (the raiser too), in order: Bo first, then Ana, then the host.
    assert_eq!(updates.len(), 9);
    let order: Vec<(ParticipantId, Option<u64>)> = updates.chunks(3).map(|c| c[0]).collect();
    assert_eq!(order, vec![(b, Some(1)), (a, Some(2)), (host, Some(3))]);
    room.hand(3, true).unwrap();
    assert!(hands(&mut room).is_empty(), "raising a raised hand changes nothing, nor its place");

    assert_eq!(room.lower_hand(2, Target::One(b)), Err(RoomError::NotHost), "a guest cannot lower another's hand");
    assert_eq!(room.lower_hand(2, Target::All), Err(RoomError::NotHost));
    room.lower_hand(2, Target::One(a)).unwrap();
    assert_eq!(hands(&mut room)[0], (a, None), "one's own, yes");
    room.lower_hand(1, Target::One(b)).unwrap();
    assert_eq!(hands(&mut room)[0], (b, None), "a host lowers anyone's");
    room.hand(2, true).unwrap();
    assert_eq!(hands(&mut room)[0], (a, Some(4)), "raised again: the back of the queue");
    room.lower_hand(1, Target::All).unwrap();
    let lowered: std::collections::BTreeSet<ParticipantId> = hands(&mut room).into_iter().map(|(id, _)| id).collect();
    assert_eq!(lowered, [host, a].into(), "all: every raised hand, nobody else");
    assert_eq!(room.lower_hand(1, Target::One(ParticipantId(99))), Err(RoomError::NoSuchParticipant(ParticipantId(99))));
}

fn host(room: &mut Room, conn: ConnId, name: &str, now: Millis) -> ParticipantId {
    room.join(conn, seat(name, Role::Host), format!("secret-{conn}"), &|_| vec![], now).unwrap()
}

/// The microphones a host now holds back (or no longer does).
fn silenced(effects: &[Effect]) -> Vec<(ParticipantId, bool)> {
    effects.iter().filter_map(|e| if let Effect::Held { participant, audio, .. } = e { Some((*participant, *audio)) } else { None }).collect()
}

#[test]
fn a_host_mutes_one_or_everyone_else_and_only_they_can_unmute_themselves() {
    let mut room = Room::new("clinic", config(4));
    let h = host(&mut room, 1, "Hana", 0);
    let a = join(&mut room, 2, "Ana", 0);
    let b = join(&mut room, 3, "Bo", 0);
    room.take_effects();
    // A guest may not.
    assert_eq!(room.mute(2, Target::One(b), MuteKind::Audio), Err(RoomError::NotHost));
    assert_eq!(room.mute(2, Target::All, MuteKind::Audio), Err(RoomError::NotHost));
    assert!(room.take_effects().is_empty(), "a refused mute changes nothing for anyone");
    assert_eq!(room.mute(1, Target::One(ParticipantId(99)), MuteKind::Audio), Err(RoomError::NoSuchParticipant(ParticipantId(99))));
    // One.
    room.mute(1, Target::One(a), MuteKind::Audio).unwrap();
    let effects = room.take_effects();
    assert_eq!(silenced(&effects), vec![(a, true)]);
    assert_eq!(types(&effects, 2), vec!["muted", "updated"]);
    assert_eq!(types(&effects, 3), vec!["updated"]);
    assert!(sent(&effects).iter().any(|(c, m)| *c == 3 && matches!(m, ServerMessage::Updated { participant } if participant.id == a && !participant.audio)));
    // Everyone but the host (Ana, already muted, is told again but nothing else changes).
    room.mute(1, Target::All, MuteKind::Audio).unwrap();
    let effects = room.take_effects();
    assert_eq!(silenced(&effects), vec![(b, true)]);
    assert_eq!(types(&effects, 2), vec!["muted", "updated"]);
    assert!(!silenced(&effects).iter().any(|(p, _)| *p == h), "the host keeps their microphone");
    // Bo's client reports its microphone still off: nothing changes; then he unmutes himself.
    room.set_media(3, false, true, false).unwrap();
    assert!(silenced(&room.take_effects()).is_empty());
    room.set_media(3, true, true, false).unwrap();
    let effects = room.take_effects();
    assert_eq!(silenced(&effects), vec![(b, false)]);
    assert!(!room.held(b).0 && room.held(a).0);
    // A host stops Ana's camera: held until she starts it herself; her microphone stays held.
    room.mute(1, Target::One(a), MuteKind::Video).unwrap();
    let effects = room.take_effects();
    assert!(effects.contains(&Effect::Held { participant: a, audio: true, video: true }));
    assert!(sent(&effects).iter().any(|(c, m)| *c == 2 && matches!(m, ServerMessage::Muted { kind: MuteKind::Video, .. })));
    room.set_media(2, false, true, false).unwrap();
    assert!(room.take_effects().contains(&Effect::Held { participant: a, audio: true, video: false }));
    assert_eq!(room.held(a), (true, false));
}

#[test]
fn a_locked_meeting_seats_only_hosts_and_everyone_present_is_told() {
    let mut room = Room::new("clinic", config(4));
    host(&mut room, 1, "Hana", 0);
    join(&mut room, 2, "Ana", 0);
    room.take_effects();
    assert_eq!(room.lock(2, true), Err(RoomError::NotHost));
    room.lock(1, true).unwrap();
    let effects = room.take_effects();
    for conn in [1, 2] {
        assert_eq!(types(&effects, conn), vec!["locked"]);
    }
    let refused = room.join(3, seat("Cy", Role::Guest), "s".into(), &|_| vec![], 0);
    assert_eq!(refused, Err(RoomError::Locked));
    assert_eq!(RoomError::Locked.to_protocol().code, "locked");
    // A host still gets in, and sees the lock in the welcome.
    host(&mut room, 4, "Hugo", 0);
    let effects = room.take_effects();
    assert!(matches!(sent(&effects)[0], (4, ServerMessage::Welcome { locked: true, .. })));
    room.lock(1, false).unwrap();
    room.take_effects();
    join(&mut room, 5, "Cy", 0);
}

#[test]
fn ending_the_meeting_tells_everyone_closes_every_connection_and_empties_the_room() {
    let mut room = Room::new("clinic", config(4));
    let h = host(&mut room, 1, "Hana", 0);
    let a = join(&mut room, 2, "Ana", 0);
    let b = join(&mut room, 3, "Bo", 0);
    room.disconnected(3, 10); // Bo is away: his seat ends too.
    room.take_effects();
    assert_eq!(room.end(2, 20), Err(RoomError::NotHost));
    assert!(room.take_effects().is_empty());
    room.end(1, 20).unwrap();
    let effects = room.take_effects();
    assert!(room.is_empty());
    assert_eq!(room.next_deadline(), None);
    for (conn, me) in [(1, h), (2, a)] {
        let lefts: Vec<(ParticipantId, LeftReason)> = sent(&effects)
            .into_iter()
            .filter_map(|(c, m)| match m {
                ServerMessage::Left { participant, reason } if c == conn => Some((*participant, *reason)),
                _ => None,
            })
            .collect();
        assert!(lefts.iter().all(|(_, r)| *r == LeftReason::Ended), "{lefts:?}");
        assert_eq!(lefts.last(), Some(&(me, LeftReason::Ended)), "each is told they are out, last");
        assert!(effects.contains(&Effect::Close { conn, why: CloseWhy::Ended }));
    }
    let departed: Vec<ParticipantId> =
        effects.iter().filter_map(|e| if let Effect::Departed { participant, .. } = e { Some(*participant) } else { None }).collect();
    assert_eq!(departed, vec![h, a, b]);
}

#[test]
fn a_host_makes_a_guest_a_host_who_can_then_use_the_host_tools() {
    let mut room = Room::new("clinic", config(4));
    host(&mut room, 1, "Hana", 0);
    let a = join(&mut room, 2, "Ana", 0);
    let b = join(&mut room, 3, "Bo", 0);
    room.take_effects();
    assert_eq!(room.make_host(3, a), Err(RoomError::NotHost), "a guest cannot");
    assert_eq!(room.lock(2, true), Err(RoomError::NotHost));
    room.make_host(1, a).unwrap();
    let effects = room.take_effects();
    for conn in [1, 2, 3] {
        assert!(
            sent(&effects)
                .iter()
                .any(|(c, m)| *c == conn && matches!(m, ServerMessage::Updated { participant } if participant.id == a && participant.role == "host"))
        );
    }
    room.lock(2, true).unwrap();
    room.mute(2, Target::One(b), MuteKind::Audio).unwrap();
}

fn lobby_room() -> Room {
    let mut room = Room::new("clinic", config(4));
    room.set_settings(MeetingSettings { lobby: true, ..Default::default() }, &|_| vec![], 0);
    room
}

/// What the hosts on `conn` were last told waits in the lobby.
fn waiting(effects: &[Effect], conn: ConnId) -> Option<Vec<(ParticipantId, String)>> {
    sent(effects).into_iter().rev().find_map(|(c, m)| match m {
        ServerMessage::Waiting { guests } if c == conn => Some(guests.iter().map(|g| (g.id, g.name.clone())).collect()),
        ServerMessage::Welcome { waiting, .. } if c == conn => Some(waiting.iter().map(|g| (g.id, g.name.clone())).collect()),
        _ => None,
    })
}

fn closes(effects: &[Effect]) -> Vec<(ConnId, CloseWhy)> {
    effects.iter().filter_map(|e| if let Effect::Close { conn, why } = e { Some((*conn, *why)) } else { None }).collect()
}

#[test]
fn with_no_host_present_guests_wait_in_the_lobby_told_so_and_receive_nothing_of_the_meeting() {
    let mut room = lobby_room();
    let a = join(&mut room, 1, "Ana", 0);
    let b = join(&mut room, 2, "Bo", 10);
    let effects = room.take_effects();
    assert_eq!(types(&effects, 1), vec!["lobby"]);
    assert_eq!(types(&effects, 2), vec!["lobby"]);
    assert!(sent(&effects).iter().all(|(_, m)| matches!(m, ServerMessage::Lobby { host_present: false })), "{effects:?}");
    assert_eq!((room.seat_of(1), room.seat_of(2), room.len()), (None, None, 0));
    assert!(!room.is_empty() && room.holds(1) && room.holds(2));
    // Nothing they send takes effect: they are in the lobby.
    assert_eq!(room.chat(1, None, "hello?".into(), 0, 20), Err(RoomError::InLobby));
    assert_eq!(room.signal(1, b, offer()), Err(RoomError::InLobby));
    assert_eq!(room.hand(2, true), Err(RoomError::InLobby));
    assert_eq!(room.sfu_offer(2, 20), Err(RoomError::InLobby));
    assert_eq!(RoomError::InLobby.to_protocol().code, "in_lobby");
    // A guest cannot let anyone in.
    assert_eq!(room.admit(2, Target::One(a), &|_| vec![], 30), Err(RoomError::InLobby));
    assert!(room.take_effects().is_empty());

    // A host arrives: seated at once, told who waits; the waiting hear a host is here.
    let h = host(&mut room, 3, "Hana", 40);
    let effects = room.take_effects();
    assert_eq!(room.seat_of(3), Some(h));
    assert_eq!(waiting(&effects, 3), Some(vec![(a, "Ana".to_string()), (b, "Bo".to_string())]));
    for conn in [1, 2] {
        assert!(sent(&effects).iter().any(|(c, m)| *c == conn && matches!(m, ServerMessage::Lobby { host_present: true })), "{effects:?}");
        assert!(!types(&effects, conn).contains(&"joined"), "a waiting guest hears nothing of who joins");
    }
}

#[test]
fn a_host_admits_one_guest_who_meets_everyone_and_turns_the_other_away() {
    let mut room = lobby_room();
    let h = host(&mut room, 1, "Hana", 0);
    let a = join(&mut room, 2, "Ana", 10);
    let b = join(&mut room, 3, "Bo", 20);
    let effects = room.take_effects();
    assert_eq!(types(&effects, 2), vec!["lobby"]);
    assert!(sent(&effects).iter().any(|(c, m)| *c == 2 && matches!(m, ServerMessage::Lobby { host_present: true })));
    assert_eq!(waiting(&effects, 1), Some(vec![(a, "Ana".to_string()), (b, "Bo".to_string())]));

    room.admit(1, Target::One(a), &|_| vec![], 30).unwrap();
    let effects = room.take_effects();
    assert_eq!(types(&effects, 2), vec!["welcome"], "admitted: the welcome, under the id hosts saw");
    assert_eq!(room.seat_of(2), Some(a));
    assert!(types(&effects, 1).contains(&"joined"));
    assert_eq!(waiting(&effects, 1), Some(vec![(b, "Bo".to_string())]));
    assert!(types(&effects, 3).is_empty(), "Bo, still waiting, hears nothing");
    let Some((_, ServerMessage::Welcome { participants, waiting: w, .. })) = sent(&effects).into_iter().find(|(c, _)| *c == 2) else { panic!() };
    assert_eq!(participants.iter().map(|p| p.id).collect::<Vec<_>>(), vec![h]);
    assert!(w.is_empty(), "a guest's welcome lists nobody waiting");

    // Guests cannot admit or deny; hosts deny.
    assert_eq!(room.deny(2, b), Err(RoomError::NotHost));
    assert_eq!(room.admit(2, Target::All, &|_| vec![], 40), Err(RoomError::NotHost));
    room.deny(1, b).unwrap();
    let effects = room.take_effects();
    assert_eq!(types(&effects, 3), vec!["denied"]);
    assert_eq!(closes(&effects), vec![(3, CloseWhy::Denied)]);
    assert_eq!(waiting(&effects, 1), Some(vec![]));
    assert!(!room.holds(3));
    assert_eq!(room.deny(1, b), Err(RoomError::NoSuchParticipant(b)));
    assert_eq!(room.admit(1, Target::One(b), &|_| vec![], 50), Err(RoomError::NoSuchParticipant(b)));
    assert_eq!(room.len(), 2);
}

#[test]
fn admit_all_seats_everyone_waiting_and_hosts_skip_the_lobby() {
    let mut room = lobby_room();
    let guests: Vec<ParticipantId> = (1..=3).map(|i| join(&mut room, i, &format!("G{i}"), i * 10)).collect();
    let h = host(&mut room, 9, "Hana", 100);
    room.take_effects();
    room.admit(9, Target::All, &|_| vec![], 110).unwrap();
    let effects = room.take_effects();
    for (i, id) in guests.iter().enumerate() {
        assert_eq!(room.seat_of(i as ConnId + 1), Some(*id));
    }
    assert_eq!(room.len(), 4);
    assert_eq!(waiting(&effects, 9), Some(vec![]));
    // A host leaving and the lobby left empty: nothing is waiting to be told.
    assert_eq!(room.seat_of(9), Some(h));
}

#[test]
fn a_guest_who_leaves_or_drops_from_the_lobby_is_gone_and_hosts_see_it() {
    let mut room = lobby_room();
    host(&mut room, 1, "Hana", 0);
    join(&mut room, 2, "Ana", 10);
    let b = join(&mut room, 3, "Bo", 20);
    room.take_effects();
    room.leave(2, 30).unwrap();
    let effects = room.take_effects();
    assert_eq!(closes(&effects), vec![(2, CloseWhy::Left)]);
    assert_eq!(waiting(&effects, 1), Some(vec![(b, "Bo".to_string())]));
    room.disconnected(3, 40);
    let effects = room.take_effects();
    assert_eq!(waiting(&effects, 1), Some(vec![]));
    assert_eq!((room.holds(2), room.holds(3), room.len()), (false, false, 1));
}

#[test]
fn the_last_host_leaving_tells_the_lobby_and_a_new_host_sees_who_waits() {
    let mut room = lobby_room();
    host(&mut room, 1, "Hana", 0);
    let a = join(&mut room, 2, "Ana", 10);
    room.take_effects();
    room.leave(1, 20).unwrap();
    let effects = room.take_effects();
    assert!(sent(&effects).iter().any(|(c, m)| *c == 2 && matches!(m, ServerMessage::Lobby { host_present: false })), "{effects:?}");
    // A guest in the meeting (lobby turned on after they came) is made host: they see it.
    let mut room = Room::new("clinic", config(4));
    host(&mut room, 1, "Hana", 0);
    let g = join(&mut room, 2, "Gus", 10);
    room.set_settings(MeetingSettings { lobby: true, ..Default::default() }, &|_| vec![], 20);
    let w = join(&mut room, 3, "Wes", 30);
    room.take_effects();
    room.make_host(1, g).unwrap();
    let effects = room.take_effects();
    assert_eq!(waiting(&effects, 2), Some(vec![(w, "Wes".to_string())]));
    let _ = a;
}

#[test]
fn turning_the_lobby_off_lets_everyone_waiting_in_and_a_locked_meeting_refuses_the_lobby_too() {
    let mut room = lobby_room();
    let a = join(&mut room, 1, "Ana", 0);
    room.set_settings(MeetingSettings::default(), &|_| vec![], 10);
    let effects = room.take_effects();
    assert_eq!(room.seat_of(1), Some(a));
    assert!(types(&effects, 1).contains(&"welcome"));

    let mut room = lobby_room();
    host(&mut room, 1, "Hana", 0);
    room.lock(1, true).unwrap();
    assert_eq!(room.join(2, seat("Ana", Role::Guest), "s".into(), &|_| vec![], 10), Err(RoomError::Locked));
}

#[test]
fn ending_the_meeting_sends_the_lobby_home_too() {
    let mut room = lobby_room();
    host(&mut room, 1, "Hana", 0);
    let a = join(&mut room, 2, "Ana", 10);
    room.take_effects();
    room.end(1, 20).unwrap();
    let effects = room.take_effects();
    assert!(sent(&effects).iter().any(|(c, m)| *c == 2 && matches!(m, ServerMessage::Left { participant, reason: LeftReason::Ended } if *participant == a)));
    assert!(closes(&effects).contains(&(2, CloseWhy::Ended)));
    assert!(room.is_empty());
}

#[test]
fn with_sharing_for_hosts_only_a_guests_share_is_refused_and_one_in_progress_ends() {
    let mut room = Room::new("clinic", config(4));
    let h = host(&mut room, 1, "Hana", 0);
    let g = join(&mut room, 2, "Gus", 10);
    room.set_media(2, true, true, true).unwrap();
    assert!(room.sharing(g));
    room.take_effects();
    // The owner restricts sharing: Gus's share ends, he is told, everyone sees it stop.
    let stopped = room.set_settings(MeetingSettings { share_hosts_only: true, ..Default::default() }, &|_| vec![], 20);
    assert_eq!(stopped, vec![g]);
    assert!(!room.sharing(g));
    let effects = room.take_effects();
    assert!(sent(&effects).iter().any(|(c, m)| *c == 2 && matches!(m, ServerMessage::Error { code: "share_not_allowed", .. })));
    assert!(sent(&effects).iter().any(|(c, m)| *c == 1 && matches!(m, ServerMessage::Updated { participant } if participant.id == g && !participant.screen)));
    // A guest may not start one; a host may; the guest's other changes still go through alone.
    assert_eq!(room.set_media(2, true, true, true), Err(RoomError::ShareNotAllowed));
    assert_eq!(RoomError::ShareNotAllowed.to_protocol().code, "share_not_allowed");
    room.set_media(2, false, true, false).unwrap();
    room.set_media(1, true, true, true).unwrap();
    assert!(room.sharing(h));
    // A welcome says who may share.
    room.take_effects();
    join(&mut room, 3, "Ivy", 30);
    let effects = room.take_effects();
    assert!(sent(&effects).iter().any(|(c, m)| *c == 3 && matches!(m, ServerMessage::Welcome { share: "hosts", .. })));
}

#[test]
fn past_the_owners_number_newcomers_join_muted_and_may_unmute() {
    let mut room = Room::new("clinic", config(10));
    room.set_settings(MeetingSettings { muted_above: 2, ..Default::default() }, &|_| vec![], 0);
    join(&mut room, 1, "Ana", 0);
    join(&mut room, 2, "Bo", 10);
    let effects = room.take_effects();
    assert!(!types(&effects, 1).contains(&"joined-muted") && !types(&effects, 2).contains(&"joined-muted"), "two are not more than two");
    let cy = join(&mut room, 3, "Cy", 20);
    let effects = room.take_effects();
    assert_eq!(types(&effects, 3), vec!["welcome", "joined-muted"]);
    let Some((_, ServerMessage::Welcome { you, muted_above: 2, .. })) = sent(&effects).into_iter().find(|(c, _)| *c == 3) else { panic!("{effects:?}") };
    assert!(!you.audio, "shown muted from the start");
    assert!(sent(&effects).iter().any(|(c, m)| *c == 1 && matches!(m, ServerMessage::Joined { participant } if participant.id == cy && !participant.audio)));
    // Nothing holds them: they unmute themselves.
    room.set_media(3, true, true, false).unwrap();
    let effects = room.take_effects();
    assert!(sent(&effects).iter().any(|(c, m)| *c == 1 && matches!(m, ServerMessage::Updated { participant } if participant.id == cy && participant.audio)));
    assert!(!effects.iter().any(|e| matches!(e, Effect::Held { .. })));
}

#[test]
fn a_host_revokes_an_invite_with_a_removal_only_when_it_was_made_for_that_one_person() {
    let mut room = Room::new("clinic", config(4));
    host(&mut room, 1, "Hana", 0);
    let shared = join(&mut room, 2, "Gus", 10);
    let mut personal_seat = seat_from("Pia", Role::Guest, "cert/pia", OFFICE);
    personal_seat.personal = true;
    let pia = room.join(3, personal_seat, "s".into(), &|_| vec![], 20).unwrap();
    let effects = room.take_effects();
    let joined: Vec<(String, bool)> = sent(&effects)
        .into_iter()
        .filter_map(|(c, m)| match m {
            ServerMessage::Joined { participant } if c == 1 => Some((participant.name.clone(), participant.personal)),
            _ => None,
        })
        .collect();
    assert_eq!(joined, vec![("Gus".to_string(), false), ("Pia".to_string(), true)], "hosts see whose invite is personal");
    // A shared link is not revoked from the meeting: refused, and nobody is removed.
    assert_eq!(room.remove(1, shared, true, 30), Err(RoomError::InviteShared));
    assert_eq!(RoomError::InviteShared.to_protocol().code, "invite_shared");
    assert_eq!(room.len(), 3);
    // A guest cannot, a host can: the invite to revoke comes back.
    assert_eq!(room.remove(2, pia, true, 30), Err(RoomError::NotHost));
    assert_eq!(room.remove(1, pia, true, 40), Ok(Some("cert/pia".to_string())));
    assert_eq!(room.len(), 2);
    assert_eq!(room.remove(1, shared, false, 50), Ok(None));
}

/// A meeting whose home moved to another node closes every connection (they come back to
/// the new home) before it lets the seats go, so nobody is told that the others left.
#[test]
fn moving_away_closes_every_connection_first_and_empties_the_room() {
    let mut room = Room::new("r", config(4));
    let a = join(&mut room, 1, "A", 0);
    let b = join(&mut room, 2, "B", 0);
    room.take_effects();
    room.move_away(5);
    let effects = room.take_effects();
    let closes: Vec<&Effect> = effects.iter().filter(|e| matches!(e, Effect::Close { .. })).collect();
    assert_eq!(closes, vec![&Effect::Close { conn: 1, why: CloseWhy::Moved }, &Effect::Close { conn: 2, why: CloseWhy::Moved }]);
    let first_other = effects.iter().position(|e| !matches!(e, Effect::Close { .. })).unwrap();
    assert_eq!(first_other, 2, "the closes come before anything else: {effects:?}");
    for id in [a, b] {
        assert!(effects.iter().any(|e| matches!(e, Effect::Departed { participant, .. } if *participant == id)), "{id} lets go of the relay");
    }
    assert!(room.is_empty());
}

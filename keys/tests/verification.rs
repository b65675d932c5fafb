//! Each way an invite can fail to grant a seat, refused with its own error.

use confab_keys::*;

const NOW: UnixTime = 1_800_000_000;
const DAY: u64 = 86_400;

struct Fixture {
    node: NodeKey,
    account: AccountKey,
    cert: AccountCertificate,
}

fn id(n: u8) -> CapabilityId {
    CapabilityId([n; 16])
}

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

fn fixture_with(max_role: Role) -> Fixture {
    let node = NodeKey::from_seed([7; 32]);
    let account = AccountKey::from_seed([9; 32]);
    let cert = node.certify(CertificateBody {
        id: id(1),
        account_key: account.public(),
        username: Username::parse("alice").unwrap(),
        max_role,
        not_before: NOW - DAY,
        expires: NOW + 90 * DAY,
    });
    Fixture { node, account, cert }
}

fn fixture() -> Fixture {
    fixture_with(Role::Host)
}

impl Fixture {
    fn invite(&self, role: Role, not_before: UnixTime, expires: UnixTime) -> Invite {
        self.account.invite(&self.cert, InviteBody { id: id(2), room: room("weekly-sync"), role, not_before, expires })
    }

    fn guest(&self) -> Invite {
        self.invite(Role::Guest, NOW - 60, NOW + 7 * DAY)
    }

    fn verify_at(&self, invite: &Invite, now: UnixTime, revoked: &RevocationSet) -> Result<VerifiedInvite, CapabilityError> {
        let verifier = Verifier { node_keys: &[self.node.public()], now, revoked };
        verifier.verify_invite(invite, &room("weekly-sync"))
    }

    fn verify(&self, invite: &Invite) -> Result<VerifiedInvite, CapabilityError> {
        self.verify_at(invite, NOW, &RevocationSet::new())
    }
}

#[test]
fn round_trip_through_text() {
    let f = fixture();
    let invite = f.guest();
    let text = invite.to_text();
    assert!(text.starts_with("cfi1."));
    assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "not URL-safe: {text}");
    let back = Invite::from_text(&text).unwrap();
    assert_eq!(back, invite);
    assert_eq!(back.to_text(), text);
    let granted = f.verify(&back).unwrap();
    assert_eq!(granted.role, Role::Guest);
    assert_eq!(granted.issuer.as_str(), "alice");
    assert_eq!(granted.invite_id, id(2));
    assert_eq!(granted.certificate_id, id(1));
    assert_eq!(granted.expires, NOW + 7 * DAY);

    let cert_text = f.cert.to_text();
    assert!(cert_text.starts_with("cfc1."));
    assert_eq!(AccountCertificate::from_text(&cert_text).unwrap(), f.cert);
}

#[test]
fn every_flipped_byte_is_refused() {
    let f = fixture();
    let bytes = f.guest().to_bytes();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut tampered = bytes.clone();
            tampered[i] ^= bit;
            let outcome = Invite::from_bytes(&tampered).map_err(CapabilityError::from).and_then(|inv| f.verify(&inv));
            assert!(outcome.is_err(), "byte {i} flipped with {bit:#x} was accepted");
        }
    }
}

#[test]
fn every_changed_character_is_refused() {
    let f = fixture();
    let text = f.guest().to_text();
    for i in 0..text.len() {
        let mut chars: Vec<char> = text.chars().collect();
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        let outcome = Invite::from_text(&tampered).map_err(CapabilityError::from).and_then(|inv| f.verify(&inv));
        assert!(outcome.is_err(), "character {i} changed and still accepted");
    }
}

#[test]
fn expired_invite() {
    let f = fixture();
    let invite = f.invite(Role::Guest, NOW - DAY, NOW - 3600);
    assert_eq!(f.verify(&invite), Err(CapabilityError::Expired { at: NOW - 3600 }));
}

#[test]
fn expiry_allows_small_clock_skew() {
    let f = fixture();
    let invite = f.invite(Role::Guest, NOW - DAY, NOW - CLOCK_SKEW_SECS + 1);
    assert!(f.verify(&invite).is_ok());
    let invite = f.invite(Role::Guest, NOW - DAY, NOW - CLOCK_SKEW_SECS - 1);
    assert!(matches!(f.verify(&invite), Err(CapabilityError::Expired { .. })));
}

#[test]
fn not_yet_valid_invite() {
    let f = fixture();
    let invite = f.invite(Role::Guest, NOW + 3600, NOW + DAY);
    assert_eq!(f.verify(&invite), Err(CapabilityError::NotYetValid { from: NOW + 3600 }));
}

#[test]
fn expired_certificate() {
    let f = fixture();
    let invite = f.guest();
    let later = NOW + 91 * DAY;
    assert_eq!(f.verify_at(&invite, later, &RevocationSet::new()), Err(CapabilityError::CertificateExpired { at: NOW + 90 * DAY }));
}

#[test]
fn wrong_room() {
    let f = fixture();
    let verifier = Verifier { node_keys: &[f.node.public()], now: NOW, revoked: &RevocationSet::new() };
    assert_eq!(
        verifier.verify_invite(&f.guest(), &room("other-room")),
        Err(CapabilityError::WrongRoom { invited: "weekly-sync".into(), requested: "other-room".into() })
    );
}

#[test]
fn revoked_invite_and_revoked_certificate() {
    let f = fixture();
    let invite = f.guest();
    let revoked = RevocationSet::new().invite(id(1), id(2));
    assert_eq!(f.verify_at(&invite, NOW, &revoked), Err(CapabilityError::Revoked { id: id(2) }));
    let revoked = RevocationSet::new().certificate(id(1));
    assert_eq!(f.verify_at(&invite, NOW, &revoked), Err(CapabilityError::CertificateRevoked { id: id(1) }));
}

#[test]
fn an_invite_revoked_under_another_certificate_or_as_a_certificate_id_stays_valid() {
    // Ids are chosen by whoever signs: someone else's invite with our invite's id, revoked
    // by them, or an invite revocation naming our certificate's id, voids nothing of ours.
    let f = fixture();
    let invite = f.guest();
    let revoked = RevocationSet::new().invite(id(9), id(2)).invite(id(9), id(1));
    assert!(f.verify_at(&invite, NOW, &revoked).is_ok());
    let revoked = RevocationSet::new().certificate(id(2));
    assert!(f.verify_at(&invite, NOW, &revoked).is_ok());
}

/// In a cluster every member's node key is trusted: a certificate from any of them verifies,
/// and one from a node outside the set does not.
#[test]
fn any_trusted_member_key_will_do() {
    let f = fixture();
    let other_member = NodeKey::from_seed([8; 32]);
    let both = [other_member.public(), f.node.public()];
    let verifier = Verifier { node_keys: &both, now: NOW, revoked: &RevocationSet::new() };
    assert!(verifier.verify_invite(&f.guest(), &room("weekly-sync")).is_ok());
    let removed = Verifier { node_keys: &both[..1], now: NOW, revoked: &RevocationSet::new() };
    assert_eq!(removed.verify_invite(&f.guest(), &room("weekly-sync")), Err(CapabilityError::WrongNode));
    let none = Verifier { node_keys: &[], now: NOW, revoked: &RevocationSet::new() };
    assert_eq!(none.verify_invite(&f.guest(), &room("weekly-sync")), Err(CapabilityError::WrongNode));
}

#[test]
fn chained_to_another_node_key() {
    let f = fixture();
    let stranger = NodeKey::from_seed([8; 32]);
    let verifier = Verifier { node_keys: &[stranger.public()], now: NOW, revoked: &RevocationSet::new() };
    assert_eq!(verifier.verify_invite(&f.guest(), &room("weekly-sync")), Err(CapabilityError::WrongNode));

    // A certificate signed by another node that merely names our node key is a forgery.
    let forged = stranger.certify(f.cert.body().clone());
    let mut bytes = forged.to_bytes();
    bytes[2..34].copy_from_slice(&f.node.public());
    let forged = AccountCertificate::from_bytes(&bytes).unwrap();
    let invite = f.account.invite(&forged, f.guest().body().clone());
    assert_eq!(f.verify(&invite), Err(CapabilityError::BadCertificateSignature));
}

#[test]
fn invite_signed_by_another_account_key() {
    let f = fixture();
    let mallory = AccountKey::from_seed([10; 32]);
    let invite = mallory.invite(&f.cert, f.guest().body().clone());
    assert_eq!(f.verify(&invite), Err(CapabilityError::BadInviteSignature));
}

#[test]
fn guest_invite_claiming_host() {
    let f = fixture();
    let verifier = Verifier { node_keys: &[f.node.public()], now: NOW, revoked: &RevocationSet::new() };
    assert_eq!(
        verifier.verify_seat(&f.guest(), &room("weekly-sync"), Role::Host),
        Err(CapabilityError::RoleNotGranted { granted: Role::Guest, claimed: Role::Host })
    );
    assert!(verifier.verify_seat(&f.guest(), &room("weekly-sync"), Role::Guest).is_ok());
}

#[test]
fn invite_never_grants_more_than_its_issuer() {
    let f = fixture_with(Role::Guest);
    let invite = f.invite(Role::Host, NOW - 60, NOW + DAY);
    assert_eq!(f.verify(&invite), Err(CapabilityError::ExceedsIssuerRole { role: Role::Host, issuer_max: Role::Guest }));
    let f = fixture();
    let outliving = f.invite(Role::Guest, NOW - 60, NOW + 365 * DAY);
    assert_eq!(f.verify(&outliving), Err(CapabilityError::OutlivesIssuer));
}

#[test]
fn decoder_names_what_is_wrong() {
    let f = fixture();
    assert_eq!(Invite::from_text(""), Err(DecodeError::Empty));
    assert_eq!(Invite::from_text("cfc1.AAAA"), Err(DecodeError::WrongPrefix { expected: "cfi1." }));
    assert_eq!(Invite::from_text("cfi1.a+b/"), Err(DecodeError::BadBase64));
    let mut bytes = f.guest().to_bytes();
    assert_eq!(Invite::from_bytes(&bytes[..bytes.len() - 1]), Err(DecodeError::Truncated));
    bytes.push(0);
    assert_eq!(Invite::from_bytes(&bytes), Err(DecodeError::TrailingBytes(1)));
    bytes[0] = 2;
    assert_eq!(Invite::from_bytes(&bytes), Err(DecodeError::UnsupportedVersion(2)));
    assert!(matches!(Invite::from_bytes(&f.cert.to_bytes()), Err(DecodeError::WrongKind { .. })));
}

#[test]
fn capability_id_hex() {
    let id = CapabilityId([0xab; 16]);
    assert_eq!(CapabilityId::from_hex(&id.to_hex()), Some(id));
    assert_eq!(CapabilityId::from_hex("zz"), None);
    assert_eq!(CapabilityId::from_hex(&"é".repeat(16)), None);
}

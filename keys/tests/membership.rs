//! The cluster membership document: signed by the operator key, strictly decoded, the
//! highest epoch wins; random bytes and tampering never verify and never panic.

use confab_keys::*;
use proptest::prelude::*;

const CLUSTER: [u8; 16] = [7; 16];
const NOW: u64 = 1_800_000_000;

fn member(seed: u8, roles: Roles, addresses: &[&str]) -> Member {
    Member { node_key: NodeKey::from_seed([seed; 32]).public(), roles, expires: NOW + 86_400, addresses: addresses.iter().map(|a| a.to_string()).collect() }
}

fn three_nodes(epoch: u64) -> MembershipBody {
    MembershipBody::new(
        CLUSTER,
        epoch,
        NOW,
        vec![
            member(3, Roles::MEDIA, &["node3.example.org:443"]),
            member(1, Roles::ACCOUNTS.with(Roles::MEDIA), &["node1.example.org:443", "[2001:db8::1]:443"]),
            member(2, Roles::MEDIA, &["10.0.0.2:443"]),
        ],
    )
    .unwrap()
}

#[test]
fn a_signed_membership_round_trips_and_names_its_members_until_they_expire() {
    let operator = OperatorKey::from_seed([9; 32]);
    let signed = operator.sign_membership(three_nodes(1));
    let text = signed.to_text();
    assert!(text.starts_with("cfm1."), "{text}");
    let back = Membership::from_text(&text).unwrap();
    assert_eq!(back, signed);
    let body = back.verify(&operator.public(), &CLUSTER, NOW).unwrap();
    // Members are kept sorted by node key, whatever order they were given in.
    assert!(body.members.windows(2).all(|w| w[0].node_key < w[1].node_key));
    let node1 = NodeKey::from_seed([1; 32]).public();
    let m = body.member(&node1, NOW).expect("node 1 is a member");
    assert_eq!(m.roles.names(), ["accounts", "media"]);
    assert_eq!(m.addresses, ["node1.example.org:443", "[2001:db8::1]:443"]);
    assert!(body.member(&node1, NOW + 86_400).is_none(), "no member once its membership expired");
    assert!(body.member(&NodeKey::from_seed([4; 32]).public(), NOW).is_none(), "a node not listed is no member");
}

#[test]
fn only_the_trusted_operator_for_this_cluster_counts_and_any_change_breaks_the_signature() {
    let operator = OperatorKey::from_seed([9; 32]);
    let signed = operator.sign_membership(three_nodes(1));
    let other = OperatorKey::from_seed([8; 32]);
    assert_eq!(signed.verify(&other.public(), &CLUSTER, NOW), Err(MembershipError::WrongOperator));
    assert_eq!(signed.verify(&operator.public(), &[8; 16], NOW), Err(MembershipError::WrongCluster));
    assert!(matches!(signed.verify(&operator.public(), &CLUSTER, NOW - 3_600), Err(MembershipError::FromTheFuture { .. })));
    // Every single-byte change to the signed part is noticed (as malformed or as a bad signature).
    let bytes = signed.to_bytes();
    for i in 0..bytes.len() {
        let mut changed = bytes.clone();
        changed[i] ^= 0x01;
        if let Ok(m) = Membership::from_bytes(&changed) {
            assert!(m.verify(&operator.public(), &CLUSTER, NOW).is_err(), "byte {i} changed and it still verifies");
        }
    }
    // A node key's signature over the same bytes is not a membership (domain separation).
    let node = NodeKey::from_seed([9; 32]);
    assert_eq!(node.public(), operator.public(), "the same seed, the same public key");
    let cert = node.certify(CertificateBody {
        id: CapabilityId([1; 16]),
        account_key: [2; 32],
        username: Username::parse("vera").unwrap(),
        max_role: Role::Host,
        not_before: NOW,
        expires: NOW + 10,
    });
    assert!(Membership::from_bytes(&cert.to_bytes()).is_err(), "a certificate does not decode as a membership");
}

#[test]
fn the_highest_epoch_wins_within_one_cluster() {
    let operator = OperatorKey::from_seed([9; 32]);
    let first = operator.sign_membership(three_nodes(1));
    let second = operator
        .sign_membership(MembershipBody::new(CLUSTER, 2, NOW + 10, vec![member(1, Roles::ACCOUNTS.with(Roles::MEDIA), &["node1.example.org:443"])]).unwrap());
    assert!(second.supersedes(&first));
    assert!(!first.supersedes(&second));
    assert!(!first.supersedes(&first), "the same epoch replaces nothing");
    let elsewhere = operator.sign_membership(MembershipBody::new([1; 16], 5, NOW, vec![]).unwrap());
    assert!(!elsewhere.supersedes(&first), "another cluster's epochs do not count");
}

#[test]
fn decoding_is_strict() {
    // Duplicates, too many members or addresses, bad addresses, expiry before issue: refused
    // when building a body…
    assert!(MembershipBody::new(CLUSTER, 1, NOW, vec![member(1, Roles::MEDIA, &[]), member(1, Roles::MEDIA, &[])]).is_err());
    assert!(MembershipBody::new(CLUSTER, 1, NOW, (0..=MAX_MEMBERS as u8).map(|i| member(i, Roles::MEDIA, &[])).collect()).is_err());
    assert!(MembershipBody::new(CLUSTER, 1, NOW, vec![member(1, Roles::MEDIA, &["a:1"; MAX_ADDRESSES + 1])]).is_err());
    assert!(MembershipBody::new(CLUSTER, 1, NOW, vec![member(1, Roles::MEDIA, &["has space:443"])]).is_err());
    assert!(MembershipBody::new(CLUSTER, 1, NOW, vec![member(1, Roles::MEDIA, &[""])]).is_err());
    let mut expired = member(1, Roles::MEDIA, &[]);
    expired.expires = NOW;
    assert!(MembershipBody::new(CLUSTER, 1, NOW, vec![expired]).is_err());
    // …and when decoding: trailing bytes, unknown role bits, a truncated document.
    let operator = OperatorKey::from_seed([9; 32]);
    let bytes = operator.sign_membership(three_nodes(1)).to_bytes();
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(Membership::from_bytes(&trailing), Err(DecodeError::TrailingBytes(1)));
    assert_eq!(Membership::from_bytes(&bytes[..bytes.len() - 1]), Err(DecodeError::Truncated));
    // The first member's roles byte sits after version, kind, operator key, cluster, epoch,
    // issued, count and its node key.
    let roles_at = 1 + 1 + 32 + 16 + 8 + 8 + 1 + 32;
    let mut unknown_role = bytes.clone();
    unknown_role[roles_at] = 0x80;
    assert!(Membership::from_bytes(&unknown_role).is_err());
    assert!(Membership::from_text("cfc1.AAAA").is_err(), "another kind's prefix");
    assert!(Membership::from_text("").is_err());
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Membership::from_bytes(&bytes);
    }

    #[test]
    fn random_text_never_panics(text in ".{0,300}") {
        let _ = Membership::from_text(&text);
        let _ = Membership::from_text(&format!("cfm1.{text}"));
    }

    #[test]
    fn random_tampering_never_verifies(seed in any::<[u8; 32]>(), epoch in 1u64..1_000_000, at in 0usize..400, flip in 1u8..=255) {
        let operator = OperatorKey::from_seed(seed);
        let signed = operator.sign_membership(three_nodes(epoch));
        let mut bytes = signed.to_bytes();
        let i = at % bytes.len();
        bytes[i] ^= flip;
        if let Ok(m) = Membership::from_bytes(&bytes) {
            prop_assert!(m.verify(&operator.public(), &CLUSTER, NOW).is_err());
        }
    }
}

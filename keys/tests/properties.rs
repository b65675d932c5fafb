//! Property tests: random well-formed invites round-trip and verify; random bytes and random
//! tampering never verify and never panic.

use confab_keys::*;
use proptest::prelude::*;

fn arb_room() -> impl Strategy<Value = RoomName> {
    "[a-z0-9][a-z0-9-]{1,62}[a-z0-9]".prop_map(|s| RoomName::parse(&s).unwrap())
}

fn arb_username() -> impl Strategy<Value = Username> {
    "[A-Za-z0-9][A-Za-z0-9._-]{2,31}".prop_map(|s| Username::parse(&s).unwrap())
}

fn arb_role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Guest), Just(Role::Host)]
}

prop_compose! {
    fn arb_chain()(
        node_seed in any::<[u8; 32]>(),
        account_seed in any::<[u8; 32]>(),
        cert_id in any::<[u8; 16]>(),
        invite_id in any::<[u8; 16]>(),
        username in arb_username(),
        room in arb_room(),
        role in arb_role(),
        start in 1_000_000u64..4_000_000_000,
        cert_len in 1000u64..100_000_000,
        invite_offset in 0u64..1000,
        invite_len in 1u64..1000,
    ) -> (NodeKey, Invite, u64) {
        let node = NodeKey::from_seed(node_seed);
        let account = AccountKey::from_seed(account_seed);
        let cert = node.certify(CertificateBody {
            id: CapabilityId(cert_id),
            account_key: account.public(),
            username,
            max_role: Role::Host,
            not_before: start,
            expires: start + cert_len,
        });
        let not_before = start + invite_offset;
        let invite = account.invite(&cert, InviteBody {
            id: CapabilityId(invite_id),
            room,
            role,
            not_before,
            expires: not_before + invite_len,
        });
        (node, invite, not_before)
    }
}

proptest! {
    #[test]
    fn random_invites_round_trip_and_verify((node, invite, now) in arb_chain()) {
        let text = invite.to_text();
        let decoded = Invite::from_text(&text).unwrap();
        prop_assert_eq!(&decoded, &invite);
        let verifier = Verifier { node_keys: &[node.public()], now, revoked: &RevocationSet::new() };
        let granted = verifier.verify_invite(&decoded, &invite.body().room).unwrap();
        prop_assert_eq!(granted.role, invite.body().role);
    }

    #[test]
    fn random_tampering_never_verifies(
        (node, invite, now) in arb_chain(),
        position in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let mut bytes = invite.to_bytes();
        let i = position.index(bytes.len());
        bytes[i] ^= mask;
        if let Ok(tampered) = Invite::from_bytes(&bytes) {
            let verifier = Verifier { node_keys: &[node.public()], now, revoked: &RevocationSet::new() };
            prop_assert!(verifier.verify_invite(&tampered, &invite.body().room).is_err());
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Invite::from_bytes(&bytes);
        let _ = AccountCertificate::from_bytes(&bytes);
    }

    #[test]
    fn random_text_never_panics(text in "\\PC{0,600}") {
        let _ = Invite::from_text(&text);
        let _ = Invite::from_text(&format!("cfi1.{text}"));
    }
}

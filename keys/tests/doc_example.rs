//! The worked example in docs/capabilities.md is produced by this code: if the format
//! changes, this test fails until the document is updated.

use confab_keys::*;

fn example() -> (NodeKey, AccountKey, Invite) {
    let node = NodeKey::from_seed([1; 32]);
    let account = AccountKey::from_seed([2; 32]);
    let cert = node.certify(CertificateBody {
        id: CapabilityId([0x11; 16]),
        account_key: account.public(),
        username: Username::parse("alice").unwrap(),
        max_role: Role::Host,
        not_before: 1_800_000_000,
        expires: 1_800_000_000 + 90 * 86_400,
    });
    let invite = account.invite(
        &cert,
        InviteBody {
            id: CapabilityId([0x22; 16]),
            room: RoomName::parse("book-club").unwrap(),
            role: Role::Guest,
            not_before: 1_800_000_000,
            expires: 1_800_000_000 + 7 * 86_400,
        },
    );
    (node, account, invite)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn document_shows_this_exact_invite() {
    let (node, account, invite) = example();
    let doc = include_str!("../../docs/capabilities.md");
    let text = invite.to_text();
    let bytes = invite.to_bytes();
    if std::env::var_os("PRINT_EXAMPLE").is_some() {
        println!("node public  {}", hex(&node.public()));
        println!("account pub  {}", hex(&account.public()));
        println!("invite text  {text}");
        println!("invite hex   {}", hex(&bytes));
        println!("cert hex     {}", hex(&invite.certificate().to_bytes()));
    }
    // The text may be wrapped in the document; compare without white space.
    let flat: String = doc.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(flat.contains(&text), "docs/capabilities.md does not show the current example invite:\n{text}");
    assert!(flat.contains(&hex(&node.public())));
    assert!(flat.contains(&hex(&account.public())));
    let verifier = Verifier { node_keys: &[node.public()], now: 1_800_000_100, revoked: &confab_keys::RevocationSet::new() };
    verifier.verify_invite(&invite, &RoomName::parse("book-club").unwrap()).unwrap();
}

//! Accounts, tokens and revocations survive a SIGKILL and a restart of the real binary.

use confab_keys::AccountKey;
use confab_tests::node::{check_invite, login, make_invite, signup};
use confab_tests::{Node, client};
use serde_json::{Value, json};

#[tokio::test]
async fn state_survives_kill_and_restart() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut node = Node::start_in(&data).await;
    let admin = node.admin().await;

    // A token used by bob, one revoked, one left unused.
    let bob_token = node.issue_token(&admin).await;
    let bob = client();
    assert_eq!(signup(&bob, &node, "Bob", "bob's password", &bob_token).await.status(), 201);
    let revoked_token = node.issue_token(&admin).await;
    let tokens: Vec<Value> = admin.get(node.api("/api/tokens")).send().await.unwrap().json().await.unwrap();
    let revoked_id = tokens.iter().find(|t| t["status"] == "unused").unwrap()["id"].as_i64().unwrap();
    let res = admin.post(node.api(&format!("/api/tokens/{revoked_id}/revoke"))).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let unused_token = node.issue_token(&admin).await;

    // Bob makes two invites and revokes one.
    let key = AccountKey::from_seed([3; 32]);
    let kept = make_invite(&bob, &node, &key, "book-club", 86_400).await;
    let dropped = make_invite(&bob, &node, &key, "book-club", 86_400).await;
    let invites: Vec<Value> = bob.get(node.api("/api/invites")).send().await.unwrap().json().await.unwrap();
    let dropped_id = confab_keys::Invite::from_text(&dropped).unwrap().body().id.to_hex();
    assert!(invites.iter().any(|i| i["id"] == dropped_id.as_str()));
    let res = bob.post(node.api(&format!("/api/invites/{dropped_id}/revoke"))).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(check_invite(&node, "book-club", &dropped).await, (403, "capability_revoked".into()));

    node.kill();
    let node = Node::start_in(&data).await;
    assert_eq!(node.first_token, None, "an account exists, so no first-start token is printed again: {:?}", node.stdout());

    // Accounts: bob logs in (case-insensitively) with his password.
    let bob = client();
    assert_eq!(login(&bob, &node, "bob", "bob's password").await.status(), 200);
    let me: Value = bob.get(node.api("/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["username"], "Bob");

    // Tokens: used stays used, revoked stays revoked, unused still works exactly once.
    let c = client();
    let res = signup(&c, &node, "carol", "carol's password", &bob_token).await;
    assert_eq!(res.status(), 409);
    let res = signup(&c, &node, "carol", "carol's password", &revoked_token).await;
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "token_revoked");
    assert_eq!(signup(&c, &node, "carol", "carol's password", &unused_token).await.status(), 201);

    // Invites: the node key survived (the kept invite still verifies) and so did the revocation.
    assert_eq!(check_invite(&node, "book-club", &kept).await, (200, "ok".into()));
    assert_eq!(check_invite(&node, "book-club", &dropped).await, (403, "capability_revoked".into()));
}

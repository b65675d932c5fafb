//! Login failures are throttled per account (5 in 15 minutes) and per client address (20 in
//! 15 minutes), as docs/operating.md states.

use confab_tests::Node;
use confab_tests::node::{client, login};
use serde_json::Value;

#[tokio::test]
async fn per_account_limit() {
    let node = Node::start().await;
    let admin = node.admin().await;
    let _ = node.account(&admin, "dana").await;
    let c = client();
    for attempt in 1..=5 {
        let res = login(&c, &node, "dana", "wrong password").await;
        assert_eq!(res.status(), 401, "attempt {attempt}");
    }
    // Now even the right password is refused, with a time to wait.
    let res = login(&c, &node, "Dana", "a long password").await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900, "Retry-After {retry}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "too_many_attempts");
    assert!(body["message"].as_str().unwrap().contains("Try again in"));

    // Another account from the same address is not locked by dana's failures.
    let res = login(&c, &node, "admin", "admin password").await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn per_address_limit() {
    let node = Node::start().await;
    let admin = node.admin().await;
    let _ = node.account(&admin, "erin").await;
    let c = client();
    // Twenty failures spread over accounts that do not exist: no account limit applies.
    for i in 0..20 {
        let res = login(&c, &node, &format!("nobody{i}"), "guess").await;
        assert_eq!(res.status(), 401, "attempt {i}");
    }
    let res = login(&c, &node, "erin", "a long password").await;
    assert_eq!(res.status(), 429, "the address is throttled, whatever the account");
}

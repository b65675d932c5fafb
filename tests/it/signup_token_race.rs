//! 50 concurrent redemptions of one sign-up token over HTTPS: exactly one account, 49 clear
//! "already used" errors.

use confab_tests::node::signup;
use confab_tests::{Node, client};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_token_fifty_concurrent_redemptions() {
    let node = Node::start().await;
    let admin = node.admin().await;
    let token = node.issue_token(&admin).await;

    let attempts = (0..50).map(|i| {
        let token = token.clone();
        let node = &node;
        async move {
            let c = client();
            let res = signup(&c, node, &format!("racer{i:02}"), "a long password", &token).await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            (status, body)
        }
    });
    let results = futures::future::join_all(attempts).await;

    let created: Vec<_> = results.iter().filter(|(s, _)| *s == 201).collect();
    let refused: Vec<_> = results.iter().filter(|(s, _)| *s != 201).collect();
    assert_eq!(created.len(), 1, "exactly one sign-up succeeds: {results:?}");
    assert_eq!(refused.len(), 49);
    for (status, body) in &refused {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["error"], "token_used", "{body}");
        assert!(body["message"].as_str().unwrap().contains("already been used"), "{body}");
    }

    let accounts: Vec<Value> = admin.get(node.api("/api/accounts")).send().await.unwrap().json().await.unwrap();
    let racers: Vec<_> = accounts.iter().filter(|a| a["username"].as_str().unwrap().starts_with("racer")).collect();
    assert_eq!(racers.len(), 1, "exactly one account exists: {accounts:?}");
    assert_eq!(racers[0]["username"], created[0].1["username"]);

    let tokens: Vec<Value> = admin.get(node.api("/api/tokens")).send().await.unwrap().json().await.unwrap();
    let used: Vec<_> = tokens.iter().filter(|t| t["used_by"] == created[0].1["username"]).collect();
    assert_eq!(used.len(), 1);
    assert_eq!(used[0]["status"], "used");
}

//! The operator's CLI on a running node's data directory: tokens issued, listed and revoked;
//! the ticketmaster role granted; `confab invite` signing with a key file; disabling an
//! account voids its invites.

use confab_tests::Node;
use confab_tests::node::{check_invite, client, signup};
use serde_json::{Value, json};

#[tokio::test]
async fn cli_manages_tokens_accounts_and_invites() {
    let node = Node::start().await;
    let admin = node.admin().await;

    // Issue from the CLI; the token works over HTTPS exactly once.
    let issued = node.cli(&["token", "issue", "--note", "for frank", "--expires", "2d"]);
    let token = issued.split_whitespace().find(|w| w.starts_with("cft_")).expect("the token is printed").to_string();
    let frank = client();
    assert_eq!(signup(&frank, &node, "frank", "frank's password", &token).await.status(), 201);
    let list = node.cli(&["token", "list"]);
    let row = list.lines().find(|l| l.contains("for frank")).unwrap();
    assert!(row.contains("used") && row.contains("frank"), "{list}");

    // Revoke an unused token; redeeming it then says so.
    let issued = node.cli(&["token", "issue"]);
    let revoked = issued.split_whitespace().find(|w| w.starts_with("cft_")).unwrap().to_string();
    let id = issued.split('#').nth(1).unwrap().split(',').next().unwrap().to_string();
    node.cli(&["token", "revoke", &id]);
    let res = signup(&client(), &node, "ghost", "a long password", &revoked).await;
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "token_revoked");
    let again = node.cli_output(&["token", "revoke", &id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already revoked"));

    // Grant frank the ticketmaster role; his session sees it at once.
    node.cli(&["account", "grant-ticketmaster", "Frank"]);
    let res = frank.post(node.api("/api/tokens")).json(&json!({"note": "by frank"})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let accounts = node.cli(&["account", "list"]);
    assert!(accounts.lines().any(|l| l.starts_with("frank") && l.contains("ticketmaster")), "{accounts}");

    // `confab invite` with a key file gives a working link.
    let key_file = node.data_dir().parent().unwrap().join("frank.key");
    let link = node.cli(&["invite", "--account", "frank", "--key-file", key_file.to_str().unwrap(), "--room", "garden-club", "--create-meeting"]);
    let link = link.trim();
    assert!(link.contains("/m/garden-club#cfi1."), "{link}");
    let invite = link.split('#').nth(1).unwrap();
    assert_eq!(check_invite(&node, "garden-club", invite).await, (200, "ok".into()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600, "the key file is private");

    // Disabling frank ends his session and voids his invites, also after re-enabling.
    node.cli(&["account", "disable", "frank"]);
    assert_eq!(frank.get(node.api("/api/me")).send().await.unwrap().status(), 401);
    assert_eq!(check_invite(&node, "garden-club", invite).await, (403, "capability_revoked".into()));
    let res = client().post(node.api("/api/login")).json(&json!({"username": "frank", "password": "frank's password"})).send().await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "account_disabled");
    node.cli(&["account", "enable", "frank"]);
    assert_eq!(check_invite(&node, "garden-club", invite).await, (403, "capability_revoked".into()));

    // Disabling through the admin page's API does the same.
    let res = admin.post(node.api("/api/accounts/frank/disable")).json(&json!({})).send().await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["disabled"], true);

    // The CLI says clearly what is wrong.
    let out = node.cli_output(&["account", "disable", "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account named"));
    let out = node.cli_output(&["token", "issue", "--expires", "soon"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("duration"));
}

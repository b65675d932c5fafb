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

/// kill -9 during a three-person meeting, then the node started again on the same data and
/// port: every browser is back in the meeting by itself (a fresh seat, since the seats lived
/// in the dead process), within 5 s of the node answering again, and they see each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_crash_the_browsers_come_back_by_themselves() {
    use confab_tests::meeting::{Participant, each_receives_the_others};
    use std::time::{Duration, Instant};
    let _browsers = confab_tests::browser::exclusive().await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut node = Node::start_in(&data).await;
    let listen = node.listen();
    let admin = node.admin().await;
    let invite = make_invite(&admin, &node, &AccountKey::from_seed([3; 32]), "crash-room", 3600).await;
    let link = format!("{}/m/crash-room#{invite}", node.url);
    let (a, b, c) = tokio::join!(Participant::chromium(&link, "Ana"), Participant::chromium(&link, "Bo"), Participant::chromium(&link, "Cy"));
    let mut people = [a, b, c];
    for p in &mut people {
        p.join().await;
    }
    each_receives_the_others(&[&people[0], &people[1], &people[2]]).await;
    let before: Vec<String> = people.iter().map(|p| p.id().to_string()).collect();

    node.kill();
    let node = Node::start_in_with(&data, &["--listen", &listen]).await;
    let up = Instant::now();
    // Back: each page holds a seat the new node gave (an id it did not have before the crash
    // is not enough: ids restart at p1), and the node counts all three.
    confab_tests::eventually("all three to be seated again", Duration::from_secs(20), || async {
        (node.metric("confab_participants").await == 3).then_some(())
    })
    .await;
    let seated = up.elapsed();
    println!("all three seated again {seated:?} after the node was up (ids before: {before:?})");
    assert!(seated <= Duration::from_secs(5), "the browsers took {seated:?} to come back");
    // Each page has taken its new welcome: three distinct ids, each page with two others.
    confab_tests::eventually("each page to show its new seat and the two others", Duration::from_secs(20), || async {
        let mut ids = Vec::new();
        for p in &people {
            let id = p.browser.eval("return window.confabCall?.me?.id ?? null").await.as_str().map(str::to_string)?;
            let others = p.tiles().await.into_iter().filter(|t| t.id != id).count();
            (others == 2).then_some(())?;
            ids.push(id);
        }
        ids.sort();
        ids.dedup();
        (ids.len() == 3).then_some(())
    })
    .await;
    for p in &mut people {
        p.wait_seated().await;
    }
    each_receives_the_others(&[&people[0], &people[1], &people[2]]).await;
    println!("and each receives the others {:?} after the node was up", up.elapsed());
}

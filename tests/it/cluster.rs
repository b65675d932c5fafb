//! Several nodes as one cluster, each in its own network namespace: the membership admits
//! members only and a new epoch cuts a removed node off; what admission needs is replicated,
//! so an invite made on the accounts node admits a seat on every member, and a revocation
//! holds everywhere, also after a restart.

use std::time::{Duration, Instant};

use confab_tests::cluster::Cluster;
use confab_tests::eventually_or;
use confab_tests::node::{check_invite, make_invite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_connect_an_outsider_cannot_and_a_removed_node_is_cut_off() {
    // Nodes 1-3 are members; node 4 has the membership and dials them, but is not in it.
    let mut cluster = Cluster::prepare(4, 3);
    cluster.start_all().await;
    for i in 0..3 {
        cluster.wait_peers(i, 2, Duration::from_secs(20)).await;
    }
    // The outsider dialled every member and each refused it.
    for i in 0..3 {
        let node = cluster.node(i);
        eventually_or(&format!("node {} to refuse the outsider", i + 1), Duration::from_secs(20), || async move {
            let refused = node.metric("confab_cluster_refused_connections_total").await;
            if refused > 0 { Ok(()) } else { Err("no refusal yet".to_string()) }
        })
        .await;
        assert_eq!(node.metric("confab_cluster_peers").await, 2, "node {} let the outsider in", i + 1);
    }
    assert_eq!(cluster.node(3).metric("confab_cluster_peers").await, 0, "the outsider is connected to nobody");
    assert_eq!(cluster.node(0).metric("confab_cluster_epoch").await, 4);

    // The operator removes node 3 and gives the new epoch to node 1 only: gossip carries it
    // to node 2, and both cut node 3 off.
    cluster.remove(2);
    let start = Instant::now();
    cluster.publish_to(0);
    cluster.wait_peers(2, 0, Duration::from_secs(10)).await;
    let cut_off = start.elapsed();
    cluster.wait_peers(0, 1, Duration::from_secs(5)).await;
    cluster.wait_peers(1, 1, Duration::from_secs(5)).await;
    assert_eq!(cluster.node(1).metric("confab_cluster_epoch").await, 5, "node 2 follows the epoch gossip brought");
    println!("a node removed in a new epoch was disconnected {} ms after the operator's file changed", cut_off.as_millis());
    assert!(cut_off <= Duration::from_secs(2), "a removed node must be cut off within 2 s, took {cut_off:?}");
    // The removed node stays out: after its next dials it is still connected to nobody.
    let refused_before = cluster.node(0).metric("confab_cluster_refused_connections_total").await;
    let node1 = cluster.node(0);
    eventually_or("node 1 to refuse the removed node again", Duration::from_secs(20), || async move {
        let refused = node1.metric("confab_cluster_refused_connections_total").await;
        if refused > refused_before { Ok(()) } else { Err(format!("{refused} refusals")) }
    })
    .await;
    assert_eq!(cluster.node(2).metric("confab_cluster_peers").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_made_on_the_accounts_node_admits_everywhere_and_its_revocation_holds_everywhere() {
    let mut cluster = Cluster::prepare(3, 3);
    cluster.start_all().await;
    for i in 0..3 {
        cluster.wait_peers(i, 2, Duration::from_secs(20)).await;
    }
    let first = cluster.node(0);
    assert!(first.first_token.is_some(), "the accounts node prints the first-start token");
    assert!(cluster.node(1).first_token.is_none() && cluster.node(2).first_token.is_none(), "media nodes hold no accounts of their own");
    let admin = first.admin().await;
    let key = confab_keys::AccountKey::from_seed([3; 32]);
    let invite = make_invite(&admin, first, &key, "spanning", 3600).await;

    // The meeting, the certificate and the owner reach every member.
    for i in 1..3 {
        let node = cluster.node(i);
        let invite = invite.clone();
        let seen = eventually_or(&format!("node {} to admit the invite", i + 1), Duration::from_secs(15), || {
            let invite = invite.clone();
            async move {
                let (status, code) = check_invite(node, "spanning", &invite).await;
                if status == 200 { Ok(code) } else { Err(format!("{status} {code}")) }
            }
        })
        .await;
        assert_eq!(seen, "ok");
    }

    // The owner revokes it on the accounts node: every member refuses it.
    let id = confab_keys::Invite::from_text(&invite).unwrap().body().id.to_hex();
    let res = admin.post(first.api(&format!("/api/invites/{id}/revoke"))).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    for i in 1..3 {
        let node = cluster.node(i);
        let invite = invite.clone();
        eventually_or(&format!("node {} to refuse the revoked invite", i + 1), Duration::from_secs(15), || {
            let invite = invite.clone();
            async move {
                let (status, code) = check_invite(node, "spanning", &invite).await;
                if code == "capability_revoked" { Ok(()) } else { Err(format!("{status} {code}")) }
            }
        })
        .await;
    }

    // Node 3 restarts with the accounts node down: it still refuses the invite (its own
    // copy), and still admits a second invite made before.
    let second = make_invite(&admin, first, &key, "spanning", 3600).await;
    let node3 = cluster.node(2);
    let second_text = second.clone();
    eventually_or("node 3 to admit the second invite", Duration::from_secs(15), || {
        let second = second_text.clone();
        async move {
            let (status, code) = check_invite(node3, "spanning", &second).await;
            if status == 200 { Ok(()) } else { Err(format!("{status} {code}")) }
        }
    })
    .await;
    cluster.members[0].node.as_mut().unwrap().kill();
    cluster.members[2].node.as_mut().unwrap().kill();
    cluster.members[2].node = None;
    cluster.start(2, &[]).await;
    assert_eq!(check_invite(cluster.node(2), "spanning", &invite).await.1, "capability_revoked");
    assert_eq!(check_invite(cluster.node(2), "spanning", &second).await.0, 200);
}

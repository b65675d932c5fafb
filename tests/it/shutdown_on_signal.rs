//! SIGTERM and SIGINT stop the node cleanly: it exits with status 0, and the database is
//! intact for the next start.

use std::time::{Duration, Instant};

use confab_tests::Node;
use confab_tests::node::{client, login};

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_and_sigint_exit_cleanly() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    for sig in ["TERM", "INT"] {
        let mut node = Node::start_in(&data).await;
        if let Some(_token) = &node.first_token {
            let _ = node.admin().await;
        }
        assert_eq!(login(&client(), &node, "admin", "admin password").await.status(), 200);
        signal(node.pid(), sig);
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = node.try_wait() {
                break status;
            }
            assert!(Instant::now() < deadline, "the node did not exit within 15 s of SIG{sig}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "SIG{sig}: exit status {status}");
    }
}

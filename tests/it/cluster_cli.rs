//! `confab cluster init | add | remove | show`: the operator's membership document, signed
//! with a key kept off the nodes, one epoch per change.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use confab_tests::node::confab_bin;

fn confab(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(confab_bin()).current_dir(dir).args(args).env_remove("CONFAB_CONFIG").output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A node's public key as `confab node-key` prints it (on standard output; its log goes to
/// standard error).
fn node_key(dir: &std::path::Path, name: &str) -> String {
    let out = Command::new(confab_bin()).current_dir(dir).args(["node-key", "--data-dir", name]).env_remove("CONFAB_CONFIG").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn an_operator_builds_a_membership_one_signed_epoch_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, out) = confab(d, &["cluster", "init"]);
    assert!(ok, "{out}");
    println!("{out}");
    let key_mode = std::fs::metadata(d.join("cluster-operator.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600, "the operator key is readable by its owner only");
    let (ok, out) = confab(d, &["cluster", "init"]);
    assert!(!ok && out.contains("exists already"), "a second init is refused: {out}");

    let (one, two) = (node_key(d, "node1"), node_key(d, "node2"));
    let (ok, out) = confab(d, &["cluster", "add", "--node-key", &one, "--address", "node1.example.org:443", "--roles", "accounts,media"]);
    assert!(ok && out.contains("Added") && out.contains("epoch 2"), "{out}");
    let (ok, out) = confab(d, &["cluster", "add", "--node-key", &two, "--address", "10.0.0.2:443", "--address", "[2001:db8::2]:443"]);
    assert!(ok && out.contains("epoch 3, 2 members"), "{out}");
    let (ok, out) = confab(d, &["cluster", "add", "--node-key", &two, "--address", "10.0.0.22:443"]);
    assert!(ok && out.contains("Changed") && out.contains("epoch 4, 2 members"), "{out}");
    let (ok, out) = confab(d, &["cluster", "show"]);
    assert!(ok, "{out}");
    println!("{out}");
    assert!(out.contains("epoch 4") && out.contains(&one) && out.contains("accounts,media") && out.contains("10.0.0.22:443"), "{out}");
    assert!(!out.contains("10.0.0.2:443"), "the changed member's old address is gone: {out}");
    let (ok, out) = confab(d, &["cluster", "remove", "--node-key", &two]);
    assert!(ok && out.contains("epoch 5, 1 members"), "{out}");
    let (ok, out) = confab(d, &["cluster", "remove", "--node-key", &two]);
    assert!(!ok && out.contains("not a member"), "{out}");

    // Bad input is refused with a reason.
    for (args, says) in [
        (vec!["cluster", "add", "--node-key", "abc", "--address", "x:1"], "64 hexadecimal digits"),
        (vec!["cluster", "add", "--node-key", one.as_str(), "--address", "x:1", "--roles", "dns"], "unknown role"),
        (vec!["cluster", "add", "--node-key", one.as_str(), "--address", "has space:1"], "address"),
    ] {
        let (ok, out) = confab(d, &args);
        assert!(!ok && out.contains(says), "{args:?}: {out}");
    }
    // A document edited by hand no longer verifies; another operator key is refused.
    let text = std::fs::read_to_string(d.join("membership.cfm")).unwrap();
    let mut chars: Vec<char> = text.trim().chars().collect();
    let i = chars.len() - 100;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    std::fs::write(d.join("edited.cfm"), chars.into_iter().collect::<String>()).unwrap();
    let (ok, out) = confab(d, &["cluster", "show", "--membership", "edited.cfm"]);
    assert!(!ok, "an edited document must not verify: {out}");
    let (ok, _) = confab(d, &["cluster", "init", "--operator-key", "other.key", "--membership", "other.cfm"]);
    assert!(ok);
    let (ok, out) = confab(d, &["cluster", "show", "--operator-key", "other.key"]);
    assert!(!ok && out.contains("does not verify"), "{out}");
}

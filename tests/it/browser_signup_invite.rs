//! In real headless Chromium: sign up with a token, log out and in, create a meeting, read
//! the invite link (signed in the browser with WebCrypto Ed25519); a second browser profile
//! opens it and sees the prejoin page; a tampered link shows the refusal.

use confab_tests::Node;
use confab_tests::browser::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_create_meeting_and_open_invite() {
    let _heavy = confab_tests::browser::exclusive().await;
    let node = Node::start().await;
    let admin = node.admin().await;
    let token = node.issue_token(&admin).await;
    let base = node.url.clone();

    let host = Browser::chromium().await;
    host.goto(&format!("{base}/create")).await;
    host.fill("#username", "Gina").await;
    host.fill("#password", "gina's long password").await;
    host.fill("#token", &token).await;
    host.click("#create").await;
    host.wait_visible("#new-meeting").await;
    assert_eq!(host.path().await, "/account");

    // Log out and back in.
    host.click("#logout").await;
    // Logging out ends on the home page, whose navigation offers to log in: follow it (going
    // to /login at once raced the page's own navigation to /).
    host.wait_visible("#nav a[href='/login']").await;
    assert_eq!(host.path().await, "/");
    host.click("#nav a[href='/login']").await;
    host.wait_visible("#login").await;
    // A login link whose `next` a browser would read as another host (`/\\example.org/`)
    // still ends on this site.
    host.goto(&format!("{base}/login?next=%2F%5Cexample.org%2F")).await;
    host.fill("#username", "gina").await;
    host.fill("#password", "gina's long password").await;
    host.click("#submit").await;
    host.wait_visible("#new-meeting").await;
    assert_eq!(host.eval("return location.origin").await, serde_json::json!(base));
    assert_eq!(host.path().await, "/account");

    // Create a meeting: its guest link appears.
    host.fill("#room", "Reading Group").await;
    host.click("#create-meeting").await;
    let what = host.wait_visible("#invite-what").await;
    assert!(what.contains("Guest link for reading-group"), "{what}");
    let link = host.value("#invite-link").await;
    assert!(link.starts_with(&format!("{}/m/reading-group#cfi1.", node.url)), "{link}");
    let status = host.wait_visible("#invites tbody tr .status").await;
    assert_eq!(status, "active");

    // A guest, in another profile, opens the link and sees the prejoin screen.
    let guest = Browser::chromium().await;
    guest.goto(&link).await;
    let title = guest.wait_visible("#meeting-title").await;
    assert_eq!(title, "Meeting reading-group");
    let invited = guest.wait_visible("#meeting-invited").await;
    assert_eq!(invited, "Invited by Gina as a guest.");
    guest.wait_visible("#display-name").await;

    // A tampered link: one character of the signature changed.
    let (head, capability) = link.split_once('#').unwrap();
    let mut chars: Vec<char> = capability.chars().collect();
    let i = chars.len() - 10;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{head}#{}", chars.into_iter().collect::<String>());
    let other = Browser::chromium().await;
    other.goto(&tampered).await;
    let reason = other.wait_visible("#refusal-reason").await;
    // The client's sentence for the node's code (capability_bad_signature), in English here.
    assert_eq!(reason, "This invite link has been altered or damaged. Ask for a new link.");

    // A link cut before the fragment says what is missing.
    other.goto(head).await;
    let reason = other.wait_visible("#refusal-reason").await;
    assert_eq!(reason, "This link has no invite in it.");

    // The host revokes the invite; the guest's link stops working.
    host.click("#invites tbody tr .revoke").await;
    let status = confab_tests::eventually("the invite to show as revoked", std::time::Duration::from_secs(10), || async {
        let s = host.wait_visible("#invites tbody tr .status").await;
        (s == "revoked").then_some(s)
    })
    .await;
    assert_eq!(status, "revoked");
    other.goto(&link).await;
    let reason = other.wait_visible("#refusal-reason").await;
    assert!(reason.contains("revoked"), "{reason}");

    for b in [host, guest, other] {
        b.close().await;
    }
}

/// The ticketmaster's and the admin's pages, in a real browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticketmaster_and_admin_pages() {
    let _heavy = confab_tests::browser::exclusive().await;
    let node = Node::start().await;
    let admin = node.admin().await;
    let _ = node.account(&admin, "hugo").await;
    let base = node.url.clone();

    let b = Browser::chromium().await;
    b.goto(&format!("{base}/tokens")).await;
    // Not logged in: sent to the login page, and back after logging in.
    b.wait_visible("#login").await;
    b.fill("#username", "admin").await;
    b.fill("#password", "admin password").await;
    b.click("#submit").await;
    b.wait_visible("#issue").await;
    assert_eq!(b.path().await, "/tokens");

    b.fill("#note", "for <b>ivy</b>").await;
    b.click("#issue-token").await;
    b.wait_visible("#issued").await;
    let token = b.value("#new-token").await;
    assert!(token.starts_with("cft_"), "{token}");
    let link = b.wait_visible("#signup-link").await;
    assert!(link.ends_with(&format!("/create#{token}")), "{link}");
    // The note shows as text, markup and all.
    let note = b.wait_visible("#tokens tbody tr td:nth-child(3)").await;
    assert_eq!(note, "for <b>ivy</b>");
    b.click("#tokens tbody tr .revoke").await;
    confab_tests::eventually("the token to show as revoked", std::time::Duration::from_secs(10), || async {
        (b.wait_visible("#tokens tbody tr .status").await == "revoked").then_some(())
    })
    .await;

    b.goto(&format!("{base}/admin")).await;
    b.click("tr[data-username='hugo'] .toggle-ticketmaster").await;
    confab_tests::eventually("hugo to become a ticketmaster", std::time::Duration::from_secs(10), || async {
        let roles = b.wait_visible("tr[data-username='hugo'] td:nth-child(2)").await;
        (roles == "ticketmaster").then_some(())
    })
    .await;
    b.close().await;
}

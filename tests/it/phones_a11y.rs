//! Phones and accessibility, in real browsers.
//!
//! Phones: Chromium emulating a Pixel 7 (412×915 CSS pixels, touch, a phone's user agent)
//! and Firefox ESR 390 pixels wide go through the prejoin, join, mute, share and leave with
//! every control they press inside the screen (nothing to scroll to, nothing wider than the
//! screen); the Pixel's two cameras flip. Accessibility: axe-core (from npm, pinned in
//! `typecheck/package-lock.json`) audits home, sign-up, login, account, tokens, admin,
//! prejoin and the call: no serious or critical violation.

use std::time::Duration;

use confab_tests::Node;
use confab_tests::browser::Browser;
use confab_tests::meeting::{Participant, start_meeting};
use serde_json::{Value, json};

/// Whether `css` is shown entirely inside the viewport as the page is now (no scrolling),
/// and the page is no wider than the screen; the element's box, for the failure message.
async fn within_screen(b: &Browser, css: &str) -> (bool, Value) {
    let script = "const e = document.querySelector(arguments[0]); if (!e) return [false, 'missing'];
        const r = e.getBoundingClientRect();
        const inside = r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight;
        const fits = document.documentElement.scrollWidth <= innerWidth;
        return [inside && fits, { left: r.left, top: r.top, right: r.right, bottom: r.bottom, innerWidth, innerHeight, scrollWidth: document.documentElement.scrollWidth }];";
    let out = b.client.execute(script, vec![json!(css)]).await.unwrap();
    (out[0] == json!(true), out[1].clone())
}

async fn assert_within_screen(b: &Browser, what: &str, css: &str) {
    let (ok, rect) = within_screen(b, css).await;
    assert!(ok, "{what}: {css} is not inside the screen without scrolling: {rect}");
}

/// Prejoin, join, mute, share, stop sharing, leave: each control pressed is on screen.
async fn on_a_phone(mut p: Participant, share: bool) {
    let who = p.name.clone();
    assert_within_screen(&p.browser, &who, "#display-name").await;
    assert_within_screen(&p.browser, &who, "#join").await;
    p.screenshot(&format!("phone-prejoin-{}", who.to_lowercase().replace(' ', "-"))).await;
    p.join().await;
    p.browser.wait_visible("#tiles .tile").await;
    p.screenshot(&format!("phone-call-{}", who.to_lowercase().replace(' ', "-"))).await;
    for control in ["#toggle-mic", "#toggle-camera", "#toggle-screen", "#toggle-people", "#toggle-chat", "#leave"] {
        assert_within_screen(&p.browser, &who, control).await;
    }
    p.browser.click("#toggle-mic").await;
    confab_tests::eventually("the microphone to be off", Duration::from_secs(10), || async {
        (p.browser.eval("return window.confabCall.local.audioOn").await == json!(false)).then_some(())
    })
    .await;
    if share {
        p.browser.click("#toggle-screen").await;
        confab_tests::eventually("the share to start", Duration::from_secs(15), || async {
            (p.browser.eval("return !!window.confabCall.local.screen").await == json!(true)).then_some(())
        })
        .await;
        assert_within_screen(&p.browser, &who, "#toggle-screen").await;
        p.browser.click("#toggle-screen").await;
        confab_tests::eventually("the share to stop", Duration::from_secs(15), || async {
            (p.browser.eval("return !!window.confabCall.local.screen").await == json!(false)).then_some(())
        })
        .await;
    }
    assert_within_screen(&p.browser, &who, "#leave").await;
    p.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_pixel_7_and_a_390_pixel_firefox_every_control_is_on_screen_and_the_camera_flips() {
    let _browsers = confab_tests::browser::exclusive().await;
    let (_node, link, _) = start_meeting(&[], "phones").await;

    // The Pixel 7 (mobile emulation) with two cameras, as a phone has.
    let phone = Participant::open(Browser::chromium_phone().await, &link, "Pixel").await;
    let screen = phone.browser.eval("return [innerWidth, innerHeight, navigator.maxTouchPoints > 0, /Android/.test(navigator.userAgent)]").await;
    println!("Pixel 7 viewport and touch: {screen}");
    assert_eq!(screen[2], json!(true), "a touch screen");
    // The camera flips: another camera's track goes out.
    let mut phone = phone;
    phone.join().await;
    phone.browser.wait_visible("#tiles .tile").await;
    assert_within_screen(&phone.browser, "Pixel", "#flip-camera").await;
    let before = phone.browser.eval("return window.confabCall.local.track('video').getSettings().deviceId").await;
    let cameras = phone
        .browser
        .eval("return (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput').map((d) => [d.deviceId, d.label])")
        .await;
    println!("cameras: {cameras}; in use: {before}");
    phone.browser.click("#flip-camera").await;
    let after = confab_tests::eventually("another camera", Duration::from_secs(10), || async {
        let now = phone.browser.eval("return window.confabCall.local.track('video')?.getSettings().deviceId ?? null").await;
        (now.is_string() && now != before).then_some(now)
    })
    .await;
    println!("flipped from camera {before} to {after}");
    phone.browser.click("#flip-camera").await;
    confab_tests::eventually("the first camera again", Duration::from_secs(10), || async {
        (phone.browser.eval("return window.confabCall.local.track('video')?.getSettings().deviceId ?? null").await == before).then_some(())
    })
    .await;
    phone.leave().await;
    drop(phone);
    on_a_phone(Participant::open(Browser::chromium_phone().await, &link, "Pixel 2").await, true).await;

    // Firefox ESR at 390×844.
    let fox = Participant::open(Browser::firefox_sized(390, 844).await, &link, "Fox").await;
    let width = fox.browser.eval("return innerWidth").await.as_u64().unwrap_or(0);
    assert!((389..=391).contains(&width), "Firefox's viewport is {width} CSS pixels wide");
    on_a_phone(fox, false).await;
}

/// Serious and critical axe-core violations on the page as it is now.
async fn audit(b: &Browser, page: &str) -> Vec<String> {
    let axe = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../typecheck/node_modules/axe-core/axe.min.js"))
        .expect("axe-core is missing: tests/run.sh installs it (npm ci --prefix typecheck)");
    b.eval(&format!("{axe}\n;return true;")).await;
    let result = b.eval("return await axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) })))").await;
    let violations = result.as_array().cloned().unwrap_or_default();
    for v in &violations {
        println!("{page}: {} ({}): {} at {}", v["id"], v["impact"], v["help"], v["nodes"]);
    }
    violations
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .map(|v| format!("{page}: {} ({}) {}: {}", v["id"].as_str().unwrap_or("?"), v["impact"].as_str().unwrap_or("?"), v["help"], v["nodes"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axe_core_finds_no_serious_or_critical_violation_on_any_page() {
    let _browsers = confab_tests::browser::exclusive().await;
    let node = Node::start().await;
    let admin = node.admin().await;
    let key = confab_keys::AccountKey::from_seed([6; 32]);
    let invite = confab_tests::node::make_invite(&admin, &node, &key, "audited", 3600).await;
    let link = format!("{}/m/audited#{invite}", node.url);
    let base = node.url.clone();
    let mut found = Vec::new();

    let b = Browser::chromium().await;
    for (page, ready) in [("/", "main h1"), ("/create", "#signup"), ("/login", "#login")] {
        b.goto(&format!("{base}{page}")).await;
        b.wait_visible(ready).await;
        found.extend(audit(&b, page).await);
    }
    b.fill("#username", "admin").await;
    b.fill("#password", "admin password").await;
    b.click("#submit").await;
    b.wait_visible("#meetings li").await;
    // The account page with an invite link made, as people see it after a click.
    b.click("#meetings li .guest-invite").await;
    b.wait_visible("#invite-result").await;
    found.extend(audit(&b, "/account").await);
    for (page, ready) in [("/tokens", "#issue"), ("/admin", "#accounts tbody tr")] {
        b.goto(&format!("{base}{page}")).await;
        b.wait_visible(ready).await;
        found.extend(audit(&b, page).await);
    }
    b.close().await;
    drop(b);

    let mut p = Participant::chromium(&link, "Ada").await;
    found.extend(audit(&p.browser, "prejoin").await);
    p.join().await;
    p.browser.wait_visible("#tiles .tile").await;
    found.extend(audit(&p.browser, "call").await);
    for panel in ["#toggle-people", "#toggle-chat", "#toggle-devices"] {
        p.browser.click(panel).await;
        found.extend(audit(&p.browser, &format!("call with {panel}")).await);
    }
    assert!(found.is_empty(), "serious or critical accessibility violations:\n{}", found.join("\n"));
}

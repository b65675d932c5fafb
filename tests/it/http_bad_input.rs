//! Every HTTP endpoint answers bad input with a 4xx and a clear message: never a 5xx, never
//! a dropped connection. The walk covers missing fields, oversized and non-JSON bodies,
//! invalid names, unknown rooms, malformed capabilities, and callers without the right role.

use confab_keys::AccountKey;
use confab_tests::Node;
use confab_tests::node::make_invite;
use serde_json::{Value, json};

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

struct Case {
    what: &'static str,
    who: Who,
    method: &'static str,
    path: String,
    body: Body,
    status: u16,
    code: &'static str,
}

#[derive(Clone, Copy)]
enum Who {
    Anonymous,
    Member,
    Admin,
}

fn case(what: &'static str, who: Who, method: &'static str, path: &str, body: Body, status: u16, code: &'static str) -> Case {
    Case { what, who, method, path: path.to_string(), body, status, code }
}

/// Endpoints that take a JSON body, with a valid-looking body each.
const JSON_POSTS: &[&str] = &[
    "/api/signup",
    "/api/login",
    "/api/tokens",
    "/api/accounts/admin/ticketmaster",
    "/api/certificate",
    "/api/meetings",
    "/api/invites",
    "/api/invites/check",
];

#[tokio::test]
async fn every_endpoint_refuses_bad_input_clearly() {
    let node = Node::start().await;
    let admin = node.admin().await;
    let member = node.account(&admin, "member").await;
    let anonymous = confab_tests::client();
    let key = AccountKey::from_seed([5; 32]);
    let invite = make_invite(&member, &node, &key, "team-room", 3600).await;
    let mut tampered = invite.clone();
    tampered.replace_range(60..61, if &invite[60..61] == "A" { "B" } else { "A" });

    let spare = node.issue_token(&admin).await;
    let big = vec![b'x'; 64 * 1024];
    let mut cases = vec![
        // Sign-up.
        case("signup without token", Who::Anonymous, "POST", "/api/signup", Body::Json(json!({"username": "x1x", "password": "long enough"})), 400, "bad_json"),
        case(
            "signup with bad username",
            Who::Anonymous,
            "POST",
            "/api/signup",
            Body::Json(json!({"username": "<img src=x>", "password": "long enough", "token": "cft_00"})),
            400,
            "username_invalid",
        ),
        case(
            "signup with short password",
            Who::Anonymous,
            "POST",
            "/api/signup",
            Body::Json(json!({"username": "newbie", "password": "short", "token": "cft_00"})),
            400,
            "password_invalid",
        ),
        case(
            "signup with unknown token",
            Who::Anonymous,
            "POST",
            "/api/signup",
            Body::Json(json!({"username": "newbie", "password": "long enough", "token": "cft_00000000000000000000000000000000"})),
            400,
            "token_invalid",
        ),
        case(
            "signup with taken name",
            Who::Anonymous,
            "POST",
            "/api/signup",
            Body::Json(json!({"username": "MEMBER", "password": "long enough", "token": spare})),
            409,
            "username_taken",
        ),
        case(
            "signup with wrong types",
            Who::Anonymous,
            "POST",
            "/api/signup",
            Body::Json(json!({"username": 5, "password": [], "token": null})),
            400,
            "bad_json",
        ),
        case("signup with broken JSON", Who::Anonymous, "POST", "/api/signup", Body::Raw("application/json", b"{\"username\":".to_vec()), 400, "bad_json"),
        // Login.
        case("login without password", Who::Anonymous, "POST", "/api/login", Body::Json(json!({"username": "member"})), 400, "bad_json"),
        case("login with empty fields", Who::Anonymous, "POST", "/api/login", Body::Json(json!({"username": "", "password": ""})), 400, "credentials_missing"),
        case(
            "login with wrong password",
            Who::Anonymous,
            "POST",
            "/api/login",
            Body::Json(json!({"username": "member", "password": "nope nope"})),
            401,
            "credentials_wrong",
        ),
        // Who am I, without a session or with a forged cookie (below).
        case("me without session", Who::Anonymous, "GET", "/api/me", Body::None, 401, "not_logged_in"),
        // Tokens.
        case("tokens without session", Who::Anonymous, "GET", "/api/tokens", Body::None, 401, "not_logged_in"),
        case("tokens as a non-ticketmaster", Who::Member, "GET", "/api/tokens", Body::None, 403, "not_ticketmaster"),
        case("issue as a non-ticketmaster", Who::Member, "POST", "/api/tokens", Body::Json(json!({})), 403, "not_ticketmaster"),
        case("issue with bad expiry", Who::Admin, "POST", "/api/tokens", Body::Json(json!({"expires": "soon"})), 400, "expires_invalid"),
        case("issue with huge note", Who::Admin, "POST", "/api/tokens", Body::Json(json!({"note": "n".repeat(500)})), 400, "note_too_long"),
        case("revoke unknown token", Who::Admin, "POST", "/api/tokens/999999/revoke", Body::Json(json!({})), 404, "token_unknown"),
        case("revoke token with bad id", Who::Admin, "POST", "/api/tokens/abc/revoke", Body::Json(json!({})), 400, "bad_path"),
        // Accounts (admin).
        case("accounts as a member", Who::Member, "GET", "/api/accounts", Body::None, 403, "not_admin"),
        case("grant without body field", Who::Admin, "POST", "/api/accounts/member/ticketmaster", Body::Json(json!({"yes": true})), 400, "bad_json"),
        case("grant to unknown account", Who::Admin, "POST", "/api/accounts/ghost/ticketmaster", Body::Json(json!({"grant": true})), 404, "account_unknown"),
        case("disable unknown account", Who::Admin, "POST", "/api/accounts/ghost/disable", Body::Json(json!({})), 404, "account_unknown"),
        case("disable yourself", Who::Admin, "POST", "/api/accounts/admin/disable", Body::Json(json!({})), 409, "disable_self"),
        case("enable as a member", Who::Member, "POST", "/api/accounts/member/enable", Body::Json(json!({})), 403, "not_admin"),
        // Certificates.
        case("certificate without session", Who::Anonymous, "POST", "/api/certificate", Body::Json(json!({"public_key": "AAAA"})), 401, "not_logged_in"),
        case("certificate for a short key", Who::Member, "POST", "/api/certificate", Body::Json(json!({"public_key": "AAAA"})), 400, "public_key_invalid"),
        case(
            "certificate for a non-key",
            Who::Member,
            "POST",
            "/api/certificate",
            Body::Json(json!({"public_key": "not base64 at all!"})),
            400,
            "public_key_invalid",
        ),
        // Meetings.
        case("meeting with invalid name", Who::Member, "POST", "/api/meetings", Body::Json(json!({"room": "no/slashes"})), 400, "room_invalid"),
        case("meeting with taken name", Who::Admin, "POST", "/api/meetings", Body::Json(json!({"room": "team-room"})), 409, "room_taken"),
        case("meetings without session", Who::Anonymous, "GET", "/api/meetings", Body::None, 401, "not_logged_in"),
        // Invites.
        case("register malformed invite", Who::Member, "POST", "/api/invites", Body::Json(json!({"invite": "cfi1.garbage"})), 400, "capability_malformed"),
        case("register someone else's invite", Who::Admin, "POST", "/api/invites", Body::Json(json!({"invite": invite})), 403, "invite_not_yours"),
        case("register an invite twice", Who::Member, "POST", "/api/invites", Body::Json(json!({"invite": invite})), 409, "invite_exists"),
        case(
            "check without invite",
            Who::Anonymous,
            "POST",
            "/api/invites/check",
            Body::Json(json!({"room": "team-room", "invite": ""})),
            400,
            "capability_missing",
        ),
        case(
            "check malformed invite",
            Who::Anonymous,
            "POST",
            "/api/invites/check",
            Body::Json(json!({"room": "team-room", "invite": "hello"})),
            400,
            "capability_malformed",
        ),
        case(
            "check tampered invite",
            Who::Anonymous,
            "POST",
            "/api/invites/check",
            Body::Json(json!({"room": "team-room", "invite": tampered})),
            403,
            "capability_bad_signature",
        ),
        case(
            "check for another room",
            Who::Anonymous,
            "POST",
            "/api/invites/check",
            Body::Json(json!({"room": "other-room", "invite": invite})),
            404,
            "room_unknown",
        ),
        case(
            "check with invalid room",
            Who::Anonymous,
            "POST",
            "/api/invites/check",
            Body::Json(json!({"room": "Bad Room!", "invite": invite})),
            400,
            "room_invalid",
        ),
        case("revoke invite with bad id", Who::Member, "POST", "/api/invites/xyz/revoke", Body::Json(json!({})), 400, "invite_id_invalid"),
        case(
            "revoke unknown invite",
            Who::Member,
            "POST",
            "/api/invites/00000000000000000000000000000000/revoke",
            Body::Json(json!({})),
            404,
            "invite_unknown",
        ),
        // Unknown endpoints and methods.
        case("unknown API endpoint", Who::Anonymous, "GET", "/api/nothing-here", Body::None, 404, "no_such_endpoint"),
        case("wrong method", Who::Anonymous, "DELETE", "/api/me", Body::None, 404, "no_such_endpoint"),
    ];
    for path in JSON_POSTS {
        cases.push(case("oversized body", Who::Admin, "POST", path, Body::Raw("application/json", big.clone()), 413, "body_too_large"));
        cases.push(case("form-encoded body", Who::Admin, "POST", path, Body::Raw("application/x-www-form-urlencoded", b"a=b".to_vec()), 415, "not_json"));
        cases.push(case("missing body", Who::Admin, "POST", path, Body::None, 415, "not_json"));
        cases.push(case("JSON of the wrong shape", Who::Admin, "POST", path, Body::Json(json!("a string")), 400, "bad_json"));
    }

    let mut failures = Vec::new();
    for c in &cases {
        let client = match c.who {
            Who::Anonymous => &anonymous,
            Who::Member => &member,
            Who::Admin => &admin,
        };
        let method = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
        let mut req = client.request(method, node.api(&c.path));
        req = match &c.body {
            Body::None => req,
            Body::Json(v) => req.json(v),
            Body::Raw(ct, bytes) => req.header("content-type", *ct).body(bytes.clone()),
        };
        let res = req.send().await.unwrap_or_else(|e| panic!("{}: {} {} failed to answer: {e}", c.what, c.method, c.path));
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let message = body["message"].as_str().unwrap_or("");
        if status != c.status || body["error"] != c.code || message.len() < 10 {
            failures.push(format!("{} ({} {}): expected {} {}, got {status} {body}", c.what, c.method, c.path, c.status, c.code));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));

    // The refused sign-up with a taken name did not use up its token.
    let tokens: Vec<Value> = admin.get(node.api("/api/tokens")).send().await.unwrap().json().await.unwrap();
    assert_eq!(tokens.iter().filter(|t| t["status"] == "unused").count(), 1, "{tokens:?}");

    // A forged session cookie is just "not logged in".
    let res = anonymous.get(node.api("/api/me")).header("cookie", "__Host-confab_session=forged").send().await.unwrap();
    assert_eq!(res.status(), 401);

    // Pages: invalid and unknown meetings, unknown paths and files get explanatory HTML.
    for (path, status, phrase) in [
        ("/m/a", 400, "Not a meeting address"),
        ("/m/no-such-meeting", 404, "No such meeting"),
        ("/m/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 400, "Not a meeting address"),
        ("/nowhere", 404, "Not found"),
        ("/static/missing.js", 404, "Not found"),
    ] {
        let res = anonymous.get(node.api(path)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{path}");
        let html = res.text().await.unwrap();
        assert!(html.contains(phrase), "{path}: {html}");
        assert!(!html.contains("<script>alert"), "{path} reflected markup: {html}");
    }
    // Upper case in a meeting address is normalised, keeping the fragment (browsers do).
    let res = confab_tests::client().get(node.api("/m/Team-Room")).send().await.unwrap();
    assert_eq!(res.url().path(), "/m/team-room");
}

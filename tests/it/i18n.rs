//! The web client in the community's languages (English, German, French, Arabic).
//!
//! Without a browser: every key the pages and modules use is in every catalogue, every
//! catalogue key is used, the catalogues agree on keys, plural forms and placeholders, and
//! every `error.CODE` key names a code the node can send. In Chromium: each language loads
//! every page (home, sign-up, login, account, tokens, admin, prejoin, the call) with no
//! missing key, and Arabic lays the page out right to left.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use confab_tests::Node;
use confab_tests::browser::Browser;
use confab_tests::meeting::Participant;
use serde_json::{Value, json};

const LANGUAGES: [&str; 4] = ["en", "de", "fr", "ar"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

fn catalogue(lang: &str) -> BTreeMap<String, Value> {
    let path = repo().join(format!("web-client/static/js/i18n/{lang}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What follows each `"` in `text` up to the next one: every `"…"` literal, and some text
/// between literals too (harmless: only what looks like a key counts). Quotes inside
/// template literals do not throw it off, as pairing them up would.
fn literals(text: &str) -> Vec<&str> {
    let quotes: Vec<usize> = text.match_indices('"').map(|(i, _)| i).collect();
    quotes.windows(2).map(|w| &text[w[0] + 1..w[1]]).collect()
}

/// A key: `namespace.name`, lowercase.
fn looks_like_key(s: &str) -> bool {
    let Some((ns, name)) = s.split_once('.') else { return false };
    !ns.is_empty()
        && !name.is_empty()
        && ns.bytes().all(|b| b.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `{name}` placeholders in every form of an entry.
fn placeholders(entry: &Value) -> BTreeSet<String> {
    let texts: Vec<&str> = match entry {
        Value::String(s) => vec![s],
        Value::Object(forms) => forms.values().filter_map(Value::as_str).collect(),
        other => panic!("an entry is a text or its plural forms, not {other}"),
    };
    let mut found = BTreeSet::new();
    for text in texts {
        for part in text.split('{').skip(1) {
            if let Some((name, _)) = part.split_once('}') {
                found.insert(name.to_string());
            }
        }
    }
    found
}

#[test]
fn every_key_in_use_is_in_every_catalogue_and_every_catalogue_key_is_used() {
    let english = catalogue("en");
    let namespaces: BTreeSet<&str> = english.keys().filter_map(|k| k.split_once('.')).map(|(ns, _)| ns).collect();

    // What the client uses: keys written out in HTML and modules, and prefixes it completes
    // at run time (t(`status.${…}`)).
    let mut sources = Vec::new();
    files(&repo().join("web-client"), "html", &mut sources);
    files(&repo().join("web-client/static/js"), "js", &mut sources);
    let mut used = BTreeSet::new();
    let mut prefixes = BTreeSet::new();
    for path in &sources {
        let text = std::fs::read_to_string(path).unwrap();
        for literal in literals(&text) {
            // data-i18n-attr="placeholder:key;title:key2"
            for piece in literal.split(';').map(|p| p.rsplit(':').next().unwrap_or(p).trim()) {
                if looks_like_key(piece) && namespaces.contains(piece.split_once('.').unwrap().0) {
                    used.insert(piece.to_string());
                }
            }
        }
        for part in text.split("t(`").skip(1).chain(text.split("tn(`").skip(1)) {
            if let Some((prefix, _)) = part.split_once("${") {
                prefixes.insert(prefix.to_string());
            }
        }
    }
    // error.CODE keys are completed from the node's codes (errorText); `error.network` and
    // `error.http` are the client's own.
    prefixes.insert("error.".to_string());
    let missing: Vec<&String> = used.iter().filter(|k| !english.contains_key(*k)).collect();
    assert!(missing.is_empty(), "keys the client uses that en.json lacks: {missing:?}");
    let unused: Vec<&String> = english.keys().filter(|k| !used.contains(*k) && !prefixes.iter().any(|p| k.starts_with(p.as_str()))).collect();
    assert!(unused.is_empty(), "keys no page or module uses: {unused:?}");

    // Every error code we translate is one the node (or the client) can produce.
    let mut node_sources = Vec::new();
    files(&repo().join("node/src"), "rs", &mut node_sources);
    files(&repo().join("keys/src"), "rs", &mut node_sources);
    let mut codes: BTreeSet<String> = ["network", "http"].map(String::from).into();
    for path in &node_sources {
        codes.extend(literals(&std::fs::read_to_string(path).unwrap()).into_iter().map(String::from));
    }
    let stale: Vec<&String> = english.keys().filter(|k| k.strip_prefix("error.").is_some_and(|code| !codes.contains(code))).collect();
    assert!(stale.is_empty(), "translations of error codes the node never sends: {stale:?}");
    for code in ["room_full", "locked", "in_lobby", "capability_expired", "capability_revoked", "token_used", "credentials_wrong"] {
        assert!(english.contains_key(&format!("error.{code}")), "no translation for the node's {code}");
    }

    // The other languages: the same keys, texts where English has texts, plural forms with
    // an `other`, and the same placeholders.
    for lang in &LANGUAGES[1..] {
        let other = catalogue(lang);
        let (theirs, ours): (BTreeSet<&String>, BTreeSet<&String>) = (other.keys().collect(), english.keys().collect());
        assert_eq!(theirs.difference(&ours).collect::<Vec<_>>(), Vec::<&&String>::new(), "{lang}.json has keys en.json lacks");
        assert_eq!(ours.difference(&theirs).collect::<Vec<_>>(), Vec::<&&String>::new(), "{lang}.json lacks keys");
        for (key, entry) in &english {
            let theirs = &other[key];
            assert_eq!(entry.is_string(), theirs.is_string(), "{lang} {key}: a text in one catalogue, plural forms in the other");
            if let Value::Object(forms) = theirs {
                assert!(forms.contains_key("other"), "{lang} {key}: plural forms without `other`");
            }
            let mut expected = placeholders(entry);
            // A language may spell out small numbers ("one more") instead of {count}.
            let found = placeholders(theirs);
            expected.remove("count");
            let mut found_without_count = found.clone();
            found_without_count.remove("count");
            assert_eq!(found_without_count, expected, "{lang} {key}: placeholders differ from English");
        }
    }
}

/// What the page's translation recorded: its language, direction, and the keys it lacked.
/// (It waits for them: the translations module awaits its catalogue, which may finish a
/// moment after the page's load event.)
async fn language_state(b: &Browser) -> (String, String, Vec<String>) {
    let script = "const i = window.confabI18n; return i ? [document.documentElement.lang, document.documentElement.dir, [...i.missing]] : null";
    let state = confab_tests::eventually("the page's translations", Duration::from_secs(10), || async {
        let state = b.eval(script).await;
        state.is_array().then_some(state)
    })
    .await;
    let missing = state[2].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    (state[0].as_str().unwrap().to_string(), state[1].as_str().unwrap().to_string(), missing)
}

async fn check_page(b: &Browser, lang: &str, page: &str) {
    let (shown, dir, missing) = language_state(b).await;
    assert_eq!(shown, lang, "{page}: the page is not in {lang}");
    assert_eq!(dir, if lang == "ar" { "rtl" } else { "ltr" }, "{page} in {lang}");
    assert!(missing.is_empty(), "{page} in {lang} lacks {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_language_loads_every_page_with_no_missing_key_and_arabic_runs_right_to_left() {
    let _browsers = confab_tests::browser::exclusive().await;
    let node = Node::start().await;
    let admin = node.admin().await;
    let key = confab_keys::AccountKey::from_seed([5; 32]);
    let invite = confab_tests::node::make_invite(&admin, &node, &key, "languages", 3600).await;
    let link = format!("{}/m/languages#{invite}", node.url);
    let base = node.url.clone();

    let b = Browser::chromium().await;
    b.goto(&format!("{base}/login")).await;
    b.fill("#username", "admin").await;
    b.fill("#password", "admin password").await;
    b.click("#submit").await;
    b.wait_visible("#new-meeting").await;
    for lang in LANGUAGES {
        b.eval(&format!("localStorage.setItem('confab.language', '{lang}')")).await;
        for (page, ready) in [
            ("/", "main h1"),
            ("/create", "#signup"),
            ("/login", "#login"),
            ("/account", "#meetings li"),
            ("/tokens", "#issue"),
            ("/admin", "#accounts tbody tr"),
        ] {
            b.goto(&format!("{base}{page}")).await;
            b.wait_visible(ready).await;
            check_page(&b, lang, page).await;
        }
        // The picker shows the language in use.
        b.wait_visible("#language").await;
        assert_eq!(b.value("#language").await, lang);
    }
    // The picker changes the language and remembers it.
    b.goto(&format!("{base}/")).await;
    // The picker comes with the translations (a module awaiting its catalogue), which may
    // finish a moment after the page's load event.
    b.wait_visible("#language").await;
    b.eval("const s = document.querySelector('#language'); s.value = 'de'; s.dispatchEvent(new Event('change'))").await;
    confab_tests::eventually("the home page in German", Duration::from_secs(10), || async {
        (b.eval("return document.documentElement.lang").await == json!("de")).then_some(())
    })
    .await;
    assert_eq!(b.wait_visible("main h1").await, "Treffen ohne Konzern dazwischen");
    b.close().await;
    drop(b);

    // Prejoin and the call in each language, one after the other in one browser.
    let mut browser = Browser::chromium().await;
    browser.goto(&format!("{base}/")).await;
    for lang in LANGUAGES {
        browser.eval(&format!("localStorage.setItem('confab.language', '{lang}')")).await;
        let mut p = Participant::open(browser, &link, &format!("Lang {lang}")).await;
        check_page(&p.browser, lang, "prejoin").await;
        p.join().await;
        p.browser.wait_visible("#tiles .tile").await;
        // A moment for what the call renders as it goes (counts, quality, notices).
        p.browser.click("#toggle-people").await;
        p.browser.wait_visible("#people li").await;
        check_page(&p.browser, lang, "call").await;
        if lang == "ar" {
            let leave = p.browser.wait_visible("#leave").await;
            assert_eq!(leave, "مغادرة", "the call's controls are in Arabic");
            let direction = p.browser.eval("return getComputedStyle(document.querySelector('.controls')).direction").await;
            assert_eq!(direction, json!("rtl"));
            p.screenshot("call-in-arabic").await;
        }
        p.leave().await;
        browser = p.into_browser();
    }
}

//! No import circles inside a crate: a module that names another (`crate::a::b`, `super::x`)
//! must not be named back by it, directly or around a longer loop. A module and its own
//! ancestors do not count (a parent declares its children; a child's tests read its parent),
//! nor do comments, where a doc link names a module without depending on it. A circle means
//! two modules that can only be read, changed and tested together; the fix is to move the
//! shared name where both can depend on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates' source folders, from the workspace root.
const CRATES: [&str; 3] = ["node/src", "relay/src", "keys/src"];

/// The module path of `file` under `src` (`meeting/room.rs` → `meeting::room`; `lib.rs`,
/// `main.rs` → the root, empty).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("a file under its crate");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module paths a line names: `crate::a::b::Item` and `super::x` (resolved from
/// `here`), as written (the caller keeps the longest prefix that is a module).
fn named(line: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (start, _) in line.match_indices("crate::").chain(line.match_indices("super::")) {
        // `confab_crate::`-like identifiers end in "crate": only a whole word counts.
        if start > 0 && line[..start].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let mut path: Vec<String> = if line[start..].starts_with("crate::") { Vec::new() } else { here[..here.len().saturating_sub(1)].to_vec() };
        let mut rest = &line[start..];
        rest = &rest[rest.find("::").expect("matched") + 2..];
        // Further `super::`s climb on.
        while let Some(after) = rest.strip_prefix("super::") {
            path.pop();
            rest = after;
        }
        for segment in rest.split("::") {
            let ident: String = segment.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if ident.is_empty() {
                break;
            }
            let whole = ident.len() == segment.len();
            path.push(ident);
            if !whole {
                break;
            }
        }
        found.push(path);
    }
    found
}

/// Each crate's modules and which others each names (ancestors and descendants left out).
fn graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let here = module_of(src, file);
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for line in text.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
            for path in named(line, &here) {
                let Some(target) = (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p)) else { continue };
                let related = target.starts_with(&here) || here.starts_with(&target);
                if !related {
                    edges.entry(here.clone()).or_default().insert(target);
                }
            }
        }
    }
    edges
}

/// One circle through the graph, if there is any: the modules around it.
fn a_circle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    // Depth first, colouring: on the stack (grey) or done (black).
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            return Some(stack[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, stack, done) {
                return Some(circle);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|start| visit(start, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_names_one_that_names_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    for krate in CRATES {
        let edges = graph(&root.join(krate));
        assert!(!edges.is_empty(), "{krate}: the scan found too few modules naming others ({}): is the source where it was?", edges.len());
        if let Some(circle) = a_circle(&edges) {
            let names: Vec<String> = circle.iter().map(|m| m.join("::")).collect();
            panic!("{krate}: an import circle: {} → back to the first", names.join(" → "));
        }
    }
}

#[test]
fn the_scan_sees_a_circle_where_there_is_one() {
    let here = vec!["meeting".to_string(), "room".to_string()];
    assert_eq!(named("use super::budget::{Budget, CHAT_BURST};", &here), vec![vec!["meeting".to_string(), "budget".to_string()]]);
    assert_eq!(named("let x = crate::config::DEFAULT;", &here)[0][..1], ["config".to_string()]);
    assert!(named("use confab_crate::x;", &here).is_empty());
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    let mut edges = BTreeMap::new();
    edges.insert(m("config"), BTreeSet::from([m("meeting::room")]));
    edges.insert(m("meeting::room"), BTreeSet::from([m("meeting::budget")]));
    edges.insert(m("meeting::budget"), BTreeSet::from([m("config")]));
    assert_eq!(a_circle(&edges).map(|c| c.len()), Some(3));
    edges.remove(&m("meeting::budget"));
    assert_eq!(a_circle(&edges), None);
}

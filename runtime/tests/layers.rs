//! The layering of `runtime/ARCHITECTURE.md`, checked against the code: every module of
//! `src/` has a layer in its table, and imports (`crate::...`) only modules of its own
//! layer or below. A new module without a layer, or an import that runs back up, fails
//! here.

use std::collections::BTreeMap;
use std::path::Path;

/// Module path (`plugin::call`) → layer, from the table in ARCHITECTURE.md.
fn layers(doc: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(layer) = cells.get(1).and_then(|c| c.parse::<u32>().ok()) else {
            continue;
        };
        for module in cells[3].split(',') {
            out.insert(module.trim().trim_matches('`').to_owned(), layer);
        }
    }
    out
}

/// Every module file under `src` (`lib.rs`, `main.rs` and test files aside), as a
/// module path.
fn modules(src: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, src, out);
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let mut parts = parts;
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let name = parts.join("::");
            if matches!(name.as_str(), "lib" | "main") || parts.iter().any(|p| p == "tests") {
                continue;
            }
            out.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// The code of a file without its comments and its trailing test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `text` names through `crate::` paths (in `use` trees too).
fn imports(text: &str, known: &BTreeMap<String, String>) -> Vec<String> {
    let resolve = |path: &str| {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|m| known.contains_key(m))
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        // A path, or a `use crate::{a, b::c}` tree: take what belongs to it.
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || "_:{}, \n".contains(c)))
            .unwrap_or(rest.len());
        let tree = &rest[..end];
        let tree = match tree.find(';') {
            Some(j) => &tree[..j],
            None => tree,
        };
        let (prefix, items) = match tree.split_once('{') {
            Some((p, items)) => (p, items.trim_end_matches(['}', ' ', '\n'])),
            None => ("", tree),
        };
        for item in items.split(',') {
            let item = item.trim().split(' ').next().unwrap_or("");
            let path = format!("{prefix}{item}");
            let path = path.trim_end_matches("::");
            if let Some(m) = resolve(path) {
                out.push(m);
            }
        }
    }
    out
}

#[test]
fn modules_import_only_their_layer_and_below() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let layers = layers(&doc);
    let modules = modules(&root.join("src"));
    let mut problems = Vec::new();
    for (module, text) in &modules {
        let Some(&own) = layers.get(module) else {
            problems.push(format!("`{module}` has no layer in ARCHITECTURE.md"));
            continue;
        };
        for import in imports(&code(text), &modules) {
            // A module's own children are part of it.
            if import == *module || import.starts_with(&format!("{module}::")) {
                continue;
            }
            let theirs = layers.get(&import).copied().unwrap_or(u32::MAX);
            if theirs > own {
                problems.push(format!(
                    "`{module}` (layer {own}) imports `{import}` (layer {theirs})"
                ));
            }
        }
    }
    for listed in layers.keys() {
        if !modules.contains_key(listed) {
            problems.push(format!(
                "ARCHITECTURE.md lists `{listed}`, which is not a module"
            ));
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_imports_in_paths_and_trees() {
    let known: BTreeMap<String, String> = ["a", "b", "b::c", "d"]
        .into_iter()
        .map(|m| (m.to_owned(), String::new()))
        .collect();
    let found = imports(
        "use crate::a::X;\nuse crate::{b::c::Y, d};\nfn f() { crate::b::g(); }",
        &known,
    );
    assert_eq!(found, ["a", "b::c", "d", "b"]);
}

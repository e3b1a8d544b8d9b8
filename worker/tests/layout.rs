//! The crate's layout rules, checked on its source: no import cycles between modules, and the
//! sans-IO modules do no IO. Cycles are how helpers end up in the wrong module; once a layer
//! imports the one above it, it can no longer be tested (or understood) on its own.

#![allow(clippy::unwrap_used)] // a test: a panic is how it fails

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that must stay free of sockets, timers and HTTP frameworks (tested without IO).
const SANS_IO: &[&str] = &[
    "core",
    "serve::hls::index",
    "serve::hls::segment",
    "serve::hls::playlist",
    "serve::hls::id3",
    "serve::hls::codecs",
    "source::admission",
    "auth",
    "time",
];
const IO_CRATES: &[&str] = &[
    "tokio",
    "axum",
    "hyper",
    "hyper_util",
    "reqwest",
    "async_nats",
    "redis",
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `serve/hls/index.rs` → `serve::hls::index`; `cluster/mod.rs` → `cluster`; `lib.rs` → ``.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src_dir()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// The file's code without its `#[cfg(test)]` items (tests may use anything).
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            let Some(item) = lines.next() else { break };
            if item.trim_end().ends_with(';') {
                continue;
            }
            // Skip to the item's closing brace at the same indentation.
            let indent = item.len() - item.trim_start().len();
            for l in lines.by_ref() {
                if l.len() - l.trim_start().len() == indent && l.trim_start().starts_with('}') {
                    break;
                }
            }
            continue;
        }
        let code = line.split("//").next().unwrap_or("");
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Paths named after `crate::` (and `super::`, resolved against `module`), as segment lists.
fn references(module: &str, code: &str, is_mod_rs: bool) -> Vec<Vec<String>> {
    let mut refs = vec![];
    let parent: Vec<String> = {
        let mut p: Vec<String> = module
            .split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if !is_mod_rs {
            p.pop();
        }
        p
    };
    for (prefix, base) in [("crate::", vec![]), ("super::", parent)] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut path = base.clone();
            let mut tail = rest;
            loop {
                let end = tail
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                if end == 0 {
                    break;
                }
                path.push(tail[..end].to_string());
                tail = &tail[end..];
                if let Some(t) = tail.strip_prefix("::") {
                    tail = t;
                } else {
                    break;
                }
            }
            if tail.starts_with('{') {
                // `crate::a::{b, c::d}`: each name inside braces (one level is all we write).
                let close = tail.find('}').unwrap_or(tail.len());
                for name in tail[1..close].split(',') {
                    let mut p = path.clone();
                    p.extend(
                        name.trim()
                            .split("::")
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty() && s != "self"),
                    );
                    refs.push(p);
                }
            } else {
                refs.push(path);
            }
        }
    }
    refs
}

struct Crate {
    /// Module → the modules its non-test code refers to.
    deps: BTreeMap<String, BTreeSet<String>>,
    code: BTreeMap<String, String>,
}

fn read_crate() -> Crate {
    let mut files = vec![];
    rust_files(&src_dir(), &mut files);
    files.retain(|f| {
        let name = f.file_name().unwrap();
        // The binary is not part of the library; `tests.rs` files are test-only modules.
        name != "main.rs" && name != "tests.rs" && !f.components().any(|c| c.as_os_str() == "bin")
    });
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut deps = BTreeMap::new();
    let mut code = BTreeMap::new();
    for f in &files {
        let module = module_of(f);
        let text = non_test_code(&std::fs::read_to_string(f).unwrap());
        let is_mod_rs = f
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs");
        let mut to = BTreeSet::new();
        for path in references(&module, &text, is_mod_rs) {
            // The longest module the path names (the rest is an item inside it).
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|m| modules.contains(m));
            if let Some(t) = target
                && t != module
                && !module.starts_with(&format!("{t}::"))
                && !(t.is_empty())
            {
                to.insert(t);
            }
        }
        deps.insert(module.clone(), to);
        code.insert(module, text);
    }
    Crate { deps, code }
}

/// A cycle through `start`, if any, as the modules along it.
fn cycle_from(deps: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        deps: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in deps.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(deps, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(deps, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn no_import_cycles_between_modules() {
    let krate = read_crate();
    assert!(
        krate.deps.len() > 30,
        "the source was not found or not parsed"
    );
    assert!(
        krate.deps["serve::server"].contains("serve::direct"),
        "the reference scan missed a known dependency"
    );
    let cycles: Vec<String> = krate
        .deps
        .keys()
        .filter_map(|m| cycle_from(&krate.deps, m))
        .map(|c| c.join(" → "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn sans_io_modules_do_no_io() {
    let krate = read_crate();
    let mut offences = vec![];
    for (module, code) in &krate.code {
        let sans_io = SANS_IO
            .iter()
            .any(|s| module == s || module.starts_with(&format!("{s}::")));
        if !sans_io {
            continue;
        }
        for dep in &krate.deps[module] {
            let dep_is_sans_io = SANS_IO
                .iter()
                .any(|s| dep == s || dep.starts_with(&format!("{s}::")));
            // Plain data types from elsewhere are fine; a module with IO is not.
            if !dep_is_sans_io && !["stream", "config"].contains(&dep.as_str()) {
                offences.push(format!("{module} uses crate::{dep}"));
            }
        }
        for krate_name in IO_CRATES {
            if code.contains(&format!("{krate_name}::")) {
                offences.push(format!("{module} uses {krate_name}"));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "sans-IO modules doing IO:\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_checker_finds_a_cycle() {
    let deps = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
        ("d".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(cycle_from(&deps, "a").unwrap(), ["a", "b", "c", "a"]);
    assert_eq!(cycle_from(&deps, "d"), None);
    let refs = references(
        "serve::hls::playlist",
        "use crate::core::{chunk::Chunk, rewind};\nuse super::index::Index;",
        false,
    );
    assert_eq!(
        refs,
        [
            vec!["core", "chunk", "Chunk"],
            vec!["core", "rewind"],
            vec!["serve", "hls", "index", "Index"]
        ]
    );
}

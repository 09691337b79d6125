//! The agent's source folders (config, pipeline, http, store, profile, ...) import each other
//! without cycles: each module's `crate::` paths (and the names it takes from the crate root's
//! re-exports) are read from its source, test modules and comments left out, and the folder graph
//! must be acyclic. A cycle here is a layering mistake, not a compile error, so only a test sees it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a module as the crate sees it: no test module, no comment lines.
fn code(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap();
    let s = s.split("#[cfg(test)]").next().unwrap_or("");
    s.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifiers following `crate::`, and those inside `crate::{...}` groups (first path segment or
/// name only).
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let first: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !first.is_empty() {
                    out.insert(first);
                }
            }
        } else {
            let first: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(first);
        }
    }
    out
}

/// `pub use folder::...::{A, B}` / `pub use folder::...::A;` in lib.rs: root name → its folder.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(body) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let folder: String = body
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let names = match body.find('{') {
            Some(i) => body[i + 1..].trim_end_matches('}').to_owned(),
            None => body.rsplit("::").next().unwrap_or("").to_owned(),
        };
        for n in names.split(',') {
            let n = n.trim();
            if !n.is_empty() {
                out.insert(n.to_owned(), folder.clone());
            }
        }
    }
    out
}

/// Fails naming the cycle when `graph` (module → the modules it imports) has one: a depth-first
/// search from each node for a path back to it.
fn assert_acyclic(graph: &BTreeMap<String, BTreeSet<String>>, what: &str) {
    for start in graph.keys() {
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                assert!(
                    next != start,
                    "import cycle between {what}: {} -> {start}",
                    path.join(" -> ")
                );
                if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
}

/// Identifiers following `prefix` in `code` (the first path segment).
fn refs_after(code: &str, prefix: &str) -> BTreeSet<String> {
    code.match_indices(prefix)
        .map(|(i, _)| {
            code[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|r| !r.is_empty())
        .collect()
}

#[test]
fn the_command_line_s_modules_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let mut files = Vec::new();
    sources(&src, &mut files);
    // A module is a file of src/cli or a folder of it (scenes/).
    let module_of = |p: &Path| -> String {
        let rel = p.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str();
        first.to_string_lossy().trim_end_matches(".rs").to_owned()
    };
    let modules: BTreeSet<String> = files
        .iter()
        .map(|p| module_of(p))
        .filter(|m| m != "mod")
        .collect();
    // The command line proper: the harness is its own crate, the shared pieces another.
    assert_eq!(
        modules,
        ["eval", "inspect", "pull", "score", "store", "train"]
            .map(String::from)
            .into(),
        "src/cli holds the command line proper; the demo and benchmarks belong in harness/"
    );
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let from = module_of(f);
        if from == "mod" {
            continue;
        }
        let depth = f.strip_prefix(&src).unwrap().components().count();
        let code = code(f);
        // `super::` from a file of src/cli names a sibling; from a file of a folder, `super::super::`.
        let sibling = if depth == 1 {
            "super::"
        } else {
            "super::super::"
        };
        let refs = refs_after(&code, sibling)
            .into_iter()
            .chain(refs_after(&code, "crate::cli::"));
        for to in refs.filter(|r| modules.contains(r) && *r != from) {
            graph.entry(from.clone()).or_default().insert(to);
        }
    }
    eprintln!("{graph:#?}");
    assert_acyclic(&graph, "command-line modules");
    // The command line proper reads no more than it can read in an afternoon.
    let lines: usize = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .sum();
    assert!(lines <= 4000, "src/cli is {lines} lines");
}

#[test]
fn the_harness_builds_on_the_scenes_and_never_the_other_way_round() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("harness/src");
    let (_, graph) = crate_graph(&src);
    eprintln!("{graph:#?}");
    assert_acyclic(&graph, "harness modules");
    assert!(graph["bench"].contains("scenes"), "{graph:?}");
    assert!(graph.get("scenes").is_none_or(|s| !s.contains("bench")));
}

/// The graph of a library crate's top-level modules (a file or a folder of `src`), from each module's
/// `crate::` paths and the names it takes from the crate root's re-exports.
fn crate_graph(src: &Path) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut files = Vec::new();
    sources(src, &mut files);
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let reexports = root_reexports(&lib);
    let folder_of = |p: &Path| -> String {
        let rel = p.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        first.trim_end_matches(".rs").to_owned()
    };
    let folders: BTreeSet<String> = files
        .iter()
        .map(|p| folder_of(p))
        .filter(|f| f != "lib")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let from = folder_of(f);
        if from == "lib" {
            continue;
        }
        for r in crate_refs(&code(f)) {
            let to = if folders.contains(&r) {
                Some(r)
            } else {
                reexports.get(&r).cloned()
            };
            if let Some(to) = to.filter(|t| *t != from && folders.contains(t)) {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    (folders, graph)
}

#[test]
fn the_agents_folders_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent/src");
    let (folders, graph) = crate_graph(&src);
    assert!(
        ["config", "pipeline", "http", "store", "profile"]
            .iter()
            .all(|f| folders.contains(*f)),
        "{folders:?}"
    );
    eprintln!("{graph:#?}");
    assert_acyclic(&graph, "agent folders");
    // The layering the folders are meant to have: starting at the top (it wires the settings to
    // everything that runs), settings as data below it (they never start anything), the shared leaves
    // at the bottom.
    assert!(
        graph["start"].contains("handle") && graph["start"].contains("config"),
        "{graph:?}"
    );
    assert!(!graph["config"].contains("handle"), "{graph:?}");
    assert!(graph.get("store").is_none_or(|s| !s.contains("pipeline")));
    assert!(graph.get("threads").is_none_or(|s| s.len() <= 1));
}

#[test]
fn every_library_crate_s_modules_import_each_other_without_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in [
        "models", "features", "store", "gpu", "observe", "facade", "tool", "harness",
    ] {
        let (_, graph) = crate_graph(&root.join(krate).join("src"));
        eprintln!("{krate}: {graph:#?}");
        assert_acyclic(&graph, &format!("the modules of {krate}"));
    }
}

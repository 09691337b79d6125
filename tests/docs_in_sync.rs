//! The docs that are written by hand still say what the code does: every environment variable the agent
//! reads is a row of the table in docs/CONFIG.md (one unbroken table), and every dependency of a crate is
//! named in its row of docs/ARCHITECTURE.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Quoted names that look like environment variables in `text`.
fn env_vars_in(text: &str) -> BTreeSet<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            (s.starts_with("VIGIL_") || *s == "ENABLE_AI_OBSERVABILITY")
                && s.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_variable_the_builder_reads_is_a_row_of_the_config_table() {
    let code = read("agent/src/config/env.rs");
    let vars = env_vars_in(&code);
    assert!(vars.len() >= 10, "found only {vars:?}");
    let doc = read("docs/CONFIG.md");
    // The table: from its header row to the first line that is not a table row.
    let lines: Vec<&str> = doc.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("| variable |"))
        .expect("CONFIG.md has a `| variable |` table");
    let rows: Vec<&str> = lines[start..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .copied()
        .collect();
    for var in &vars {
        assert!(
            rows.iter().any(|r| r.starts_with(&format!("| `{var}` |"))),
            "{var} is read by the builder but is not a row of the CONFIG.md table \
             (a blank line inside the table ends it)"
        );
    }
}

/// Dependency names of `[dependencies]` in a Cargo.toml.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once('=') {
            let name = name.trim().trim_end_matches(".workspace").trim();
            if !name.is_empty() && !name.starts_with('#') {
                out.push(name.to_owned());
            }
        }
    }
    out
}

#[test]
fn every_agent_dependency_is_named_in_the_architecture() {
    let arch = read("docs/ARCHITECTURE.md");
    let row = arch
        .lines()
        .find(|l| l.starts_with("| `vigil-agent` |"))
        .expect("ARCHITECTURE.md has a vigil-agent row");
    // Optional and plumbing crates that need no mention.
    let unremarkable = [
        "thiserror",
        "tracing",
        "ndarray",
        "console-subscriber",
        "tracing-subscriber",
    ];
    for dep in dependencies(&read("agent/Cargo.toml")) {
        if unremarkable.contains(&dep.as_str()) {
            continue;
        }
        assert!(
            row.contains(&dep),
            "agent/Cargo.toml depends on {dep}, but the vigil-agent row of ARCHITECTURE.md does not name it"
        );
    }
}

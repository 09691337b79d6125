//! What a host pays for linking Vigil: a fresh host crate whose only dependency is the library (the
//! `vigil` package in `facade/`), resolved the way cargo resolves it for that host. The command line's
//! and the harness's dependencies must not be among its normal dependencies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Command;

mod support;

use support::cli::{s, succeed, tmpdir};

/// Crates that belong to the command line, the harness or the benchmarks, never to a host.
const NOT_FOR_HOSTS: [&str; 7] = [
    "clap",
    "csv",
    "indicatif",
    "tracing-subscriber",
    "criterion",
    "vigil-cli",
    "autometrics",
];

/// The normal (non-dev, non-build) dependencies of a host crate with `vigil = { path }` and the
/// given extra manifest text on that dependency, as `name` strings.
fn host_dependencies(features: &str) -> BTreeSet<String> {
    let d = tmpdir(&format!("host-deps{}", features.len()));
    let facade = concat!(env!("CARGO_MANIFEST_DIR"), "/facade");
    std::fs::create_dir_all(d.0.join("src")).unwrap();
    std::fs::write(
        d.0.join("Cargo.toml"),
        format!(
            "[package]\nname = \"host\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [dependencies]\nvigil = {{ path = \"{facade}\"{features} }}\n\n[workspace]\n"
        ),
    )
    .unwrap();
    std::fs::write(d.0.join("src/main.rs"), "fn main() {}\n").unwrap();
    // The workspace's lock pins the versions, so the host resolves offline from the local registry
    // cache what the workspace itself builds with.
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"),
        d.0.join("Cargo.lock"),
    )
    .unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = succeed(
        Command::new(cargo)
            .current_dir(&d.0)
            .args([
                "tree",
                "--offline",
                "--edges",
                "normal",
                "--prefix",
                "none",
                "--format",
                "{p}",
                "--manifest-path",
                s(&d.0.join("Cargo.toml")),
            ])
            .env_remove("CARGO_TARGET_DIR"),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "host")
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_host_linking_the_library_gets_no_cli_or_harness_dependencies() {
    for features in ["", ", default-features = false"] {
        let deps = host_dependencies(features);
        assert!(deps.contains("vigil"), "{deps:?}");
        assert!(deps.contains("vigil-agent"), "{deps:?}");
        let found: Vec<&str> = NOT_FOR_HOSTS
            .iter()
            .copied()
            .filter(|c| deps.contains(*c))
            .collect();
        assert!(
            found.is_empty(),
            "a host with `vigil{features}` also compiles {found:?} ({} crates in all)",
            deps.len()
        );
        println!("vigil{features}: {} crates", deps.len());
    }
}

//! CPU profiles of a host built the ordinary way: a crate outside this workspace (so none of its
//! `.cargo/config.toml` flags apply), `cargo build --release` with no RUSTFLAGS, hence no frame
//! pointers in its own code, running a known five-deep call chain on two threads. Its profile, read
//! with `go tool pprof -traces` as users read it, shows the whole chain for at least 90 % of those
//! threads' samples. (The same chain with frame pointers on is `tests/profile.rs`'s busy workload.)
//!
//! The host is built once into `target/nofp-host` and reused (both CI passes share it).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use support::cli::succeed;
use support::*;

/// The chain, leaf first (as `-traces` prints a stack).
const CHAIN: [&str; 5] = [
    "matmul_leaf",
    "attention_block",
    "decoder_layer",
    "forward_pass",
    "predict_layer",
];

/// Builds the host (plain `cargo build --release`, no RUSTFLAGS) and returns its binary.
fn build_host() -> std::path::PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = repo.join("tests/data/nofp-host");
    // Outside the repository: cargo reads `.cargo/config.toml` from the build's directory upwards.
    let dir = std::env::temp_dir().join(format!("vigil-nofp-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = std::fs::read_to_string(src.join("Cargo.toml.in"))
        .unwrap()
        .replace("@FACADE@", repo.join("facade").to_str().unwrap());
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(src.join("main.rs"), dir.join("main.rs")).unwrap();
    // The workspace's lock: the same versions, resolved offline.
    std::fs::copy(repo.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let target = repo.join("target/nofp-host");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    succeed(
        Command::new(cargo)
            .args(["build", "--release", "--offline", "--quiet"])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS"),
    );
    let _ = std::fs::remove_dir_all(&dir);
    target.join("release/nofp-host")
}

/// A `-traces` value (`10ms`, `1.20s`) in milliseconds.
fn milliseconds(v: &str) -> f64 {
    if let Some(ms) = v.strip_suffix("ms") {
        ms.parse().unwrap_or(0.0)
    } else if let Some(s) = v.strip_suffix('s') {
        s.parse::<f64>().map_or(0.0, |s| s * 1000.0)
    } else {
        0.0
    }
}

#[test]
fn a_host_built_without_frame_pointers_gets_its_whole_call_chain_in_pprof() {
    let bin = build_host();
    let mut host = Command::new(&bin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_remove("RUST_LOG")
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(host.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let host = KillOnDrop(host);
    let addr: std::net::SocketAddr = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the host printed {line:?} instead of its agent's address"));
    let r = get(addr, "/debug/pprof/profile?seconds=3", &[]);
    drop(host);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-vigil-profile-warning"), None);
    let traces = go_tool_pprof(&r.bytes, "-traces");
    // Per thread: samples, and samples whose stack holds the whole chain in order.
    let mut per_thread: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for block in traces.split("-----------+") {
        let Some(thread) = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("thread:").map(str::trim))
            .filter(|t| t.starts_with("chain-"))
        else {
            continue;
        };
        // The first frame line carries the block's value: `     10ms   nofp_host::matmul_leaf`.
        let frames: Vec<&str> = block
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('-'))
            .filter(|l| !l.contains(':') || l.contains("::"))
            .collect();
        let Some(value) = frames.first().and_then(|f| f.split_whitespace().next()) else {
            continue;
        };
        let ms = milliseconds(value);
        let mut at = frames.iter();
        let whole = CHAIN
            .iter()
            .all(|f| at.any(|l| l.ends_with(&format!("::{f}"))));
        let e = per_thread.entry(thread.to_owned()).or_default();
        e.0 += ms as i64;
        if whole {
            e.1 += ms as i64;
        }
    }
    eprintln!("per thread (ms sampled, ms with the whole chain): {per_thread:?}");
    assert_eq!(per_thread.len(), 2, "{per_thread:?}\n{traces}");
    for (thread, (all, whole)) in &per_thread {
        assert!(*all >= 500, "{thread}: {all} ms sampled\n{traces}");
        assert!(
            whole * 10 >= all * 9,
            "{thread}: {whole} of {all} ms show the whole chain\n{traces}"
        );
    }
}

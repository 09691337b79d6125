//! `deploy/`: the Prometheus rules pass `promtool check rules` and their unit tests (`promtool test
//! rules`), the example Prometheus and Alertmanager configurations are valid, and the Grafana dashboard
//! only queries series the agent exports and has what an import needs.
//!
//! Needs `promtool` and `amtool` (Debian's prometheus and prometheus-alertmanager; `scripts/test`
//! installs both).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

fn deploy(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run ./scripts/test, which installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests() {
    let out = run_ok(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(deploy("prometheus/rules.yml")),
    );
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run_ok(
        Command::new("promtool")
            .args(["test", "rules", "rules_test.yml"])
            .current_dir(deploy("prometheus")),
    );
    assert!(out.contains("SUCCESS"), "{out}");
    run_ok(
        Command::new("promtool")
            .args(["check", "config"])
            .arg(deploy("prometheus/prometheus.yml")),
    );
    run_ok(
        Command::new("amtool")
            .args(["check-config"])
            .arg(deploy("alertmanager/alertmanager.yml")),
    );
}

/// Metric names a PromQL expression selects (`name{` or `name[`), after dropping label matchers and
/// string literals.
fn selected_metrics(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < b.len()
                && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
            {
                i += 1;
            }
            let word = &expr[start..i];
            let next = expr[i..].trim_start().chars().next();
            if next == Some('[') {
                out.push(word.to_owned());
            } else if next == Some('{') {
                out.push(word.to_owned());
                // Skip the matchers: label names inside are not metrics.
                while i < b.len() && b[i] != b'}' {
                    i += 1;
                }
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn the_dashboard_queries_only_exported_series_and_imports() {
    let text = std::fs::read_to_string(deploy("grafana/vigil.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    // What an import needs: a title, a uid, panels, a Prometheus datasource variable and the job and
    // instance variables every query filters on.
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["uid"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["schemaVersion"].as_u64().is_some());
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).cloned();
    let ds = var("datasource").expect("a datasource variable");
    assert_eq!(
        (ds["type"].as_str(), ds["query"].as_str()),
        (Some("datasource"), Some("prometheus"))
    );
    assert!(var("job").is_some() && var("instance").is_some());
    // Every series a query selects is one the agent exports (histograms through their _bucket).
    let exported: Vec<String> = vigil::agent::CATALOGUE
        .iter()
        .flat_map(|m| {
            let base = m.name.to_owned();
            match m.kind {
                vigil::agent::MetricType::Histogram => vec![
                    format!("{base}_bucket"),
                    format!("{base}_sum"),
                    format!("{base}_count"),
                ],
                _ => vec![base],
            }
        })
        .collect();
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{}", panels.len());
    let mut seen = std::collections::BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("");
        assert!(!title.is_empty(), "a panel without a title: {p}");
        assert!(
            p["description"].as_str().is_some_and(|s| !s.is_empty()),
            "{title}: no description"
        );
        assert!(
            p["fieldConfig"]["defaults"]["unit"].as_str().is_some(),
            "{title}: no unit"
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            assert!(
                expr.contains("job=\"$job\"") && expr.contains("instance=~\"$instance\""),
                "{title}: `{expr}` does not filter on $job and $instance"
            );
            if expr.contains("rate(") {
                assert!(
                    expr.contains("[$__rate_interval]"),
                    "{title}: rate without $__rate_interval: {expr}"
                );
            }
            for m in selected_metrics(expr) {
                assert!(
                    exported.contains(&m),
                    "{title}: `{m}` is not a series the agent exports (docs/METRICS.md)"
                );
                seen.insert(m);
            }
        }
    }
    // What an SRE needs on one board.
    for m in [
        "vigil_anomaly_score",
        "vigil_anomaly_event_info",
        "vigil_anomaly_events_total",
        "vigil_gpu_memory_used_bytes",
        "ai_inference_duration_seconds_bucket",
        "vigil_feature_drift_max_psi",
        "vigil_retrain_total",
    ] {
        assert!(seen.contains(m), "the dashboard does not show {m}");
    }
    // The checked-in JSON is what the generator writes.
    let generated = Command::new("python3")
        .arg(deploy("grafana/generate.py"))
        .output()
        .unwrap();
    assert!(generated.status.success());
    assert_eq!(
        String::from_utf8_lossy(&generated.stdout).trim(),
        text.trim(),
        "deploy/grafana/vigil.json is stale: python3 deploy/grafana/generate.py > deploy/grafana/vigil.json"
    );
}

#[test]
fn the_alert_rules_select_exported_series() {
    let rules = std::fs::read_to_string(deploy("prometheus/rules.yml")).unwrap();
    let names: Vec<&str> = vigil::agent::CATALOGUE.iter().map(|m| m.name).collect();
    for line in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        for m in selected_metrics(line) {
            if m == "up" || m.starts_with("job") {
                continue;
            }
            assert!(
                names.contains(&m.as_str()),
                "rules.yml selects `{m}`, which the agent does not export"
            );
        }
    }
    assert!(rules.contains("vigil_anomaly_event_info"));
}

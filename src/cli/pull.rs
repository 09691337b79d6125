//! `vigil pull`: the agents' raw signal history from Prometheus (`/api/v1/query_range`), one CSV per
//! instance in the format `vigil train/score/eval` read, so a model can be trained on a whole fleet's
//! history. The features are recomputed from these signals by the same code as live.
//!
//! Each signal is read from the metric the agent exports it as (the vocabulary's `metric`): gauges
//! and counters as they are (summed over their labels per instance); per-tick values the agent derives
//! (quantiles of the tick's scheduler probes and inference calls, the park rate, the error ratio) are
//! rebuilt from the exported histograms and counters over one step, so they approximate the agent's
//! (histogram buckets instead of exact samples). Queries are cut into chunks of at most 10,000 points
//! per series (Prometheus refuses more than 11,000).
//!
//! HTTP only (put a port-forward or a proxy in front of an HTTPS Prometheus).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use vigil::features::vocab::{self, signals};
use vigil::features::{SignalKind, time::parse_timestamp};
use vigil::models::OutputFile;

/// Flags of `vigil pull`.
#[derive(Debug, clap::Args)]
pub(crate) struct PullArgs {
    /// Prometheus base URL, `http://host:port` (a path prefix is kept).
    #[arg(long, value_name = "URL")]
    prometheus: String,
    /// Label matchers selecting the agents' series, e.g. `{job="vigil"}`.
    #[arg(long, default_value = "{}", value_name = "MATCHERS")]
    selector: String,
    /// Start: a duration back from --until (`7d`, `2h`) or a time (RFC 3339 or Unix seconds).
    #[arg(long, value_name = "WHEN")]
    since: String,
    /// End: a time (default: now).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Seconds between rows (the agents' tick; Prometheus' scrape interval at least).
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    step: String,
    /// Directory for the CSV files, one per instance (`<instance>.csv`); created if missing.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The longest one query to Prometheus may take, connecting and reading the whole answer
    /// included (a server that answers slowly or not at all is given up on, named).
    #[arg(long, default_value = "120s", value_name = "DURATION")]
    timeout: String,
    /// The largest answer kept from one query, in MiB (checked before it is read: a server that sends
    /// more is named and refused rather than filling memory).
    #[arg(long, default_value_t = 256, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=16_384))]
    max_response_mib: u64,
}

/// Points per series per query at most (Prometheus' limit is 11,000).
const MAX_POINTS: f64 = 10_000.0;

/// A column and the PromQL that yields it per instance (`%SEL%` and `%SEL[extra]%` are replaced by
/// the selector, see [`selectors`]; `%R%` by the step's range).
struct Column {
    name: String,
    query: String,
    /// What the agent records while the series does not exist (`None`: the column is written only
    /// where Prometheus has it). `#[observe]`'s series are created by the first call of each label
    /// set, so before it the agent records 0 calls, errors and anomalies and no ratio or quantile.
    absent: Option<f64>,
}

fn columns() -> Vec<Column> {
    let mut out = Vec::new();
    let per_instance = |q: String| format!("sum by (instance) ({q})");
    for k in signals() {
        let m = k.metric;
        let query = match k.name {
            "tokio_park_rate" => per_instance(format!("rate({m}%SEL%[%R%])")),
            // A per-tick quantile the agent derives from its metric's histogram: the vocabulary
            // names it `…_p50_…` or `…_p99_…`.
            name if name.contains("_p50_") || name.contains("_p99_") => {
                let q = if name.contains("_p50_") {
                    "0.5"
                } else {
                    "0.99"
                };
                format!(
                    "histogram_quantile({q}, sum by (instance, le) (increase({m}_bucket%SEL%[%R%])))"
                )
            }
            "sched_probes" | "inference_calls" => per_instance(format!("{m}_count%SEL%")),
            "inference_error_ratio" => {
                "sum by (instance) (increase(ai_inference_errors_total%SEL%[%R%])) / \
                 sum by (instance) (increase(ai_inference_duration_seconds_count%SEL%[%R%]))"
                    .to_owned()
            }
            // The HTTP layer's requests: HTTP and gRPC are two families with their own labels, read
            // as one (`or` keeps both: their label sets never meet).
            "http_error_ratio" => {
                let requests = |http: &str, rpc: &str| {
                    format!(
                        "sum by (instance) (\
                         increase(http_server_request_duration_seconds_count%SEL[{http}]%[%R%]) or \
                         increase(rpc_server_call_duration_seconds_count%SEL[{rpc}]%[%R%]))"
                    )
                };
                let all = requests("", "");
                let failed = requests(
                    "http_response_status_code=~\"5..|error\"",
                    &format!(
                        "rpc_grpc_status_code=~\"{}\"",
                        vigil::observe::http::GRPC_FAILED_CODES.join("|")
                    ),
                );
                // No failed request in a step is a ratio of 0, as the agent records it.
                format!("({failed} or {all} * 0) / {all}")
            }
            // Tokens are one family with a `type` label: the column is the output tokens.
            _ if *k == vocab::GEN_AI_OUTPUT_TOKENS => {
                per_instance(format!("{m}%SEL[type=\"output\"]%"))
            }
            _ if vocab::GPU.contains(k) => {
                // Per device: the column is gpu<N>_<name>; the query keeps the `gpu` label.
                out.push(Column {
                    name: format!("gpu{{gpu}}_{}", k.name),
                    query: format!("max by (instance, gpu) ({m}%SEL%)"),
                    absent: None,
                });
                continue;
            }
            _ => per_instance(format!("{m}%SEL%")),
        };
        let name = vocab::column_of(k.name, k.kind);
        // The serving signals (streams, queues) are missing, not zero, in a host that never used
        // them; the calls' counters are zero before the first call.
        let serving = vocab::SERVING.contains(k);
        let absent = (m.starts_with("ai_inference_") || serving).then_some(match k.kind {
            SignalKind::Counter if !serving => 0.0,
            _ => f64::NAN,
        });
        out.push(Column {
            name,
            query,
            absent,
        });
    }
    // One counter per anomaly type (the agent's inference collector records them after the
    // vocabulary's inference signals; the vocabulary knows them by their prefix).
    let before = out
        .iter()
        .rposition(|c| c.name.starts_with("inference_"))
        .map_or(out.len(), |i| i + 1);
    let per_type = vocab::INFERENCE_ANOMALIES;
    let anomalies = vigil::observe::AnomalyType::ALL.iter().map(|a| Column {
        name: vocab::column_of(&format!("{}_{}", per_type.name, a.as_str()), per_type.kind),
        query: per_instance(format!(
            "{}%SEL[anomaly_type=\"{}\"]%",
            per_type.metric,
            a.as_str()
        )),
        absent: Some(0.0),
    });
    out.splice(before..before, anomalies);
    out
}

/// Replaces `%SEL%` by the selector `{m1,m2,…}` of `matchers`, and `%SEL[extra]%` by the same with
/// `extra` added (a matcher only that part of a query needs).
fn selectors(query: &str, matchers: &[&str]) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(at) = rest.find("%SEL") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 4..];
        let (extra, tail) = if let Some(t) = after.strip_prefix('%') {
            ("", t)
        } else if let Some((extra, t)) = after.strip_prefix('[').and_then(|a| a.split_once("]%")) {
            (extra, t)
        } else {
            out.push_str("%SEL");
            rest = after;
            continue;
        };
        let all: Vec<&str> = matchers
            .iter()
            .copied()
            .chain((!extra.is_empty()).then_some(extra))
            .collect();
        out.push('{');
        out.push_str(&all.join(","));
        out.push('}');
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// `http://host:port/prefix` → (host:port, prefix).
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url.strip_prefix("http://").with_context(|| {
        format!("--prometheus `{url}`: only http:// URLs (put a port-forward or proxy in front of HTTPS)")
    })?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    anyhow::ensure!(!host.is_empty(), "--prometheus `{url}` has no host");
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    Ok((
        host,
        format!("/{}", path.trim_end_matches('/')).replace("//", "/"),
    ))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One GET to Prometheus within `limits`; the body as text.
fn http_get(host: &str, path: &str, limits: vigil_tool::http::Limits) -> anyhow::Result<String> {
    let (code, body) = vigil_tool::http::get(host, path, "Prometheus", limits).context(
        "a query to Prometheus failed (--timeout and --max-response-mib set its limits; a narrower \
         --selector or a shorter --since asks for less)",
    )?;
    let text = String::from_utf8_lossy(&body).into_owned();
    anyhow::ensure!(
        code == 200,
        "Prometheus answered {code}: {}",
        text.chars().take(400).collect::<String>()
    );
    Ok(text)
}

fn seconds(s: &str, what: &str) -> anyhow::Result<f64> {
    vigil::agent::parse_duration(s)
        .map(|d| d.as_secs_f64())
        .with_context(|| format!("{what} `{s}` is not a duration (e.g. 1s, 500ms, 7d)"))
}

pub(crate) fn run(args: PullArgs) -> anyhow::Result<()> {
    let (host, prefix) = split_url(&args.prometheus)?;
    let step = seconds(&args.step, "--step")?;
    anyhow::ensure!(step >= 0.001, "--step must be at least 1ms");
    let timeout = seconds(&args.timeout, "--timeout")?;
    anyhow::ensure!(
        (1.0..=86_400.0).contains(&timeout),
        "--timeout must be from 1s to 1d"
    );
    let limits = vigil_tool::http::Limits {
        deadline: Duration::from_secs_f64(timeout),
        max_body: usize::try_from(args.max_response_mib * 1024 * 1024).unwrap_or(usize::MAX),
    };
    let until = match &args.until {
        Some(u) => parse_timestamp(u).with_context(|| format!("--until `{u}` is not a time"))?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    };
    let since = match parse_timestamp(&args.since) {
        Some(t) if args.since.contains('-') || args.since.contains('T') || t > 1e8 => t,
        _ => until - seconds(&args.since, "--since")?,
    };
    anyhow::ensure!(since < until, "--since is not before --until");
    let matchers = args
        .selector
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .with_context(|| {
            format!(
                "--selector `{}` is not `{{label=\"value\",...}}`",
                args.selector
            )
        })?
        .trim()
        .to_owned();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create the directory", args.out.display()))?;
    // Rows per instance: time (ms) → column → value.
    let mut data: BTreeMap<String, BTreeMap<i64, BTreeMap<String, f64>>> = BTreeMap::new();
    let mut present: Vec<String> = Vec::new();
    let range = format!("{}ms", ((step * 2.0) * 1000.0).round().max(1.0));
    let chunk = step * MAX_POINTS;
    let cols = columns();
    let pb = vigil_tool::engine::progress(cols.len() as u64, "querying Prometheus");
    for (ci, col) in cols.iter().enumerate() {
        let sel: Vec<&str> = [matchers.as_str()]
            .into_iter()
            .filter(|m| !m.is_empty())
            .collect();
        let q = selectors(&col.query, &sel).replace("%R%", &range);
        let mut t0 = since;
        while t0 < until {
            let t1 = (t0 + chunk).min(until);
            let path = format!(
                "{}/api/v1/query_range?query={}&start={t0:.3}&end={t1:.3}&step={step}",
                prefix.trim_end_matches('/'),
                encode(&q)
            );
            let body = http_get(&host, &path, limits)?;
            let v: serde_json::Value = serde_json::from_str(&body)
                .with_context(|| format!("Prometheus' answer to `{q}` is not JSON"))?;
            anyhow::ensure!(
                v["status"] == "success",
                "Prometheus refused `{q}`: {}",
                v["error"]
            );
            for series in v["data"]["result"].as_array().into_iter().flatten() {
                let Some(instance) = series["metric"]["instance"].as_str() else {
                    continue;
                };
                let name = match series["metric"]["gpu"].as_str() {
                    Some(g) => col.name.replace("{gpu}", g),
                    None if col.name.contains("{gpu}") => continue,
                    None => col.name.clone(),
                };
                if !present.contains(&name) {
                    present.push(name.clone());
                }
                let rows = data.entry(instance.to_owned()).or_default();
                for p in series["values"].as_array().into_iter().flatten() {
                    let (Some(t), Some(val)) = (p[0].as_f64(), p[1].as_str()) else {
                        continue;
                    };
                    let val: f64 = val.parse().unwrap_or(f64::NAN);
                    rows.entry((t * 1000.0).round() as i64)
                        .or_default()
                        .insert(name.clone(), val);
                }
            }
            t0 = t1 + step;
        }
        pb.set_position(ci as u64 + 1);
    }
    pb.finish_and_clear();
    anyhow::ensure!(
        !data.is_empty(),
        "no series matched {} between {} and {}: check --selector and the time range",
        args.selector,
        vigil::features::time::format_rfc3339(since),
        vigil::features::time::format_rfc3339(until)
    );
    // The agent's column order (the vocabulary's), of the columns that exist.
    let order: Vec<String> = cols
        .iter()
        .flat_map(|c| {
            if c.name.contains("{gpu}") {
                let mut g: Vec<String> = present
                    .iter()
                    .filter(|p| {
                        p.starts_with("gpu") && p.ends_with(&c.name.replace("gpu{gpu}", ""))
                    })
                    .cloned()
                    .collect();
                g.sort();
                g
            } else if present.contains(&c.name) || c.absent.is_some() {
                vec![c.name.clone()]
            } else {
                Vec::new()
            }
        })
        .collect();
    let absent_value: BTreeMap<&str, Option<f64>> =
        cols.iter().map(|c| (c.name.as_str(), c.absent)).collect();
    for (instance, rows) in &data {
        let file: String = instance
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = args.out.join(format!("{file}.csv"));
        let mut w = csv::Writer::from_writer(OutputFile::create(&path, &[])?);
        let mut header = vec!["timestamp".to_owned()];
        header.extend(order.iter().cloned());
        w.write_record(&header)?;
        for (t, vals) in rows {
            let mut rec = vec![format!("{:.3}", *t as f64 / 1000.0)];
            rec.extend(order.iter().map(|c| {
                let absent = || absent_value.get(c.as_str()).copied().flatten();
                match vals.get(c).copied().or_else(absent) {
                    Some(v) if v.is_finite() => format!("{v}"),
                    _ => String::new(),
                }
            }));
            w.write_record(&rec)?;
        }
        w.into_inner()
            .map_err(|e| anyhow::anyhow!("{}: cannot write: {}", path.display(), e.error()))?
            .commit()?;
        eprintln!(
            "{instance}: {} rows, {} columns -> {}",
            rows.len(),
            order.len(),
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_take_the_matchers_and_each_part_s_own() {
        let m = ["job=\"svc\"", "instance=~\"a|b\""];
        assert_eq!(
            selectors("up%SEL% + x%SEL[code=~\"5..\"]%[%R%] + y%SEL[]%", &m),
            "up{job=\"svc\",instance=~\"a|b\"} + x{job=\"svc\",instance=~\"a|b\",code=~\"5..\"}[%R%] + y{job=\"svc\",instance=~\"a|b\"}"
        );
        assert_eq!(selectors("a%SEL[x]%", &[]), "a{x}");
        // Not a placeholder: kept as written.
        assert_eq!(selectors("a%SELF b", &m), "a%SELF b");
    }

    /// The HTTP layer's columns read both families, failed requests by the layer's own rule, and
    /// are missing (not zero) where the layer never served.
    #[test]
    fn the_http_layer_columns_read_http_and_grpc_alike() {
        let cols = columns();
        let col = |name: &str| cols.iter().find(|c| c.name == name).unwrap();
        let p99 = col("http_response_head_p99_seconds");
        assert!(
            p99.query
                .contains("increase(vigil_http_server_response_head_seconds_bucket%SEL%[%R%])"),
            "{}",
            p99.query
        );
        assert!(p99.absent.is_some_and(f64::is_nan));
        let ratio = col("http_error_ratio");
        let q = selectors(&ratio.query, &["job=\"svc\""]);
        assert!(
            q.contains(
                "http_server_request_duration_seconds_count{job=\"svc\",http_response_status_code=~\"5..|error\"}"
            ),
            "{q}"
        );
        assert!(
            q.contains("rpc_grpc_status_code=~\"2|4|12|13|14|15\""),
            "{q}"
        );
        assert!(ratio.absent.is_some_and(f64::is_nan));
        assert!(!q.contains("%SEL"), "{q}");
    }
}

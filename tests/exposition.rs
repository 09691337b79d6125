//! The exposition as Prometheus tooling sees it: `promtool check metrics` accepts it, and every series
//! the agent exports is documented in the catalogue (and therefore in docs/METRICS.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;
use vigil::gpu::FakeGpu;

fn promtool_check(body: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool not found: install it with `apt-get install -y prometheus` \
             (scripts/test does this on a fresh machine)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A host's streamed generation (three tokens, then the end) and its queue: their series appear with
/// them.
fn stream_three_tokens() {
    struct Tokens(u32);
    impl futures_core::Stream for Tokens {
        type Item = u32;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<u32>> {
            self.0 = self.0.saturating_sub(1);
            std::task::Poll::Ready((self.0 > 0).then_some(self.0))
        }
    }
    let mut s = vigil::observe::stream("llm-exposition", "decode", Tokens(4));
    s.input_tokens(5);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    while let std::task::Poll::Ready(Some(_)) =
        futures_core::Stream::poll_next(std::pin::Pin::new(&mut s), &mut cx)
    {}
    // And its queue: one request waited and ran in a batch of one.
    let q = vigil::observe::queue("llm-exposition", "decode");
    let running = q.enqueued().start();
    q.batch(1);
    drop(running);
}

/// An agent on a host runtime with a GPU, after a stream and a queue ran: every family has a series.
fn serving_agent() -> (tokio::runtime::Runtime, vigil::AgentHandle) {
    stream_three_tokens();
    let rt = host_runtime();
    let agent = fast_agent(100)
        .gpu_source(FakeGpu::steady(16 << 30, 4 << 30))
        .start(rt.handle())
        .unwrap();
    (rt, agent)
}

#[test]
fn promtool_accepts_the_metrics_endpoint() {
    let (_rt, agent) = serving_agent();
    next_samples(&agent, 2);
    let body = get(agent.local_addr(), "/metrics", &[]).body;
    let (ok, report) = promtool_check(&body);
    // promtool prints lint findings (and exits non-zero) for naming or HELP problems.
    assert!(
        ok && report.trim().is_empty(),
        "promtool: {report}\n---\n{body}"
    );
}

#[test]
fn promtool_rejects_a_broken_exposition() {
    // The check above can fail: promtool flags a counter without the _total suffix.
    let (ok, report) = promtool_check("# HELP foo Foo.\n# TYPE foo counter\nfoo 1\n");
    assert!(
        !ok || !report.trim().is_empty(),
        "promtool accepted a bad counter"
    );
}

#[test]
fn every_exported_series_is_in_the_catalogue() {
    let (_rt, agent) = serving_agent();
    next_samples(&agent, 1);
    let names = scrape(agent.local_addr()).names();
    let catalogue: Vec<&str> = vigil::agent::CATALOGUE.iter().map(|d| d.name).collect();
    for n in &names {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                n.strip_suffix(suffix)
                    .filter(|base| catalogue.contains(base))
            })
            .unwrap_or(n);
        assert!(
            catalogue.contains(&family),
            "{n} is exported but not in the catalogue"
        );
    }
    // And everything the catalogue calls "always" is there.
    for d in vigil::agent::CATALOGUE
        .iter()
        .filter(|d| d.present == "always")
    {
        let found = names
            .iter()
            .any(|n| n == d.name || n.starts_with(&format!("{}_", d.name)));
        assert!(
            found,
            "{} is documented as always present but missing",
            d.name
        );
    }
    // A streamed generation's series are there once a stream ran.
    for family in [
        "gen_ai_server_request_duration_seconds_count",
        "gen_ai_server_time_to_first_token_seconds_count",
        "gen_ai_server_time_per_output_token_seconds_count",
        "gen_ai_server_tokens_total",
        "ai_inference_queue_waiting_requests",
        "ai_inference_queue_time_seconds_count",
        "ai_inference_batched_requests_total",
    ] {
        assert!(names.iter().any(|n| n == family), "{family} missing");
    }
    // This binary has no CountingAlloc: allocation series are absent rather than zero.
    assert!(!names.iter().any(|n| n.starts_with("vigil_alloc_")));
    // The unstable extras follow the build flag.
    let unstable = names.iter().any(|n| n == "vigil_tokio_polls_total");
    assert_eq!(unstable, cfg!(tokio_unstable));
}

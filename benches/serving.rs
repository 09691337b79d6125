//! Cost of the serving instrumentation, each beside an unwrapped baseline in the same run:
//!
//! - `observe_stream`: a stream of 256 ready tokens polled to its end, bare and wrapped by
//!   `vigil::observe::stream` (time to first token, every token counted, time per output token and the
//!   call at the end); criterion's throughput gives the time per token.
//! - `http_layer`: one request through an axum router (a handler that answers a short body), bare and
//!   behind `vigil::observe::http::HttpMetricsLayer` (route template, in-flight gauge, the duration at
//!   the end of the body), the body read to its end.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
#[path = "support/quick.rs"]
mod quick;

use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::post;
use criterion::{Criterion, Throughput};
use futures_core::Stream;
use tower::ServiceExt;

const TOKENS: u32 = 256;

/// `TOKENS` tokens, each ready at once: what the wrapper costs, without a model's time around it.
struct Ready(u32);

impl Stream for Ready {
    type Item = u32;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<u32>> {
        if self.0 == TOKENS {
            return Poll::Ready(None);
        }
        self.0 += 1;
        Poll::Ready(Some(self.0))
    }
}

/// Polls `s` to its end on this thread; the sum of its items.
fn drain<S: Stream<Item = u32>>(mut s: Pin<&mut S>) -> u64 {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut sum = 0u64;
    while let Poll::Ready(Some(t)) = s.as_mut().poll_next(&mut cx) {
        sum += u64::from(t);
    }
    sum
}

async fn infer(body: String) -> String {
    format!("{{\"label\":{}}}", body.len() % 16)
}

fn bench(c: &mut Criterion) {
    vigil::observe::set_enabled(true);
    // As in a served process: a reader decides and calibrates the calls' clock first.
    let _ = vigil::observe::totals();
    std::thread::sleep(Duration::from_millis(60));
    let _ = vigil::observe::totals();

    let mut g = c.benchmark_group("observe_stream");
    g.throughput(Throughput::Elements(u64::from(TOKENS)));
    g.bench_function("baseline", |b| {
        b.iter(|| {
            let mut s = Ready(0);
            drain(Pin::new(&mut s))
        })
    });
    g.bench_function("vigil_stream", |b| {
        b.iter(|| {
            let mut s = vigil::observe::stream("bench-llm", "generate", Ready(0));
            black_box(drain(Pin::new(&mut s)))
        })
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bare: Router = Router::new().route("/v1/models/{model}/infer", post(infer));
    let layered = bare.clone().layer(vigil::observe::http::HttpMetricsLayer);
    let request = || {
        Request::post("/v1/models/llama/infer")
            .header("content-type", "text/plain")
            .body(Body::from("classify this prompt please"))
            .unwrap()
    };
    let mut g = c.benchmark_group("http_layer");
    for (name, app) in [("baseline", &bare), ("vigil_layer", &layered)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let res = app.clone().oneshot(request()).await.unwrap();
                    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
                        .await
                        .unwrap();
                    black_box(body.len())
                })
            })
        });
    }
    g.finish();
}

quick_criterion_main!(bench);

//! The HTTP layer and the stream wrapper in a real axum server on loopback, read by a client over
//! TCP as `curl` would: route templates, a server-sent event stream whose time to first token and
//! time per output token match what the test measured itself (within 1 ms), a client that hangs up
//! mid-stream counted once as cancelled, and a failed request's traceparent as its exemplar.
//!
//! One test in this binary: the series are process-wide.
#![cfg(feature = "axum")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use support::{Paced, assert_stream_timed, openmetrics, text, value, value_or_zero, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vigil_observe::ObservedStream;
use vigil_observe::http::HttpMetricsLayer;

/// Per model: when its handler wrapped the stream, and when each token was handed over.
type Stamps = Arc<Mutex<HashMap<String, (Instant, Arc<Mutex<Vec<Instant>>>)>>>;

/// Server-sent events of an observed token stream.
struct Events(ObservedStream<Paced>);

impl futures_core::Stream for Events {
    type Item = Result<String, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|t| t.map(|t| Ok(format!("data: {t}\n\n"))))
    }
}

/// `POST /v1/models/{model}/generate`: 6 tokens for `llama` (first after 30 ms, then 10 ms apart),
/// 200 for anything else (20 ms apart: a client will hang up before the end).
async fn generate(State(stamps): State<Stamps>, Path(model): Path<String>) -> Body {
    let (tokens, gap) = if model == "llama" { (6, 10) } else { (200, 20) };
    let (paced, handed) = Paced::new(
        tokens,
        Duration::from_millis(30),
        Duration::from_millis(gap),
    );
    let start = Instant::now();
    let observed = vigil_observe::stream(&model, "generate", paced);
    stamps.lock().unwrap().insert(model, (start, handed));
    Body::from_stream(Events(observed))
}

fn app(stamps: Stamps) -> Router {
    Router::new()
        .route("/v1/models/{model}/generate", post(generate))
        .route("/v1/models/{model}/infer", post(|| async { "ok" }))
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "failed") }),
        )
        .with_state(stamps)
        .layer(HttpMetricsLayer)
}

/// Sends one HTTP/1.1 request with `Connection: close`.
async fn request(addr: std::net::SocketAddr, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req =
        format!("{head} HTTP/1.1\r\nHost: vigil\r\nContent-Length: 0\r\nConnection: close\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// Reads to the end of the response.
async fn read_all(mut s: TcpStream, extra_headers: &str) -> String {
    s.write_all(format!("{extra_headers}\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the response ended within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_axum_server_is_measured_by_route_template_and_its_streams_to_the_millisecond() {
    let stamps = Stamps::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(Arc::clone(&stamps));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // Two raw paths, one route template.
    for model in ["resnet", "bert"] {
        let r = read_all(
            request(addr, &format!("POST /v1/models/{model}/infer")).await,
            "",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }

    // A failed request carries the client's trace.
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = read_all(
        request(addr, "GET /boom").await,
        &format!("traceparent: {trace}\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 500"), "{r}");

    // A whole stream, read to its end.
    let r = read_all(request(addr, "POST /v1/models/llama/generate").await, "").await;
    assert_eq!(r.matches("data: ").count(), 6, "{r}");

    // A client that hangs up after the first token.
    let mut s = request(addr, "POST /v1/models/mistral/generate").await;
    s.write_all(b"\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("a first token within 10 s")
            .unwrap();
        assert!(n > 0, "the server closed before a token");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(s);

    let cancelled =
        r#"ai_inference_anomaly_total{model="mistral",stage="generate",anomaly_type="cancelled"}"#;
    let got = wait_for(Duration::from_secs(10), 1.0, || {
        value_or_zero(&text(), cancelled)
    })
    .await;
    assert_eq!(
        got,
        1.0,
        "the hang-up counted once as cancelled:\n{}",
        text()
    );
    let generate = r#"http_server_request_duration_seconds_count{http_request_method="POST",http_route="/v1/models/{model}/generate",http_response_status_code="200"}"#;
    let active = r#"http_server_active_requests{http_request_method="POST",http_route="/v1/models/{model}/generate"}"#;
    assert_eq!(
        wait_for(Duration::from_secs(10), 0.0, || value(&text(), active)).await,
        0.0,
        "the hung-up stream left flight"
    );
    // Later token times do not count it again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = text();
    assert_eq!(value(&t, cancelled), 1.0, "{t}");
    assert_eq!(value(&t, generate), 2.0, "{t}");

    // Route templates, never raw paths.
    assert_eq!(
        value(
            &t,
            r#"http_server_request_duration_seconds_count{http_request_method="POST",http_route="/v1/models/{model}/infer",http_response_status_code="200"}"#
        ),
        2.0
    );
    assert!(!t.contains("/v1/models/resnet/infer"), "{t}");
    assert!(!t.contains("/v1/models/llama/generate"), "{t}");

    // Every request's time to its response head, in one histogram: a stream's head comes before
    // its first token.
    assert_eq!(
        value(&t, "vigil_http_server_response_head_seconds_count"),
        5.0,
        "{t}"
    );
    assert!(
        value(
            &t,
            r#"vigil_http_server_response_head_seconds_bucket{le="0.025"}"#
        ) >= 4.0,
        "{t}"
    );

    // The completed stream: what the wrapper recorded is what the test measured, within 1 ms.
    let (start, handed) = stamps.lock().unwrap().get("llama").cloned().unwrap();
    assert_eq!(handed.lock().unwrap().len(), 6);
    assert_stream_timed(&t, "llama", "generate", start, &handed.lock().unwrap());
    assert_eq!(
        value(
            &t,
            r#"gen_ai_server_tokens_total{model="llama",stage="generate",type="output"}"#
        ),
        6.0
    );
    assert_eq!(
        value(
            &t,
            r#"gen_ai_server_time_to_first_token_seconds_count{model="llama",stage="generate"}"#
        ),
        1.0
    );

    // The failed request's trace id is its exemplar.
    let om = openmetrics();
    let boom = om
        .lines()
        .find(|l| {
            l.starts_with(
                r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/boom",http_response_status_code="500""#,
            ) && l.contains("trace_id=")
        })
        .unwrap_or_else(|| panic!("no exemplar on /boom:\n{om}"));
    assert!(boom.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{boom}");
    server.abort();
}

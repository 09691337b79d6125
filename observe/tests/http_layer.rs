//! The HTTP layer as a host uses it: an axum router with `HttpMetricsLayer`, requests through it, and
//! the exposition read back; a gRPC service whose status comes in trailers.
#![cfg(feature = "axum")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::routing::{get, post};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tower_layer::Layer;
use tower_service::Service;
use vigil_observe::http::HttpMetricsLayer;

use axum::body::Bytes as Chunk;

fn text(openmetrics: bool) -> String {
    let mut t = String::new();
    if openmetrics {
        vigil_observe::encode_openmetrics(&mut t);
    } else {
        vigil_observe::encode_prometheus_text(&mut t);
    }
    t
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// A body of three chunks, 20 ms apart (a server-sent event stream).
struct Slow {
    left: u32,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for Slow {
    type Data = Chunk;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Chunk>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(20))));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(Chunk::from_static(b"data: tok\n\n")))))
    }
}

/// The test service; `stream` names its streaming route (each test its own: the series are
/// process-wide, and `cargo test` runs tests side by side).
#[derive(Debug)]
struct Overloaded;
impl std::fmt::Display for Overloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("overloaded")
    }
}
impl std::error::Error for Overloaded {}

#[vigil_observe::observe(model = "layered", stage = "predict")]
async fn predict() -> Result<u32, Overloaded> {
    Err(Overloaded)
}

fn app(stream: &str) -> Router {
    Router::new()
        .route(
            "/predict",
            post(|| async {
                match predict().await {
                    Ok(_) => StatusCode::OK,
                    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
                }
            }),
        )
        .route(
            "/v1/models/{model}/infer",
            post(|| async { "ok" }).get(|| async { "ok" }),
        )
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "failed") }),
        )
        .route(
            stream,
            get(|| async {
                AxumBody::new(Slow {
                    left: 3,
                    sleep: None,
                })
            }),
        )
        .layer(HttpMetricsLayer)
}

async fn send(
    app: &mut Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> Response<AxumBody> {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.call(req.body(AxumBody::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn requests_are_measured_by_route_template_method_and_status_to_the_end_of_their_body() {
    let mut app = app("/stream");
    for uri in ["/v1/models/resnet/infer", "/v1/models/bert/infer"] {
        let r = send(&mut app, "POST", uri, &[]).await;
        assert_eq!(r.status(), 200);
        r.into_body().collect().await.unwrap();
    }
    // A method outside HTTP's nine is _OTHER (axum answers 405).
    send(&mut app, "BREW", "/v1/models/x/infer", &[])
        .await
        .into_body()
        .collect()
        .await
        .unwrap();
    // A failed request with a trace id leaves it as the exemplar.
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = send(&mut app, "GET", "/boom", &[("traceparent", trace)]).await;
    assert_eq!(r.status(), 500);
    r.into_body().collect().await.unwrap();

    // The request's trace is the handler's: the failing #[observe] call inside it carries its id.
    let inner = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    send(&mut app, "POST", "/predict", &[("traceparent", inner)])
        .await
        .into_body()
        .collect()
        .await
        .unwrap();
    let om = text(true);
    assert!(
        om.lines().any(|l| l.starts_with(
            r#"ai_inference_anomaly_total{model="layered",stage="predict",anomaly_type="error"}"#
        ) && l.contains("0af7651916cd43dd8448eb211c80319c")),
        "no exemplar from the handler's call:\n{om}"
    );

    // A streamed response is in flight until its last chunk, and lasts as long as its body.
    let r = send(&mut app, "GET", "/stream", &[]).await;
    let t = text(false);
    assert_eq!(
        value(
            &t,
            r#"http_server_active_requests{http_request_method="GET",http_route="/stream"}"#
        ),
        1.0
    );
    r.into_body().collect().await.unwrap();

    let t = text(false);
    let post = r#"http_request_method="POST",http_route="/v1/models/{model}/infer",http_response_status_code="200""#;
    assert_eq!(
        value(
            &t,
            &format!("http_server_request_duration_seconds_count{{{post}}}")
        ),
        2.0,
        "both model paths are one route template"
    );
    assert!(
        !t.contains("/v1/models/resnet/infer"),
        "a raw path became a label:\n{t}"
    );
    assert_eq!(
        value(
            &t,
            r#"http_server_request_duration_seconds_count{http_request_method="_OTHER",http_route="/v1/models/{model}/infer",http_response_status_code="405"}"#
        ),
        1.0
    );
    let stream = value(
        &t,
        r#"http_server_request_duration_seconds_sum{http_request_method="GET",http_route="/stream",http_response_status_code="200"}"#,
    );
    assert!(stream >= 0.055, "the stream's three 20 ms chunks: {stream}");
    assert_eq!(
        value(
            &t,
            r#"http_server_active_requests{http_request_method="GET",http_route="/stream"}"#
        ),
        0.0
    );
    let om = text(true);
    let boom = om
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_route=\"/boom\"")
                && l.contains("trace_id=")
        })
        .unwrap_or_else(|| panic!("no exemplar on /boom:\n{om}"));
    assert!(boom.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{boom}");
}

#[tokio::test]
async fn a_streamed_response_dropped_mid_way_still_counts_and_leaves_flight() {
    let mut app = app("/dropped");
    let r = send(&mut app, "GET", "/dropped", &[]).await;
    let mut body = r.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    let t = text(false);
    assert_eq!(
        value(
            &t,
            r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/dropped",http_response_status_code="200"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &t,
            r#"http_server_active_requests{http_request_method="GET",http_route="/dropped"}"#
        ),
        0.0
    );
}

/// A gRPC reply: one message, then `grpc-status` in the trailers.
struct GrpcReply {
    sent: u8,
    status: &'static str,
}

impl Body for GrpcReply {
    type Data = Chunk;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Chunk>, Infallible>>> {
        self.sent += 1;
        Poll::Ready(match self.sent {
            1 => Some(Ok(Frame::data(Chunk::from_static(&[0, 0, 0, 0, 0])))),
            2 => {
                let mut t = HeaderMap::new();
                t.insert("grpc-status", self.status.parse().unwrap());
                Some(Ok(Frame::trailers(t)))
            }
            _ => None,
        })
    }
}

#[derive(Clone)]
struct Grpc;

impl Service<Request<AxumBody>> for Grpc {
    type Response = Response<GrpcReply>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<GrpcReply>, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<AxumBody>) -> Self::Future {
        let status = if req.uri().path().ends_with("Fail") {
            "13"
        } else {
            "0"
        };
        let mut r = Response::new(GrpcReply { sent: 0, status });
        r.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        std::future::ready(Ok(r))
    }
}

#[tokio::test]
async fn grpc_calls_are_measured_by_service_method_and_trailer_status() {
    let mut svc = HttpMetricsLayer.layer(Grpc);
    for path in [
        "/inference.Predictor/Generate",
        "/inference.Predictor/GenerateFail",
    ] {
        let req = Request::post(path)
            .header("content-type", "application/grpc")
            .body(AxumBody::empty())
            .unwrap();
        let r = svc.call(req).await.unwrap();
        r.into_body().collect().await.unwrap();
    }
    let t = text(false);
    assert_eq!(
        value(
            &t,
            r#"rpc_server_call_duration_seconds_count{rpc_system="grpc",rpc_service="inference.Predictor",rpc_method="Generate",rpc_grpc_status_code="0"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &t,
            r#"rpc_server_call_duration_seconds_count{rpc_system="grpc",rpc_service="inference.Predictor",rpc_method="GenerateFail",rpc_grpc_status_code="13"}"#
        ),
        1.0
    );
}

//! The HTTP layer's cap on distinct routes (its own process: the cap is process-wide).
#![cfg(feature = "axum")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use axum::Router;
use axum::body::Body as AxumBody;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use tower_service::Service;
use vigil_observe::http::HttpMetricsLayer;

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test]
async fn routes_beyond_the_cap_are_counted_under_overflow() {
    vigil_observe::http::set_route_cap(2);
    let mut app = Router::new()
        .route("/a", get(|| async { "a" }))
        .route("/b", get(|| async { "b" }))
        .route("/c", get(|| async { "c" }))
        .route("/d", get(|| async { "d" }))
        .layer(HttpMetricsLayer);
    for uri in ["/a", "/b", "/c", "/d", "/c"] {
        let req = Request::get(uri).body(AxumBody::empty()).unwrap();
        app.call(req)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap();
    }
    let mut t = String::new();
    vigil_observe::encode_prometheus_text(&mut t);
    assert_eq!(
        value(
            &t,
            r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="__overflow__",http_response_status_code="200"}"#
        ),
        3.0
    );
    assert_eq!(value(&t, "vigil_http_route_overflow_total"), 3.0);
    assert!(!t.contains("http_route=\"/c\""), "{t}");
}

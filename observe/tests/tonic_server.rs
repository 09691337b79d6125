//! The HTTP layer on a real tonic server on loopback, called by a real tonic client: gRPC service,
//! method and status (from trailers), a server stream whose time to first token and time per output
//! token match what the test measured itself (within 1 ms), a client that drops its stream counted
//! once as cancelled, methods beyond the cap counted under `__overflow__`, and a failed call's
//! `traceparent` as its exemplar.
//!
//! Messages are written by hand with prost's derive (what tonic-build would generate), so the test
//! needs no protoc. One test in this binary: the route cap and the series are process-wide.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use support::{Paced, assert_stream_timed, openmetrics, text, value, value_or_zero, wait_for};
use tonic::codegen::Service;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;
use vigil_observe::ObservedStream;
use vigil_observe::http::{HttpMetricsLayer, set_route_cap};

#[derive(Clone, PartialEq, prost::Message)]
struct Prompt {
    #[prost(string, tag = "1")]
    model: String,
    #[prost(uint32, tag = "2")]
    tokens: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Token {
    #[prost(uint32, tag = "1")]
    left: u32,
}

/// Per model: when the server wrapped its stream, and when each token was handed over.
type Stamps = Arc<Mutex<HashMap<String, (Instant, Arc<Mutex<Vec<Instant>>>)>>>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// `inference.Predictor`, as tonic-build would write its server.
#[derive(Clone, Default)]
struct Predictor {
    stamps: Stamps,
}

impl NamedService for Predictor {
    const NAME: &'static str = "inference.Predictor";
}

/// Unary `Predict` (answers) and `Fail` (INTERNAL).
struct Unary {
    fail: bool,
}

impl Service<Request<Prompt>> for Unary {
    type Response = Response<Token>;
    type Error = Status;
    type Future = BoxFuture<Result<Response<Token>, Status>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<Prompt>) -> Self::Future {
        let fail = self.fail;
        Box::pin(async move {
            if fail {
                Err(Status::internal("the model failed"))
            } else {
                Ok(Response::new(Token {
                    left: req.into_inner().tokens,
                }))
            }
        })
    }
}

/// The server stream's messages: an observed token stream.
struct Tokens(ObservedStream<Paced>);

impl futures_core::Stream for Tokens {
    type Item = Result<Token, Status>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|t| t.map(|left| Ok(Token { left })))
    }
}

/// Server-streaming `Generate`: `tokens` tokens, the first after 30 ms, then 10 ms apart.
struct Generate(Stamps);

impl Service<Request<Prompt>> for Generate {
    type Response = Response<Tokens>;
    type Error = Status;
    type Future = BoxFuture<Result<Response<Tokens>, Status>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<Prompt>) -> Self::Future {
        let stamps = Arc::clone(&self.0);
        Box::pin(async move {
            let p = req.into_inner();
            let (paced, handed) = Paced::new(
                p.tokens,
                Duration::from_millis(30),
                Duration::from_millis(10),
            );
            let start = Instant::now();
            let observed = vigil_observe::stream(&p.model, "generate", paced);
            stamps.lock().unwrap().insert(p.model, (start, handed));
            Ok(Response::new(Tokens(observed)))
        })
    }
}

impl<B> Service<http::Request<B>> for Predictor
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let stamps = Arc::clone(&self.stamps);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Token, Prompt>::new());
            Ok(match req.uri().path() {
                "/inference.Predictor/Predict" => grpc.unary(Unary { fail: false }, req).await,
                "/inference.Predictor/Fail" => grpc.unary(Unary { fail: true }, req).await,
                "/inference.Predictor/Generate" => {
                    grpc.server_streaming(Generate(stamps), req).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

type Client = tonic::client::Grpc<tonic::transport::Channel>;

async fn unary(client: &mut Client, method: &str, trace: Option<&str>) -> Result<Token, Status> {
    client.ready().await.unwrap();
    let mut req = Request::new(Prompt {
        model: "m".into(),
        tokens: 3,
    });
    if let Some(t) = trace {
        req.metadata_mut().insert("traceparent", t.parse().unwrap());
    }
    let path = PathAndQuery::try_from(format!("/inference.Predictor/{method}")).unwrap();
    client
        .unary(req, path, ProstCodec::<Prompt, Token>::new())
        .await
        .map(Response::into_inner)
}

async fn generate(client: &mut Client, model: &str, tokens: u32) -> tonic::codec::Streaming<Token> {
    client.ready().await.unwrap();
    let req = Request::new(Prompt {
        model: model.into(),
        tokens,
    });
    client
        .server_streaming(
            req,
            PathAndQuery::from_static("/inference.Predictor/Generate"),
            ProstCodec::<Prompt, Token>::new(),
        )
        .await
        .unwrap()
        .into_inner()
}

fn rpc(method: &str, status: &str) -> String {
    format!(
        r#"rpc_server_call_duration_seconds_count{{rpc_system="grpc",rpc_service="inference.Predictor",rpc_method="{method}",rpc_grpc_status_code="{status}"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_tonic_server_is_measured_by_service_method_and_status_and_its_streams_to_the_millisecond()
 {
    // Three methods are admitted; calls to any further one are counted under the overflow value.
    set_route_cap(3);
    let predictor = Predictor::default();
    let stamps = Arc::clone(&predictor.stamps);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(HttpMetricsLayer)
            .add_service(predictor)
            .serve_with_incoming(incoming),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = Client::new(channel);

    assert_eq!(unary(&mut client, "Predict", None).await.unwrap().left, 3);
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let err = unary(&mut client, "Fail", Some(trace)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal);

    // A whole stream.
    let mut s = generate(&mut client, "llama", 6).await;
    let mut got = Vec::new();
    while let Some(t) = s.message().await.unwrap() {
        got.push(t.left);
    }
    assert_eq!(got, [5, 4, 3, 2, 1, 0]);

    // A client that drops its stream after the first token.
    let mut s = generate(&mut client, "mistral", 200).await;
    assert!(s.message().await.unwrap().is_some());
    drop(s);
    let cancelled =
        r#"ai_inference_anomaly_total{model="mistral",stage="generate",anomaly_type="cancelled"}"#;
    let got = wait_for(Duration::from_secs(10), 1.0, || {
        value_or_zero(&text(), cancelled)
    })
    .await;
    assert_eq!(got, 1.0, "the dropped stream counted once:\n{}", text());
    assert_eq!(
        wait_for(Duration::from_secs(10), 1.0, || value_or_zero(
            &text(),
            &rpc("Generate", "1")
        ))
        .await,
        1.0,
        "the dropped call is CANCELLED:\n{}",
        text()
    );

    // Two methods beyond the cap of three.
    for method in ["Embed", "Rerank"] {
        let err = unary(&mut client, method, None).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
    }

    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = text();
    assert_eq!(value(&t, cancelled), 1.0, "counted once: {t}");
    assert_eq!(value(&t, &rpc("Predict", "0")), 1.0, "{t}");
    assert_eq!(value(&t, &rpc("Fail", "13")), 1.0, "{t}");
    assert_eq!(value(&t, &rpc("Generate", "0")), 1.0, "{t}");
    assert_eq!(
        value(
            &t,
            r#"rpc_server_call_duration_seconds_count{rpc_system="grpc",rpc_service="__overflow__",rpc_method="__overflow__",rpc_grpc_status_code="12"}"#
        ),
        2.0,
        "{t}"
    );
    assert_eq!(value(&t, "vigil_http_route_overflow_total"), 2.0, "{t}");
    assert!(!t.contains("Rerank"), "{t}");

    // The completed stream: what the wrapper recorded is what the test measured, within 1 ms.
    let (start, handed) = stamps.lock().unwrap().get("llama").cloned().unwrap();
    assert_eq!(handed.lock().unwrap().len(), 6);
    assert_stream_timed(&t, "llama", "generate", start, &handed.lock().unwrap());

    // The failed call's trace id is its exemplar.
    let om = openmetrics();
    let fail = om
        .lines()
        .find(|l| {
            l.starts_with(r#"rpc_server_call_duration_seconds_bucket{rpc_system="grpc",rpc_service="inference.Predictor",rpc_method="Fail",rpc_grpc_status_code="13""#)
                && l.contains("trace_id=")
        })
        .unwrap_or_else(|| panic!("no exemplar on Fail:\n{om}"));
    assert!(fail.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{fail}");
    server.abort();
}

//! A tower layer for HTTP and gRPC servers (axum, tonic, hyper): what operators of an inference
//! service watch first, after the OpenTelemetry HTTP and RPC metric conventions, the Prometheus way.
//!
//! ```ignore
//! let app = axum::Router::new()
//!     .route("/v1/models/{model}/infer", post(infer))
//!     .layer(vigil::observe::http::HttpMetricsLayer::default());
//! ```
//!
//! - `http_server_request_duration_seconds{http_request_method,http_route,http_response_status_code}`:
//!   from the request to the end of the response body (a streamed response — server-sent events —
//!   counts until its last byte). The route is the template axum matched (`MatchedPath`, with the
//!   `axum` feature), never the raw path; without one it is empty. Methods outside HTTP's nine are
//!   `_OTHER`; a service that returns an error instead of a response is `http_response_status_code="error"`.
//! - gRPC (a request whose `content-type` is `application/grpc…`):
//!   `rpc_server_call_duration_seconds{rpc_system="grpc",rpc_service,rpc_method,rpc_grpc_status_code}`,
//!   the service and method from the request path and the status from the `grpc-status` trailer (or
//!   header, for a trailers-only reply); a response body dropped before its end is `1` (CANCELLED).
//! - `http_server_active_requests{http_request_method,http_route}` (gRPC: `rpc_service`, `rpc_method`),
//!   requests whose response has not ended.
//! - Bounded: at most [`DEFAULT_ROUTE_CAP`] distinct routes (gRPC: service and method pairs; see
//!   [`set_route_cap`]); requests to further ones are counted under `__overflow__`, and each such
//!   request in `vigil_http_route_overflow_total`.
//! - The request's W3C `traceparent` is its trace: `#[vigil::observe]` calls inside the handler see
//!   it, and a failed request (HTTP 5xx; gRPC UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
//!   UNAVAILABLE, DATA_LOSS) leaves its trace id as the exemplar of its duration bucket.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize};
use std::sync::{Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::{HeaderMap, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};

use crate::clock::{self, Stamp};
use crate::series::{Exemplar, Histogram, OVERFLOW_LABEL};
use crate::trace::TraceContext;

use crate::encode::{
    HTTP_ACTIVE_HELP, HTTP_ACTIVE_METRIC, HTTP_DURATION_HELP, HTTP_DURATION_METRIC,
    HTTP_RESPONSE_HEAD_HELP, HTTP_RESPONSE_HEAD_METRIC, HistogramRow, ROUTE_OVERFLOW_HELP,
    ROUTE_OVERFLOW_METRIC, RPC_DURATION_HELP, RPC_DURATION_METRIC, histogram_family,
};

/// Default cap on distinct routes (gRPC: service and method pairs).
pub const DEFAULT_ROUTE_CAP: usize = 100;
static ROUTE_CAP: AtomicUsize = AtomicUsize::new(DEFAULT_ROUTE_CAP);
static OVERFLOWED: AtomicU64 = AtomicU64::new(0);

/// Sets the cap on distinct routes (at least 1).
pub fn set_route_cap(cap: usize) {
    ROUTE_CAP.store(cap.max(1), Relaxed);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Http,
    Grpc,
}

/// `(kind, route or service, method)`.
type Route = (Kind, Box<str>, Box<str>);

/// One label set's durations.
#[derive(Debug, Default)]
struct Entry {
    duration: Histogram,
    exemplars: Mutex<Vec<Option<Exemplar>>>,
}

#[derive(Default)]
struct Table {
    /// `(route, status)` → durations.
    entries: HashMap<(Route, Box<str>), &'static Entry>,
    active: HashMap<Route, &'static AtomicI64>,
    /// Distinct `(kind, route)` (gRPC: service and method) admitted under the cap.
    routes: HashSet<(Kind, Box<str>, Box<str>)>,
}

static TABLE: RwLock<Option<Table>> = RwLock::new(None);

/// Every request's time to its response head, whatever its route and status: what the agent's
/// latency signal reads (the whole duration of a streamed response is its answer's length, not a
/// latency). Exported as one unlabelled histogram.
static HEAD: Histogram = Histogram::new();
/// Requests ended (counted in the duration families), and the failed ones among them.
static ENDED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

/// Adds the layer's process-wide request counts to the agent's totals.
pub(crate) fn add_totals(t: &mut crate::series::Totals) {
    crate::series::add_buckets(&mut t.http_head, &HEAD);
    t.http_requests = ENDED.load(Relaxed);
    t.http_errors = FAILED.load(Relaxed);
    t.http_served = t.http_requests > 0 || t.http_head.iter().any(|b| *b > 0);
}

fn leak<T: Default>() -> &'static T {
    Box::leak(Box::default())
}

/// The route as counted: itself, or `__overflow__` once the cap is reached.
fn admit(kind: Kind, route: &str, method: &str) -> (Box<str>, Box<str>) {
    // gRPC's method is part of what is capped (a service has as many methods as it likes); HTTP's
    // method is one of ten values.
    let capped = if kind == Kind::Grpc { method } else { "" };
    let key = (kind, Box::<str>::from(route), Box::<str>::from(capped));
    {
        let t = TABLE.read().unwrap_or_else(PoisonError::into_inner);
        if t.as_ref().is_some_and(|t| t.routes.contains(&key)) {
            return (route.into(), method.into());
        }
    }
    let mut t = TABLE.write().unwrap_or_else(PoisonError::into_inner);
    let t = t.get_or_insert_with(Table::default);
    if t.routes.contains(&key) || t.routes.len() < ROUTE_CAP.load(Relaxed) {
        t.routes.insert(key);
        return (route.into(), method.into());
    }
    OVERFLOWED.fetch_add(1, Relaxed);
    let method = if kind == Kind::Grpc {
        OVERFLOW_LABEL
    } else {
        method
    };
    (OVERFLOW_LABEL.into(), method.into())
}

fn active(route: &Route) -> &'static AtomicI64 {
    {
        let t = TABLE.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(a) = t.as_ref().and_then(|t| t.active.get(route)) {
            return a;
        }
    }
    let mut t = TABLE.write().unwrap_or_else(PoisonError::into_inner);
    t.get_or_insert_with(Table::default)
        .active
        .entry(route.clone())
        .or_insert_with(leak)
}

fn entry(route: &Route, status: &str) -> &'static Entry {
    let key = (route.clone(), Box::<str>::from(status));
    {
        let t = TABLE.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = t.as_ref().and_then(|t| t.entries.get(&key)) {
            return e;
        }
    }
    let mut t = TABLE.write().unwrap_or_else(PoisonError::into_inner);
    t.get_or_insert_with(Table::default)
        .entries
        .entry(key)
        .or_insert_with(leak)
}

/// HTTP's nine methods by name, every other as `_OTHER` (OpenTelemetry's rule: the label stays
/// bounded whatever clients send).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// gRPC status codes a server counts as failed (OpenTelemetry's server-side rule): UNKNOWN,
/// DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS. An HTTP request fails with a
/// 5xx status, or `error` when the service returned an error instead of a response.
pub const GRPC_FAILED_CODES: [&str; 6] = ["2", "4", "12", "13", "14", "15"];

fn grpc_failed(code: &str) -> bool {
    GRPC_FAILED_CODES.contains(&code)
}

fn grpc_status(headers: &HeaderMap) -> Option<Box<str>> {
    let v = headers.get("grpc-status")?.to_str().ok()?;
    // A status is a small number; anything else is not one (and must not become a label value).
    (v.len() <= 2 && v.bytes().all(|b| b.is_ascii_digit())).then(|| v.into())
}

/// Adds [`HttpMetrics`] to a service; see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpMetricsLayer;

impl<S> tower_layer::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;
    fn layer(&self, inner: S) -> HttpMetrics<S> {
        HttpMetrics { inner }
    }
}

/// A service measured by [`HttpMetricsLayer`].
#[derive(Debug, Clone)]
pub struct HttpMetrics<S> {
    inner: S,
}

/// What a request is counted under, and since when.
struct Pending {
    route: Route,
    start: Stamp,
    trace: Option<TraceContext>,
    active: &'static AtomicI64,
}

impl Pending {
    fn finish(self, status: &str, failed: bool) {
        let nanos = clock::elapsed_nanos(self.start);
        let e = entry(&self.route, status);
        let bucket = e.duration.observe(nanos);
        ENDED.fetch_add(1, Relaxed);
        if failed {
            FAILED.fetch_add(1, Relaxed);
        }
        if failed && let Some(trace) = self.trace {
            let mut ex = e.exemplars.lock().unwrap_or_else(PoisonError::into_inner);
            if ex.len() <= bucket {
                ex.resize(bucket + 1, None);
            }
            ex[bucket] = Some(Exemplar {
                trace,
                value: nanos as f64 / 1e9,
                at: SystemTime::now(),
            });
        }
        self.active.fetch_sub(1, Relaxed);
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for HttpMetrics<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if !crate::switch::enabled() {
            return ResponseFuture {
                inner: Inner::Plain(Box::pin(self.inner.call(req))),
                pending: None,
            };
        }
        let grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        let (kind, route, method) = if grpc {
            let path = req.uri().path().trim_start_matches('/');
            let (service, method) = path.split_once('/').unwrap_or((path, ""));
            (Kind::Grpc, service.to_owned(), method.to_owned())
        } else {
            (
                Kind::Http,
                route_of(&req),
                method_label(req.method()).to_owned(),
            )
        };
        let (route, method) = admit(kind, &route, &method);
        let route: Route = (kind, route, method);
        let a = active(&route);
        a.fetch_add(1, Relaxed);
        let trace = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| TraceContext::from_traceparent(v).ok());
        let fut = self.inner.call(req);
        let inner = match trace {
            Some(t) => Inner::Traced(Box::pin(crate::trace::scoped(t, fut))),
            None => Inner::Plain(Box::pin(fut)),
        };
        ResponseFuture {
            inner,
            pending: Some(Pending {
                route,
                start: clock::now(),
                trace,
                active: a,
            }),
        }
    }
}

/// The route template axum matched, else empty.
fn route_of<B>(req: &Request<B>) -> String {
    #[cfg(feature = "axum")]
    if let Some(m) = req.extensions().get::<axum::extract::MatchedPath>() {
        return m.as_str().to_owned();
    }
    let _ = req;
    String::new()
}

enum Inner<F: Future> {
    Plain(Pin<Box<F>>),
    Traced(Pin<Box<tokio::task::futures::TaskLocalFuture<TraceContext, F>>>),
}

/// The future of a measured request: its response, with the body measured to its end.
pub struct ResponseFuture<F: Future> {
    inner: Inner<F>,
    pending: Option<Pending>,
}

impl<F: Future> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<ObservedBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Unpin: every field is boxed or plain data.
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Plain(f) => f.as_mut().poll(cx),
            Inner::Traced(f) => f.as_mut().poll(cx),
        };
        let Poll::Ready(result) = polled else {
            return Poll::Pending;
        };
        let pending = this.pending.take();
        if let Some(p) = &pending {
            HEAD.observe(clock::elapsed_nanos(p.start));
        }
        Poll::Ready(match result {
            Ok(response) => {
                let grpc = pending.as_ref().and_then(|p| {
                    (p.route.0 == Kind::Grpc).then(|| grpc_status(response.headers()))
                });
                let status = response.status();
                Ok(response.map(|body| ObservedBody {
                    inner: Box::pin(body),
                    pending,
                    http_status: status.as_u16(),
                    grpc_status: grpc.flatten(),
                }))
            }
            Err(e) => {
                if let Some(p) = pending {
                    let grpc = p.route.0 == Kind::Grpc;
                    p.finish(if grpc { "2" } else { "error" }, true);
                }
                Err(e)
            }
        })
    }
}

/// A response body measured to its end (or to its drop: a client that went away).
pub struct ObservedBody<B: Body> {
    inner: Pin<Box<B>>,
    pending: Option<Pending>,
    http_status: u16,
    /// gRPC: the status from the headers (trailers-only) or the trailers.
    grpc_status: Option<Box<str>>,
}

impl<B: Body> std::fmt::Debug for ObservedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedBody")
            .field("http_status", &self.http_status)
            .finish_non_exhaustive()
    }
}

impl<B: Body> ObservedBody<B> {
    /// Counts the request, once: `ended` false when the body was dropped before its end.
    fn finish(&mut self, ended: bool) {
        let Some(p) = self.pending.take() else {
            return;
        };
        if p.route.0 == Kind::Grpc {
            let code = match (&self.grpc_status, ended) {
                (Some(c), _) => c.to_string(),
                // Ended without a status: the stream broke (UNKNOWN); dropped: CANCELLED.
                (None, true) => "2".to_owned(),
                (None, false) => "1".to_owned(),
            };
            let failed = grpc_failed(&code);
            p.finish(&code, failed);
        } else {
            let code = self.http_status.to_string();
            p.finish(&code, self.http_status >= 500);
        }
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = frame.trailers_ref()
                    && let Some(code) = grpc_status(t)
                {
                    this.grpc_status = Some(code);
                }
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if this.grpc_status.is_none()
                    && this
                        .pending
                        .as_ref()
                        .is_some_and(|p| p.route.0 == Kind::Grpc)
                {
                    this.grpc_status = Some("2".into());
                }
                this.finish(true);
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for ObservedBody<B> {
    fn drop(&mut self) {
        // A server may drop a body that says it has ended without polling it (an empty body).
        let ended = self.pending.is_some() && self.inner.is_end_stream();
        self.finish(ended);
    }
}

/// Appends the layer's families (nothing until a request was measured).
pub(crate) fn encode(out: &mut String, openmetrics: bool) {
    use std::fmt::Write;
    let t = TABLE.read().unwrap_or_else(PoisonError::into_inner);
    let Some(t) = t.as_ref() else {
        return;
    };
    let mut entries: Vec<(&(Route, Box<str>), &&'static Entry)> = t.entries.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (kind, name, help) in [
        (Kind::Http, HTTP_DURATION_METRIC, HTTP_DURATION_HELP),
        (Kind::Grpc, RPC_DURATION_METRIC, RPC_DURATION_HELP),
    ] {
        let mine: Vec<_> = entries.iter().filter(|(k, _)| k.0.0 == kind).collect();
        if mine.is_empty() {
            continue;
        }
        let rows: Vec<HistogramRow<'static>> = mine
            .into_iter()
            .map(|((route, status), e)| HistogramRow {
                labels: match kind {
                    Kind::Http => format!(
                        "http_request_method=\"{}\",http_route=\"{}\",http_response_status_code=\"{}\"",
                        escaped(&route.2),
                        escaped(&route.1),
                        escaped(status)
                    ),
                    Kind::Grpc => format!(
                        "rpc_system=\"grpc\",rpc_service=\"{}\",rpc_method=\"{}\",rpc_grpc_status_code=\"{}\"",
                        escaped(&route.1),
                        escaped(&route.2),
                        escaped(status)
                    ),
                },
                histogram: &e.duration,
                exemplars: if openmetrics {
                    e.exemplars
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone()
                } else {
                    Vec::new()
                },
            })
            .collect();
        histogram_family(out, openmetrics, (name, help), &rows);
    }
    histogram_family(
        out,
        openmetrics,
        (HTTP_RESPONSE_HEAD_METRIC, HTTP_RESPONSE_HEAD_HELP),
        &[HistogramRow {
            labels: String::new(),
            histogram: &HEAD,
            exemplars: Vec::new(),
        }],
    );
    let mut active: Vec<(&Route, &&'static AtomicI64)> = t.active.iter().collect();
    active.sort_by(|a, b| a.0.cmp(b.0));
    let _ = writeln!(out, "# HELP {HTTP_ACTIVE_METRIC} {HTTP_ACTIVE_HELP}.");
    let _ = writeln!(out, "# TYPE {HTTP_ACTIVE_METRIC} gauge");
    for ((kind, route, method), n) in active {
        let l = match kind {
            Kind::Http => format!(
                "http_request_method=\"{}\",http_route=\"{}\"",
                escaped(method),
                escaped(route)
            ),
            Kind::Grpc => format!(
                "rpc_system=\"grpc\",rpc_service=\"{}\",rpc_method=\"{}\"",
                escaped(route),
                escaped(method)
            ),
        };
        let _ = writeln!(
            out,
            "{HTTP_ACTIVE_METRIC}{{{l}}} {}",
            n.load(Relaxed).max(0)
        );
    }
    let family = if openmetrics {
        ROUTE_OVERFLOW_METRIC.trim_end_matches("_total")
    } else {
        ROUTE_OVERFLOW_METRIC
    };
    let _ = writeln!(out, "# HELP {family} {ROUTE_OVERFLOW_HELP}.");
    let _ = writeln!(out, "# TYPE {family} counter");
    let _ = writeln!(out, "{ROUTE_OVERFLOW_METRIC} {}", OVERFLOWED.load(Relaxed));
}

fn escaped(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    crate::encode::escape(&mut out, v);
    out
}

//! The agent's HTTP endpoint: `GET /metrics`, `GET /healthz`, and the store's JSON API (`api.rs`). Connections, limits and timeouts are
//! handled in `server.rs`; every error reply is JSON `{"error": "..."}`.

/// Default listen address of the HTTP endpoint.
pub const DEFAULT_LISTEN: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9464),
);

pub(crate) mod access;
pub(crate) mod api;
pub(crate) mod reply;
pub(crate) mod server;

use crate::http::reply::{json_error, json_string};
use crate::threads::Heartbeat;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Where CPU profiles are served (a connection serving one does not take a connection slot).
pub(crate) const PROFILE_PATH: &str = "/debug/pprof/profile";

/// OpenMetrics content type served when the scraper asks for it.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(crate) struct HttpState {
    pub(crate) registry: Arc<Registry>,
    pub(crate) started: Instant,
    /// Milliseconds after `started` at which the last tick finished; `u64::MAX` before the first.
    pub(crate) last_tick_ms: AtomicU64,
    pub(crate) ticks: AtomicU64,
    pub(crate) tick: Duration,
    /// The store API's handles.
    pub(crate) api: Arc<crate::http::api::Api>,
    /// The agent's other long-lived threads (store, model watcher): `/healthz` says when one stops
    /// beating.
    pub(crate) threads: Vec<Arc<Heartbeat>>,
    /// `/metrics` as served to every scraper of the current tick.
    pub(crate) exposition: Exposition,
}

/// The longest a served exposition is reused, whatever the tick: series set between ticks (the HTTP
/// endpoint's own, the store's, the `#[observe]` series) are at most this old in a scrape.
const MAX_EXPOSITION_AGE: Duration = Duration::from_secs(1);

/// `/metrics`, encoded once per tick (per format) and shared by every scraper of that tick.
///
/// The first scrape after a tick encodes the registry; every other scrape of that tick gets the same
/// reference-counted buffer, which hyper writes to the socket without copying it. A crowd of scrapers —
/// or clients that pipeline requests and never read the replies — therefore costs neither encoding
/// time on the agent's thread nor a copy of the exposition per connection. A tick longer than
/// [`MAX_EXPOSITION_AGE`] gets a fresh encoding at that age.
#[derive(Default)]
pub(crate) struct Exposition {
    /// Bumped at the end of every tick, once every series the tick sets is set.
    generation: AtomicU64,
    /// Prometheus text and OpenMetrics.
    slots: Mutex<[Option<Encoded>; 2]>,
}

struct Encoded {
    generation: u64,
    at: Instant,
    body: axum::body::Bytes,
}

impl Exposition {
    /// The tick's series are all set: the next scrape encodes them afresh.
    pub(crate) fn published(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The exposition of the current tick in the format asked for, encoded now if no scrape of this
    /// tick has asked for it yet.
    fn get(
        &self,
        registry: &Registry,
        openmetrics: bool,
    ) -> Result<axum::body::Bytes, std::fmt::Error> {
        let generation = self.generation.load(Ordering::Acquire);
        // Handlers run on the agent's one thread, so the lock is never contended; encoding under it
        // keeps two scrapes of one tick from both encoding.
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = &mut slots[usize::from(openmetrics)];
        if let Some(e) = slot.as_ref()
            && e.generation == generation
            && e.at.elapsed() < MAX_EXPOSITION_AGE
        {
            return Ok(e.body.clone());
        }
        let body = axum::body::Bytes::from(encode(registry, openmetrics)?);
        *slot = Some(Encoded {
            generation,
            at: Instant::now(),
            body: body.clone(),
        });
        Ok(body)
    }
}

/// The store API's handlers take only its handles.
impl axum::extract::FromRef<Arc<HttpState>> for crate::http::api::ApiState {
    fn from_ref(state: &Arc<HttpState>) -> Self {
        Self(state.api.clone())
    }
}

impl HttpState {
    pub(crate) fn mark_tick(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_tick_ms.store(ms, Ordering::Relaxed);
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .merge(crate::http::api::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    limits: crate::http::server::HttpLimits,
    metrics: crate::http::server::ServerMetrics,
    shutdown: watch::Receiver<bool>,
) {
    crate::http::server::serve(listener, router(state), limits, metrics, shutdown).await;
}

fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// Encodes the registry as Prometheus text 0.0.4, or OpenMetrics 1.0 when `openmetrics`.
pub(crate) fn encode(registry: &Registry, openmetrics: bool) -> Result<String, std::fmt::Error> {
    let mut body = String::with_capacity(16 * 1024);
    // The agent's own series, then the #[observe] inference series (which carry exemplars in OpenMetrics).
    if openmetrics {
        prometheus_client::encoding::text::encode_registry(&mut body, registry)?;
        vigil_observe::encode_openmetrics(&mut body);
        prometheus_client::encoding::text::encode_eof(&mut body)?;
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut body, registry)?;
        vigil_observe::encode_prometheus_text(&mut body);
    }
    Ok(body)
}

async fn metrics(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let openmetrics = wants_openmetrics(&headers);
    match state.exposition.get(&state.registry, openmetrics) {
        Ok(body) => {
            let content_type = if openmetrics {
                OPENMETRICS_CONTENT_TYPE
            } else {
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE
            };
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Err(_) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed; this is a bug in vigil, please report it",
        ),
    }
}

/// 200 while ticks keep coming; 503 when the last tick is older than three ticks plus a second (the
/// agent thread is wedged), when no tick has completed yet, or when another agent thread (store, model
/// watcher) has not beaten for its limit (`"status":"stuck"`, naming it).
async fn healthz(State(state): State<Arc<HttpState>>) -> Response {
    let now_ms = u64::try_from(state.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (status, body) = health(
        state.last_tick_ms.load(Ordering::Relaxed),
        state.ticks.load(Ordering::Relaxed),
        now_ms,
        state.tick,
        &state.threads,
    );
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The `/healthz` reply: the agent thread's last tick (`last_ms` after start, `u64::MAX` before the
/// first) at `now_ms`, and the other threads' heartbeats.
fn health(
    last_ms: u64,
    ticks: u64,
    now_ms: u64,
    tick: Duration,
    threads: &[Arc<Heartbeat>],
) -> (StatusCode, String) {
    let limit_ms =
        u64::try_from((tick * 3 + Duration::from_secs(1)).as_millis()).unwrap_or(u64::MAX);
    let (status, healthy, age) = if last_ms == u64::MAX {
        (StatusCode::SERVICE_UNAVAILABLE, "starting", f64::NAN)
    } else {
        let age_ms = now_ms.saturating_sub(last_ms);
        let age = age_ms as f64 / 1000.0;
        if age_ms > limit_ms {
            (StatusCode::SERVICE_UNAVAILABLE, "stalled", age)
        } else {
            (StatusCode::OK, "ok", age)
        }
    };
    let age = if age.is_finite() {
        format!("{age:.3}")
    } else {
        "null".to_owned()
    };
    let stuck: Vec<String> = threads
        .iter()
        .filter_map(|h| {
            h.stuck_for().map(|d| {
                format!(
                    "{{\"thread\":{},\"seconds_since_beat\":{:.3}}}",
                    json_string(h.name),
                    d.as_secs_f64()
                )
            })
        })
        .collect();
    let (status, healthy) = if stuck.is_empty() || status != StatusCode::OK {
        (status, healthy)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "stuck")
    };
    let body = format!(
        "{{\"status\":\"{healthy}\",\"ticks\":{ticks},\"last_tick_age_seconds\":{age},\"stuck\":[{}]}}",
        stuck.join(",")
    );
    (status, body)
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let path = uri.path();
    let allowed = allowed_methods(path);
    let mut r = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method {method} is not allowed on {path}; it takes {allowed}"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&allowed.replace(" or ", ", ")) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

/// The methods an endpoint takes, in words (`GET`, `POST`, `GET or POST`).
fn allowed_methods(path: &str) -> &'static str {
    let post_only = path == "/api/v1/alertmanager"
        || path.starts_with("/api/v1/model/")
        || (path.starts_with("/api/v1/events/") && path.ends_with("/verdict"));
    if path == "/api/v1/labels" {
        "GET or POST"
    } else if post_only {
        "POST"
    } else {
        "GET"
    }
}

/// Every endpoint the agent serves, as the 404 lists them (`{id}`: an event id). A test requests each
/// one and asserts it is routed, so the list cannot drift from the router.
const ENDPOINTS: &[&str] = &[
    "GET /metrics",
    "GET /healthz",
    "GET /api/v1/status",
    "GET /api/v1/labels",
    "POST /api/v1/labels",
    "GET /api/v1/events",
    "POST /api/v1/events/{id}/verdict",
    "GET /api/v1/events/{id}/profile",
    "POST /api/v1/alertmanager",
    "POST /api/v1/model/reload",
    "POST /api/v1/model/rollback",
    "POST /api/v1/model/retrain",
    "GET /debug/pprof/profile",
];

async fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        &format!(
            "no such endpoint; the agent serves {}",
            ENDPOINTS.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_stops_beating_makes_healthz_say_stuck_naming_it() {
        let store = Heartbeat::new("vigil-store", Duration::from_millis(20));
        let watch = Heartbeat::new("vigil-model-watch", Duration::from_secs(60));
        let threads = [store.clone(), watch.clone()];
        let tick = Duration::from_secs(1);
        store.beat();
        let (status, body) = health(1_000, 5, 1_500, tick, &threads);
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body.contains("\"status\":\"ok\"") && body.contains("\"stuck\":[]"),
            "{body}"
        );
        // The store thread blocks (no beat for longer than its limit); the watcher keeps beating.
        std::thread::sleep(Duration::from_millis(60));
        watch.beat();
        let (status, body) = health(1_000, 5, 1_500, tick, &threads);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            body.contains("\"status\":\"stuck\"")
                && body.contains("\"thread\":\"vigil-store\"")
                && !body.contains("vigil-model-watch"),
            "{body}"
        );
        // It beats again: healthy.
        store.beat();
        let (status, _) = health(1_000, 5, 1_500, tick, &threads);
        assert_eq!(status, StatusCode::OK);
        // A stalled agent thread stays "stalled" whatever the others do.
        let (status, body) = health(1_000, 5, 9_000, tick, &threads);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"status\":\"stalled\""), "{body}");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn openmetrics_is_chosen_only_when_asked_for() {
        let mut h = HeaderMap::new();
        assert!(!wants_openmetrics(&h));
        h.insert(
            header::ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
                .parse()
                .unwrap(),
        );
        assert!(wants_openmetrics(&h));
    }
}

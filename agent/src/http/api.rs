//! The agent's JSON API over the local store: labels, verdicts on events, the Alertmanager webhook,
//! events and status. Every error is `{"error": "..."}` saying what is wrong; bodies over
//! [`MAX_BODY`] are refused; write endpoints go through [`crate::http::access::WriteAccess`]; nothing is
//! stored from a request that fails.

use std::sync::Arc;
use vigil_models::labels::LabelSource;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::watch;
use vigil_features::time::{format_rfc3339, parse_timestamp};
use vigil_models::{AnomalyKind, Event, ModelFile, Score};
use vigil_store::{LabelQuery, NewLabel, StoreError, Verdict, Webhook};

use crate::http::reply::json_error;
use crate::store::{Command, StoreSink, Unavailable};

/// Largest request body accepted (1 MiB).
pub(crate) const MAX_BODY: usize = 1 << 20;
/// Most labels or events one GET returns.
pub(crate) const MAX_LIST: usize = 10_000;

/// What the API handlers read.
pub(crate) struct Api {
    pub(crate) store: Option<StoreSink>,
    pub(crate) access: crate::http::access::WriteAccess,
    pub(crate) score: watch::Receiver<Option<Score>>,
    pub(crate) event: watch::Receiver<Option<Event>>,
    pub(crate) model: watch::Receiver<Option<Arc<ModelFile>>>,
    /// `vigil_feature_drift_max_psi`.
    pub(crate) drift_max_psi: crate::metrics::FGauge,
    /// Model controls to the agent thread.
    pub(crate) control: std::sync::mpsc::SyncSender<crate::store::retrain::Control>,
    /// The model file a reload reads (`VIGIL_MODEL`).
    pub(crate) model_path: Option<std::path::PathBuf>,
    /// The last retrain's outcome.
    pub(crate) retrain: watch::Receiver<Option<crate::store::retrain::LastRetrain>>,
    /// CPU profiles.
    pub(crate) profiler: crate::profile::Profiler,
}

/// What the API's handlers extract from the router's state: only the API's handles.
#[derive(Clone)]
pub(crate) struct ApiState(pub(crate) Arc<Api>);

pub(crate) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ApiState: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/labels", get(list_labels).post(add_label))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/events/{id}/verdict", post(verdict))
        .route("/api/v1/alertmanager", post(alertmanager))
        .route("/api/v1/model/reload", post(reload))
        .route("/api/v1/model/rollback", post(rollback))
        .route("/api/v1/model/retrain", post(retrain_now))
        .route("/api/v1/events/{id}/profile", get(event_profile))
        .route(crate::http::PROFILE_PATH, get(cpu_profile))
}

/// `seconds` from the query of `GET /debug/pprof/profile`.
fn profile_seconds(query: Option<&str>) -> Result<u64, Fail> {
    use crate::profile::{DEFAULT_PROFILE_SECONDS, MAX_PROFILE_SECONDS};
    let mut seconds = DEFAULT_PROFILE_SECONDS;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "seconds" => {
                seconds = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=MAX_PROFILE_SECONDS).contains(n))
                    .ok_or_else(|| {
                        fail(
                            StatusCode::BAD_REQUEST,
                            &format!(
                                "`seconds={v}` is not a whole number of seconds from 1 to {MAX_PROFILE_SECONDS}"
                            ),
                        )
                    })?;
            }
            other => {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown query parameter `{other}` (seconds)"),
                ));
            }
        }
    }
    Ok(seconds)
}

/// A gzip'd pprof protobuf, served like Go's net/http/pprof; `warning` (stacks cut short) also goes
/// in the `X-Vigil-Profile-Warning` header.
fn pprof_reply(pprof_gz: Vec<u8>, warning: Option<&str>) -> Response {
    let mut r = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"profile\"",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        pprof_gz,
    )
        .into_response();
    if let Some(v) = warning.and_then(|w| header::HeaderValue::from_str(w).ok()) {
        r.headers_mut().insert(PROFILE_WARNING, v);
    }
    r
}

/// The header a profile's warning travels in.
pub(crate) const PROFILE_WARNING: &str = "x-vigil-profile-warning";

fn no_profiler() -> Response {
    json_error(
        StatusCode::NOT_IMPLEMENTED,
        "this agent was built without CPU profiles: the `profiling` cargo feature (on by default) works on Linux only",
    )
}

/// `GET /debug/pprof/profile?seconds=N` (default 30, at most 60): samples every thread of the process
/// at 99 Hz for N seconds and answers a gzip'd pprof protobuf (`go tool pprof`, Pyroscope, Parca).
/// One profile at a time per process: while one runs, 409 with `Retry-After`. Same access rule as
/// the write endpoints (a profile costs CPU and shows the code).
async fn cpu_profile(
    State(ApiState(state)): State<ApiState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    use crate::profile::{Refused, Trigger};
    if let Err(r) = state.access.authorize(&headers) {
        return r.into_response();
    }
    if !crate::profile::profiling_available() {
        return no_profiler();
    }
    let seconds = match profile_seconds(query.as_deref()) {
        Ok(s) => s,
        Err(f) => return f.into_response(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let started = state.profiler.start(
        std::time::Duration::from_secs(seconds),
        Trigger::Request,
        move |r| {
            let _ = tx.send(r);
        },
    );
    match started {
        Ok(()) => {}
        Err(Refused::Busy(left)) => {
            let retry = left.as_secs() + 1;
            let mut r = json_error(
                StatusCode::CONFLICT,
                &format!(
                    "a CPU profile is already being taken (SIGPROF is process-wide: one profile at a time); it ends in about {retry} s"
                ),
            );
            if let Ok(v) = retry.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        Err(Refused::Unavailable) => return no_profiler(),
        Err(Refused::ShuttingDown) => {
            return json_error(StatusCode::SERVICE_UNAVAILABLE, crate::profile::CUT_SHORT);
        }
        Err(Refused::HostSigprof(why)) => return json_error(StatusCode::CONFLICT, &why),
        Err(Refused::Spawn(e)) => {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot start the profiling thread: {e}"),
            );
        }
    }
    // The agent's shutdown answers at once (the endpoint drains for a second only); the profiling
    // thread stops on its own.
    let outcome = tokio::select! {
        r = rx => r,
        () = state.profiler.shutting_down() => {
            return json_error(StatusCode::SERVICE_UNAVAILABLE, crate::profile::CUT_SHORT);
        }
    };
    match outcome {
        Ok(Ok(c)) => pprof_reply(c.pprof_gz, c.warning.as_deref()),
        Ok(Err(e)) if e == crate::profile::CUT_SHORT => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, &e)
        }
        Ok(Err(e)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(_) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the profiling thread ended without a profile",
        ),
    }
}

/// `GET /api/v1/events/{id}/profile`: the CPU profile taken when event `id` opened (gzip'd pprof).
async fn event_profile(
    State(ApiState(state)): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = state.access.authorize(&headers) {
        return r.into_response();
    }
    if !crate::profile::profiling_available() {
        return no_profiler();
    }
    let Some(store) = state.store.as_ref() else {
        return no_store();
    };
    let Ok(id) = id.parse::<u64>() else {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!("event id `{id}` is not a number"),
        );
    };
    match store.ask(|reply| Command::Profile(id, reply)).await {
        // A stored profile carries its warning in its comments (`pprof -comments`).
        Ok(Ok(Some(p))) => pprof_reply(p.pprof, None),
        Ok(Ok(None)) => json_error(
            StatusCode::NOT_FOUND,
            &format!(
                "no CPU profile is kept for event {id}: none was taken (VIGIL_PROFILE_ON_EVENT=off, \
                 an automatic profile less than VIGIL_PROFILE_COOLDOWN before, or another profile \
                 running), it is still being taken (the event's first seconds), or retention removed it"
            ),
        ),
        Ok(Err(e)) => store_error(&e),
        Err(u) => unavailable(u),
    }
}

/// Sends a model control to the agent thread and waits for the result (applied between two ticks).
async fn control(
    state: &Api,
    make: impl FnOnce(
        tokio::sync::oneshot::Sender<Result<String, String>>,
    ) -> crate::store::retrain::Control,
) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if state.control.try_send(make(tx)).is_err() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent has model changes waiting already; retry after the next tick",
        );
    }
    match rx.await {
        Ok(Ok(message)) => json(StatusCode::OK, &serde_json::json!({ "message": message })),
        Ok(Err(e)) => json_error(StatusCode::CONFLICT, &e),
        Err(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down",
        ),
    }
}

/// `POST /api/v1/model/reload`: reads `VIGIL_MODEL` again and installs it if it is valid for this
/// agent's schema; the model in use stays otherwise.
async fn reload(State(ApiState(state)): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = state.access.authorize(&headers) {
        return r.into_response();
    }
    let Some(path) = state.model_path.clone() else {
        return json_error(
            StatusCode::CONFLICT,
            "no model file to reload: the agent was started without VIGIL_MODEL",
        );
    };
    // The file is read off the agent's runtime, on the store thread when there is one.
    let model = match state.store.as_ref() {
        Some(store) => match store.ask(|reply| Command::LoadModel(path, reply)).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return json_error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
            Err(u) => return unavailable(u),
        },
        None => {
            let p = path.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                // The agent runtime's blocking pool serves only the agent.
                crate::alloc::mark_agent_thread();
                vigil_models::ModelFile::load_regular(&p)
            })
            .await;
            match loaded {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    return json_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &format!("{}: {e}", path.display()),
                    );
                }
                Err(e) => {
                    return json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("reading the model failed: {e}"),
                    );
                }
            }
        }
    };
    let promoted = crate::store::retrain::Promoted {
        model,
        labelled: Vec::new(),
        own: false,
    };
    control(&state, |tx| {
        crate::store::retrain::Control::Install(Box::new(promoted), Some(tx))
    })
    .await
}

/// `POST /api/v1/model/retrain`: retrain on the stored windows and labels now (the outcome, promoted
/// or rejected by the gate, shows in `GET /api/v1/status` and `vigil_retrain_total`).
async fn retrain_now(State(ApiState(state)): State<ApiState>, headers: HeaderMap) -> Response {
    let store = match writer(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    match store.ask(Command::RetrainNow).await {
        Ok(Ok(message)) => json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "message": message }),
        ),
        Ok(Err(e)) => store_error(&e),
        Err(u) => unavailable(u),
    }
}

/// `POST /api/v1/model/rollback`: back to the model in use before the last install.
async fn rollback(State(ApiState(state)): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = state.access.authorize(&headers) {
        return r.into_response();
    }
    control(&state, crate::store::retrain::Control::Rollback).await
}

/// A failed request's reply (boxed: a `Response` is large to move around in a `Result`).
pub(crate) struct Fail(Box<Response>);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        *self.0
    }
}

fn fail(status: StatusCode, message: &str) -> Fail {
    Fail(Box::new(json_error(status, message)))
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response {
    match serde_json::to_string(v) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the reply: {e}"),
        ),
    }
}

fn no_store() -> Response {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store is off (VIGIL_DATA_DIR=off): labels and events are not kept",
    )
}

fn unavailable(u: Unavailable) -> Response {
    match u {
        Unavailable::Busy => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is behind (slow disk); nothing was stored: retry shortly",
        ),
        Unavailable::Stopped => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store has stopped (the agent is shutting down)",
        ),
    }
}

fn store_error(e: &StoreError) -> Response {
    match e {
        StoreError::Invalid(m) => json_error(StatusCode::BAD_REQUEST, m),
        other => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the store failed; nothing was stored: {other}"),
        ),
    }
}

/// Reads the body up to [`MAX_BODY`]; a larger one is a 413.
async fn read_body(body: Body) -> Result<axum::body::Bytes, Fail> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {MAX_BODY} bytes"),
        )
    })
}

/// Checks write access and that the store is on; returns the sink.
fn writer<'a>(state: &'a Api, headers: &HeaderMap) -> Result<&'a StoreSink, Fail> {
    state
        .access
        .authorize(headers)
        .map_err(|r| Fail(Box::new(r.into_response())))?;
    state
        .store
        .as_ref()
        .ok_or_else(|| Fail(Box::new(no_store())))
}

fn json_content(headers: &HeaderMap) -> Result<(), Fail> {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(ct) if ct.trim_start().starts_with("application/json") => Ok(()),
        Some(ct) => Err(fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Content-Type `{ct}` is not application/json"),
        )),
        None => Err(fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as JSON with Content-Type: application/json",
        )),
    }
}

/// `from`/`to` (RFC 3339 or Unix seconds) and `limit` from a query string.
fn range(query: Option<&str>) -> Result<(f64, f64, usize), Fail> {
    let (mut from, mut to, mut limit) = (f64::MIN, f64::MAX, 1000usize);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        let time = |name: &str| {
            parse_timestamp(&v).ok_or_else(|| {
                fail(
                    StatusCode::BAD_REQUEST,
                    &format!("`{name}={v}` is not a time (RFC 3339 or Unix seconds)"),
                )
            })
        };
        match k {
            "from" => from = time("from")?,
            "to" => to = time("to")?,
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIST).contains(n))
                    .ok_or_else(|| {
                        fail(
                            StatusCode::BAD_REQUEST,
                            &format!("`limit={v}` is not a number from 1 to {MAX_LIST}"),
                        )
                    })?;
            }
            other => {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown query parameter `{other}` (from, to, limit)"),
                ));
            }
        }
    }
    if from > to {
        return Err(fail(StatusCode::BAD_REQUEST, "`from` is after `to`"));
    }
    Ok((from, to, limit))
}

/// `%XX` and `+` decoding for query values (timestamps carry `:` and `+`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelBody {
    start: String,
    end: String,
    label: String,
    anomaly_type: Option<String>,
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerdictBody {
    label: String,
    note: Option<String>,
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Fail> {
    serde_json::from_slice(bytes).map_err(|e| {
        fail(
            StatusCode::BAD_REQUEST,
            &format!("the body is not the expected JSON: {e}"),
        )
    })
}

/// A JSON body of type `T`: the content type checked, at most [`MAX_BODY`] bytes, unknown fields
/// refused.
async fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, Fail> {
    json_content(headers)?;
    parse_json(&read_body(body).await?)
}

fn verdict_of(s: &str) -> Result<Verdict, Fail> {
    Verdict::parse(s).ok_or_else(|| {
        fail(
            StatusCode::BAD_REQUEST,
            &format!("label `{s}` is not `anomaly` or `normal`"),
        )
    })
}

async fn add_label(
    State(ApiState(state)): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let store = match writer(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let b: LabelBody = match json_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let time = |name: &str, v: &str| {
        parse_timestamp(v).ok_or_else(|| {
            fail(
                StatusCode::BAD_REQUEST,
                &format!("`{name}` `{v}` is not an RFC 3339 time"),
            )
        })
    };
    let (start, end) = match (time("start", &b.start), time("end", &b.end)) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let verdict = match verdict_of(&b.label) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let anomaly_type = match b.anomaly_type.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => match AnomalyKind::parse(t) {
            Some(k) => Some(k),
            None => {
                let known: Vec<&str> = AnomalyKind::ALL.iter().map(|k| k.as_str()).collect();
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("anomaly_type `{t}` is not one of {}", known.join(", ")),
                );
            }
        },
    };
    let label = NewLabel {
        start,
        end: Some(end),
        verdict,
        anomaly_type,
        source: LabelSource::Human,
        confidence: store.confidence.human,
        note: b.note,
        event_id: None,
    };
    match store.ask(|reply| Command::AddLabel(label, reply)).await {
        Ok(Ok(l)) => {
            store.count_labels(&LabelSource::Human, 1);
            json(StatusCode::CREATED, &l)
        }
        Ok(Err(e)) => store_error(&e),
        Err(u) => unavailable(u),
    }
}

async fn verdict(
    State(ApiState(state)): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let store = match writer(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Ok(id) = id.parse::<u64>() else {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!("event id `{id}` is not a number"),
        );
    };
    let b: VerdictBody = match json_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let verdict = match verdict_of(&b.label) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let note = b.note;
    match store
        .ask(|reply| Command::Verdict {
            id,
            verdict,
            note,
            reply,
        })
        .await
    {
        Ok(Ok(Some(l))) => {
            store.count_labels(&LabelSource::Human, 1);
            json(StatusCode::CREATED, &l)
        }
        Ok(Ok(None)) => json_error(
            StatusCode::NOT_FOUND,
            &format!("no event {id} in the store (GET /api/v1/events lists them)"),
        ),
        Ok(Err(e)) => store_error(&e),
        Err(u) => unavailable(u),
    }
}

async fn alertmanager(
    State(ApiState(state)): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let store = match writer(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let bytes = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let hook = match Webhook::parse(&bytes) {
        Ok(h) => h,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match store.ask(|reply| Command::Webhook(hook, reply)).await {
        Ok(Ok(out)) => {
            store.count_labels(&LabelSource::Alertmanager, out.opened + out.closed);
            json(StatusCode::OK, &out)
        }
        Ok(Err(e)) => store_error(&e),
        Err(u) => unavailable(u),
    }
}

/// The store and the query's range, for the list endpoints.
fn listing<'a>(
    state: &'a Api,
    q: Option<&str>,
) -> Result<(&'a StoreSink, (f64, f64, usize)), Fail> {
    let store = state
        .store
        .as_ref()
        .ok_or_else(|| Fail(Box::new(no_store())))?;
    Ok((store, range(q)?))
}

async fn list_labels(
    State(ApiState(state)): State<ApiState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    // Stored data (label notes, events, the model) is read under the same rule as writes.
    if let Err(r) = state.access.authorize(&headers) {
        return r.into_response();
    }
    let (store, (from, to, limit)) = match listing(&state, q.as_deref()) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let q = LabelQuery { from, to, limit };
    match store.ask(|reply| Command::Labels(q, reply)).await {
        Ok(Ok(labels)) => json(StatusCode::OK, &serde_json::json!({ "labels": labels })),
        Ok(Err(e)) => store_error(&e),
        Err(u) => unavailable(u),
    }
}

async fn list_events(
    State(ApiState(state)): State<ApiState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if let Err(r) = state.access.authorize(&headers) {
        return r.into_response();
    }
    let (store, (from, to, limit)) = match listing(&state, q.as_deref()) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    match store
        .ask(|reply| Command::Events {
            from,
            to,
            limit,
            reply,
        })
        .await
    {
        Ok(Ok(events)) => json(StatusCode::OK, &serde_json::json!({ "events": events })),
        Ok(Err(e)) => store_error(&e),
        Err(u) => unavailable(u),
    }
}

async fn status(State(ApiState(state)): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = state.access.authorize(&headers) {
        return r.into_response();
    }
    let api = &*state;
    let model = api.model.borrow().clone();
    let score = api.score.borrow().clone();
    let event = api.event.borrow().clone();
    let model_json = model.as_ref().map(|m| {
        serde_json::json!({
            "kind": m.kind,
            "format_version": m.format_version,
            "schema_hash": m.schema_hash,
            "created": format_rfc3339(m.created_unix_seconds),
            "raw_threshold": m.detector.threshold,
            "training_rows": m.summary.rows,
            "notes": m.summary.notes,
        })
    });
    let store = match api.store.as_ref() {
        Some(s) => match s.ask(Command::Summary).await {
            Ok(Ok(summary)) => serde_json::to_value(&summary).unwrap_or_default(),
            Ok(Err(e)) => serde_json::json!({ "error": e.to_string() }),
            Err(_) => serde_json::json!({ "error": "the store is busy or stopped" }),
        },
        None => serde_json::Value::Null,
    };
    let drift = api.drift_max_psi.get();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "model": model_json,
            "threshold": 0.5,
            "last_score": score.map(|s| serde_json::json!({
                "score": s.value, "raw": s.raw, "settled": s.settled,
            })),
            "open_event": event,
            "last_retrain": api.retrain.borrow().clone(),
            "drift_max_psi": if drift.is_finite() { serde_json::json!(drift) } else { serde_json::Value::Null },
            "store": store,
        }),
    )
}

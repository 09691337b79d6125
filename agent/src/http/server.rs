//! The connection side of the agent's HTTP endpoint: it lives inside the host process, so it must never
//! take the host's file descriptors or memory, whatever clients do.
//!
//! - At most `max_connections` are open at once, not counting one that serves a CPU profile (profiles
//!   run one at a time and last seconds: with `max_connections = 1` a profile would otherwise lock out
//!   every scrape). When a new connection arrives at the cap, the connection
//!   that has waited longest for a request (idle keep-alive, or still trickling its request head) is closed
//!   to make room; when every open connection is in the middle of a request (or has not yet had its first
//!   turn to read), the new one is closed instead. A flood of idle or slow clients therefore cannot lock a scraper out, and the descriptors the
//!   agent's endpoint holds stay at `max_connections + 2` (the listener, and a profile's connection).
//! - A connection must deliver a complete request — head and body — within `idle_timeout` of opening or
//!   of its previous response, otherwise it is closed: this is the request deadline and the keep-alive
//!   idle timeout in one. The body is read (at most [`MAX_BODY`]) before the request counts as in
//!   progress, so a client trickling its body is evictable at the cap like an idle one, and never holds
//!   a slot a scraper needs.
//! - Each connection's buffers are capped ([`MAX_CONNECTION_BUFFER`]), so memory is bounded by
//!   `max_connections` times that.
//! - Accept errors (e.g. the process is out of descriptors) are counted and retried after a short pause,
//!   never in a busy loop.
//! - After a flood ([`RELEASE_AFTER`] connections since the last time), once the endpoint is quiet
//!   again, the free heap pages the connections' buffers left are handed back to the system (glibc's
//!   `malloc_trim`), so a flood does not leave the host tens of MB larger.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, watch};

use crate::http::api::MAX_BODY;
use crate::metrics as m;

/// Default cap on concurrent connections.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 256;
/// Default time a connection may wait for its next complete request head.
pub const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Read and write buffer cap per connection (request heads larger than this are refused by hyper).
pub const MAX_CONNECTION_BUFFER: usize = 64 * 1024;
/// Pause after a failed `accept` (e.g. EMFILE) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long shutdown lets in-flight requests finish.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// Connection limits of the HTTP endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HttpLimits {
    pub(crate) max_connections: usize,
    pub(crate) idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_HTTP_IDLE_TIMEOUT,
        }
    }
}

/// Values of the `reason` label of `vigil_http_connections_shed_total`.
const SHED_REASONS: [&str; 4] = ["idle_timeout", "evicted", "refused", "accept_error"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The endpoint's own health series.
#[derive(Clone)]
pub(crate) struct ServerMetrics {
    open: Gauge,
    shed: Family<ReasonLabel, Counter>,
}

impl ServerMetrics {
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let s = Self {
            open: Gauge::default(),
            shed: Family::default(),
        };
        m::HTTP_CONNECTIONS.register(registry, s.open.clone());
        m::HTTP_CONNECTIONS_SHED.register(registry, s.shed.clone());
        // Every reason is a series from the start (at 0), so rates and alerts need no absent() dance.
        for reason in SHED_REASONS {
            s.shed.get_or_create(&ReasonLabel { reason }).inc_by(0);
        }
        s
    }

    fn shed(&self, reason: &'static str) {
        self.shed.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// One open connection, as the accept loop sees it.
struct Conn {
    /// Milliseconds after `epoch` at which it last became idle (opened, or its response was handed on).
    idle_since_ms: AtomicU64,
    /// Requests in progress (0 or 1 with HTTP/1, but counted to be safe).
    busy: AtomicU64,
    /// Its task has run and read what the client sent: only then may it be evicted (a burst of new
    /// connections must not evict each other before any of them had a chance to send a request).
    started: AtomicBool,
    evict: Notify,
    evicted: AtomicBool,
    /// Serving a CPU profile (seconds long). One such connection does not count against the cap, so
    /// a profile leaves a slot for scrapes even at `max_connections = 1`; profiles run one at a
    /// time, so this adds at most one connection.
    profiling: AtomicBool,
}

struct Table {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
}

/// Shared between the accept loop and the connection tasks (all on the agent's one thread).
struct Shared {
    /// Time base of `Conn::idle_since_ms`.
    epoch: Instant,
    table: Mutex<Table>,
    limits: HttpLimits,
    metrics: ServerMetrics,
    /// Connections admitted since memory was last handed back to the system.
    admitted_since_release: AtomicU64,
}

/// After this many connections, once the endpoint is quiet again (at most [`QUIET_CONNECTIONS`] open),
/// the memory their buffers took is handed back to the system
/// ([`crate::threads::release_free_memory`]): a flood of connections otherwise
/// leaves the allocator holding tens of MB of free pages in the host (20,000 idle connections left
/// 25 MB). A scraper every 15 s reaches this count in about four hours.
const RELEASE_AFTER: u64 = 1000;
/// Open connections at or below which the endpoint counts as quiet.
const QUIET_CONNECTIONS: usize = 4;

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A connection's entry; removes it from the table when its task ends, however it ends.
struct Registration {
    shared: Arc<Shared>,
    id: u64,
    conn: Arc<Conn>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let open = {
            let mut t = self.shared.table();
            t.conns.remove(&self.id);
            t.conns.len()
        };
        self.shared
            .metrics
            .open
            .set(i64::try_from(open).unwrap_or(i64::MAX));
        if open <= QUIET_CONNECTIONS
            && self.shared.admitted_since_release.load(Ordering::Relaxed) >= RELEASE_AFTER
        {
            self.shared
                .admitted_since_release
                .store(0, Ordering::Relaxed);
            crate::threads::release_free_memory();
        }
    }
}

/// Serves `router` on `listener` until `shutdown` turns true.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    metrics: ServerMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        table: Mutex::new(Table {
            next_id: 0,
            conns: HashMap::new(),
        }),
        limits,
        metrics,
        admitted_since_release: AtomicU64::new(0),
    });
    let mut accept_errors_logged: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut shutdown) => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                shared.metrics.shed("accept_error");
                if accept_errors_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(
                        "vigil HTTP endpoint cannot accept connections: {e} (retrying; logged once a minute)"
                    );
                    accept_errors_logged = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let mut admitted = admit(&shared);
        if admitted.is_none() {
            // Let the connections admitted in this burst take their first turn (and become evictable
            // once they have read what was sent), then try once more before closing the newcomer.
            tokio::task::yield_now().await;
            admitted = admit(&shared);
        }
        let Some(conn) = admitted else {
            // Every slot is serving a request: close the newcomer rather than exceed the cap.
            shared.metrics.shed("refused");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        drop(crate::threads::spawn_named(
            &tokio::runtime::Handle::current(),
            "vigil-http-connection",
            run_connection(
                stream,
                router.clone(),
                shared.clone(),
                conn,
                shutdown.clone(),
            ),
        ));
    }
}

/// Resolves once shutdown is asked for (without holding the channel's read guard across an await).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Makes room for a new connection (evicting the longest-idle one at the cap) and registers it.
fn admit(shared: &Arc<Shared>) -> Option<Registration> {
    let mut t = shared.table();
    let profiling = t
        .conns
        .values()
        .any(|c| c.profiling.load(Ordering::Relaxed));
    if t.conns.len() - usize::from(profiling) >= shared.limits.max_connections {
        let victim = t
            .conns
            .values()
            .filter(|c| {
                c.started.load(Ordering::Relaxed)
                    && c.busy.load(Ordering::Relaxed) == 0
                    && !c.evicted.load(Ordering::Relaxed)
            })
            .min_by_key(|c| c.idle_since_ms.load(Ordering::Relaxed))
            .cloned();
        match victim {
            Some(c) => {
                c.evicted.store(true, Ordering::Relaxed);
                c.evict.notify_one();
                shared.metrics.shed("evicted");
            }
            None => return None,
        }
    }
    let id = t.next_id;
    t.next_id += 1;
    let conn = Arc::new(Conn {
        idle_since_ms: AtomicU64::new(shared.now_ms()),
        busy: AtomicU64::new(0),
        started: AtomicBool::new(false),
        evict: Notify::new(),
        evicted: AtomicBool::new(false),
        profiling: AtomicBool::new(false),
    });
    t.conns.insert(id, conn.clone());
    shared
        .admitted_since_release
        .fetch_add(1, Ordering::Relaxed);
    // The evicted connection is still counted until its task ends; the gauge shows what is open.
    let open = t.conns.len();
    drop(t);
    shared
        .metrics
        .open
        .set(i64::try_from(open).unwrap_or(i64::MAX));
    Some(Registration {
        shared: shared.clone(),
        id,
        conn,
    })
}

async fn run_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    shared: Arc<Shared>,
    registration: Registration,
    mut shutdown: watch::Receiver<bool>,
) {
    let conn = registration.conn.clone();
    let epoch = shared.epoch;
    let now_ms = move || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
    let inner = TowerToHyperService::new(router);
    let activity = conn.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let inner = inner.clone();
        let activity = activity.clone();
        async move {
            // The body is read before the request counts as busy: a client trickling its body stays
            // under the idle rule (the whole request, head and body, within `idle_timeout`) and
            // evictable, exactly like one trickling its head.
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(axum::body::Body::new(body), MAX_BODY).await {
                Ok(b) => b,
                Err(_) => {
                    return Ok::<_, std::convert::Infallible>(crate::http::reply::json_error(
                        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("the body is larger than {MAX_BODY} bytes, or was cut short"),
                    ));
                }
            };
            activity.busy.fetch_add(1, Ordering::Relaxed);
            let profiling = parts.uri.path() == crate::http::PROFILE_PATH;
            activity.profiling.store(profiling, Ordering::Relaxed);
            let request = hyper::Request::from_parts(parts, axum::body::Body::from(bytes));
            let response = hyper::service::Service::call(&inner, request).await;
            activity.profiling.store(false, Ordering::Relaxed);
            activity.idle_since_ms.store(now_ms(), Ordering::Relaxed);
            activity.busy.fetch_sub(1, Ordering::Relaxed);
            response
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .max_buf_size(MAX_CONNECTION_BUFFER)
        .serve_connection(TokioIo::new(JsonErrors::new(stream)), service);
    tokio::pin!(connection);
    // No await between this and the first poll of `connection` below, so a request the client already
    // sent is being served (busy) before the accept loop can see this connection as evictable.
    conn.started.store(true, Ordering::Relaxed);
    let idle_timeout = shared.limits.idle_timeout;
    let idle_timeout_ms = u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX);
    loop {
        // Next moment the idle rule could close this connection.
        let wait = if conn.busy.load(Ordering::Relaxed) > 0 {
            idle_timeout
        } else {
            let idle_for = now_ms().saturating_sub(conn.idle_since_ms.load(Ordering::Relaxed));
            Duration::from_millis(idle_timeout_ms.saturating_sub(idle_for).max(10))
        };
        tokio::select! {
            _ = &mut connection => break,
            _ = conn.evict.notified() => break,
            _ = stopped(&mut shutdown) => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_DRAIN, &mut connection).await;
                break;
            }
            _ = tokio::time::sleep(wait) => {
                let idle_for = now_ms().saturating_sub(conn.idle_since_ms.load(Ordering::Relaxed));
                if conn.busy.load(Ordering::Relaxed) == 0 && idle_for >= idle_timeout_ms {
                    shared.metrics.shed("idle_timeout");
                    break;
                }
            }
        }
    }
    drop(registration);
}

/// The connection's stream, with hyper's own error replies made JSON like every other error reply.
///
/// When a request cannot be parsed (400), its head is too large (431) or its URI too long (414),
/// hyper answers by itself with an empty body and closes the connection. This wrapper recognises
/// such a reply among the bytes written (a 4xx/5xx head with `content-length: 0`, which no handler of
/// the agent sends) and writes it with a JSON `{"error": ...}` body instead. Only the status line and
/// that one header are read; everything else passes through untouched.
struct JsonErrors<S> {
    inner: S,
    /// A rewritten reply still being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
    /// Nothing has been read yet: the first bytes are checked for an HTTP/2 connection preface.
    first_read: bool,
}

/// The start of the HTTP/2 connection preface (RFC 9113, 3.4): a client that speaks HTTP/2 without
/// asking (prior knowledge, h2c).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// The reply to an HTTP/2 preface: this endpoint speaks HTTP/1.1 only, said as every error is.
fn h2_reply() -> Vec<u8> {
    let body = "{\"error\":\"this endpoint speaks HTTP/1.1 only; scrape it over HTTP/1.1 (Prometheus does)\"}";
    format!(
        "HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<S> JsonErrors<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            pending: None,
            first_read: true,
        }
    }
}

/// The JSON reply for one of hyper's own empty error replies in `head`, if it is one.
fn json_error_reply(head: &[u8]) -> Option<Vec<u8>> {
    const EMPTY: &[u8] = b"\r\ncontent-length: 0\r\n";
    // Cheap checks first: this runs on every write of every connection.
    if !(head.starts_with(b"HTTP/1.1 4") || head.starts_with(b"HTTP/1.1 5"))
        || !head.ends_with(b"\r\n\r\n")
        || head.len() > 4096
    {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let status_line = text.split("\r\n").next()?;
    let code: u16 = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    if !(400..600).contains(&code) {
        return None;
    }
    let at = head
        .windows(EMPTY.len())
        .position(|w| w.eq_ignore_ascii_case(EMPTY))?;
    let message = match code {
        400 => "the request is not valid HTTP/1.1".to_owned(),
        414 => "the request URI is too long".to_owned(),
        431 => "the request head is too large".to_owned(),
        _ => status_line
            .get("HTTP/1.1 ".len()..)
            .unwrap_or("error")
            .to_owned(),
    };
    let body = format!("{{\"error\":\"{}\"}}", message.replace('"', "'"));
    let mut out = Vec::with_capacity(head.len() + body.len() + 48);
    out.extend_from_slice(&head[..at]);
    out.extend_from_slice(
        format!(
            "\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&head[at + EMPTY.len()..]);
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

impl<S: tokio::io::AsyncWrite + Unpin> JsonErrors<S> {
    /// Writes out what is pending; `Ready(Ok)` once nothing is.
    fn drain(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while let Some((bytes, done)) = self.pending.as_mut() {
            if *done >= bytes.len() {
                self.pending = None;
                break;
            }
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => {
                    self.pending = None;
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *done += n,
                Poll::Ready(Err(e)) => {
                    self.pending = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for JsonErrors<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        if !self.first_read {
            return std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let got = &buf.filled()[before..];
            if !got.is_empty() {
                self.first_read = false;
                // An HTTP/2 preface: hyper (HTTP/1.1 only) would close without a word. The reply
                // is queued and the connection read as ended, so hyper shuts it down, which writes
                // the reply first.
                if got.starts_with(H2_PREFACE) {
                    buf.set_filled(before);
                    self.pending = Some((h2_reply(), 0));
                }
            }
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for JsonErrors<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        match self.drain(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if let Some(reply) = json_error_reply(buf) {
            self.pending = Some((reply, 0));
            // The bytes are taken; what is left of the rewritten reply goes out on the next write,
            // flush or shutdown.
            let _ = self.drain(cx);
            return Poll::Ready(Ok(buf.len()));
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    /// Vectored writes make hyper queue a response's body as the buffer it was given (the shared
    /// exposition) instead of copying it into the connection's write buffer, and keep the head of
    /// a pipelined response from being buffered before the previous body has gone out: one
    /// response at most waits in the agent per connection, however many the client pipelines.
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        match self.drain(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        // hyper's own error replies are a head alone, in the first slice.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && let Some(reply) = json_error_reply(first)
        {
            self.pending = Some((reply, 0));
            let _ = self.drain(cx);
            return Poll::Ready(Ok(first.len()));
        }
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        match self.drain(cx) {
            Poll::Ready(Ok(())) => std::pin::Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        match self.drain(cx) {
            Poll::Ready(Ok(())) => std::pin::Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_s_empty_error_replies_are_rewritten() {
        let head = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Sat, 05 Dec 2026 08:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(json_error_reply(head).expect("rewritten")).unwrap();
        let (h, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(h.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(h.contains("content-type: application/json"), "{out}");
        assert!(
            h.contains(&format!("content-length: {}", body.len())),
            "{out}"
        );
        assert!(h.contains("date: Sat"), "{out}");
        assert_eq!(body, r#"{"error":"the request is not valid HTTP/1.1"}"#);
        // Replies with a body, successes, partial heads and bodies pass through.
        for other in [
            &b"HTTP/1.1 404 Not Found\r\ncontent-length: 12\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"{\"error\":\"x\"}",
        ] {
            assert!(json_error_reply(other).is_none(), "{other:?}");
        }
    }
}

//! The trace id of the current request, for exemplars.

use std::cell::Cell;
use std::fmt;

/// A W3C trace context: 16-byte trace id and 8-byte parent span id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// Trace id (never all zero).
    pub trace_id: [u8; 16],
    /// Span id (never all zero).
    pub span_id: [u8; 8],
}

/// Why a `traceparent` header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceparentError(&'static str);

impl fmt::Display for TraceparentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid traceparent: {} (expected 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>)",
            self.0
        )
    }
}

impl std::error::Error for TraceparentError {}

fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl TraceContext {
    /// Parses a W3C `traceparent` header value (`00-<trace id>-<span id>-<flags>`).
    pub fn from_traceparent(value: &str) -> Result<Self, TraceparentError> {
        let mut parts = value.trim().split('-');
        let (Some(version), Some(trace), Some(span), Some(flags)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TraceparentError("it needs four dash-separated fields"));
        };
        if version.len() != 2 || version == "ff" || hex::<1>(version).is_none() {
            return Err(TraceparentError("bad version"));
        }
        if version == "00" && parts.next().is_some() {
            return Err(TraceparentError("version 00 has exactly four fields"));
        }
        let trace_id = hex::<16>(trace).ok_or(TraceparentError("trace id is not 32 hex digits"))?;
        let span_id = hex::<8>(span).ok_or(TraceparentError("span id is not 16 hex digits"))?;
        hex::<1>(flags).ok_or(TraceparentError("flags are not 2 hex digits"))?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return Err(TraceparentError("all-zero ids are invalid"));
        }
        Ok(Self { trace_id, span_id })
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        self.trace_id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        self.span_id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

tokio::task_local! {
    static TASK_TRACE: TraceContext;
}

thread_local! {
    static THREAD_TRACE: Cell<Option<TraceContext>> = const { Cell::new(None) };
}

/// Runs `fut` with `ctx` as the current trace: failing `#[observe]` calls inside it (on any worker, across
/// awaits) attach its trace id as an exemplar.
pub async fn with_trace<F: std::future::Future>(ctx: TraceContext, fut: F) -> F::Output {
    TASK_TRACE.scope(ctx, fut).await
}

/// `fut` with `ctx` as its task's trace, as a nameable future (the HTTP layer's request futures).
#[cfg(feature = "http")]
pub(crate) fn scoped<F: std::future::Future>(
    ctx: TraceContext,
    fut: F,
) -> tokio::task::futures::TaskLocalFuture<TraceContext, F> {
    TASK_TRACE.scope(ctx, fut)
}

/// Restores the previous thread trace when dropped.
#[must_use = "the trace is only current while the guard lives"]
#[derive(Debug)]
pub struct ThreadTraceGuard {
    previous: Option<TraceContext>,
}

impl Drop for ThreadTraceGuard {
    fn drop(&mut self) {
        let _ = THREAD_TRACE.try_with(|t| t.set(self.previous));
    }
}

/// Makes `ctx` the current trace on this thread (for synchronous code) until the guard drops.
pub fn set_thread_trace(ctx: TraceContext) -> ThreadTraceGuard {
    let previous = THREAD_TRACE
        .try_with(|t| t.replace(Some(ctx)))
        .ok()
        .flatten();
    ThreadTraceGuard { previous }
}

/// The current trace: with the `opentelemetry` feature, the current `tracing` span's OpenTelemetry
/// context first; then the task's ([`with_trace`]); then the thread's ([`set_thread_trace`]). Only failing
/// calls ask, so the span lookup (~100 ns) stays off the success path.
pub(crate) fn current() -> Option<TraceContext> {
    from_span()
        .or_else(|| TASK_TRACE.try_with(|t| *t).ok())
        .or_else(|| THREAD_TRACE.try_with(Cell::get).ok().flatten())
}

#[cfg(feature = "opentelemetry")]
fn from_span() -> Option<TraceContext> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| TraceContext {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
    })
}

#[cfg(not(feature = "opentelemetry"))]
fn from_span() -> Option<TraceContext> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_w3c_example() {
        let t = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id_hex(), "00f067aa0ba902b7");
    }

    #[test]
    fn rejects_malformed_headers_with_a_reason() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let e = TraceContext::from_traceparent(bad).unwrap_err();
            assert!(e.to_string().contains("traceparent"), "{bad}: {e}");
        }
    }

    #[test]
    fn thread_trace_nests_and_restores() {
        let a = TraceContext {
            trace_id: [1; 16],
            span_id: [1; 8],
        };
        let b = TraceContext {
            trace_id: [2; 16],
            span_id: [2; 8],
        };
        assert_eq!(current(), None);
        let ga = set_thread_trace(a);
        {
            let _gb = set_thread_trace(b);
            assert_eq!(current(), Some(b));
        }
        assert_eq!(current(), Some(a));
        drop(ga);
        assert_eq!(current(), None);
    }
}

//! Who may use the agent's HTTP endpoint: the one place that decides it.
//!
//! `/metrics` and `/healthz` are open to whoever can connect. The endpoint binds to loopback by
//! default; bound elsewhere, the agent says once at start what it exposes. Everything else — writes
//! (labels, verdicts, the Alertmanager webhook, model control) and reads of stored data and of the
//! process (`GET /api/v1/labels`, `/api/v1/events`, `/api/v1/status`, event and CPU profiles) — goes
//! through [`WriteAccess::authorize`]: on loopback it is open, off loopback it needs
//! `Authorization: Bearer <token>` (the scheme in any case, RFC 7235), and an agent bound off loopback
//! with the store on does not start without a token.

use std::net::SocketAddr;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use crate::http::reply::json_error;

/// Why a write request was refused; [`Refusal::into_response`] is the JSON error the handler returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) message: &'static str,
}

impl Refusal {
    pub(crate) fn into_response(self) -> Response {
        json_error(self.status, self.message)
    }
}

/// Whether requests to write endpoints must carry the token.
#[derive(Clone)]
pub(crate) struct WriteAccess {
    listen: SocketAddr,
    token: Option<String>,
}

impl std::fmt::Debug for WriteAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("WriteAccess")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl WriteAccess {
    pub(crate) fn new(listen: SocketAddr, token: Option<String>) -> Self {
        Self { listen, token }
    }

    /// True when other hosts can reach the endpoint (not bound to a loopback address).
    pub(crate) fn exposed(&self) -> bool {
        !self.listen.ip().is_loopback()
    }

    /// The line logged once at start when the endpoint is reachable from other hosts.
    pub(crate) fn exposure_notice(&self) -> Option<String> {
        self.exposed().then(|| {
            format!(
                "the vigil HTTP endpoint listens on {} and is reachable from other hosts: anyone who can \
                 connect can read /metrics (runtime signals, feature values, scores) and /healthz; \
                 everything else (labels, events, status, profiles, and every write) requires \
                 `Authorization: Bearer <token>`. Set VIGIL_LISTEN=127.0.0.1:{} to keep it local",
                self.listen,
                self.listen.port()
            )
        })
    }

    /// Lets a write request through, or answers with the JSON error that says why not.
    pub(crate) fn authorize(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if !self.exposed() {
            return Ok(());
        }
        let Some(token) = &self.token else {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: "the API is disabled: the agent listens off loopback without a token \
                          (only /metrics and /healthz answer); set VIGIL_TOKEN on the agent, or bind \
                          it to 127.0.0.1",
            });
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        match presented {
            Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "the bearer token is wrong",
            }),
            None => Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "this endpoint needs `Authorization: Bearer <token>` (the agent's VIGIL_TOKEN)",
            }),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(char::is_whitespace)?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether the presented value `a` equals the token `b`, in a time that depends only on `a`'s length
/// (which the client chose): every presented byte is compared against the token's bytes cycled, and a
/// length difference counts as a difference, so neither the token's content nor its length shows in
/// how long a refusal takes.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if b.is_empty() {
        return a.is_empty();
    }
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b[i % b.len()];
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_compare_is_exact_whatever_the_lengths() {
        assert!(constant_time_eq(b"s3cret-token", b"s3cret-token"));
        for other in [
            &b""[..],
            b"s3cret",
            b"s3cret-tokenX",
            b"s3cret-tokeN",
            b"s3cret-tokens3cret-token",
        ] {
            assert!(!constant_time_eq(other, b"s3cret-token"), "{other:?}");
        }
        assert!(!constant_time_eq(b"x", b""));
    }

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn loopback_is_open_and_says_nothing() {
        for addr in ["127.0.0.1:9464", "[::1]:9464"] {
            let a = WriteAccess::new(addr.parse().unwrap(), None);
            assert!(a.exposure_notice().is_none());
            assert!(a.authorize(&HeaderMap::new()).is_ok());
        }
    }

    #[test]
    fn off_loopback_writes_need_the_token_and_the_exposure_is_announced() {
        let addr: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let notice = WriteAccess::new(addr, None).exposure_notice().unwrap();
        assert!(
            notice.contains("0.0.0.0:9464") && notice.contains("/metrics"),
            "{notice}"
        );
        let no_token = WriteAccess::new(addr, None);
        let refusal = no_token.authorize(&bearer("x")).unwrap_err();
        assert_eq!(refusal.status, StatusCode::FORBIDDEN);
        let response = refusal.into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        let with = WriteAccess::new(addr, Some("s3cret".into()));
        assert!(with.authorize(&bearer("s3cret")).is_ok());
        assert_eq!(
            with.authorize(&bearer("s3cre")).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            with.authorize(&HeaderMap::new()).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert!(!format!("{with:?}").contains("s3cret"));
        // The scheme is case-insensitive; the token is not.
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                format!("{scheme} s3cret").parse().unwrap(),
            );
            assert!(with.authorize(&h).is_ok(), "{scheme}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer S3CRET".parse().unwrap());
        assert!(with.authorize(&h).is_err());
        for other in ["Basic s3cret", "Bearer", "Bearers3cret", "s3cret"] {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, other.parse().unwrap());
            assert!(with.authorize(&h).is_err(), "{other}");
        }
    }
}

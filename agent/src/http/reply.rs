//! Error replies: every error the endpoint sends is JSON `{"error": "..."}`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A JSON error reply.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    let body = format!("{{\"error\":{}}}", json_string(message));
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A JSON string literal (quotes and escapes) without pulling in serde for two fields.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

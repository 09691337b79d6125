//! A minimal HTTP/1.1 client for the CLI (Prometheus's API, the agent's endpoints): plain HTTP only.
//!
//! Bounded whatever the server does: one deadline for the whole request (connecting, the status line,
//! the headers and the body, however slowly they trickle in), header lines and the header block of a
//! known size, and a body of at most [`Limits::max_body`] bytes, checked against `Content-Length` and
//! each chunk's size before anything is allocated and counted while reading a body of unknown length.
//! Every error names the server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context;

/// The longest status or header line read (a line that never ends is refused, not buffered).
const MAX_LINE: usize = 16 * 1024;
/// The most header bytes read before the body.
const MAX_HEADERS: usize = 256 * 1024;

/// The most body bytes read from the agent's own endpoints (metrics, profiles, status): far above
/// what an agent sends, far below what would hurt the machine.
const AGENT_MAX_BODY: usize = 64 * 1024 * 1024;

/// What one request may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The whole request, from connecting to the last byte of the body.
    pub deadline: Duration,
    /// The most body bytes kept.
    pub max_body: usize,
}

impl Limits {
    /// A request to one of the agent's own endpoints, within `deadline`.
    pub fn agent(deadline: Duration) -> Self {
        Self {
            deadline,
            max_body: AGENT_MAX_BODY,
        }
    }
}

/// A socket read under one deadline for the whole request: every read waits at most for what is left
/// of it, so a server that trickles a byte at a time cannot hold the request past it.
struct Deadline {
    s: TcpStream,
    until: Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "deadline",
            ));
        }
        self.s.set_read_timeout(Some(left))?;
        match self.s.read(buf) {
            // A read timeout reads as WouldBlock on Unix: it is the deadline.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "deadline",
            )),
            other => other,
        }
    }
}

/// One GET over HTTP/1.1 to `host` (`what` names the server in errors): the status and the body
/// (Content-Length, chunked, or until the server closes), within `limits`.
pub fn get(host: &str, path: &str, what: &str, limits: Limits) -> anyhow::Result<(u16, Vec<u8>)> {
    let started = Instant::now();
    let until = started + limits.deadline;
    let who = format!("{what} at {host}");
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("cannot resolve {host}"))?;
    let s = TcpStream::connect_timeout(&addr, limits.deadline.min(Duration::from_secs(10)))
        .with_context(|| format!("cannot connect to {who}"))?;
    s.set_write_timeout(Some(limits.deadline))?;
    let mut w = &s;
    write!(
        w,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vigil\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("cannot send the request to {who}"))?;
    // `Deadline` reports every read past the deadline as `TimedOut`.
    let fail = |e: std::io::Error, doing: &str| -> anyhow::Error {
        if e.kind() == std::io::ErrorKind::TimedOut {
            anyhow::anyhow!(
                "{who}: timed out after {:.0} s {doing} (the whole request may take {} s)",
                started.elapsed().as_secs_f64(),
                limits.deadline.as_secs()
            )
        } else {
            anyhow::anyhow!("{who}: {doing}: {e}")
        }
    };
    let mut r = BufReader::new(Deadline { s, until });
    // The status line, a header line or a chunk size: at most MAX_LINE bytes each.
    let mut line = Vec::new();
    let mut next_line = |r: &mut BufReader<Deadline>, doing: &str| -> anyhow::Result<String> {
        line.clear();
        let n = (&mut *r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| fail(e, doing))?;
        anyhow::ensure!(
            n <= MAX_LINE,
            "{who}: a header line longer than {} KiB; not an HTTP server this client talks to",
            MAX_LINE / 1024
        );
        Ok(String::from_utf8_lossy(&line).into_owned())
    };
    let status = next_line(&mut r, "waiting for the status line")?;
    // The head as a whole is bounded too (chunk-size lines of the body are not head).
    let mut header_bytes = status.len();
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{who}: not an HTTP response: {:?}", status.trim_end()))?;
    let (mut chunked, mut length) = (false, None::<u64>);
    loop {
        let line = next_line(&mut r, "reading the headers")?;
        header_bytes += line.len();
        anyhow::ensure!(
            header_bytes <= MAX_HEADERS,
            "{who}: more than {} KiB of headers",
            MAX_HEADERS / 1024
        );
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = Some(v.parse().with_context(|| {
                    format!("{who}: Content-Length `{v}` is not a number of bytes")
                })?);
            }
        }
    }
    let too_large = |n: u64| {
        anyhow::anyhow!(
            "{who} sent a response body of {n} bytes or more, above the limit of {} MiB",
            limits.max_body / (1024 * 1024)
        )
    };
    let mut body = Vec::new();
    if chunked {
        loop {
            let size = next_line(&mut r, "reading a chunk size")?;
            let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .with_context(|| format!("{who}: malformed chunked response"))?;
            if n == 0 {
                break;
            }
            let total = (body.len() as u64).saturating_add(n);
            if total > limits.max_body as u64 {
                return Err(too_large(total));
            }
            let start = body.len();
            body.resize(start + n as usize, 0);
            r.read_exact(&mut body[start..])
                .map_err(|e| fail(e, "reading the body"))?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)
                .map_err(|e| fail(e, "reading the body"))?;
        }
    } else if let Some(n) = length {
        if n > limits.max_body as u64 {
            return Err(too_large(n));
        }
        body.resize(n as usize, 0);
        r.read_exact(&mut body)
            .map_err(|e| fail(e, "reading the body"))?;
    } else {
        (&mut r)
            .take(limits.max_body as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| fail(e, "reading the body"))?;
        if body.len() > limits.max_body {
            return Err(too_large(body.len() as u64));
        }
    }
    Ok((code, body))
}

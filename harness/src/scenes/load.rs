//! Load that looks like production: the request rate follows a compressed daily cycle, slow ramps,
//! bursts and quiet periods, all drawn from a seed. Load changes are not faults.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Keep-alive clients sharing the load.
pub(crate) const CLIENTS: u32 = 8;
/// Clients that ask for streamed generations, each waiting [`STREAM_PERIODS`] request periods after
/// its stream ends: streams come at a twentieth of the request rate.
pub(crate) const STREAM_CLIENTS: u32 = 4;
const STREAM_PERIODS: u32 = 10;

/// The rate multiplier at every tick, drawn once from a seed.
#[derive(Debug, Clone)]
pub(crate) struct LoadPlan {
    seed: u64,
    /// One "day", in ticks.
    day_ticks: f64,
}

/// A small deterministic hash: the plan needs no state to answer for any tick.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A number in `[0, 1)` from `x` (deterministic).
pub(crate) fn unit(x: u64) -> f64 {
    (mix(x) % 1_000_000) as f64 / 1_000_000.0
}

impl LoadPlan {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            seed,
            day_ticks: 900.0,
        }
    }

    /// Multiplier of the base rate at `tick` (0.2 to about 2.2).
    pub(crate) fn factor(&self, tick: u64) -> f64 {
        let t = tick as f64;
        // Compressed day: peak and trough.
        let day = 1.0 + 0.35 * (2.0 * std::f64::consts::PI * t / self.day_ticks).sin();
        // Slow ramps: a new level every 120 ticks, linear in between.
        let seg = tick / 120;
        let level = |s: u64| 0.7 + 0.6 * unit(self.seed ^ (s.wrapping_mul(0x9e37)));
        let frac = (tick % 120) as f64 / 120.0;
        let ramp = level(seg) * (1.0 - frac) + level(seg + 1) * frac;
        // Bursts (1.8x) and quiet periods (0.3x) of 8 to 20 ticks, starting in some 40-tick blocks.
        let block = tick / 40;
        let r = unit(self.seed.wrapping_add(block.wrapping_mul(0x51ed)));
        let len = 8 + (mix(self.seed ^ block) % 13);
        let inside = tick % 40 < len;
        let event = if inside && r < 0.15 {
            1.8
        } else if inside && r > 0.88 {
            0.3
        } else {
            1.0
        };
        (day * ramp * event).clamp(0.2, 2.5)
    }
}

/// Served and failed requests, seen from the clients and the server.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) served: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) client_ok: AtomicU64,
    pub(crate) client_err: AtomicU64,
    /// Streamed generations read to their end, and tokens read.
    pub(crate) streams: AtomicU64,
    pub(crate) stream_tokens: AtomicU64,
}

/// Current period between one client's requests, in nanoseconds (set by the scene every tick).
#[derive(Debug)]
pub(crate) struct Pace(AtomicU64);

impl Pace {
    pub(crate) fn new(rps: f64) -> Self {
        let p = Self(AtomicU64::new(0));
        p.set_rps(rps);
        p
    }

    pub(crate) fn set_rps(&self, rps: f64) {
        let per_client = f64::from(CLIENTS) / rps.max(0.1);
        self.0.store(
            Duration::from_secs_f64(per_client.min(10.0)).as_nanos() as u64,
            Ordering::Relaxed,
        );
    }

    fn period(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

/// What a load client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    /// `POST /v1/predict` every period.
    Predict,
    /// `POST /v1/generate`, read to its end, then [`STREAM_PERIODS`] periods of wait.
    Generate,
}

/// One keep-alive HTTP/1.1 client asking for `ask` at the `pace` period (reconnecting after an error).
pub(crate) async fn client(
    addr: SocketAddr,
    pace: Arc<Pace>,
    id: u32,
    counters: Arc<Counters>,
    ask: Ask,
) {
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut n: u64 = 0;
    let periods = match ask {
        Ask::Predict => 1,
        Ask::Generate => STREAM_PERIODS,
    };
    loop {
        tokio::time::sleep(pace.period() * periods).await;
        n += 1;
        if conn.is_none() {
            conn = TcpStream::connect(addr).await.ok().map(BufReader::new);
        }
        // `Some(tokens)`: answered (a prediction has none); `None`: answered with an error status.
        let answer = match (conn.as_mut(), ask) {
            (Some(c), Ask::Predict) => {
                let prompt = format!("client {id} request {n}: classify this prompt please");
                request(c, &prompt).await.map(|ok| ok.then_some(0))
            }
            (Some(c), Ask::Generate) => {
                let prompt = format!("stream client {id} prompt {n}: tell me a short story");
                generate(c, &prompt).await.map(Some)
            }
            (None, _) => Err(std::io::ErrorKind::NotConnected.into()),
        };
        match answer {
            Ok(Some(_)) if ask == Ask::Predict => {
                counters.client_ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(tokens)) => {
                counters.streams.fetch_add(1, Ordering::Relaxed);
                counters.stream_tokens.fetch_add(tokens, Ordering::Relaxed);
            }
            Ok(None) => {
                counters.client_err.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                counters.client_err.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
}

/// Sends `POST path` with `body` and reads the answer's head: whether it is a 200, and its
/// `content-length` (0 without one).
async fn post(
    conn: &mut BufReader<TcpStream>,
    path: &str,
    body: &str,
) -> std::io::Result<(bool, usize)> {
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: demo\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(req.as_bytes()).await?;
    let mut line = String::new();
    let mut content_length = 0usize;
    let mut status_ok = false;
    let mut first = true;
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if first {
            status_ok = l.starts_with("HTTP/1.1 200");
            first = false;
        } else if l.is_empty() {
            return Ok((status_ok, content_length));
        } else if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            content_length = v.trim().parse().unwrap_or(0);
        }
    }
}

/// Asks for one streamed generation and reads its server-sent events (a chunked body) to the end;
/// the number of `data:` events.
pub(crate) async fn generate(
    conn: &mut BufReader<TcpStream>,
    prompt: &str,
) -> std::io::Result<u64> {
    let (ok, _) = post(conn, "/v1/generate", prompt).await?;
    if !ok {
        // The body's framing is unknown here: the caller drops the connection.
        return Err(std::io::Error::other("generate answered an error"));
    }
    // Chunks: a hexadecimal size line, the data, CRLF; a zero size ends the body.
    let mut events = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::other("a chunk without a size"))?;
        let mut data = vec![0; size.min(1 << 20) + 2];
        conn.read_exact(&mut data).await?;
        if size == 0 {
            return Ok(events);
        }
        events += data.windows(5).filter(|w| w == b"data:").count() as u64;
    }
}

/// Sends one prediction request; `Ok(true)` for a 200, `Ok(false)` for another status.
pub(crate) async fn request(conn: &mut BufReader<TcpStream>, body: &str) -> std::io::Result<bool> {
    let (ok, content_length) = post(conn, "/v1/predict", body).await?;
    let mut body = vec![0; content_length.min(1 << 20)];
    conn.read_exact(&mut body).await?;
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_varies_within_bounds_and_is_seeded() {
        let a = LoadPlan::new(1);
        let b = LoadPlan::new(1);
        let c = LoadPlan::new(2);
        let fa: Vec<f64> = (0..2000).map(|t| a.factor(t)).collect();
        assert_eq!(fa, (0..2000).map(|t| b.factor(t)).collect::<Vec<_>>());
        assert_ne!(fa, (0..2000).map(|t| c.factor(t)).collect::<Vec<_>>());
        let (lo, hi) = fa
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        assert!(lo >= 0.2 && hi <= 2.5, "{lo} {hi}");
        assert!(hi / lo > 2.0, "the load varies: {lo} to {hi}");
    }
}

//! `vigil demo`: a small inference server with the agent linked in, under synthetic load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use vigil::features::Sample;

/// Flags of `vigil demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Exit after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Address of the agent's HTTP endpoint (/metrics); overrides VIGIL_LISTEN.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Do not print the per-tick line.
    #[arg(long)]
    quiet: bool,
    /// Score with this model file from the start (overrides VIGIL_MODEL); otherwise the agent trains
    /// its first model after the warm-up (VIGIL_WARMUP; one minute in the demo).
    #[arg(long, value_name = "FILE")]
    model: Option<std::path::PathBuf>,
    /// Requests per second the built-in load generator sends.
    #[arg(long, default_value_t = 200, value_name = "N")]
    rps: u32,
    /// Worker threads of the demo server's tokio runtime.
    #[arg(long, default_value_t = 2, value_name = "N")]
    workers: usize,
}

#[derive(Default)]
struct Counters {
    served: AtomicU64,
    client_ok: AtomicU64,
    client_err: AtomicU64,
}

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    anyhow::ensure!(args.rps > 0, "--rps must be at least 1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .context("building the demo server's runtime")?;

    // The demo is configured like any host: VIGIL_* variables first, then its own flags. Its one
    // default of its own: a one-minute warm-up (VIGIL_WARMUP overrides), so a first model scores within
    // about two minutes instead of six.
    let mut builder = vigil::Agent::builder()
        .warm_up(Duration::from_secs(60))?
        .from_env()?;
    if let Some(addr) = args.listen {
        builder = builder.listen(addr);
    }
    if let Some(model) = &args.model {
        builder = builder.model_path(model);
    }
    let agent = builder.start(rt.handle())?;
    let agent_addr = agent.local_addr();
    let mut samples = agent.subscribe();
    let scores = agent.subscribe_scores();

    let result = rt.block_on(async move {
        let counters = Arc::new(Counters::default());
        let app = Router::new()
            .route("/v1/predict", post(predict))
            .with_state(counters.clone());
        let server = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the demo inference server")?;
        let server_addr = server.local_addr()?;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(server, app).await {
                tracing::error!("demo server stopped: {e}");
            }
        });
        println!(
            "vigil demo: agent http://{agent_addr}/metrics · inference server http://{server_addr}/v1/predict · {} req/s",
            args.rps
        );

        const CLIENTS: u32 = 8;
        let per_client = Duration::from_secs_f64(f64::from(CLIENTS) / f64::from(args.rps));
        for id in 0..CLIENTS {
            tokio::spawn(client(server_addr, per_client, id, counters.clone()));
        }

        let started = Instant::now();
        let deadline = args.duration.map(Duration::from_secs);
        let mut view = View::default();
        loop {
            let remaining = deadline.map(|d| d.saturating_sub(started.elapsed()));
            if remaining == Some(Duration::ZERO) {
                break;
            }
            let sleep = tokio::time::sleep(remaining.unwrap_or(Duration::from_secs(3600)));
            tokio::select! {
                changed = samples.changed() => {
                    if changed.is_err() { break; }
                    let sample = samples.borrow_and_update().clone();
                    let current = scores.borrow().clone();
                    let score = match current {
                        Some(s) if s.is_anomaly => format!("{:.2} ANOMALY {}", s.value, s.anomaly_type.as_str()),
                        Some(s) => format!("{:.2}", s.value),
                        None => "warming-up".to_owned(),
                    };
                    let line = view.line(&sample, started.elapsed(), &counters, &score);
                    if !args.quiet {
                        println!("{line}");
                    }
                }
                _ = sleep => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        println!(
            "vigil demo: done after {:.1}s · {} requests served · {} client errors · {} ticks",
            started.elapsed().as_secs_f64(),
            counters.served.load(Ordering::Relaxed),
            counters.client_err.load(Ordering::Relaxed),
            view.ticks,
        );
        anyhow::Ok(())
    });
    agent.shutdown();
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// A toy model: hash the prompt into an embedding, run it through four dense tanh layers with
/// deterministic weights, and return the logits. Real CPU work and real allocations per request, like a
/// small CPU-side pre/post-processing stage. `#[vigil::observe]` records its latency and flags non-finite
/// logits as `nan_output`.
#[vigil::observe(model = "demo-mlp", stage = "forward", check_output)]
fn infer(prompt: &[u8]) -> Vec<f64> {
    const DIM: usize = 64;
    let mut x: Vec<f64> = (0..DIM)
        .map(|i| {
            let b = prompt.get(i % prompt.len().max(1)).copied().unwrap_or(0);
            f64::from(b) / 255.0 - 0.5
        })
        .collect();
    for layer in 0..4u64 {
        let y: Vec<f64> = (0..DIM)
            .map(|r| {
                let mut acc = 0.0;
                for (c, xc) in x.iter().enumerate() {
                    let seed = (layer * 31 + r as u64 * 7 + c as u64 * 13) % 97;
                    acc += xc * (seed as f64 / 97.0 - 0.5);
                }
                acc.tanh()
            })
            .collect();
        x = y;
    }
    x
}

fn argmax(logits: &[f64]) -> (usize, f64) {
    logits.iter().enumerate().fold(
        (0, f64::MIN),
        |best, (i, v)| if *v > best.1 { (i, *v) } else { best },
    )
}

async fn predict(State(counters): State<Arc<Counters>>, body: String) -> (StatusCode, String) {
    // Simulated batching wait, then the model.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let (label, score) = argmax(&infer(body.as_bytes()));
    counters.served.fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::OK,
        format!("{{\"label\":{label},\"score\":{score:.4}}}"),
    )
}

/// One keep-alive HTTP/1.1 client sending a request every `period`.
async fn client(addr: SocketAddr, period: Duration, id: u32, counters: Arc<Counters>) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut n: u64 = 0;
    loop {
        ticker.tick().await;
        n += 1;
        let prompt = format!("client {id} request {n}: classify this prompt please");
        if conn.is_none() {
            conn = TcpStream::connect(addr).await.ok().map(BufReader::new);
        }
        let ok = match conn.as_mut() {
            Some(c) => request(c, &prompt).await.is_ok(),
            None => false,
        };
        if ok {
            counters.client_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.client_err.fetch_add(1, Ordering::Relaxed);
            conn = None;
        }
    }
}

async fn request(conn: &mut BufReader<TcpStream>, body: &str) -> std::io::Result<()> {
    let req = format!(
        "POST /v1/predict HTTP/1.1\r\nhost: demo\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
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
            break;
        } else if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            content_length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; content_length.min(1 << 20)];
    conn.read_exact(&mut body).await?;
    if status_ok {
        Ok(())
    } else {
        Err(std::io::Error::other("non-200 response"))
    }
}

/// Turns consecutive samples into one human line per tick.
#[derive(Default)]
struct View {
    ticks: u64,
    prev: Option<(Instant, f64, u64)>,
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        Some(s) if s.is_finite() => format!("{:.2}ms", s * 1e3),
        _ => "  n/a ".to_owned(),
    }
}

fn fmt_mib(v: Option<f64>) -> String {
    match v {
        Some(b) if b.is_finite() => format!("{:.1}MiB", b / (1024.0 * 1024.0)),
        _ => "n/a".to_owned(),
    }
}

impl View {
    fn line(&mut self, s: &Sample, elapsed: Duration, counters: &Counters, score: &str) -> String {
        self.ticks += 1;
        let now = Instant::now();
        let allocs = s.get("alloc_allocations").unwrap_or(f64::NAN);
        let served = counters.served.load(Ordering::Relaxed);
        let (alloc_rate, req_rate) = match self.prev {
            Some((t, a, r)) => {
                let dt = now.duration_since(t).as_secs_f64().max(1e-9);
                ((allocs - a) / dt, served.saturating_sub(r) as f64 / dt)
            }
            None => (f64::NAN, f64::NAN),
        };
        self.prev = Some((now, allocs, served));
        let gpu = match s.get("gpu0_memory_used_bytes") {
            Some(v) if v.is_finite() => fmt_mib(Some(v)),
            _ => "n/a".to_owned(),
        };
        format!(
            "t={:>4}s tasks={:>4} busy={:>5.1}% sched p99={} max={} stalls={} allocs={:>7.0}/s live={} rss={} cpu={:>5.1}% gpu={} req={:.0}/s forward p99={} score={}",
            elapsed.as_secs(),
            s.get("tokio_alive_tasks").unwrap_or(f64::NAN),
            s.get("tokio_busy_ratio").unwrap_or(f64::NAN) * 100.0,
            fmt_ms(s.get("sched_latency_p99_seconds")),
            fmt_ms(s.get("sched_latency_max_seconds")),
            s.get("sched_stalls").unwrap_or(f64::NAN),
            alloc_rate,
            fmt_mib(s.get("alloc_live_bytes")),
            fmt_mib(s.get("process_resident_memory_bytes")),
            s.get("process_cpu_ratio").unwrap_or(f64::NAN) * 100.0,
            gpu,
            req_rate,
            fmt_ms(s.get("inference_latency_p99_seconds")),
            score,
        )
    }
}

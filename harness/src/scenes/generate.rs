//! The demo server's language-model endpoint: `POST /v1/generate` streams a generation token by token
//! as server-sent events, the way an LLM server answers.
//!
//! A request joins the server's queue (`vigil::observe::queue`), waits for one of [`SLOTS`]
//! generation slots, then runs a prefill (the prompt through the MLP, a simulated accelerator time of
//! [`PREFILL`] per pass) and [`TOKENS`] decode steps (one forward pass and [`DECODE`] each), sending
//! each token as an SSE event. The response body is the token stream wrapped by
//! `vigil::observe::stream`, so the time to first token counts from the request's arrival (queue
//! included, as vLLM counts it), the time per output token from the decode steps, and a client that
//! goes away mid-stream is a cancelled call. The fault knobs ([`GenerateFaults`]) slow the prefill,
//! slow the decode, or stall the scheduler so the queue builds up.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use tokio::sync::{Semaphore, mpsc};

use super::model::Mlp;

/// Generations that run at once (the engine's batch); the rest wait in the queue.
pub(crate) const SLOTS: usize = 8;
/// Output tokens per generation.
pub(crate) const TOKENS: usize = 16;
/// Simulated accelerator time of one prefill pass.
const PREFILL: Duration = Duration::from_millis(4);
/// Simulated accelerator time of one decode step.
const DECODE: Duration = Duration::from_millis(2);
/// Model and stage labels of the endpoint's series.
pub(crate) const MODEL: &str = "demo-llm";
pub(crate) const STAGE: &str = "generate";

/// Knobs the generation faults turn.
#[derive(Debug, Default)]
pub(crate) struct GenerateFaults {
    /// Extra prefill passes (a slower prefill: time to first token up).
    pub(crate) prefill_passes: AtomicU32,
    /// Extra accelerator time per decode step, in units of [`DECODE`] (time per token up).
    pub(crate) decode_passes: AtomicU32,
    /// The scheduler admits nothing while this is set (a stalled batch: the queue builds up).
    pub(crate) stalled: AtomicBool,
}

/// What the endpoint needs.
pub(crate) struct Generator {
    pub(crate) mlp: Arc<Mlp>,
    pub(crate) faults: Arc<GenerateFaults>,
    slots: Semaphore,
    queue: vigil::observe::Queue,
}

impl Generator {
    pub(crate) fn new(mlp: Arc<Mlp>, faults: Arc<GenerateFaults>) -> Self {
        Self {
            mlp,
            faults,
            slots: Semaphore::new(SLOTS),
            queue: vigil::observe::queue(MODEL, STAGE),
        }
    }

    /// Runs one generation, sending each token to `out`; returns early when the client is gone.
    async fn run(self: Arc<Self>, prompt: String, out: mpsc::Sender<String>) {
        let waiting = self.queue.enqueued();
        // A stalled scheduler admits nothing; the request keeps waiting (and counts as waiting).
        while self.faults.stalled.load(Ordering::Relaxed) {
            if out.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let Ok(_slot) = self.slots.acquire().await else {
            return;
        };
        let _running = waiting.start();
        self.queue.batch(1);
        let passes = 1 + self.faults.prefill_passes.load(Ordering::Relaxed);
        tokio::time::sleep(PREFILL * passes).await;
        let mut state = self.mlp.prefill(prompt.as_bytes());
        for i in 0..TOKENS {
            let passes = 1 + self.faults.decode_passes.load(Ordering::Relaxed);
            tokio::time::sleep(DECODE * passes).await;
            let token = self.mlp.decode_step(&mut state);
            let text = if i + 1 == TOKENS {
                format!("tok{token} [DONE]")
            } else {
                format!("tok{token}")
            };
            if out.send(text).await.is_err() {
                return; // the client went away: stop generating
            }
        }
    }
}

/// The tokens of one generation as a stream (what `vigil::observe::stream` wraps).
struct Tokens(mpsc::Receiver<String>);

impl futures_core::Stream for Tokens {
    type Item = String;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<String>> {
        self.0.poll_recv(cx)
    }
}

/// Server-sent events of an observed token stream.
struct Events(vigil::observe::ObservedStream<Tokens>);

impl futures_core::Stream for Events {
    type Item = Result<String, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|t| t.map(|t| Ok(format!("data: {t}\n\n"))))
    }
}

/// `POST /v1/generate`: the body is the prompt; the answer streams as `text/event-stream`.
pub(crate) async fn generate(State(g): State<Arc<Generator>>, prompt: String) -> Response {
    let (tx, rx) = mpsc::channel(TOKENS);
    let tokens = vigil::observe::stream(MODEL, STAGE, Tokens(rx));
    tokens.input_tokens(prompt.split_whitespace().count() as u64);
    tokio::spawn(g.run(prompt, tx));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(Events(tokens)))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

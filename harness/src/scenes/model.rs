//! The demo server's model: a small MLP over ndarray that really computes, with `#[vigil::observe]` on
//! its stages, and the fault knobs (errors, timeouts, slowdown) that the injectors turn.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use ndarray::{Array1, Array2};

/// Embedding width, hidden width, classes.
const DIM: usize = 64;
const HIDDEN: usize = 128;
const CLASSES: usize = 16;

/// Knobs the fault injectors turn; read by every request.
#[derive(Debug, Default)]
pub(crate) struct ModelFaults {
    /// Requests that fail, per thousand.
    pub(crate) error_permille: AtomicU32,
    /// Requests that time out, per thousand.
    pub(crate) timeout_permille: AtomicU32,
    /// Extra forward passes per request (the model got slower).
    pub(crate) extra_passes: AtomicU32,
    /// Request counter, for deterministic fault selection.
    seq: AtomicU64,
}

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum InferError {
    /// The model gave up (injected).
    Failed,
    /// The request ran out of time (injected).
    TimedOut,
}

impl std::fmt::Display for InferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InferError::Failed => f.write_str("inference failed"),
            InferError::TimedOut => f.write_str("inference timed out"),
        }
    }
}

impl std::error::Error for InferError {}

impl vigil::observe::ClassifyAnomaly for InferError {
    fn anomaly_type(&self) -> vigil::observe::AnomalyType {
        match self {
            InferError::Failed => vigil::observe::AnomalyType::Error,
            InferError::TimedOut => vigil::observe::AnomalyType::Timeout,
        }
    }
}

/// Two dense tanh layers and a linear head with seeded weights.
pub(crate) struct Mlp {
    w1: Array2<f32>,
    b1: Array1<f32>,
    w2: Array2<f32>,
    b2: Array1<f32>,
    head: Array2<f32>,
}

fn seeded(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut x = seed | 1;
    let scale = 1.0 / (cols as f32).sqrt();
    Array2::from_shape_fn((rows, cols), |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((x % 2000) as f32 / 1000.0 - 1.0) * scale
    })
}

impl Mlp {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            w1: seeded(HIDDEN, DIM, seed),
            b1: Array1::zeros(HIDDEN),
            w2: seeded(HIDDEN, HIDDEN, seed.wrapping_add(1)),
            b2: Array1::zeros(HIDDEN),
            head: seeded(CLASSES, HIDDEN, seed.wrapping_add(2)),
        }
    }

    /// Hashes the prompt's bytes into an embedding.
    #[vigil::observe(model = "demo-mlp", stage = "embed")]
    fn embed(&self, prompt: &[u8]) -> Array1<f32> {
        hash_embed(prompt)
    }

    /// The dense layers and the head, once.
    fn dense(&self, x: &Array1<f32>) -> Array1<f32> {
        let h1 = (self.w1.dot(x) + &self.b1).mapv(f32::tanh);
        let h2 = (self.w2.dot(&h1) + &self.b2).mapv(f32::tanh);
        self.head.dot(&h2)
    }

    /// The dense layers; `passes` > 1 repeats them (an injected slowdown).
    #[vigil::observe(model = "demo-mlp", stage = "forward", check_output)]
    fn forward(&self, x: &Array1<f32>, passes: u32) -> Vec<f32> {
        let mut logits = Array1::<f32>::zeros(CLASSES);
        for _ in 0..passes.max(1) {
            logits = self.dense(x);
        }
        logits.to_vec()
    }

    /// A generation's prefill: the prompt's embedding, the state the decode steps carry.
    pub(crate) fn prefill(&self, prompt: &[u8]) -> Array1<f32> {
        let x = hash_embed(prompt);
        std::hint::black_box(self.dense(&x));
        x
    }

    /// One autoregressive decode step: the next token is the head's argmax, and the state takes it
    /// in (its embedding added, squashed) for the step after.
    pub(crate) fn decode_step(&self, state: &mut Array1<f32>) -> usize {
        let logits = self.dense(state);
        let token = argmax(logits.iter().copied()).0;
        state[(token * 7) % DIM] += 0.5;
        state.mapv_inplace(f32::tanh);
        token
    }

    /// One request: embed, forward, argmax; the injected faults apply here.
    /// One request as a served model sees it: the accelerator's time (simulated: 2 ms per forward
    /// pass, awaited, so it costs no CPU; an injected slowdown adds passes) and the model itself.
    #[vigil::observe(model = "demo-mlp", stage = "request")]
    pub(crate) async fn request(
        &self,
        prompt: &[u8],
        faults: &ModelFaults,
    ) -> Result<(usize, f32), InferError> {
        let passes = 1 + faults.extra_passes.load(Ordering::Relaxed);
        tokio::time::sleep(std::time::Duration::from_millis(2 * u64::from(passes))).await;
        self.predict(prompt, faults)
    }

    #[vigil::observe(model = "demo-mlp", stage = "predict")]
    pub(crate) fn predict(
        &self,
        prompt: &[u8],
        faults: &ModelFaults,
    ) -> Result<(usize, f32), InferError> {
        let n = faults.seq.fetch_add(1, Ordering::Relaxed);
        // A fixed stride through 0..1000 spreads injected failures evenly over requests.
        let slot = u32::try_from((n.wrapping_mul(389)) % 1000).unwrap_or(0);
        let errors = faults.error_permille.load(Ordering::Relaxed);
        let timeouts = faults.timeout_permille.load(Ordering::Relaxed);
        if slot < errors {
            return Err(InferError::Failed);
        }
        if slot < errors + timeouts {
            return Err(InferError::TimedOut);
        }
        let x = self.embed(prompt);
        let logits = self.forward(&x, 1 + faults.extra_passes.load(Ordering::Relaxed));
        Ok(argmax(logits.iter().copied()))
    }
}

/// A prompt's bytes hashed into an embedding.
fn hash_embed(prompt: &[u8]) -> Array1<f32> {
    let mut e = Array1::<f32>::zeros(DIM);
    for (i, b) in prompt.iter().enumerate() {
        e[(i.wrapping_mul(31) ^ usize::from(*b)) % DIM] += f32::from(*b) / 255.0 - 0.5;
    }
    e
}

/// `(index, value)` of the largest value (the first of equals).
fn argmax(values: impl Iterator<Item = f32>) -> (usize, f32) {
    values.enumerate().fold(
        (0, f32::MIN),
        |best, (i, v)| if v > best.1 { (i, v) } else { best },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_computes_and_the_knobs_work() {
        let m = Mlp::new(42);
        let f = ModelFaults::default();
        let a = m.predict(b"hello", &f).unwrap();
        let b = m.predict(b"hello", &f).unwrap();
        assert_eq!(a, b, "deterministic");
        assert!(a.1.is_finite());
        f.error_permille.store(300, Ordering::Relaxed);
        let failed = (0..1000).filter(|_| m.predict(b"x", &f).is_err()).count();
        assert_eq!(failed, 300);
    }
}

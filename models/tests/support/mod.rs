//! What the engine and retrain tests share: seeded noise.
#![allow(dead_code)]

/// xorshift noise in [-0.5, 0.5).
pub(crate) struct Noise(pub(crate) u64);

impl Noise {
    pub(crate) fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 10_000) as f64 / 10_000.0 - 0.5
    }
}

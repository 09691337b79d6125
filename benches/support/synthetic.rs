//! Seeded synthetic runtime data with injectable faults, turned into features by the real window.
//! Shared by the detector tests (`models/tests/detector.rs`) and the detector comparison bench.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use vigil_features::{FeatureVector, SignalSet, SignalSpec, Unit, Window};

/// xorshift64* with Box–Muller normals: seeded, no dependencies.
pub struct Rng(pub u64);

impl Rng {
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

pub fn signals() -> SignalSet {
    SignalSet::new(vec![
        SignalSpec::gauge("load", Unit::PerSecond),
        SignalSpec::gauge("busy", Unit::Ratio),
        SignalSpec::gauge("queue", Unit::Count),
        SignalSpec::gauge("memory", Unit::Bytes),
        SignalSpec::counter("requests", Unit::Count),
        SignalSpec::gauge("latency", Unit::Seconds),
    ])
    .unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    None,
    /// `queue` rises by 8σ from the onset on.
    LevelShift,
    /// `memory` grows by 0.2σ per tick from the onset on.
    Leak,
    /// One tick of `latency` at +40σ.
    Spike,
}

/// Raw rows from tick `t0` for `n` ticks (daily-like load cycle plus noise); `fault` starts at
/// `t0 + onset`.
pub fn rows(seed: u64, t0: u64, n: u64, fault: Fault, onset: u64) -> Vec<(f64, [f64; 6])> {
    let mut rng = Rng(seed);
    let mut requests = 0.0;
    (t0..t0 + n)
        .map(|t| {
            let day = (2.0 * std::f64::consts::PI * t as f64 / 1440.0).sin();
            let load = 100.0 + 40.0 * day + 5.0 * rng.normal();
            requests += load.max(0.0);
            let mut r = [
                load,
                0.3 + 0.1 * day + 0.02 * rng.normal(),
                5.0 + rng.normal(),
                1e9 + 1e6 * rng.normal(),
                requests,
                0.05 + 0.005 * rng.normal(),
            ];
            let since = t.checked_sub(t0 + onset);
            match (fault, since) {
                (Fault::LevelShift, Some(_)) => r[2] += 8.0,
                (Fault::Leak, Some(s)) => r[3] += 2e5 * s as f64,
                (Fault::Spike, Some(0)) => r[5] += 0.2,
                _ => {}
            }
            (t as f64, r)
        })
        .collect()
}

/// Features of every tick once the window is warm.
pub fn features(w: &mut Window, rows: &[(f64, [f64; 6])]) -> Vec<Vec<f64>> {
    let mut fv = FeatureVector::new(w.schema());
    let mut out = Vec::new();
    for (t, r) in rows {
        w.push(*t, r).unwrap();
        if w.is_warm() {
            w.extract(&mut fv).unwrap();
            out.push(fv.values().to_vec());
        }
    }
    out
}

//! Paired, interleaved measurement of CountingAlloc against System, robust to a noisy 2-vCPU machine:
//! each round runs both allocators back to back (order alternating) and the ratio of that round is
//! recorded; the median ratio over all rounds is the result. Run: `cargo bench --bench alloc_paired`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::time::Duration;

use vigil::CountingAlloc;

#[path = "support/alloc_workload.rs"]
mod alloc_workload;
use alloc_workload::run;

const PAIRS: u64 = 2_000_000;
const ROUNDS: usize = 41;

static COUNTING: CountingAlloc = CountingAlloc::system();

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!(
        "threads  system ns/pair  counting ns/pair  median ratio (p10..p90 of per-round ratios)"
    );
    for threads in [1usize, 2] {
        let (mut sys, mut cnt, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (s, c) = if round % 2 == 0 {
                let s = run(&System, threads, PAIRS);
                (s, run(&COUNTING, threads, PAIRS))
            } else {
                let c = run(&COUNTING, threads, PAIRS);
                (run(&System, threads, PAIRS), c)
            };
            let per = |d: Duration| d.as_secs_f64() * 1e9 / PAIRS as f64;
            sys.push(per(s));
            cnt.push(per(c));
            ratio.push(per(c) / per(s));
        }
        let mut sorted = ratio.clone();
        sorted.sort_by(f64::total_cmp);
        let p10 = sorted[ROUNDS / 10];
        let p90 = sorted[ROUNDS * 9 / 10];
        println!(
            "{threads:>7}  {:>14.2}  {:>15.2}  {:>12.3} ({p10:.3}..{p90:.3})",
            median(&mut sys),
            median(&mut cnt),
            median(&mut ratio),
        );
    }
}

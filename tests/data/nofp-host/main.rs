//! A host built the ordinary way (`cargo build --release`, no RUSTFLAGS: no frame pointers in its
//! own code), for `tests/profile_nofp.rs`: the agent on a tokio runtime, and two threads that spend
//! their time at the bottom of a known five-deep call chain. Prints the agent's address, then runs
//! until killed.

use std::hint::black_box;

#[inline(never)]
fn matmul_leaf(x: u64) -> u64 {
    let mut a = x;
    for i in 0..20_000u64 {
        a = (a.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i)) ^ (a >> 7);
    }
    black_box(a)
}

#[inline(never)]
fn attention_block(x: u64) -> u64 {
    black_box(matmul_leaf(black_box(x))) ^ 1
}

#[inline(never)]
fn decoder_layer(x: u64) -> u64 {
    black_box(attention_block(black_box(x))) ^ 3
}

#[inline(never)]
fn forward_pass(x: u64) -> u64 {
    black_box(decoder_layer(black_box(x))) ^ 5
}

#[inline(never)]
fn predict_layer(x: u64) -> u64 {
    black_box(forward_pass(black_box(x))) ^ 7
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let agent = vigil::Agent::builder()
        .listen("127.0.0.1:0".parse().expect("an address"))
        .gpu(vigil::GpuMode::Off)
        .data_dir(None)
        .start(rt.handle())
        .expect("the agent starts");
    println!("{}", agent.local_addr());
    for t in 0..2u64 {
        std::thread::Builder::new()
            .name(format!("chain-{t}"))
            .spawn(move || {
                let mut x = t;
                loop {
                    x = predict_layer(black_box(x));
                }
            })
            .expect("a thread");
    }
    std::thread::sleep(std::time::Duration::from_secs(300));
}

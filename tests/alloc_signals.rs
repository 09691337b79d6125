//! Allocation signals with `vigil::CountingAlloc` installed as this test binary's global allocator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::hint::black_box;

use support::*;

#[global_allocator]
static ALLOC: vigil::CountingAlloc = vigil::CountingAlloc::system();

const MB: f64 = 1_000_000.0;

#[test]
fn holding_ten_thousand_kib_raises_live_bytes_and_freeing_lowers_it() {
    let rt = host_runtime();
    let agent = fast_agent(100).start(rt.handle()).unwrap();
    let base = signal(&next_samples(&agent, 2)[1], "alloc_live_bytes");

    let held: Vec<Vec<u8>> = (0..10_000).map(|i| vec![i as u8; 1024]).collect();
    let during = signal(&next_samples(&agent, 2)[1], "alloc_live_bytes");
    assert!(
        during - base >= 10.0 * MB,
        "live bytes rose by {} only",
        during - base
    );
    let scraped = scrape(agent.local_addr()).value("vigil_alloc_live_bytes");
    assert!(scraped - base >= 10.0 * MB, "/metrics live bytes {scraped}");

    drop(black_box(held));
    let after = signal(&next_samples(&agent, 2)[1], "alloc_live_bytes");
    assert!(
        after < base + MB,
        "live bytes {after} did not fall back to ~{base}"
    );

    let s = scrape(agent.local_addr());
    assert!(s.value("vigil_alloc_allocations_total") >= 10_000.0);
    assert!(s.value("vigil_alloc_frees_total") >= 10_000.0);
    assert!(s.value("vigil_alloc_bytes_total") >= 10_240_000.0);
    assert!(s.value("vigil_alloc_freed_bytes_total") >= 10_240_000.0);
}

#[test]
fn counts_are_exact_for_one_thread_and_survive_thread_churn() {
    assert!(vigil::alloc_tracking_enabled());
    // Far more short-lived threads than shards: slots are released on exit and reused, and nothing a
    // dead thread counted is lost.
    let threads = vigil::agent::SHARDS * 3;
    let before = vigil::alloc_stats();
    for _ in 0..threads {
        std::thread::spawn(|| {
            let v: Vec<Box<[u8; 4096]>> = (0..10).map(|_| Box::new([7u8; 4096])).collect();
            black_box(v);
        })
        .join()
        .unwrap();
    }
    let after = vigil::alloc_stats();
    let allocs = after.allocations - before.allocations;
    let bytes = after.bytes_allocated - before.bytes_allocated;
    assert!(
        allocs >= threads as u64 * 10,
        "{allocs} allocations counted"
    );
    assert!(bytes >= threads as u64 * 40_960, "{bytes} bytes counted");

    // Exact accounting for work on one thread: 100 boxes of 1 KiB allocated and freed.
    let (a, b) = std::thread::spawn(|| {
        let s0 = vigil::alloc_stats();
        let v: Vec<Box<[u8; 1024]>> = (0..100).map(|_| Box::new([1u8; 1024])).collect();
        let s1 = vigil::alloc_stats();
        drop(black_box(v));
        let s2 = vigil::alloc_stats();
        (
            s1.bytes_allocated - s0.bytes_allocated,
            s2.bytes_freed - s1.bytes_freed,
        )
    })
    .join()
    .unwrap();
    // The outer Vec (100 pointers) plus 100 KiB of boxes; other test threads may add a little.
    assert!(a >= 100 * 1024 + 800, "{a}");
    assert!(b >= 100 * 1024 + 800, "{b}");
}

#[test]
fn allocations_on_agent_threads_are_the_agents_not_the_hosts() {
    // An agent thread (marked as the training, tick and probe threads are) allocates and holds 8 MiB,
    // then exits; its shard is reused by host threads afterwards.
    let host_before = vigil::alloc_stats();
    let agent_before = vigil::agent_alloc_stats();
    let held = std::thread::spawn(|| {
        vigil::mark_agent_thread();
        let v: Vec<Vec<u8>> = (0..8).map(|i| vec![i as u8; 1 << 20]).collect();
        black_box(v)
    })
    .join()
    .unwrap();
    let host_after = vigil::alloc_stats();
    let agent_after = vigil::agent_alloc_stats();
    let agent_bytes = agent_after.bytes_allocated - agent_before.bytes_allocated;
    let host_bytes = host_after.bytes_allocated - host_before.bytes_allocated;
    assert!(agent_bytes >= 8 << 20, "agent counted {agent_bytes} bytes");
    assert!(
        host_bytes < 1 << 20,
        "the host's signals saw {host_bytes} bytes of the agent's work"
    );
    drop(held);
    // Host threads reusing the exited agent thread's shard: host totals never go back and the agent's
    // totals keep what it counted.
    for _ in 0..vigil::agent::SHARDS {
        std::thread::spawn(|| black_box(vec![0u8; 4096]))
            .join()
            .unwrap();
    }
    let host_later = vigil::alloc_stats();
    let agent_later = vigil::agent_alloc_stats();
    assert!(host_later.bytes_allocated >= host_after.bytes_allocated);
    assert!(host_later.allocations >= host_after.allocations);
    assert!(agent_later.bytes_allocated >= agent_after.bytes_allocated);
    assert!(
        host_later.bytes_allocated - host_after.bytes_allocated
            >= vigil::agent::SHARDS as u64 * 4096
    );
}

/// The resident-memory signal is the host's: memory the agent's own threads hold (its windows, models,
/// store cache; stepping up at its first fit) is left out of it, so the detector never reads the
/// agent's growth as the host's leak. The same memory held by a host thread is in it.
#[test]
fn the_resident_memory_signal_leaves_out_the_agents_own_heap() {
    const HELD: usize = 32 << 20;
    let rt = host_runtime();
    let agent = fast_agent(100).start(rt.handle()).unwrap();
    let rss = |agent: &vigil::AgentHandle| {
        let s = next_samples(agent, 2);
        signal(&s[1], "process_resident_memory_bytes")
    };
    // Touched pages, so they are resident (a zeroed allocation may stay unmapped).
    let hold = || {
        let mut v = vec![0u8; HELD];
        for b in v.iter_mut().step_by(4096) {
            *b = 1;
        }
        black_box(v)
    };
    let base = rss(&agent);
    let agent_held = std::thread::spawn(move || {
        vigil::mark_agent_thread();
        hold()
    })
    .join()
    .unwrap();
    let with_agents = rss(&agent);
    assert!(
        (with_agents - base).abs() < 8.0 * MB,
        "the agent's own 32 MiB moved the host's resident memory from {base} to {with_agents}"
    );
    let scraped = scrape(agent.local_addr()).value("vigil_process_resident_memory_bytes");
    assert!(
        (scraped - base).abs() < 8.0 * MB,
        "/metrics: {scraped}, before {base}"
    );
    let host_held = hold();
    let with_hosts = rss(&agent);
    assert!(
        with_hosts - with_agents > 24.0 * MB,
        "a host thread's 32 MiB moved the resident memory from {with_agents} to {with_hosts} only"
    );
    drop(black_box(agent_held));
    drop(black_box(host_held));
}

//! `start` with a large store returns without reading the whole file on the host's thread: the
//! store's integrity check (SQLite's `quick_check`, which walks every page) runs on the store thread,
//! and `GET /api/v1/status` reports it. Its own binary: it writes a 512 MiB store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::*;

/// An agent on this data directory (event profiles on, as by default: `start` waits neither for the
/// store's check nor for the profiler's memory).
fn start_on(dir: &std::path::Path, rt: &tokio::runtime::Runtime) -> vigil::AgentHandle {
    fast_agent(50)
        .data_dir(Some(dir.to_owned()))
        .event_profiles(Some(Duration::from_secs(1)), Duration::from_secs(60))
        .start(rt.handle())
        .unwrap()
}

/// Polls the status until it contains `needle`; returns the body.
fn status_with(addr: std::net::SocketAddr, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = get(addr, "/api/v1/status", &[]);
        if r.status == 200 && r.body.contains(needle) {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle} in the status: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn start_on_a_512_mib_store_does_not_wait_for_its_integrity_check() {
    let dir = temp_dir("store-start");
    // A store the agent made, then grown to 512 MiB: a table of 2 KB rows beside its own (many
    // cells, as ticks are, which is what the check walks).
    drop(vigil::store::Store::open(&dir).unwrap());
    let db = dir.join("vigil.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE filler(b BLOB); BEGIN;")
            .unwrap();
        let mut insert = c
            .prepare("INSERT INTO filler(b) VALUES (randomblob(2000))")
            .unwrap();
        for _ in 0..(256 * 1024) {
            insert.execute([]).unwrap();
        }
        drop(insert);
        c.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let size = std::fs::metadata(&db).unwrap().len();
    assert!(size >= 512 << 20, "{size} bytes");
    // What the check costs on this file, measured here (warm page cache, as the agent gets it).
    let checked = Instant::now();
    vigil::store::Store::open(&dir).unwrap();
    let check = checked.elapsed();

    let rt = host_runtime();
    let started = Instant::now();
    let agent = start_on(&dir, &rt);
    let start = started.elapsed();
    eprintln!("{size} bytes: open + check {check:?}, start {start:?}");
    assert!(start < Duration::from_millis(50), "start took {start:?}");
    assert!(
        start < check / 2,
        "start took {start:?} with a store whose check alone takes {check:?}: it waited for the check"
    );
    // The check's outcome is in the status once the store thread is through it.
    status_with(agent.local_addr(), "\"check\":\"ok\"");
    let dropped = Instant::now();
    drop(agent);
    let drop_took = dropped.elapsed();
    assert!(
        drop_took < Duration::from_secs(1),
        "drop took {drop_took:?}"
    );

    // A damaged store (pages in the middle overwritten) no longer stops start-up: the check's
    // verdict is logged, counted and in the status, and the agent goes on.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.seek(SeekFrom::Start(200 << 20)).unwrap();
        f.write_all(&[0xA5; 64 * 1024]).unwrap();
    }
    let agent = start_on(&dir, &rt);
    let addr = agent.local_addr();
    let body = status_with(addr, "\"check\":\"damaged: ");
    assert!(body.contains("move it aside"), "{body}");
    assert!(scrape(addr).value("vigil_store_errors_total") >= 1.0);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

//! CPU profiles: `GET /debug/pprof/profile` answers a gzip'd pprof protobuf in which a busy workload is
//! the hottest code; one profile runs at a time (a second request gets 409 with `Retry-After`); bad
//! queries get 400; an event's opening is profiled and the profile is kept with the event in the
//! store and served at `GET /api/v1/events/{id}/profile`.
#![cfg(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    feature = "profiling"
))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pprof::protos::{Message, Profile};
use support::*;

/// SIGPROF is process-wide: the tests of this file take turns (they share a process under `cargo test`).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits until the agent's gauge says a profile runs (at most 5 s).
fn profile_started(agent: &vigil::AgentHandle) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !agent
        .metrics_text()
        .lines()
        .any(|l| l.starts_with("vigil_profile_running") && l.ends_with(" 1"))
    {
        assert!(Instant::now() < deadline, "the profile never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One step of the workload: arithmetic the optimiser cannot remove (a plain loop: in a debug build
/// an iterator's `next` would be a function of its own).
#[inline(never)]
fn vigil_profile_test_spin(mut x: u64) -> u64 {
    let mut i = 0u64;
    while i < 20_000 {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
        i += 1;
    }
    x
}

/// The busy loop the profile must find.
#[inline(never)]
fn vigil_profile_test_busy_workload(stop: &AtomicBool) -> u64 {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        x = vigil_profile_test_spin(x);
    }
    x
}

/// Runs the workload on its own thread until the returned flag is set.
fn busy_thread() -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    worker("busy-workload", vigil_profile_test_busy_workload)
}

/// A host thread named `name` running `work` until told to stop.
fn worker(
    name: &str,
    work: fn(&AtomicBool) -> u64,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || work(&s))
        .unwrap();
    (stop, h)
}

fn decode(gz: &[u8]) -> Profile {
    assert!(
        gz.starts_with(&[0x1f, 0x8b]),
        "not gzip: {:?}",
        &gz[..gz.len().min(8)]
    );
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .unwrap();
    Profile::decode(raw.as_slice()).expect("a pprof protobuf")
}

/// What a decoded profile says: sample types, samples, and samples per function (self: the sample's
/// first frame; total: anywhere in its stack).
struct Summary {
    sample_types: Vec<(String, String)>,
    samples: i64,
    self_samples: BTreeMap<String, i64>,
    total_samples: BTreeMap<String, i64>,
}

fn summarise(p: &Profile) -> Summary {
    let s = |i: i64| p.string_table[usize::try_from(i).unwrap()].clone();
    let mut out = Summary {
        sample_types: p.sample_type.iter().map(|t| (s(t.ty), s(t.unit))).collect(),
        samples: 0,
        self_samples: BTreeMap::new(),
        total_samples: BTreeMap::new(),
    };
    for (_, names, n) in stacks(p) {
        out.samples += n;
        if let Some(top) = names.first() {
            *out.self_samples.entry(top.clone()).or_default() += n;
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in names {
            if seen.insert(name.clone()) {
                *out.total_samples.entry(name).or_default() += n;
            }
        }
    }
    out
}

/// What `pprof` needs to read a profile as users do: the executable's real path and build id on its
/// mapping, `has_functions` only on mappings whose every frame was named (elsewhere pprof names what
/// it can from the file), and each sample's thread: its name, its id, and whether it is the host's
/// or the agent's (the busy workload runs on the host's thread `busy-workload`).
fn read_cleanly_in_pprof(p: &Profile) {
    let s = |i: i64| p.string_table[usize::try_from(i).unwrap()].clone();
    let exe = std::env::current_exe().unwrap();
    let main = p
        .mapping
        .iter()
        .find(|m| std::path::Path::new(&s(m.filename)) == exe)
        .unwrap_or_else(|| {
            let names: Vec<String> = p.mapping.iter().map(|m| s(m.filename)).collect();
            panic!("no mapping names {}: {names:?}", exe.display())
        });
    assert!(!s(main.build_id).is_empty(), "the executable's build id");
    let function: BTreeMap<u64, String> = p.function.iter().map(|f| (f.id, s(f.name))).collect();
    for m in &p.mapping {
        let unnamed = p
            .location
            .iter()
            .filter(|l| l.mapping_id == m.id)
            .flat_map(|l| &l.line)
            .filter(|line| {
                let name = function.get(&line.function_id).cloned().unwrap_or_default();
                name.contains("+0x") || name.starts_with("0x")
            })
            .count();
        assert_eq!(
            m.has_functions,
            unnamed == 0,
            "{}: has_functions {} with {unnamed} unnamed frames",
            s(m.filename),
            m.has_functions
        );
    }
    let mut threads: BTreeMap<(String, String), i64> = BTreeMap::new();
    for sample in &p.sample {
        let text = |key: &str| {
            sample
                .label
                .iter()
                .find(|l| s(l.key) == key)
                .map(|l| s(l.str))
        };
        let Some(name) = text("thread") else {
            // Only the pseudo-samples (lost, dropped) carry no thread.
            assert_eq!(sample.location_id.len(), 1);
            continue;
        };
        let id = sample
            .label
            .iter()
            .find(|l| s(l.key) == "thread_id")
            .map(|l| l.num);
        assert!(id.is_some_and(|id| id > 0), "{name}: thread_id {id:?}");
        let owner = text("owner").unwrap_or_default();
        assert_eq!(
            owner,
            if name.starts_with("vigil-") {
                "vigil"
            } else {
                "host"
            },
            "{name}"
        );
        *threads.entry((name, owner)).or_default() += sample.value[0];
    }
    assert!(
        threads.contains_key(&("busy-workload".to_owned(), "host".to_owned())),
        "{threads:?}"
    );
}

/// The profile as users read it: `go tool pprof -traces` (Debian's golang-go; scripts/test installs
/// it) shows the busy workload's whole chain on the host's `busy-workload` thread, and `-top` ranks
/// the workload first, both without reaching for anything outside the file and the binary.
fn read_by_go_tool_pprof(gz: &[u8]) {
    let run = |flag: &str| go_tool_pprof(gz, flag);
    let traces = run("-traces");
    // Each trace: its labels, then its frames innermost first. The workload's chain is whole, from
    // the spin through the workload down to the thread's start, on the host's thread.
    let workload_trace = traces
        .split("-----------+")
        .find(|t| {
            t.contains("vigil_profile_test_spin") && t.contains("vigil_profile_test_busy_workload")
        })
        .unwrap_or_else(|| panic!("no trace through the workload:\n{traces}"));
    let label = |key: &str| {
        workload_trace
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}:")).map(str::trim))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(label("thread"), "busy-workload", "{workload_trace}");
    assert_eq!(label("owner"), "host", "{workload_trace}");
    assert!(
        label("thread_id").parse::<u64>().is_ok(),
        "{workload_trace}"
    );
    assert!(workload_trace.contains("thread_start"), "{workload_trace}");
    let top = run("-top");
    let first = top
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        first.contains("vigil_profile_test_") || first.contains("black_box"),
        "the workload is not on top:\n{top}"
    );
}

fn top(m: &BTreeMap<String, i64>, n: usize) -> Vec<(String, i64)> {
    let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
    v.sort_by_key(|b| std::cmp::Reverse(b.1));
    v.truncate(n);
    v
}

#[test]
fn the_profile_endpoint_finds_the_busy_workload_and_refuses_a_second_profile() {
    let _turn = turn();
    let rt = host_runtime();
    let agent = fast_agent(100).start(rt.handle()).unwrap();
    let addr = agent.local_addr();

    // Bad queries are refused before anything is sampled.
    for (q, want) in [
        ("seconds=0", "from 1 to 60"),
        ("seconds=61", "from 1 to 60"),
        ("seconds=abc", "from 1 to 60"),
        ("colour=red", "unknown query parameter"),
    ] {
        let r = get(addr, &format!("/debug/pprof/profile?{q}"), &[]);
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(r.body.contains(want), "{q}: {}", r.body);
    }

    let (stop, worker) = busy_thread();
    // A 3 s profile on one connection; a second request meanwhile is refused.
    let first = std::thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=3", &[]));
    let deadline = Instant::now() + Duration::from_secs(2);
    while scrape(addr).value("vigil_profile_running") != 1.0 {
        assert!(Instant::now() < deadline, "the first profile never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = get(addr, "/debug/pprof/profile?seconds=1", &[]);
    assert_eq!(second.status, 409, "{}", second.body);
    assert!(
        second.body.contains("already being taken"),
        "{}",
        second.body
    );
    let retry: u64 = second.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=4).contains(&retry), "Retry-After {retry}");
    let r = first.join().unwrap();

    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let p = decode(&r.bytes);
    let s = summarise(&p);
    assert_eq!(
        s.sample_types,
        vec![
            ("samples".to_owned(), "count".to_owned()),
            ("cpu".to_owned(), "nanoseconds".to_owned())
        ]
    );
    assert!(p.duration_nanos >= 2_900_000_000, "{}", p.duration_nanos);
    read_cleanly_in_pprof(&p);
    // Built with frame pointers: whole stacks, no warning.
    assert_eq!(r.header("x-vigil-profile-warning"), None);
    assert!(p.comment.is_empty(), "{:?}", p.comment);
    read_by_go_tool_pprof(&r.bytes);
    // One core busy for 3 s at 99 Hz is ~297 samples; on a loaded CI machine the workload gets less CPU.
    assert!(s.samples >= 50, "{} samples", s.samples);
    let hot = top(&s.self_samples, 5);
    eprintln!("self: {hot:?}\ntotal: {:?}", top(&s.total_samples, 8));
    // The interrupted instruction is each sample's first frame: in a debug build the workload's
    // `black_box` is a function of its own and takes many of them (inlined away in a release build).
    let own: Vec<&(String, i64)> = hot
        .iter()
        .filter(|(n, _)| !n.starts_with("core::hint::black_box"))
        .collect();
    let workload = |name: &str| name.contains("vigil_profile_test_");
    assert!(
        own.first().is_some_and(|(n, _)| workload(n)),
        "the busy workload is not the top frame: {hot:?}"
    );
    let in_workload: i64 = s
        .total_samples
        .iter()
        .filter(|(k, _)| k.contains("vigil_profile_test_busy_workload"))
        .map(|(_, v)| *v)
        .sum();
    assert!(
        in_workload * 2 >= s.samples,
        "{in_workload} of {} samples in the workload",
        s.samples
    );

    // The slot is free again, and both outcomes were counted.
    let m = scrape(addr);
    assert_eq!(
        m.value("vigil_profiles_total{trigger=\"request\",outcome=\"ok\"}"),
        1.0
    );
    assert!(m.value("vigil_profiles_total{trigger=\"request\",outcome=\"busy\"}") >= 1.0);
    assert_eq!(m.value("vigil_profile_running"), 0.0);
    let r = get(addr, "/debug/pprof/profile?seconds=1", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(summarise(&decode(&r.bytes)).samples >= 10);
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
}

#[test]
fn an_event_is_profiled_and_the_profile_is_kept_and_served_with_it() {
    let _turn = turn();
    let dir = temp_dir("event-profile");
    let rt = host_runtime();
    let agent = fast_agent(20)
        .horizons(vigil::features::Horizons::new(5, 20).unwrap())
        .warm_up(Duration::from_secs(1))
        .data_dir(Some(dir.clone()))
        .event_profiles(Some(Duration::from_secs(1)), Duration::ZERO)
        .start(rt.handle())
        .unwrap();
    let addr = agent.local_addr();
    let r = get(addr, "/api/v1/events/abc/profile", &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = get(addr, "/api/v1/events/4242/profile", &[]);
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        r.body.contains("no CPU profile is kept for event 4242"),
        "{}",
        r.body
    );

    // Cold start, then 5,000 leaked tasks open an event while the workload keeps a core busy.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = scrape(addr);
        if m.value("vigil_anomaly_score").is_finite() {
            break;
        }
        assert!(Instant::now() < deadline, "no model after the warm-up");
        next_samples(&agent, 5);
    }
    let mut events = agent.subscribe_events();
    let (stop, worker) = busy_thread();
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    for _ in 0..5000 {
        let mut rx = tx.subscribe();
        rt.spawn(async move {
            let _ = rx.recv().await;
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let opened = loop {
        assert!(Instant::now() < deadline, "the task leak opened no event");
        next_samples(&agent, 1);
        match events.try_recv() {
            Ok(vigil::EventNotice::Opened(e)) => break e,
            _ => continue,
        }
    };
    // Taken over the event's first second, symbolised at nice 19 (slow for a debug binary on a machine
    // busy with the rest of the suite), then stored: poll for it.
    let path = format!("/api/v1/events/{}/profile", opened.id);
    let deadline = Instant::now() + Duration::from_secs(90);
    let r = loop {
        let r = get(addr, &path, &[]);
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    drop(tx);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let s = summarise(&decode(&r.bytes));
    assert!(s.samples >= 20, "{} samples", s.samples);
    assert!(
        s.total_samples
            .keys()
            .any(|k| k.contains("vigil_profile_test_busy_workload")),
        "{:?}",
        top(&s.total_samples, 10)
    );
    let m = scrape(addr);
    assert_eq!(
        m.value("vigil_profiles_total{trigger=\"event\",outcome=\"ok\"}"),
        1.0
    );
    // The event listing says which events have a profile.
    let r = get(addr, "/api/v1/events", &[]);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let ev = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"].as_u64() == Some(opened.id))
        .unwrap()
        .clone();
    assert_eq!(ev["profile"], serde_json::Value::Bool(true), "{ev}");
    let served = get(addr, &path, &[]).bytes;
    drop(agent);

    // The same profile from the data directory, without the agent: `vigil events --profile`.
    let out = dir.join("event.pb.gz");
    let (d, o, id) = (
        dir.to_str().unwrap(),
        out.to_str().unwrap(),
        opened.id.to_string(),
    );
    let r = support::cli::vigil(&["events", "--store", d, "--profile", &id, "--out", o]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), served);
    // The store is never the output, and an event without a profile says so.
    let db = dir.join("vigil.db");
    let before = std::fs::read(&db).unwrap();
    let r = support::cli::vigil(&[
        "events",
        "--store",
        d,
        "--profile",
        &id,
        "--out",
        db.to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    assert_eq!(std::fs::read(&db).unwrap(), before, "the store was touched");
    let r = support::cli::vigil(&["events", "--store", d, "--profile", "4242", "--out", o]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("no CPU profile is kept for event 4242"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        served,
        "a failed export kept the earlier file"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A profile running when the host shuts the agent down stops sampling at once: its requester gets
/// a JSON 503 that says why (not a closed connection), and `shutdown()` is not held for the
/// profile's length.
#[test]
fn a_profile_running_at_shutdown_is_cut_short_with_a_json_503() {
    let _turn = turn();
    let rt = host_runtime();
    let agent = fast_agent(100).start(rt.handle()).unwrap();
    let addr = agent.local_addr();
    let asked = Instant::now();
    let request = std::thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=20", &[]));
    profile_started(&agent);
    let stopping = Instant::now();
    agent.shutdown();
    let shutdown_took = stopping.elapsed();
    let r = request.join().unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.starts_with("{\"error\":") && r.body.contains("shutting down"),
        "{}",
        r.body
    );
    assert!(shutdown_took < Duration::from_secs(3), "{shutdown_took:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
}

#[test]
fn a_running_profile_leaves_a_slot_for_scrapes_at_one_connection() {
    let _turn = turn();
    let rt = host_runtime();
    let agent = fast_agent(100)
        .http_max_connections(1)
        .start(rt.handle())
        .unwrap();
    let addr = agent.local_addr();
    let request = std::thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=2", &[]));
    profile_started(&agent);
    // The profile holds the one connection slot's worth of time; scrapes still get in, one after
    // another, and a second profile is told it is busy rather than cut off.
    for _ in 0..3 {
        let m = get(addr, "/metrics", &[]);
        assert_eq!(m.status, 200, "{}", m.body);
        assert!(m.body.contains("vigil_profile_running 1"), "{}", m.body);
    }
    let second = get(addr, "/debug/pprof/profile?seconds=1", &[]);
    assert_eq!(second.status, 409, "{}", second.body);
    let r = request.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get(addr, "/metrics", &[]).status, 200);
}

/// SIGPROFs the host's own handler saw.
static HOST_SIGPROFS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn host_sigprof(_: libc::c_int) {
    HOST_SIGPROFS.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn a_host_that_profiles_itself_keeps_its_sigprof_handler_and_the_agent_says_why_it_refuses() {
    let _turn = turn();
    let rt = host_runtime();
    let agent = fast_agent(100).start(rt.handle()).unwrap();
    let addr = agent.local_addr();
    // The host installs its own SIGPROF handler (another profiler would).
    // SAFETY: a plain handler that only bumps an atomic; `previous` receives the old action.
    let previous = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = host_sigprof as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGPROF, &action, &mut previous), 0);
        previous
    };
    let r = get(addr, "/debug/pprof/profile?seconds=1", &[]);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body.starts_with("{\"error\":") && r.body.contains("its own SIGPROF handler"),
        "{}",
        r.body
    );
    // The host's handler is still the one that runs.
    // SAFETY: raise delivers SIGPROF to this thread, whose handler only bumps an atomic.
    unsafe {
        libc::raise(libc::SIGPROF);
    }
    assert_eq!(HOST_SIGPROFS.load(Ordering::Relaxed), 1);
    assert!(
        agent
            .metrics_text()
            .contains("vigil_profiles_total{trigger=\"request\",outcome=\"host_sigprof\"} 1"),
        "{}",
        agent.metrics_text()
    );
    // With the handler gone, profiles work again.
    // SAFETY: puts back the action sigaction returned above.
    unsafe {
        libc::sigaction(libc::SIGPROF, &previous, std::ptr::null_mut());
    }
    let r = get(addr, "/debug/pprof/profile?seconds=1", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
}

extern "C" fn by_value(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
    // SAFETY: qsort passes pointers to two elements of the u64 array it sorts.
    let (a, b) = unsafe { (*a.cast::<u64>(), *b.cast::<u64>()) };
    a.cmp(&b) as libc::c_int
}

/// A thread that spends its time inside glibc's `qsort`, built without frame pointers: the walk
/// stops in it.
fn vigil_profile_test_sort_in_libc(stop: &AtomicBool) -> u64 {
    let mut v: Vec<u64> = (0..50_000u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) {
        v.iter_mut().for_each(|x| *x = x.rotate_left(7) ^ rounds);
        // SAFETY: a valid array of `v.len()` u64s and a comparator for them.
        unsafe {
            libc::qsort(v.as_mut_ptr().cast(), v.len(), 8, Some(by_value));
        }
        rounds += 1;
    }
    rounds
}

/// Each sample's thread name, functions (innermost first, inlined frames included) and count.
fn stacks(p: &Profile) -> Vec<(String, Vec<String>, i64)> {
    let s = |i: i64| p.string_table[usize::try_from(i).unwrap()].clone();
    let function: BTreeMap<u64, String> = p.function.iter().map(|f| (f.id, s(f.name))).collect();
    let location: BTreeMap<u64, Vec<String>> = p
        .location
        .iter()
        .map(|l| {
            let names = l
                .line
                .iter()
                .map(|line| function.get(&line.function_id).cloned().unwrap_or_default())
                .collect();
            (l.id, names)
        })
        .collect();
    p.sample
        .iter()
        .map(|sample| {
            let thread = sample
                .label
                .iter()
                .find(|l| s(l.key) == "thread")
                .map(|l| s(l.str))
                .unwrap_or_default();
            let names = sample
                .location_id
                .iter()
                .flat_map(|id| location.get(id).into_iter().flatten().cloned())
                .collect();
            (thread, names, sample.value.first().copied().unwrap_or(0))
        })
        .collect()
}

/// A profile through glibc's `qsort` (a C library built without frame pointers, whose frames cut
/// a frame-pointer walk: before DWARF unwinding most of these samples were one or two frames deep)
/// shows the Rust frames on both sides of it: the comparator below, the function that sorts and the
/// thread's start above, for nearly every sample of the sorting thread; no warning that stacks are
/// cut.
#[test]
fn a_profile_through_a_c_library_without_frame_pointers_shows_the_rust_frames_on_both_sides() {
    let _turn = turn();
    let rt = host_runtime();
    let agent = fast_agent(1000).start(rt.handle()).unwrap();
    let addr = agent.local_addr();
    let (stop, sorting) = worker("sorting", vigil_profile_test_sort_in_libc);
    let r = get(addr, "/debug/pprof/profile?seconds=2", &[]);
    stop.store(true, Ordering::Relaxed);
    sorting.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let p = decode(&r.bytes);
    let (mut samples, mut whole, mut in_comparator, mut through) = (0, 0, 0, 0);
    for (thread, names, n) in stacks(&p) {
        if thread != "sorting" {
            continue;
        }
        samples += n;
        let sorter = names
            .iter()
            .position(|f| f.contains("vigil_profile_test_sort_in_libc"));
        if sorter.is_some() {
            whole += n;
        }
        if let Some(cmp) = names.iter().position(|f| f.contains("by_value")) {
            in_comparator += n;
            // Between the comparator and the sorter: qsort's own frames, in libc.
            if sorter.is_some_and(|s| s > cmp + 1) {
                through += n;
            }
        }
    }
    eprintln!(
        "sorting thread: {samples} samples, {whole} reach the sorter, {in_comparator} in the \
         comparator, {through} of them through qsort to the sorter"
    );
    assert!(samples >= 50, "{samples} samples of the sorting thread");
    assert!(
        whole * 10 >= samples * 9,
        "{whole} of {samples} samples reach the function that called qsort"
    );
    assert!(in_comparator > 0, "no sample in the comparator");
    assert!(
        through * 10 >= in_comparator * 9,
        "{through} of {in_comparator} comparator samples show qsort's frames and its caller"
    );
    assert_eq!(r.header("x-vigil-profile-warning"), None);
}

//! `vigil pull` against servers that misbehave (each a small server on 127.0.0.1 the test starts
//! itself): a response larger than the limit, announced or not, a chunk of absurd size, an endless
//! header line, a server that trickles bytes and one that never answers. Each run ends in bounded time
//! with an error that names the server, and the process's memory stays small.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::cli::{tmpdir, vigil};

/// Serves every connection with `reply` (on its own thread) until the test ends.
fn server(reply: fn(&mut std::net::TcpStream)) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(8) {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.read(&mut buf);
                reply(&mut s);
            });
        }
    });
    format!("http://{addr}")
}

/// `vigil pull` against `url` with extra flags: exit code, stderr and seconds taken.
fn pull(url: &str, extra: &[&str]) -> (Option<i32>, String, f64) {
    let out = tmpdir("pull-bounded");
    let started = Instant::now();
    let mut args = vec![
        "pull",
        "--prometheus",
        url,
        "--since",
        "1h",
        "--step",
        "60s",
        "--out",
        out.0.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = vigil(&args);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        started.elapsed().as_secs_f64(),
    )
}

/// The largest resident set of any child this process has waited for, in KiB.
fn children_max_rss_kib() -> i64 {
    // SAFETY: getrusage writes into the struct we own.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u.ru_maxrss
    }
}

#[test]
fn a_response_larger_than_the_limit_is_refused_before_it_is_read() {
    // Announced: a Content-Length of 100 GB (which used to abort the process allocating it).
    let url = server(|s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n{",
        );
        std::thread::sleep(Duration::from_secs(3));
    });
    let (code, err, secs) = pull(&url, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("Prometheus at 127.0.0.1") && err.contains("above the limit of 256 MiB"),
        "{err}"
    );
    assert!(secs < 10.0, "{secs}");
    // A chunk of that size.
    let url = server(|s| {
        let _ =
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n174876E800\r\n{");
        std::thread::sleep(Duration::from_secs(3));
    });
    let (code, err, _) = pull(&url, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("above the limit"), "{err}");
    // Unannounced: a body that never ends, cut at the limit (here 1 MiB) while it streams.
    let url = server(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let block = vec![b' '; 64 * 1024];
        while s.write_all(&block).is_ok() {}
    });
    let (code, err, secs) = pull(&url, &["--max-response-mib", "1"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("above the limit of 1 MiB") && err.contains("--max-response-mib"),
        "{err}"
    );
    assert!(secs < 30.0, "{secs}");
    // None of the three took the process anywhere near the bytes offered.
    let rss = children_max_rss_kib();
    assert!(rss < 200 * 1024, "peak child RSS {rss} KiB");
}

#[test]
fn an_endless_header_line_is_refused() {
    let url = server(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Junk: ");
        let block = vec![b'a'; 64 * 1024];
        for _ in 0..8_000 {
            if s.write_all(&block).is_err() {
                break;
            }
        }
    });
    let (code, err, secs) = pull(&url, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("Prometheus at 127.0.0.1") && err.contains("header line longer than"),
        "{err}"
    );
    assert!(secs < 30.0, "{secs}");
}

#[test]
fn one_deadline_bounds_a_server_that_trickles_or_never_answers() {
    // A header line a byte every 200 ms: each read gets an answer, the request never ends.
    let url = server(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
        for _ in 0..200 {
            if s.write_all(b"X").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let (code, err, secs) = pull(&url, &["--timeout", "2s"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("Prometheus at 127.0.0.1") && err.contains("timed out after"),
        "{err}"
    );
    assert!((1.5..10.0).contains(&secs), "{secs}");
    // Accepts and says nothing.
    let url = server(|_| std::thread::sleep(Duration::from_secs(30)));
    let (code, err, secs) = pull(&url, &["--timeout", "2s"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("timed out after") && err.contains("status line"),
        "{err}"
    );
    assert!((1.5..10.0).contains(&secs), "{secs}");
    // The flag refuses what is not a duration in range, naming itself.
    let (code, err, _) = pull(&url, &["--timeout", "0s"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--timeout"), "{err}");
}

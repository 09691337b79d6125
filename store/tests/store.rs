//! The store as the agent and the CLI use it: ticks and events in batches, labels from people and
//! Alertmanager, verdicts on events, retention, a reader beside the writer, and kill -9 while writing.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use vigil_models::{AnomalyKind, Event, EventEnd};
use vigil_store::{
    LabelQuery, NewLabel, PROFILES_KEPT, ProfileRecord, SchemaInfo, Store, StoreError, TickRecord,
    Verdict, Webhook, Write,
};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn schema() -> SchemaInfo {
    SchemaInfo {
        hash: "00000000deadbeef".into(),
        columns: vec!["a".into(), "b_total".into()],
        features: vec!["a.last".into(), "b_rate.last".into(), "a.mean_10".into()],
    }
}

fn tick(t: f64, event: Option<u64>) -> Write {
    Write::Tick(TickRecord {
        t,
        schema: schema().hash,
        sample: vec![t, f64::NAN],
        features: Some(vec![1.0, 2.0, t]),
        score: Some(0.2),
        raw: Some(1.5),
        event_id: event,
    })
}

fn event(id: u64, start: f64, end: Option<f64>) -> Event {
    let mut e = Event::open(id, start, start + 2.0, AnomalyKind::AllocStorm, 0.9);
    e.end = end;
    e.ended = end.map(|_| EventEnd::Settled);
    e.peak_at = start + 3.0;
    e.anomaly_type = AnomalyKind::LatencyRegression;
    e.top_features = vec![("a.mean_10".into(), 12.5)];
    e.windows = 7;
    e
}

fn human(start: f64, end: f64, verdict: Verdict) -> NewLabel {
    NewLabel {
        start,
        end: Some(end),
        verdict,
        anomaly_type: None,
        source: "human".into(),
        confidence: 0.95,
        note: Some("checked the dashboards".into()),
        event_id: None,
    }
}

#[test]
fn ticks_and_events_round_trip_and_event_ids_continue_across_restarts() {
    let d = dir("roundtrip");
    {
        let mut s = Store::open(&d).unwrap();
        s.register_schema(&schema()).unwrap();
        s.register_schema(&schema()).unwrap();
        let mut batch: Vec<Write> = (0..10).map(|i| tick(1000.0 + f64::from(i), None)).collect();
        batch.push(Write::Event(event(3, 1002.0, None)));
        // A clock that went back: the repeated time is ignored, not overwritten.
        batch.push(tick(1005.0, Some(9)));
        let out = s.write_batch(&batch).unwrap();
        assert_eq!((out.ticks, out.duplicate_ticks, out.events), (10, 1, 1));
        // The event closes: the newest state replaces the open one.
        s.write_batch(&[Write::Event(event(3, 1002.0, Some(1008.0)))])
            .unwrap();
    }
    let s = Store::open(&d).unwrap();
    assert_eq!(s.max_event_id().unwrap(), 3);
    assert_eq!(s.schema(&schema().hash).unwrap(), Some(schema()));
    let mut seen = Vec::new();
    s.for_each_tick(1003.0, 1006.0, |t| {
        seen.push((t.t, t.sample[0], t.sample[1].is_nan(), t.event_id));
        true
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![
            (1003.0, 1003.0, true, None),
            (1004.0, 1004.0, true, None),
            (1005.0, 1005.0, true, None),
            (1006.0, 1006.0, true, None)
        ]
    );
    let evs = s.events(0.0, 2000.0, 10).unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].end.as_deref(), Some("1970-01-01T00:16:48.000Z"));
    assert_eq!(evs[0].anomaly_type, "latency_regression");
    assert_eq!(evs[0].opened_as, "alloc_storm");
    assert_eq!(evs[0].ended.as_deref(), Some("settled"));
    assert!(s.events(1009.0, 2000.0, 10).unwrap().is_empty());
    let stats = s.stats().unwrap();
    assert_eq!((stats.ticks, stats.events), (10, 1));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn labels_verdicts_and_their_checks() {
    let d = dir("labels");
    let mut s = Store::open(&d).unwrap();
    let l = s
        .add_label(&human(100.0, 200.0, Verdict::Anomaly), 300.0)
        .unwrap();
    assert_eq!(l.label, Verdict::Anomaly);
    assert_eq!(l.start, "1970-01-01T00:01:40.000Z");
    // Bad labels are refused with a reason and store nothing.
    for bad in [
        human(200.0, 100.0, Verdict::Normal),
        NewLabel {
            confidence: 1.5,
            ..human(1.0, 2.0, Verdict::Normal)
        },
        NewLabel {
            start: f64::NAN,
            ..human(1.0, 2.0, Verdict::Normal)
        },
        NewLabel {
            note: Some("x".repeat(5000)),
            ..human(1.0, 2.0, Verdict::Normal)
        },
        // Times no incident has: a unit mistake (nanoseconds) or a typo, not year 292278994.
        human(1.0, 1e300, Verdict::Normal),
        human(-1e18, 2.0, Verdict::Normal),
        human(1.7e18, 1.7e18 + 60.0, Verdict::Normal),
    ] {
        match s.add_label(&bad, 300.0) {
            Err(StoreError::Invalid(m)) => assert!(!m.is_empty()),
            other => panic!("accepted {bad:?}: {other:?}"),
        }
    }
    assert_eq!(s.labels(&LabelQuery::default()).unwrap().len(), 1);
    // A verdict on an event covers its span, as a human label; an unknown event is None.
    s.write_batch(&[Write::Event(event(7, 500.0, Some(530.0)))])
        .unwrap();
    let v = s
        .verdict(7, Verdict::Normal, Some("deploy".into()), 0.95, 600.0)
        .unwrap()
        .unwrap();
    assert_eq!(
        (v.start_unix, v.end_unix, v.event_id, v.anomaly_type.clone()),
        (500.0, Some(530.0), Some(7), None)
    );
    let v = s
        .verdict(7, Verdict::Anomaly, None, 0.95, 600.0)
        .unwrap()
        .unwrap();
    assert_eq!(v.anomaly_type.as_deref(), Some("latency_regression"));
    assert!(
        s.verdict(99, Verdict::Normal, None, 0.95, 600.0)
            .unwrap()
            .is_none()
    );
    // Overlap queries.
    let q = |from, to| {
        s.labels(&LabelQuery {
            from,
            to,
            limit: 100,
        })
        .unwrap()
        .len()
    };
    assert_eq!(q(0.0, 99.0), 0);
    assert_eq!(q(150.0, 160.0), 1);
    assert_eq!(q(510.0, 511.0), 2);
    assert_eq!(s.label_counts().unwrap(), vec![("human".to_owned(), 3)]);
    // As training reads them: a human label overrides, confidence carried.
    let all: Vec<_> = s
        .labels(&LabelQuery::default())
        .unwrap()
        .iter()
        .map(|l| l.to_label(1000.0))
        .collect();
    assert!(vigil_models::labels::label_at(&all, 150.0).unwrap().anomaly);
    let _ = std::fs::remove_dir_all(&d);
}

fn hook(status: &str, fp: &str, starts: &str, ends: &str, kind: &str) -> Vec<u8> {
    format!(
        r#"{{"receiver":"vigil","status":"{status}","version":"4","groupKey":"{{}}","truncatedAlerts":0,
        "alerts":[{{"status":"{status}","labels":{{"alertname":"VigilAnomaly","anomaly_type":"{kind}"}},
        "annotations":{{"summary":"event open"}},"startsAt":"{starts}","endsAt":"{ends}",
        "generatorURL":"http://x","fingerprint":"{fp}"}}],"groupLabels":{{}},"commonLabels":{{}},
        "commonAnnotations":{{}},"externalURL":"http://am"}}"#
    )
    .into_bytes()
}

#[test]
fn alertmanager_webhooks_open_and_close_labels_idempotently() {
    let d = dir("webhook");
    let mut s = Store::open(&d).unwrap();
    let start = "2026-11-25T12:00:07.705Z";
    let zero = "0001-01-01T00:00:00Z";
    let firing = Webhook::parse(&hook(
        "firing",
        "a930f17a938525d1",
        start,
        zero,
        "task_leak",
    ))
    .unwrap();
    let out = s.apply_webhook(&firing, 0.65, 1.0).unwrap();
    assert_eq!((out.opened, out.closed, out.unchanged), (1, 0, 0));
    // Repeated notification: nothing changes.
    let out = s.apply_webhook(&firing, 0.65, 2.0).unwrap();
    assert_eq!((out.opened, out.closed, out.unchanged), (0, 0, 1));
    let open = s.labels(&LabelQuery::default()).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].end, None);
    assert_eq!(open[0].anomaly_type.as_deref(), Some("task_leak"));
    assert_eq!(
        (open[0].source.as_str(), open[0].confidence),
        ("alertmanager", 0.65)
    );
    let resolved = Webhook::parse(&hook(
        "resolved",
        "a930f17a938525d1",
        start,
        "2026-11-25T12:01:00Z",
        "task_leak",
    ))
    .unwrap();
    assert_eq!(s.apply_webhook(&resolved, 0.65, 3.0).unwrap().closed, 1);
    assert_eq!(s.apply_webhook(&resolved, 0.65, 4.0).unwrap().unchanged, 1);
    let l = &s.labels(&LabelQuery::default()).unwrap()[0];
    assert_eq!(l.end.as_deref(), Some("2026-11-25T12:01:00.000Z"));
    // A type Vigil does not know is kept in the note, not as a type.
    let other = Webhook::parse(&hook("firing", "ff", start, zero, "timeout")).unwrap();
    s.apply_webhook(&other, 0.65, 5.0).unwrap();
    let l = s.labels(&LabelQuery::default()).unwrap();
    let l = l
        .iter()
        .find(|l| l.fingerprint.as_deref() == Some("ff"))
        .unwrap();
    assert_eq!(l.anomaly_type, None);
    assert!(
        l.note.as_deref().unwrap().contains("timeout"),
        "{:?}",
        l.note
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_webhooks_are_refused_with_a_reason() {
    let start = "2026-11-25T12:00:07.705Z";
    let zero = "0001-01-01T00:00:00Z";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not JSON"),
        (b"[]".to_vec(), "object"),
        (
            String::from_utf8(hook("firing", "f", start, zero, "x"))
                .unwrap()
                .replace(r#""version":"4""#, r#""version":"3""#)
                .into_bytes(),
            "version `3`",
        ),
        (hook("exploded", "f", start, zero, "x"), "status"),
        (hook("firing", "", start, zero, "x"), "fingerprint"),
        (hook("firing", "f", "yesterday", zero, "x"), "startsAt"),
        (hook("resolved", "f", start, zero, "x"), "no endsAt"),
        (
            hook("resolved", "f", start, "2026-11-25T11:00:00Z", "x"),
            "before",
        ),
        (
            String::from_utf8(hook("firing", "f", start, zero, "x"))
                .unwrap()
                .replace(r#""fingerprint":"f""#, r#""fingerprint":7"#)
                .into_bytes(),
            "must be a string",
        ),
    ];
    for (body, needle) in cases {
        let e = Webhook::parse(&body).unwrap_err();
        assert!(
            matches!(&e, vigil_store::StoreError::Invalid(m) if m.contains(needle)),
            "{needle}: {e}"
        );
    }
}

#[test]
fn retention_deletes_old_and_oversized_ticks_but_never_labels() {
    let d = dir("retention");
    let mut s = Store::open(&d).unwrap();
    s.register_schema(&schema()).unwrap();
    let big = vec![0.5; 2000];
    let batch: Vec<Write> = (0..3000)
        .map(|i| {
            Write::Tick(TickRecord {
                t: f64::from(i),
                schema: schema().hash,
                sample: vec![1.0, 2.0],
                features: Some(big.clone()),
                score: None,
                raw: None,
                event_id: None,
            })
        })
        .collect();
    s.write_batch(&batch).unwrap();
    s.write_batch(&[Write::Event(event(1, 10.0, Some(20.0)))])
        .unwrap();
    s.add_label(&human(5.0, 6.0, Verdict::Normal), 0.0).unwrap();
    let before = s.stats().unwrap();
    assert!(before.bytes > 40_000_000, "{}", before.bytes);
    // Age: everything before t = 1000 goes (the event ended at 20 goes too).
    let p = s.enforce_retention(3000.0, 2000.0, u64::MAX, 500).unwrap();
    assert_eq!((p.ticks, p.events), (1000, 1));
    // Size: the oldest ticks go until the pages in use fit 10 MB.
    let p = s.enforce_retention(3000.0, 1e9, 10_000_000, 100).unwrap();
    let after = s.stats().unwrap();
    assert!(after.bytes <= 10_000_000, "{}", after.bytes);
    assert!(p.ticks > 1000 && after.ticks > 0, "{p:?} {after:?}");
    assert_eq!(after.first_tick.unwrap(), 1000.0 + p.ticks as f64);
    assert_eq!(after.labels, 1, "labels are never deleted by retention");
    // The file shrank (freed pages returned).
    let size = std::fs::metadata(s.path()).unwrap().len();
    assert!(size < before.bytes, "{size} vs {}", before.bytes);
    let _ = std::fs::remove_dir_all(&d);
}

fn profile(event_id: u64) -> Write {
    Write::Profile(ProfileRecord {
        event_id,
        started: 12.0,
        seconds: 10.0,
        hz: 99,
        samples: 512,
        pprof: vec![0x1f, 0x8b, 8, 0, event_id as u8],
    })
}

#[test]
fn profiles_are_kept_with_their_event_and_go_with_it() {
    let d = dir("profiles");
    let mut s = Store::open(&d).unwrap();
    s.write_batch(&[
        Write::Event(event(1, 10.0, Some(20.0))),
        Write::Event(event(2, 100.0, None)),
    ])
    .unwrap();
    let out = s.write_batch(&[profile(1)]).unwrap();
    assert_eq!(out.profiles, 1);
    let p = s.profile(1).unwrap().unwrap();
    assert_eq!((p.seconds, p.hz, p.samples), (10.0, 99, 512));
    assert_eq!(p.pprof, vec![0x1f, 0x8b, 8, 0, 1]);
    assert!(s.profile(2).unwrap().is_none());
    assert!(s.profile(u64::MAX).unwrap().is_none());
    let evs = s.events(f64::MIN, f64::MAX, 10).unwrap();
    let flags: Vec<(u64, bool)> = evs.iter().map(|e| (e.id, e.profile)).collect();
    assert!(
        flags.contains(&(1, true)) && flags.contains(&(2, false)),
        "{flags:?}"
    );
    // A second profile of the same event replaces the first.
    s.write_batch(&[Write::Profile(ProfileRecord {
        samples: 7,
        ..p.clone()
    })])
    .unwrap();
    assert_eq!(s.profile(1).unwrap().unwrap().samples, 7);

    // Event 1 ended at 20: age retention deletes it and its profile; event 2 is open and stays.
    s.write_batch(&[profile(2)]).unwrap();
    let pruned = s.enforce_retention(1000.0, 500.0, u64::MAX, 100).unwrap();
    assert_eq!((pruned.events, pruned.profiles), (1, 1));
    assert!(s.profile(1).unwrap().is_none());
    assert!(s.profile(2).unwrap().is_some());

    // At most PROFILES_KEPT, the newest.
    let n = PROFILES_KEPT as u64 + 5;
    let batch: Vec<Write> = (10..10 + n)
        .flat_map(|id| {
            [
                Write::Event(event(id, 200.0 + id as f64, None)),
                profile(id),
            ]
        })
        .collect();
    s.write_batch(&batch).unwrap();
    s.enforce_retention(1000.0, 500.0, u64::MAX, 100).unwrap();
    assert!(s.profile(2).unwrap().is_none(), "the oldest went first");
    assert!(s.profile(10 + n - 1).unwrap().is_some());
    let kept = (0..10 + n)
        .filter(|&id| s.profile(id).unwrap().is_some())
        .count();
    assert_eq!(kept, PROFILES_KEPT);
    drop(s);
    // A reopened store still has them.
    let s = Store::open(&d).unwrap();
    assert!(s.profile(10 + n - 1).unwrap().is_some());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_reader_sees_what_the_writer_committed_while_it_writes() {
    let d = dir("reader");
    let mut w = Store::open(&d).unwrap();
    w.register_schema(&schema()).unwrap();
    w.write_batch(&[tick(1.0, None)]).unwrap();
    let r = Store::open_read_only(&d).unwrap();
    w.write_batch(&[tick(2.0, None)]).unwrap();
    assert_eq!(r.stats().unwrap().ticks, 2);
    assert!(matches!(
        Store::open_read_only(&dir("nothing-here")),
        Err(StoreError::Io { .. })
    ));
    let _ = std::fs::remove_dir_all(&d);
}

/// The child side of the kill test: writes labels and ticks as fast as it can, printing each label's
/// id once `add_label` returned (acknowledged), until killed. Run only as a child.
#[test]
fn child_writer() {
    let Ok(d) = std::env::var("VIGIL_STORE_CHILD_DIR") else {
        return;
    };
    let mut s = Store::open(std::path::Path::new(&d)).unwrap();
    s.register_schema(&schema()).unwrap();
    let mut t = s.stats().unwrap().last_tick.unwrap_or(0.0) + 1.0;
    loop {
        let batch: Vec<Write> = (0..20)
            .map(|_| {
                t += 1.0;
                tick(t, None)
            })
            .collect();
        s.write_batch(&batch).unwrap();
        let l = s
            .add_label(&human(t, t + 1.0, Verdict::Anomaly), t)
            .unwrap();
        println!("ack {}", l.id);
    }
}

#[test]
fn kill_9_while_writing_loses_no_acknowledged_label() {
    use std::io::{BufRead, BufReader};
    let d = dir("kill9");
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<i64> = Vec::new();
    for round in 0..12u64 {
        let mut child = Command::new(&exe)
            .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env("VIGIL_STORE_CHILD_DIR", &d)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        // Kill at a different point each round: after 5 to 60 acknowledgements.
        let want = 5 + (round * 7919) % 56;
        let mut n = 0;
        while n < want {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(id) = line.strip_prefix("ack ") {
                acked.push(id.trim().parse().unwrap());
                n += 1;
            }
        }
        // SIGKILL: no destructor, no flush.
        child.kill().unwrap();
        child.wait().unwrap();
        // Lines already written before the kill are acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("ack ") {
                acked.push(id.trim().parse().unwrap());
            }
        }
        let s = Store::open(&d).unwrap();
        let ids: std::collections::BTreeSet<i64> = s
            .labels(&LabelQuery::default())
            .unwrap()
            .iter()
            .map(|l| l.id)
            .collect();
        for id in &acked {
            assert!(
                ids.contains(id),
                "round {round}: acknowledged label {id} lost"
            );
        }
    }
    assert!(acked.len() >= 12 * 5, "{}", acked.len());
    let _ = std::fs::remove_dir_all(&d);
}

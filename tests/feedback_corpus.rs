//! Feedback works on a recorded corpus (`tests/data/feedback`: two fault runs recorded with `vigil
//! bench detect --record`): people call the allocation storm benign in the first run (a `normal`
//! verdict on its event; the other events are alerts that fired), the agent's retrain is promoted by
//! its gate, and on the second run the storm no longer opens an event while every other fault still
//! does, with no new events.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::cli::succeed;

#[test]
fn a_pattern_marked_normal_stops_alarming_and_every_other_fault_is_still_detected() {
    let out_json = std::env::temp_dir().join(format!("vigil-feedback-{}.json", std::process::id()));
    succeed(
        std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["bench", "feedback", "--replay"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/feedback"))
            .args(["--benign", "alloc_storm", "--json"])
            .arg(&out_json),
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out_json);
    assert_eq!(r["retrain"]["promoted"], true, "{r}");
    let faults = |side: &str| r[side]["faults"].as_array().unwrap().clone();
    // Before the feedback every fault, the benign one included, opened an event.
    assert!(faults("before").iter().all(|f| f["event"] == true), "{r}");
    for f in faults("after") {
        let benign = f["type"] == "alloc_storm";
        assert_eq!(f["event"], !benign, "{f} after the feedback: {r}");
    }
    assert!(
        r["after"]["other_events"].as_u64() <= r["before"]["other_events"].as_u64(),
        "{r}"
    );
    assert_eq!(faults("after").len(), 8);
}

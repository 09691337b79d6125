//! `ENABLE_AI_OBSERVABILITY=false` turns annotated calls into a no-op (its own binary: the switch is
//! process-wide).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use vigil_observe::observe;

#[observe(model = "switch", stage = "predict")]
fn predict(x: f32) -> Result<f32, std::io::Error> {
    if x < 0.0 {
        return Err(std::io::Error::other("negative"));
    }
    Ok(x * 2.0)
}

#[test]
fn disabled_calls_record_nothing_and_still_run() {
    // SAFETY: the only test in this binary; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("ENABLE_AI_OBSERVABILITY", "false") };
    assert!(!vigil_observe::enabled());
    assert_eq!(predict(2.0).unwrap(), 4.0);
    assert!(predict(-1.0).is_err());
    assert!(!support::text().contains("model=\"switch\""));

    vigil_observe::set_enabled(true);
    assert_eq!(predict(1.0).unwrap(), 2.0);
    assert_eq!(support::calls("switch", "predict"), 1.0);
    assert_eq!(vigil_observe::parse_enabled("maybe"), None);
}

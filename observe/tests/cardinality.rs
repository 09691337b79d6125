//! Label cardinality is bounded: label sets past the cap land under `model="__overflow__"` (its own binary:
//! the cap is process-wide).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use vigil_observe::observe;

#[observe(model = user_supplied, stage = "predict")]
fn predict(user_supplied: &str) -> u32 {
    user_supplied.len() as u32
}

#[test]
fn distinct_models_beyond_the_cap_overflow() {
    vigil_observe::set_label_cap(10);
    for i in 0..500 {
        predict(&format!("model-{i}"));
    }
    let text = support::text();
    let series = text
        .lines()
        .filter(|l| l.starts_with("ai_inference_errors_total{"))
        .count();
    assert_eq!(series, 11, "10 label sets + 1 overflow:\n{text}");
    assert_eq!(support::calls("__overflow__", "predict"), 490.0);
    assert_eq!(support::calls("model-0", "predict"), 1.0);
}

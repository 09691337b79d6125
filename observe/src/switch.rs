//! The global on/off switch (`ENABLE_AI_OBSERVABILITY`).

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

const UNKNOWN: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Parses an `ENABLE_AI_OBSERVABILITY` value: `true`/`1`/`on`/`yes` or `false`/`0`/`off`/`no`
/// (case-insensitive); `None` for anything else.
pub fn parse_enabled(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" => Some(true),
        "false" | "0" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// Whether annotated functions record anything. The first call reads `ENABLE_AI_OBSERVABILITY` (unset or
/// unparsable means on; the agent's `from_env` rejects unparsable values at start-up); later calls are one
/// relaxed atomic load.
#[inline(always)]
pub fn enabled() -> bool {
    match STATE.load(Relaxed) {
        ON => true,
        OFF => false,
        _ => init_from_env(),
    }
}

#[cold]
fn init_from_env() -> bool {
    let on = std::env::var("ENABLE_AI_OBSERVABILITY")
        .ok()
        .and_then(|v| parse_enabled(&v))
        .unwrap_or(true);
    // Keep an explicit set_enabled() that raced us.
    let _ = STATE.compare_exchange(UNKNOWN, if on { ON } else { OFF }, Relaxed, Relaxed);
    STATE.load(Relaxed) == ON
}

/// Turns recording on or off for the whole process, overriding the environment.
pub fn set_enabled(on: bool) {
    STATE.store(if on { ON } else { OFF }, Relaxed);
}

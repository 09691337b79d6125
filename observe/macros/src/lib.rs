//! The `#[vigil::observe]` attribute macro. Filled by the observe issue; empty until then.

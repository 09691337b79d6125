//! Runtime of the `#[vigil::observe]` attribute. Filled by the observe issue; empty until then.

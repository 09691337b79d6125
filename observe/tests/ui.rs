//! Compile-time behaviour of the attribute: what compiles, and the spanned errors for what does not.
// The .stderr snapshots list the OutputCheck impls of the default feature set.
#![cfg(not(feature = "ndarray"))]
#![allow(missing_docs)]

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}

//! The window allocates nothing per tick after construction, counted with Vigil's own CountingAlloc
//! (the only test in this binary, so no other test thread allocates meanwhile).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vigil::features::{FeatureVector, Horizons, SignalSet, SignalSpec, Unit, Window};

#[global_allocator]
static ALLOC: vigil::CountingAlloc = vigil::CountingAlloc::system();

#[test]
fn push_and_extract_allocate_nothing_after_warm_up() {
    let specs = (0..64)
        .map(|i| {
            let name = format!("signal_{i}");
            if i % 2 == 0 {
                SignalSpec::named(name, Unit::Count, vigil::features::SignalKind::Gauge)
            } else {
                SignalSpec::named(name, Unit::Bytes, vigil::features::SignalKind::Counter)
            }
        })
        .collect();
    let signals = SignalSet::new(specs).unwrap();
    let mut w = Window::new(&signals, Horizons::default());
    let mut fv = FeatureVector::new(w.schema());
    let mut row = vec![0.0; 64];
    let tick = |w: &mut Window, fv: &mut FeatureVector, row: &mut Vec<f64>, i: u32| {
        for (j, v) in row.iter_mut().enumerate() {
            *v = f64::from(i) * (j as f64 + 1.0) + if i.is_multiple_of(7) { f64::NAN } else { 0.0 };
        }
        w.push(f64::from(i), row).unwrap();
        w.extract(fv).unwrap();
    };
    for i in 0..100 {
        tick(&mut w, &mut fv, &mut row, i);
    }
    let before = vigil::alloc_stats();
    for i in 100..1100 {
        tick(&mut w, &mut fv, &mut row, i);
    }
    let after = vigil::alloc_stats();
    assert_eq!(
        after.allocations - before.allocations,
        0,
        "allocations in 1000 ticks"
    );
    // And the window really computed something.
    assert!(fv.values().iter().filter(|v| v.is_finite()).count() > 500);
}

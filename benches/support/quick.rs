//! The criterion setup every quick bench shares: three seconds of measurement after one of warm-up.

/// `criterion_main!` over `$target` with the shared quick configuration.
macro_rules! quick_criterion_main {
    ($target:ident) => {
        criterion::criterion_group! {
            name = benches;
            config = criterion::Criterion::default()
                .measurement_time(std::time::Duration::from_secs(3))
                .warm_up_time(std::time::Duration::from_secs(1));
            targets = $target
        }
        criterion::criterion_main!(benches);
    };
}

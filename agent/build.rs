//! `cfg(profiler)`: this build takes CPU profiles — the `profiling` feature, on Linux with glibc, on
//! x86_64 or aarch64 (the SIGPROF handler reads the interrupted registers from glibc's `ucontext_t`
//! layout for those two). Everywhere else the profile endpoints answer 501.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(profiler)");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let feature = std::env::var_os("CARGO_FEATURE_PROFILING").is_some();
    let os = var("CARGO_CFG_TARGET_OS") == "linux";
    let env = var("CARGO_CFG_TARGET_ENV") == "gnu";
    let arch = matches!(var("CARGO_CFG_TARGET_ARCH").as_str(), "x86_64" | "aarch64");
    if feature && os && env && arch {
        println!("cargo::rustc-cfg=profiler");
    }
}

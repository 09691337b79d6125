//! Configuration through real environment variables. One test per binary touches the process
//! environment, so nothing races it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;

#[test]
fn from_env_reads_vigil_variables_and_names_the_bad_one() {
    // SAFETY: the only test in this binary; no other thread reads the environment concurrently.
    unsafe {
        std::env::set_var("VIGIL_LISTEN", "127.0.0.1:0");
        std::env::set_var("VIGIL_TICK", "50ms");
        std::env::set_var("VIGIL_GPU", "off");
        std::env::set_var("VIGIL_DATA_DIR", temp_dir("env-config"));
    }
    let rt = host_runtime();
    let agent = vigil::Agent::builder()
        .from_env()
        .unwrap()
        .start(rt.handle())
        .unwrap();
    assert_ne!(agent.local_addr().port(), 9464);
    let samples = next_samples(&agent, 3);
    let dt = samples[2]
        .timestamp()
        .duration_since(samples[1].timestamp())
        .unwrap();
    assert!(
        dt.as_millis() < 500,
        "tick was {dt:?}, VIGIL_TICK=50ms ignored"
    );
    assert_eq!(scrape(agent.local_addr()).value("vigil_gpu_available"), 0.0);
    agent.shutdown();

    // SAFETY: as above.
    unsafe { std::env::set_var("VIGIL_TICK", "often") };
    let err = vigil::Agent::builder().from_env().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("VIGIL_TICK") && msg.contains("\"often\""),
        "{msg}"
    );

    // Out of range parses, and the one validation step (run by `start`) names the variable.
    // SAFETY: as above.
    unsafe { std::env::set_var("VIGIL_TICK", "5ms") };
    let config = vigil::Config::from_env().unwrap();
    let err = config.clone().check().unwrap_err();
    assert!(
        matches!(
            err,
            vigil::Error::Env {
                var: "VIGIL_TICK",
                ..
            }
        ) && err.to_string().contains("10ms to 1h"),
        "{err}"
    );
    let err = vigil::Agent::builder()
        .from_env()
        .unwrap()
        .start(rt.handle())
        .unwrap_err();
    assert!(err.to_string().contains("VIGIL_TICK"), "{err}");

    // Code has the last word: the same environment, the tick fixed in the Config, starts.
    let mut config = config;
    config.tick = std::time::Duration::from_millis(50);
    let agent = vigil::Agent::with_config(config)
        .start(rt.handle())
        .unwrap();
    assert_eq!(next_samples(&agent, 2).len(), 2);
    agent.shutdown();
}

//! Starting the agent: [`AgentBuilder::start`] checks the settings once, opens the store, builds the
//! collectors and the sampler, and hands everything to the agent thread ([`AgentHandle::spawn`]).
//! The settings themselves (`config/`) are plain data and checking; everything that runs is wired
//! here.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::runtime::Handle;

use crate::config::builder::AgentBuilder;
use crate::config::settings::{CheckedConfig, Config};
use crate::pipeline::collectors::sched::ProbeGuard;
use crate::pipeline::collectors::{
    AllocCollector, Collector, GpuCollector, InferenceCollector, ProcessCollector,
    RuntimeCollector, SchedCollector,
};
use crate::{AgentHandle, Error, Sampler};

impl AgentBuilder {
    /// The effective settings as logged at start ([`Config::effective_settings`]), with a GPU source
    /// the host set named as such.
    fn logged_settings(&self, config: &Config) -> String {
        config
            .effective_settings()
            .into_iter()
            .map(|(k, v)| match (&self.gpu_source, k) {
                (Some(s), "VIGIL_GPU") => format!("{k}={} (a source the host set)", s.kind()),
                _ => format!("{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Builds the collectors and the sampler without starting any thread or socket, except the
    /// scheduler probe thread (returned; dropping it stops it). For hosts that drive ticks themselves,
    /// and for benchmarks.
    /// The settings are checked first ([`Config::check`]).
    pub fn build_sampler(
        &mut self,
        handle: &Handle,
    ) -> Result<(Sampler, Registry, ProbeGuard), Error> {
        let config = self.check()?;
        self.sampler_from(&config, handle)
    }

    fn sampler_from(
        &mut self,
        config: &CheckedConfig,
        handle: &Handle,
    ) -> Result<(Sampler, Registry, ProbeGuard), Error> {
        let mut registry = Registry::default();
        let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
        collectors.push(Box::new(RuntimeCollector::new(handle, &mut registry)));
        let (sched, probe) =
            SchedCollector::start(handle, config.probe(), &mut registry).map_err(|source| {
                Error::Spawn {
                    what: "scheduler probe thread",
                    source,
                }
            })?;
        collectors.push(Box::new(sched));
        if crate::alloc::alloc_tracking_enabled() {
            collectors.push(Box::new(AllocCollector::new(&mut registry)));
        } else {
            tracing::info!(
                "vigil::CountingAlloc is not the global allocator: allocation signals are off"
            );
        }
        match ProcessCollector::new(&mut registry) {
            Ok(c) => collectors.push(Box::new(c)),
            Err(e) => tracing::warn!("process signals are off: {e}"),
        }
        let source = match self.gpu_source.take() {
            Some(s) => s,
            None => {
                let (source, reason) = vigil_gpu::open(config.gpu)?;
                if let Some(reason) = reason {
                    tracing::info!("no GPU signals: {reason}");
                }
                source
            }
        };
        collectors.push(Box::new(GpuCollector::new(source, &mut registry)));
        collectors.push(Box::new(InferenceCollector::new()));
        let model_from_env = config.env_text("VIGIL_MODEL").is_some();
        let model_origin = match &config.model_path {
            Some(p) if model_from_env => format!("VIGIL_MODEL={}", p.display()),
            Some(p) => format!("model_path {}", p.display()),
            None => String::new(),
        };
        let model = match &config.model_path {
            Some(p) => Some(vigil_models::ModelFile::load_regular(p).map_err(|source| Error::Model {
                origin: model_origin.clone(),
                source,
                hint: if model_from_env {
                    ". Fix or unset VIGIL_MODEL (unset, the agent trains its own model after a warm-up)"
                } else {
                    ""
                },
            })?),
            None => None,
        };
        let scoring = crate::pipeline::sampler::ScoringConfig {
            model,
            model_origin,
            engine: config.engine_config(),
        };
        let mut sampler = Sampler::new(collectors, config.features(), scoring, &mut registry)?;
        if let Some(reference) = self.drift_reference.take() {
            sampler.set_drift_reference(reference)?;
        }
        Ok((sampler, registry, ProbeGuard(probe)))
    }

    /// Binds the HTTP endpoint, builds every collector and starts the agent on its own named OS thread
    /// (`vigil-agent`, with its own current-thread runtime) plus the scheduler probe thread
    /// (`vigil-probe`). `handle` is the host runtime to monitor.
    ///
    /// Errors: a bad setting ([`Config::check`]), a port that cannot be bound, `VIGIL_GPU=nvml` without NVML, or the OS
    /// refusing a thread. Nothing keeps running after an error.
    pub fn start(mut self, handle: &Handle) -> Result<AgentHandle, Error> {
        let config = self.check()?;
        let listener =
            std::net::TcpListener::bind(config.listen).map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let access = crate::http::access::WriteAccess::new(config.listen, config.token.clone());
        // The store first: a data directory in use or damaged fails start-up before any thread runs.
        let store_config = config.store();
        let opened = match &store_config {
            Some(cfg) => Some(crate::store::open(cfg).map_err(|source| Error::Store {
                dir: cfg.dir.clone(),
                source,
            })?),
            None => None,
        };
        let (mut sampler, mut registry, probe) = self.sampler_from(&config, handle)?;
        tracing::info!(
            "vigil agent starting with {}",
            self.logged_settings(&config)
        );
        let server_metrics = crate::http::server::ServerMetrics::new(&mut registry);
        if let Some(notice) = access.exposure_notice() {
            tracing::warn!("{notice}");
        }
        let profiler = crate::profile::Profiler::new(config.event_profiles(), &mut registry);
        let mut wiring = crate::handle::Wiring::new(&sampler, config.model_path.clone(), profiler);
        if let (Some(path), Some(every)) = (&config.model_path, config.model_poll) {
            wiring.watch = Some(
                crate::store::model_watch::ModelWatch::start(
                    path.clone(),
                    every,
                    wiring.control_tx.clone(),
                    &mut registry,
                )
                .map_err(|source| Error::Spawn {
                    what: "model watch thread",
                    source,
                })?,
            );
        }
        let store = match (opened, store_config) {
            (Some((store, lock, max_event)), Some(cfg)) => {
                sampler.continue_event_ids_after(max_event);
                let metrics = crate::store::StoreMetrics::new(&mut registry);
                let schema = sampler.store_schema();
                let dir = cfg.dir.clone();
                let retrainer = crate::store::retrain::Retrainer::new(
                    config.retrain_interval,
                    config.engine_config(),
                    sampler.feature_schema().clone(),
                    wiring.model_rx.clone(),
                    wiring.control_tx.clone(),
                    crate::store::retrain::metrics(&mut registry),
                    wiring.retrain_tx.clone(),
                );
                let (sink, thread) =
                    crate::store::spawn((store, lock), cfg, schema, metrics, Some(retrainer))
                        .map_err(|source| Error::Spawn {
                            what: "store thread",
                            source,
                        })?;
                tracing::info!(dir = %dir.display(), "vigil store open");
                Some((sink, thread))
            }
            _ => None,
        };
        AgentHandle::spawn(
            listener,
            config.tick,
            sampler,
            Arc::new(registry),
            probe,
            (config.http(), server_metrics),
            {
                wiring.store = store;
                wiring.access = Some(access);
                wiring
            },
        )
    }
}

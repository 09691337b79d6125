#!/usr/bin/env python3
"""Writes vigil.json, the importable Grafana dashboard for Vigil agents: `python3 generate.py > vigil.json`.
tests/deploy.rs checks that every query names series the agent exports and that import has what it
needs; edit this file, not the JSON."""
import json

SEL = 'job="$job",instance=~"$instance"'
DS = {"type": "prometheus", "uid": "${datasource}"}
panels = []


def panel(title, description, unit, targets, kind="timeseries", w=12, h=8, extra=None):
    i = len(panels)
    p = {
        "id": i + 1,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": (i % 2) * 12 if w == 12 else 0, "y": (i // 2) * 8, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(65 + k), "datasource": DS, "expr": e, "legendFormat": leg}
            for k, (e, leg) in enumerate(targets)
        ],
    }
    if extra:
        p.update(extra)
    panels.append(p)


panel("Anomaly score and threshold",
      "Calibrated score of every window (0.5 = the threshold for every model) and whether an event is open.",
      "none",
      [(f"vigil_anomaly_score{{{SEL}}}", "score {{instance}}"),
       (f"vigil_anomaly_threshold{{{SEL}}}", "threshold"),
       (f"vigil_anomaly_event_open{{{SEL}}}", "event open {{instance}}")])
panel("Open anomaly events",
      "The event open now on each agent: its id, the type it opened with and the feature that led it.",
      "none",
      [(f"vigil_anomaly_event_info{{{SEL}}} == 1", "{{instance}} event {{event_id}}: {{anomaly_type}} ({{top_feature}})")],
      kind="table")
panel("Anomaly events by type",
      "Events opened in the dashboard's range, by the type named at opening.",
      "short",
      [(f"sum by (anomaly_type) (increase(vigil_anomaly_events_total{{{SEL}}}[$__range]))", "{{anomaly_type}}")],
      kind="barchart")
panel("Tokio tasks and worker busy time",
      "Alive tasks (a steady climb under steady load is a leak) and the share of worker time spent busy.",
      "short",
      [(f"vigil_tokio_alive_tasks{{{SEL}}}", "alive tasks {{instance}}"),
       (f"vigil_tokio_busy_ratio{{{SEL}}}", "busy ratio {{instance}}")])
panel("Scheduler latency p99",
      "How long a newly woken task waits for a worker (probe spawned from outside the runtime).",
      "s",
      [(f"histogram_quantile(0.99, sum by (le, instance) (rate(vigil_sched_latency_seconds_bucket{{{SEL}}}[$__rate_interval])))", "p99 {{instance}}")])
panel("Allocations",
      "Bytes allocated per second by the host's threads (the agent's own are counted apart) and live heap.",
      "Bps",
      [(f"rate(vigil_alloc_bytes_total{{{SEL}}}[$__rate_interval])", "allocated {{instance}}"),
       (f"vigil_alloc_live_bytes{{{SEL}}}", "live {{instance}}")])
panel("CPU and resident memory",
      "Process CPU (1 = one core) and resident memory.",
      "short",
      [(f"vigil_process_cpu_ratio{{{SEL}}}", "cpu {{instance}}"),
       (f"vigil_process_resident_memory_bytes{{{SEL}}} / 2^30", "RSS GiB {{instance}}")])
panel("GPU memory",
      "Device memory in use and this process's share, per GPU (NVML).",
      "bytes",
      [(f"vigil_gpu_memory_used_bytes{{{SEL}}}", "used gpu {{gpu}}"),
       (f"vigil_gpu_process_memory_bytes{{{SEL}}}", "process gpu {{gpu}}")])
panel("Inference latency p99",
      "From #[vigil::observe]: p99 duration per model and stage.",
      "s",
      [(f"histogram_quantile(0.99, sum by (le, model, stage) (rate(ai_inference_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "{{model}}/{{stage}}")])
panel("Inference errors and anomalies",
      "Failed calls per second, and classified anomalies (timeout, nan_output, oom, cancelled, panic, error).",
      "reqps",
      [(f"sum by (model, stage) (rate(ai_inference_errors_total{{{SEL}}}[$__rate_interval]))", "errors {{model}}/{{stage}}"),
       (f"sum by (anomaly_type) (rate(ai_inference_anomaly_total{{{SEL}}}[$__rate_interval]))", "{{anomaly_type}}")])
panel("Streamed generation: time to first token and per output token",
      "From vigil::observe::stream: p99 time to first token (queue and prefill) and median time per output token (decode), per model and stage.",
      "s",
      [(f"histogram_quantile(0.99, sum by (le, model, stage) (rate(gen_ai_server_time_to_first_token_seconds_bucket{{{SEL}}}[$__rate_interval])))", "TTFT p99 {{model}}/{{stage}}"),
       (f"histogram_quantile(0.5, sum by (le, model, stage) (rate(gen_ai_server_time_per_output_token_seconds_bucket{{{SEL}}}[$__rate_interval])))", "TPOT p50 {{model}}/{{stage}}")])
panel("Queue and tokens",
      "From vigil::observe::queue and ::stream: requests waiting, p99 time in the queue, and output tokens per second.",
      "short",
      [(f"sum by (model, stage) (ai_inference_queue_waiting_requests{{{SEL}}})", "waiting {{model}}/{{stage}}"),
       (f"histogram_quantile(0.99, sum by (le, model, stage) (rate(ai_inference_queue_time_seconds_bucket{{{SEL}}}[$__rate_interval])))", "queue time p99 {{model}}/{{stage}}"),
       (f"sum by (model, stage) (rate(gen_ai_server_tokens_total{{type=\"output\",{SEL}}}[$__rate_interval]))", "tokens/s {{model}}/{{stage}}")])
panel("HTTP and gRPC requests p99",
      "From vigil::observe::http::HttpMetricsLayer: p99 request duration by route template and status code, gRPC calls by method, and the p99 time to the response head of every request (what the detector reads: a stream's head comes before its answer).",
      "s",
      [(f"histogram_quantile(0.99, sum by (le, http_route, http_response_status_code) (rate(http_server_request_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "{{http_route}} {{http_response_status_code}}"),
       (f"histogram_quantile(0.99, sum by (le, rpc_service, rpc_method) (rate(rpc_server_call_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "{{rpc_service}}/{{rpc_method}}"),
       (f"histogram_quantile(0.99, sum by (le) (rate(vigil_http_server_response_head_seconds_bucket{{{SEL}}}[$__rate_interval])))", "response head p99")])
panel("Feature drift",
      "Largest population stability index of any feature against the model's training windows (above 0.25: shifted).",
      "none",
      [(f"vigil_feature_drift_max_psi{{{SEL}}}", "max PSI {{instance}}")])
panel("Retraining and labels",
      "Retrains by outcome (promoted only when the gate passes) and labels stored by source, over the range.",
      "short",
      [(f"sum by (outcome) (increase(vigil_retrain_total{{{SEL}}}[$__range]))", "retrain {{outcome}}"),
       (f"sum by (source) (increase(vigil_labels_total{{{SEL}}}[$__range]))", "labels {{source}}")],
      kind="barchart")

dashboard = {
    "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                  "pluginId": "prometheus", "pluginName": "Prometheus"}],
    "uid": "vigil-agent",
    "title": "Vigil — runtime anomalies",
    "description": "Anomaly score and events, runtime signals, inference metrics, drift and retraining of Vigil agents.",
    "tags": ["vigil", "anomaly", "inference"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0},
        {"name": "job", "label": "Job", "type": "query", "datasource": DS,
         "query": {"query": "label_values(vigil_agent_ticks_total, job)", "refId": "job"},
         "definition": "label_values(vigil_agent_ticks_total, job)", "refresh": 2, "current": {}, "hide": 0},
        {"name": "instance", "label": "Instance", "type": "query", "datasource": DS,
         "query": {"query": "label_values(vigil_agent_ticks_total{job=\"$job\"}, instance)", "refId": "instance"},
         "definition": "label_values(vigil_agent_ticks_total{job=\"$job\"}, instance)", "refresh": 2,
         "includeAll": True, "multi": True, "current": {}, "hide": 0},
    ]},
    "annotations": {"list": []},
    "panels": panels,
}
print(json.dumps(dashboard, indent=2, ensure_ascii=False))

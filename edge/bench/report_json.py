"""The bench report as JSON: stable keys, a schema version, and the summary figures
that `edge bench compare` puts side by side.

    {"schema_version": 1, "kind": "edge-bench", "created_at", "host", "mode", "budget_s", "elapsed_s",
     "options": {...}, "fingerprint": {...}, "reliable", "unreliable_reasons": [...], "problems": [...],
     "sections": {"local", "daemon", "capacity", "router", "resources"}: each {"status": "ok" | "skipped" |
                  "error", "elapsed_s", "noise": {"other_cpu", "steal", "reliable", "reason"}, ...},
     "summary": {METRICS key: number or null}}

A figure from repeats is a median with its spread (edge.bench.stats.summarize); the
summary holds the medians. Adding a key is compatible; renaming or removing one raises
SCHEMA_VERSION.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import EdgeError

__all__ = ["SCHEMA_VERSION", "KIND", "SECTIONS", "TOP_KEYS", "Metric", "METRICS", "BenchReportError", "summary", "failed_parts",
           "load_report", "report_stem", "write_json"]

SCHEMA_VERSION = 1
KIND = "edge-bench"
SECTIONS = ("local", "daemon", "capacity", "router", "resources")
TOP_KEYS = ("schema_version", "kind", "created_at", "host", "mode", "budget_s", "elapsed_s", "options",
            "fingerprint", "reliable", "unreliable_reasons", "problems", "sections", "summary")


class BenchReportError(EdgeError):
    """A file that is not an edge bench report of a schema this edge reads."""


@dataclass(frozen=True)
class Metric:
    """One summary figure: `better` is "higher", "lower" or "" (no direction); `slo` names
    the compare option that sets a target for it ("ttft", "tok_s", "rps" or "")."""

    key: str
    label: str
    unit: str
    better: str
    slo: str = ""


METRICS = (
    Metric("gen_tps", "generation, default model at its best thread count", "tok/s", "higher", "tok_s"),
    Metric("prompt_tps", "prompt processing, same", "tok/s", "higher"),
    Metric("best_threads", "fastest thread count", "", ""),
    Metric("ttft_short_ms", "time to first token, short prompt (model)", "ms", "lower", "ttft"),
    Metric("ttft_long_ms", "time to first token, long prompt (model)", "ms", "lower"),
    Metric("daemon_tps", "streamed through the daemon", "tok/s", "higher", "tok_s"),
    Metric("direct_tps", "streamed by llama-cpp-python directly", "tok/s", "higher"),
    Metric("daemon_ratio", "daemon / direct, streamed", "x", "higher"),
    Metric("daemon_ttft_ms", "time to first token through the daemon", "ms", "lower", "ttft"),
    Metric("ttft_overhead_ms", "daemon TTFT minus direct TTFT", "ms", "lower"),
    Metric("grpc_rtt_ms", "gRPC round trip, no model time", "ms", "lower"),
    Metric("capacity_rps", "capacity with p99 under the limit", "req/s", "higher", "rps"),
    Metric("overflow_remote_share", "past capacity, remote up: share sent remote", "", ""),
    Metric("overflow_up_p99_ms", "past capacity, remote up: p99", "ms", "lower"),
    Metric("overflow_down_refused", "past capacity, remote down: share refused", "", "lower"),
    Metric("classifier_ms", "difficulty classifier, one score", "ms", "lower"),
    Metric("cache_lookup_ms", "answer cache semantic lookup", "ms", "lower"),
    Metric("confidence_ratio", "generation with confidence scoring / without", "x", "higher"),
    Metric("rss_idle_mb", "daemon resident memory, idle", "MB", "lower"),
    Metric("rss_load_mb", "daemon resident memory, under load", "MB", "lower"),
    Metric("cold_start_s", "cold start to SERVING", "s", "lower"),
    Metric("temp_max_c", "hottest temperature sensor", "°C", "lower"),
)


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _round(v: Any, digits: int = 3) -> float | None:
    return round(float(v), digits) if isinstance(v, (int, float)) else None


def _mb(v: Any) -> float | None:
    return round(v / 1e6, 1) if isinstance(v, (int, float)) else None


def summary(sections: dict[str, Any]) -> dict[str, float | None]:
    """The METRICS figures from the sections (None where a section did not measure one)."""
    models = _get(sections, "local", "models") or []
    model = next((m for m in models if m.get("default")), models[0] if models else {})
    daemon, cap, router, res = (sections.get(k, {}) for k in ("daemon", "capacity", "router", "resources"))
    down = _get(cap, "past_capacity", "remote_down") or {}
    refused = down.get("errors") / down["requests"] if down.get("requests") else None
    values = {
        "gen_tps": model.get("gen_tps"), "prompt_tps": model.get("prompt_tps"), "best_threads": model.get("best_threads"),
        "ttft_short_ms": _get(model, "ttft_ms", "short", "median"), "ttft_long_ms": _get(model, "ttft_ms", "long", "median"),
        "daemon_tps": _get(daemon, "streams", "daemon_tps", "median"),
        "direct_tps": _get(daemon, "streams", "direct_tps", "median"), "daemon_ratio": _get(daemon, "streams", "ratio"),
        "daemon_ttft_ms": _get(daemon, "streams", "daemon_ttft_ms", "median"),
        "ttft_overhead_ms": _get(daemon, "streams", "ttft_overhead_ms", "median"),
        "grpc_rtt_ms": _get(daemon, "round_trips", "generate_ms", "median"),
        "capacity_rps": cap.get("capacity_rps"),
        "overflow_remote_share": _get(cap, "past_capacity", "remote_up", "remote_share"),
        "overflow_up_p99_ms": _get(cap, "past_capacity", "remote_up", "p99_ms"), "overflow_down_refused": refused,
        "classifier_ms": _get(router, "classifier", "score_ms", "median"),
        "cache_lookup_ms": _get(router, "cache", "semantic_ms", "median"),
        "confidence_ratio": _get(router, "confidence", "ratio"),
        "rss_idle_mb": _mb(_get(res, "daemon_rss_idle_bytes")), "rss_load_mb": _mb(_get(res, "daemon_rss_load_bytes")),
        "cold_start_s": _get(res, "cold_start_s"), "temp_max_c": _get(res, "sensors", "temperature_c", "max"),
    }
    return {m.key: _round(values.get(m.key)) for m in METRICS}


def failed_parts(report: dict[str, Any]) -> list[str]:
    """"section: error" or "section.part: error" for everything that failed in the run."""
    out = []
    for name, section in report["sections"].items():
        if section.get("status") == "error":
            out.append(f"{name}: {section.get('error')}")
        out += [f"{name}.{k}: {v.get('error')}" for k, v in section.items()
                if isinstance(v, dict) and v.get("status") == "error"]
    return out


def report_stem(host: str, created_at: str) -> str:
    """`bench-<host>-<YYYYmmddTHHMMSSZ>`, safe as a file name."""
    host = re.sub(r"[^0-9A-Za-z._-]", "_", host) or "host"
    return f"bench-{host}-{re.sub(r'[^0-9A-Za-z]', '', created_at)}"


def write_json(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_report(path: Path) -> dict[str, Any]:
    """A report written by `edge bench`; BenchReportError naming the file otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BenchReportError(f"{path}: cannot read a bench report: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise BenchReportError(f"{path}: not an edge bench report (no \"kind\": \"{KIND}\")")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BenchReportError(f"{path}: bench report schema {data.get('schema_version')!r}, this edge reads "
                               f"{SCHEMA_VERSION}")
    missing = [k for k in TOP_KEYS if k not in data]
    if missing:
        raise BenchReportError(f"{path}: bench report lacks {', '.join(missing)}")
    return data

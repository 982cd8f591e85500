"""Prometheus metrics, on their own registry and their own HTTP port (off unless configured).

Counters and histograms are updated as requests finish (`observe_result`,
`observe_failure`); gauges that describe live state (breakers, queues, network,
budget) are read from the engine at scrape time by a collector, so they are never stale
and cost nothing between scrapes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from edge import __version__

if TYPE_CHECKING:
    from edge.snapshot import Snapshot
    from edge.types import Result

__all__ = ["Metrics", "ESCALATION_CODES"]

log = logging.getLogger("edge.metrics")

# Reason codes that mean "the local model could have answered, but the router sent it
# further": each counts as an escalation, labelled by the code.
ESCALATION_CODES = frozenset({
    "LATENCY_LOCAL_TOO_SLOW", "LOAD_QUEUE", "LOAD_LOCAL_SLOW", "LOAD_MEMORY", "LOAD_BATTERY", "LOAD_THERMAL",
    "DIFFICULTY_HIGH", "CASCADE_ESCALATED", "LOCAL_QUEUE_FULL",
})

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BREAKER_STATES = ("closed", "half_open", "open")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("edge_requests", "Requests finished, by serving tier, backend and outcome "
                                "(ok or the gRPC status name)", ["tier", "backend", "outcome"], registry=r)
        self.duration = Histogram("edge_request_duration_seconds", "Time from request to final answer",
                                  ["tier"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("edge_time_to_first_token_seconds", "Time from request to the first answer text",
                              ["tier"], buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("edge_tokens", "Tokens processed, by direction (input/output) and tier",
                              ["direction", "tier"], registry=r)
        self.cost = Counter("edge_cost_usd", "Cost of answered requests in US dollars (local energy/amortization "
                            "included)", ["tier", "backend"], registry=r)
        self.escalations = Counter("edge_escalations", "Requests sent past the local model, by the reason code",
                                   ["reason"], registry=r)
        self.rejections = Counter("edge_rejected", "RPCs refused at the door, by reason "
                                  "(unauthenticated, rate_limited)", ["reason"], registry=r)
        self.pii = Counter("edge_pii_requests", "Requests in which the PII guard found something, by action "
                           "(keep_local, redact)", ["action"], registry=r)
        self.cache = Counter("edge_cache_hits", "Answers served from the answer cache, by match (exact, "
                             "semantic, fallback: the cascade's last resort with no remote tier)", ["match"], registry=r)
        self._server: Any = None

    # -- updates from the request path -------------------------------------------------

    def observe_result(self, r: Result, *, pii_action: str | None = None) -> None:
        """An answer: counters by its tier; a cache hit by its match; PII by the guard's action."""
        tier = str(r.tier)
        self.requests.labels(tier, r.backend, "ok").inc()
        self.duration.labels(tier).observe(r.timings.total_ms / 1000)
        self.ttft.labels(tier).observe(r.timings.time_to_first_token_ms / 1000)
        self.tokens.labels("input", tier).inc(r.prompt_tokens)
        self.tokens.labels("output", tier).inc(r.completion_tokens)
        self.cost.labels(tier, r.backend).inc(max(0.0, r.cost_usd))
        codes = {reason.code for reason in r.trace} & ESCALATION_CODES
        if tier != "local" and any(a.outcome == "queue_full" for a in r.attempts):
            codes.add("LOCAL_QUEUE_FULL")  # the local model was chosen but busy: the remote took over
        for code in codes:
            self.escalations.labels(code).inc()
        if r.cache is not None:
            fallback = any(reason.code == "CACHE_FALLBACK" for reason in r.trace)
            self.cache.labels("fallback" if fallback else r.cache.match).inc()
        if pii_action is not None:
            self.pii.labels(pii_action).inc()

    def observe_failure(self, status: str) -> None:
        self.requests.labels("", "", status).inc()

    # -- the endpoint ---------------------------------------------------------------------

    def attach(self, snapshot: Callable[[], Snapshot], state: Callable[[], str]) -> None:
        """Register the live-state collector: `snapshot()` is read at each scrape (on the
        metrics server's thread), `state()` returns the daemon's state string."""
        self.registry.register(_LiveState(snapshot, state))

    def serve(self, listen: str, *, certfile: str = "", keyfile: str = "", client_cafile: str = "") -> str:
        """Start the /metrics endpoint on its own thread (HTTPS with `certfile`, and client
        certificates signed by `client_cafile` when given); returns the bound host:port."""
        from prometheus_client import start_http_server

        host, _, port = listen.rpartition(":")
        tls = {"certfile": certfile, "keyfile": keyfile} if certfile else {}
        if client_cafile:
            tls |= {"client_cafile": client_cafile, "client_auth_required": True}
        server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=self.registry, **tls)
        self._server = server
        bound = f"{host}:{server.server_address[1]}"
        log.info("metrics listening", extra={"address": bound})
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _LiveState(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot], state: Callable[[], str]) -> None:
        self.snapshot, self.state = snapshot, state

    def collect(self) -> Iterator[Any]:
        snap = self.snapshot()
        info = InfoMetricFamily("edge_build", "Version of this daemon")
        info.add_metric([], {"version": __version__})
        yield info
        yield GaugeMetricFamily("edge_uptime_seconds", "Seconds since the daemon started", value=snap.uptime_s)
        serving = GaugeMetricFamily("edge_serving", "1 while the daemon serves requests, else 0")
        serving.add_metric([], 1.0 if self.state() == "serving" else 0.0)
        yield serving

        network = GaugeMetricFamily("edge_network_state", "1 for the current network state: up (a remote "
                                    "backend is usable), down, offline (air-gapped mode), local-only", labels=["state"])
        for s in ("up", "down", "offline", "local-only"):
            network.add_metric([s], 1.0 if s == snap.network else 0.0)
        yield network
        yield from _backend_gauges(snap)
        yield from _model_gauges(snap)
        if snap.cache_entries is not None:
            yield GaugeMetricFamily("edge_cache_entries", "Answers held by the answer cache",
                                    value=float(snap.cache_entries))
            refused = CounterMetricFamily("edge_cache_guard_refused", "Semantic cache hits the guard refused "
                                          "because the questions differ in meaning, by reason", labels=["reason"])
            for reason, n in sorted(snap.cache_refused.items()):
                refused.add_metric([reason], float(n))
            yield refused
        yield from _budget_gauges(snap)
        yield from _router_gauges(snap)
        yield from _fleet_gauges(snap)


def _backend_gauges(snap: Snapshot) -> Iterator[Any]:
    breaker = GaugeMetricFamily("edge_breaker_state", "1 for each remote backend's current breaker state",
                                labels=["backend", "state"])
    rotation = GaugeMetricFamily("edge_backend_in_rotation", "0 when a backend is out of rotation "
                                 "(bad credentials, missing key), else 1", labels=["backend"])
    outstanding = GaugeMetricFamily("edge_backend_outstanding_requests", "Requests in flight per remote backend",
                                    labels=["backend"])
    for b in snap.backends:
        for s in _BREAKER_STATES:
            breaker.add_metric([b.name, s], 1.0 if b.breaker == s else 0.0)
        rotation.add_metric([b.name], 0.0 if b.out_of_rotation else 1.0)
        outstanding.add_metric([b.name], float(b.outstanding))
    yield from (breaker, rotation, outstanding)


def _model_gauges(snap: Snapshot) -> Iterator[Any]:
    queue = GaugeMetricFamily("edge_queue_depth", "Requests waiting for each local model", labels=["model"])
    active = GaugeMetricFamily("edge_queue_active", "Requests being generated by each local model",
                               labels=["model"])
    tps = GaugeMetricFamily("edge_local_generation_tokens_per_second", "Local generation rate per model "
                            "(moving average of served requests, seeded by the hardware profile)", labels=["model"])
    for m in snap.models:
        queue.add_metric([m.name], float(m.queue_depth))
        active.add_metric([m.name], float(m.active))
        if m.generation_tokens_per_second is not None:
            tps.add_metric([m.name], m.generation_tokens_per_second)
    yield from (queue, active, tps)


def _budget_gauges(snap: Snapshot) -> Iterator[Any]:
    budgets = [b for b in snap.budgets if b.limit_usd is not None]
    if not budgets:
        return
    spent = GaugeMetricFamily("edge_budget_spent_usd", "Spending so far in the budget period", labels=["period"])
    limit = GaugeMetricFamily("edge_budget_limit_usd", "Configured budget per period", labels=["period"])
    for b in budgets:
        spent.add_metric([b.period], b.spent_usd)
        limit.add_metric([b.period], b.limit_usd or 0.0)
    yield spent
    yield limit


def _router_gauges(snap: Snapshot) -> Iterator[Any]:
    r = snap.router
    if r is None:
        return
    yield GaugeMetricFamily("edge_router_labels", "Teacher labels the router keeps", value=float(r.labels))
    yield GaugeMetricFamily("edge_router_shadow_samples", "Shadow calls started since the daemon started",
                            value=float(r.shadow_samples))
    yield GaugeMetricFamily("edge_router_fitted", "1 when the router scores difficulty with its fit to this "
                            "deployment, 0 while the shipped prior decides", value=1.0 if r.fitted else 0.0)
    if r.fitted:
        yield GaugeMetricFamily("edge_router_threshold", "The fit's difficulty threshold", value=r.threshold or 0.0)
        yield GaugeMetricFamily("edge_router_estimated_agreement", "Estimated agreement with the remote tier at "
                                "the fit's operating point", value=r.estimated_agreement or 0.0)
        yield GaugeMetricFamily("edge_router_remote_share", "Share of the labelled traffic the fit sends remote",
                                value=r.remote_share or 0.0)


def _fleet_gauges(snap: Snapshot) -> Iterator[Any]:
    """The fleet link, labelled by box: each box's series stay apart where a fleet's
    metrics are scraped together."""
    f = snap.fleet
    if f is None:
        return
    box = [f.box]

    def gauge(name: str, text: str, value: float, kind: type = GaugeMetricFamily) -> Any:
        family = kind(name, text, labels=["box"])
        family.add_metric(box, float(value))
        return family

    yield gauge("edge_fleet_connected", "1 while this box's link to its fleet is up, else 0", f.connected)
    yield gauge("edge_fleet_pending", "Fleet writes waiting for the link (spend events, answers, labels)", f.pending)
    if f.lease_usd is not None:
        yield gauge("edge_fleet_lease_usd", "What is left of this box's lease of the fleet budget", f.lease_usd)
        yield gauge("edge_fleet_lease_spent_usd", "What this box spent from fleet leases today", f.lease_spent_usd)
    yield gauge("edge_fleet_cache_shared", "Answers this box shared with its fleet", f.cache_shared,
                CounterMetricFamily)
    yield gauge("edge_fleet_cache_received", "Answers other boxes shared that this box added to its cache",
                f.cache_received, CounterMetricFamily)
    yield gauge("edge_fleet_cache_dropped", "Answers not shared because the queue to the fleet was full",
                f.cache_dropped, CounterMetricFamily)
    yield gauge("edge_fleet_labels_sent", "Routing labels (numbers, no text) this box published",
                f.labels_sent, CounterMetricFamily)
    yield gauge("edge_fleet_labels_received", "Routing labels taken from the fleet", f.labels_received,
                CounterMetricFamily)

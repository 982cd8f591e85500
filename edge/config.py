"""One typed settings schema, loaded from TOML, with defaults that make zero-config work.

Every option is declared once here, with its default, bounds and a one-line
description; `edge config check` and the environment overrides read this schema.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.errors import ConfigError
from edge.privacy import KINDS

__all__ = [
    "Settings", "ServerSettings", "LimitsSettings", "LocalSettings", "ModelEntry", "RemoteEntry",
    "RoutingSettings", "ResilienceSettings", "SecuritySettings", "PrivacySettings", "MetricsSettings", "HttpSettings", "CacheSettings",
    "TracingSettings", "CostSettings", "PriceOverride", "PlanSettings", "load_settings",
]


def model_name_problem(name: str) -> str | None:
    """Why `name` cannot name a model, or None. Names become file names in the models
    directory (receipts), so nothing that could point elsewhere: no slashes, no leading
    dot, no spaces or control characters."""
    if not name or len(name) > 128 or name.startswith(".") or any(
            c.isspace() or c in "/\\" or not c.isprintable() for c in name):
        return "must be 1-128 characters with no spaces, slashes or control characters, not starting with '.'"
    return None


class _Section(BaseModel):
    # Unknown keys are typos more often than not: reject them by name.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _host_port(v: str) -> str:
    if v == "":
        return v
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port with a port from 0 to 65535, e.g. 127.0.0.1:50051")
    return v


# A listener address: "host:port" (port 0 picks a free one) or "" (off).
HostPort = Annotated[str, AfterValidator(_host_port)]


class ServerSettings(_Section):
    listen: HostPort = Field("127.0.0.1:50051", description="TCP address host:port to listen on; port 0 picks a free one; empty disables TCP")
    unix_socket: str = Field("", description="Path of a unix socket to listen on as well; empty disables it")
    shutdown_grace_s: float = Field(10.0, ge=0, le=3600, description="Seconds in-flight requests get to finish after SIGTERM/SIGINT")
    unix_socket_group: str = Field("", description="Group (name or id) that may use the unix socket too: the socket becomes 0660 owned by it; empty = owner only (0600)")
    max_receive_message_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="gRPC's own cap on one request's encoded size")
    max_concurrent_rpcs: int = Field(1024, ge=1, le=1_000_000, description="Most gRPC calls in progress at once, health watches included; past it a call gets RESOURCE_EXHAUSTED at once")
    max_streams_per_connection: int = Field(100, ge=1, le=100_000, description="Most concurrent gRPC calls on one connection")
    handshake_timeout_s: float = Field(10.0, gt=0, le=3600, description="A new gRPC connection must finish its handshake (TLS and HTTP/2 preface) within this, else it is closed")
    max_connection_age_s: float = Field(3600.0, gt=0, le=30 * 86400, description="A gRPC connection is asked to reconnect after this long (calls in progress get max_connection_age_grace_s); bounds what an idle or abandoned call holds")
    max_connection_age_grace_s: float = Field(300.0, ge=0, le=86400, description="How long calls on an aged-out connection may still run before it is closed")


class LimitsSettings(_Section):
    max_content_bytes: int = Field(64 * 1024, ge=1, le=16 * 1024 * 1024, description="Most UTF-8 bytes of message content one request may carry, all messages together")
    max_messages: int = Field(256, ge=1, le=10_000, description="Most chat messages one request may carry")
    max_tokens_cap: int = Field(2048, ge=1, le=1_000_000, description="Largest max_tokens a request may ask for")
    default_max_tokens: int = Field(256, ge=1, le=1_000_000, description="max_tokens used when a request leaves it at 0")
    max_stop_sequences: int = Field(8, ge=0, le=64, description="Most stop sequences one request may carry")


class ModelEntry(_Section):
    name: str = Field(description="Name clients use to pick this model")
    path: str = Field("", description="Path of the GGUF file; empty = the installed manifest model of this name")
    sha256: str = Field("", description="Expected sha256 of the file; checked at start when given")
    backend: Literal["llama", "fake"] = Field("llama", description="'llama' serves the GGUF with llama.cpp; 'fake' is the built-in test backend")
    chat_format: str = Field("", description="llama-cpp-python chat format name; empty = the template in the GGUF metadata")
    primer: bool = Field(True, description="Put the manifest's example exchange for this model before a conversation's first turn (the default model answers in English and to the point with it; README, 'The first answer')")
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature for requests that set none; empty = the manifest's for this model, else 0.8")
    n_ctx: int = Field(0, ge=0, le=1_048_576, description="Context length in tokens; 0 = the local default")
    fake_reply: str = Field("", description="fake backend: the reply to send; empty = echo the last user message")
    fake_token_delay_ms: float = Field(0.0, ge=0, le=60_000, description="fake backend: delay before each token")
    fake_load_delay_ms: float = Field(0.0, ge=0, le=600_000, description="fake backend: time 'loading' takes")
    fake_logprob: float | list[float] | None = Field(None, description="fake backend: the log-probability it reports for every token when a cascade asks how confident it is, or a list of them, one per token in order (the last repeats); unset = it reports none")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if (problem := model_name_problem(v)) is not None:
            raise ValueError(problem)
        return v

    @field_validator("fake_logprob")
    @classmethod
    def _fake_logprob(cls, v: float | list[float] | None) -> float | list[float] | None:
        values = [] if v is None else [v] if isinstance(v, (int, float)) else v
        if isinstance(v, list) and not 1 <= len(v) <= 4096:
            raise ValueError("give 1 to 4096 values")
        if any(not math.isfinite(x) or x > 0 for x in values):
            raise ValueError("log-probabilities are finite and at most 0")
        return v


class LocalSettings(_Section):
    default_model: str = Field("", description="Model answering requests that name none; empty = the manifest's default")
    models_dir: str = Field("", description="Where pulled models live; empty = EDGE_MODELS_DIR or the user cache dir")
    n_threads: int = Field(0, ge=0, le=512, description="llama.cpp threads; 0 = physical cores (measured fastest here)")
    n_ctx: int = Field(2048, ge=128, le=1_048_576, description="Default context length in tokens")
    n_gpu_layers: int = Field(0, ge=-1, le=10_000, description="Layers to offload to a GPU; -1 = all, 0 = CPU only")
    queue_size: int = Field(8, ge=0, le=10_000, description="Requests that may wait per model; one more is rejected with RESOURCE_EXHAUSTED")
    queue_per_client: int = Field(0, ge=0, le=10_000, description="Places (waiting or running) one authenticated client may hold per model, so its flood never fills the queue for others; 0 = half the queue plus the running one")
    models: list[ModelEntry] = Field(default_factory=list, description="Models to load besides the default, or to configure it by path")


RemoteKind = Literal["openai", "anthropic", "gemini"]


class RemoteEntry(_Section):
    name: str = Field(description="Backend name, shown in answers, traces and status")
    kind: RemoteKind = Field("openai", description="Wire protocol: 'openai' (any OpenAI-compatible server), 'anthropic' or 'gemini'")
    base_url: str = Field("", description="API base URL; empty = the provider's public default (on-prem servers must set it)")
    model: str = Field(description="Model name the provider knows")
    api_key_env: str = Field("", description="Environment variable holding the API key; empty = no key")
    connect_timeout_s: float = Field(3.0, gt=0, le=600, description="Seconds to establish a connection")
    first_byte_timeout_s: float = Field(15.0, gt=0, le=3600, description="Seconds from request sent to the first response byte")
    idle_timeout_s: float = Field(10.0, gt=0, le=3600, description="Longest gap between two stream events")
    total_timeout_s: float = Field(120.0, gt=0, le=86_400, description="Bound on one attempt; never more than the caller's remaining deadline")
    stream_upstream: bool = Field(True, description="Use the provider's streaming API for unary requests too, so first-byte and idle limits watch the generation")
    api: Literal["auto", "official", "compatible"] = Field("auto", description="Whose rules apply here (edge status shows them): 'official' (the provider's own API, e.g. behind a proxy: its limits on stop sequences and sampling, no prefill), 'compatible' (a server that speaks the protocol: vLLM, llama.cpp, Ollama); 'auto' = official at the provider's public address")
    continuation: Literal["auto", "prefill", "instruction"] = Field("auto", description="How a partial answer (a stream that broke elsewhere) is continued here: 'prefill' (a final assistant turn the model extends), 'instruction' (the text so far and a request to continue it; repeats are trimmed), 'auto' (prefill on OpenAI-compatible servers, instruction on OpenAI, Anthropic and Gemini)")
    api_version: str = Field("", description="Anthropic: the anthropic-version to send; empty = 2026-10-21 (what anthropic 2.14.0 sends; key as Authorization: Bearer). '2023-06-01' sends the key as x-api-key and allows temperature")
    thinking_budget: int | None = Field(None, ge=0, le=100_000, description="Gemini thinking models: tokens they may think; empty = 0 where the model can turn thinking off, else its minimum (maxOutputTokens is raised by the budget)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return ModelEntry._name(v)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class RoutingSettings(_Section):
    offline: bool = Field(False, description="Air-gapped mode: never contact a remote backend, never probe")
    local_only: bool = Field(False, description="Every request stays on this device, whatever it asks for")
    chain: list[Literal["onprem", "cloud", "local"]] = Field(
        default_factory=lambda: ["onprem", "cloud", "local"],
        description="Order in which remote tiers are tried; local is always there as the last resort")
    strategy: Literal["smart", "chain"] = Field("smart", description="'smart': cost, latency, load and difficulty choose local or remote per request; 'chain': AUTO requests always walk the chain, remote first")
    classifier: bool = Field(True, description="Score request difficulty with the MiniLM classifier when its models are installed")
    difficulty_threshold: float = Field(0.5, ge=0, le=1, description="Difficulty score at or above which a request goes remote")
    cascade: bool = Field(True, description="Answer uncertain requests locally and escalate when the local model is not confident")
    cascade_band: float = Field(0.25, ge=0, le=1, description="Local decisions with difficulty at or above this are confidence-checked")
    cascade_min_mean_logprob: float = Field(-1.0, le=0, description="Escalate when the mean log-probability of the local answer's tokens is below this")
    cascade_min_token_logprob: float = Field(-8.0, le=0, description="Escalate when any token's log-probability is below this")
    cascade_holdback_tokens: int = Field(16, ge=1, le=1024, description="Tokens held back from a streaming client until the confidence check has run")
    cascade_first_sentence: bool = Field(True, description="Run the confidence check at the end of the answer's first sentence when that comes before cascade_holdback_tokens (the answer is usually stated first; the elaboration after it scores low whatever its correctness)")
    profile_on_start: bool = Field(True, description="With no stored profile for this hardware and model, measure one in the background at start")
    profile_budget_s: float = Field(15.0, gt=0, le=600, description="Bound on that start-up measurement, in seconds")
    max_queue_depth: int = Field(2, ge=1, le=10_000, description="Requests waiting for the local model at which new ones go remote")
    device_load: bool = Field(True, description="Send work remote when the local model generates slower than profiled, memory is short, the battery is low or the device runs hot (the local queue counts regardless)")
    local_slowdown: float = Field(1.5, ge=1.05, le=100, description="The local model's profiled generation rate over its rate now at which requests go remote: load from other programs counts only when it slows the model")
    cpu_high_percent: float = Field(90.0, ge=0, le=100, description="No longer used: other programs' CPU counts only when it slows the local model (local_slowdown). Accepted so older configs still load")
    memory_high_percent: float = Field(90.0, ge=0, le=100, description="Memory use at which requests go remote")
    battery_low_percent: float = Field(20.0, ge=0, le=100, description="On battery at or below this charge, requests go remote")


class ResilienceSettings(_Section):
    max_retries: int = Field(1, ge=0, le=5, description="Retries on the same backend after a retryable failure")
    backoff_base_s: float = Field(0.05, ge=0, le=60, description="First retry waits up to this (full jitter), doubling per retry")
    backoff_max_s: float = Field(2.0, ge=0, le=600, description="Cap on one backoff wait")
    breaker_failures: int = Field(3, ge=1, le=1000, description="Consecutive failures that open a backend's breaker")
    breaker_window_s: float = Field(60.0, gt=0, le=86_400, description="Sliding window for the failure rate")
    breaker_min_requests: int = Field(10, ge=1, le=100_000, description="Requests in the window before the rate can open the breaker")
    breaker_failure_rate: float = Field(0.5, gt=0, le=1, description="Failure share in the window that opens the breaker")
    breaker_cooldown_s: float = Field(5.0, gt=0, le=86_400, description="How long an opened breaker stays open the first time")
    breaker_cooldown_max_s: float = Field(120.0, gt=0, le=86_400, description="Cap on the cooldown, which doubles for repeat offenders")
    probe_interval_s: float = Field(5.0, gt=0, le=86_400, description="While a backend is down, probe it this often")
    fallback_reserve_s: float = Field(2.0, ge=0, le=3600, description="Deadline share kept back from remote attempts so the local model can still answer (at most half of what is left)")
    on_content_filter: Literal["return", "fallback"] = Field("return", description="A remote answer its provider blocked (finish reason content_filter): 'return' it as it is, marked content_filter; 'fallback' to the next backend in the chain (the local model last), which continues from any text already sent")


class PlanSettings(_Section):
    """The `[plan]` section: plan and execute (edge.pipeline.plan_execute)."""

    planner: str = Field("", description="The remote backend (its name) that splits a request into steps; empty = the first remote backend in routing.chain order")
    max_steps: int = Field(5, ge=2, le=16, description="Most steps a plan may have; a longer plan is refused and the request answered directly (degraded, plan_too_long)")
    auto: bool = Field(False, description="Plan requests the compound rule recognises (two or more questions: list items or sentences ending in '?') without the client asking; off: only requests with strategy = plan")
    planner_timeout_s: float = Field(10.0, gt=0, le=600, description="Bound on the planner call (never more than half the request's remaining deadline); past it the request is answered directly (degraded, planner_unavailable)")
    planner_max_tokens: int = Field(384, ge=32, le=8192, description="Tokens the planner may write")


class SecuritySettings(_Section):
    tls_cert_file: str = Field("", description="PEM certificate chain for the TCP listener; with tls_key_file, the listener speaks TLS only")
    tls_key_file: str = Field("", description="PEM private key of that certificate; must not be readable by other users")
    tls_client_ca_file: str = Field("", description="PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS)")
    tokens_file: str = Field("", description="Bearer tokens, one per line as 'client-name token' (or just 'token'); when set, every RPC but health needs one. Re-read on SIGHUP")
    rate_limit_per_s: float = Field(0.0, ge=0, le=1_000_000, description="Requests per second each client may make (token bucket); 0 = no limit")
    rate_limit_burst: int = Field(10, ge=1, le=1_000_000, description="Requests a client may make at once before the rate applies")

    @model_validator(mode="after")
    def _tls_pair(self) -> SecuritySettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")
        return self


class PrivacySettings(_Section):
    pii: Literal["keep_local", "redact", "off"] = Field("keep_local", description="Requests holding personal data or secrets: 'keep_local' answers them on this device; 'redact' replaces the values with placeholders before any remote tier sees them; 'off' does neither")
    pii_kinds: list[Literal["email", "phone", "card", "iban", "ip", "secret"]] = Field(default_factory=lambda: list(KINDS), description="What the guard looks for: email, phone, card (Luhn-checked), iban (mod-97 checked), ip, secret (API keys, tokens, private keys, password=...)")


class HttpSettings(_Section):
    listen: HostPort = Field("", description="host:port of the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/models); empty = off")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest request body the HTTP API reads")
    max_connections: int = Field(256, ge=1, le=100_000, description="Most HTTP connections open at once; past it a new one is closed at accept (keeps file descriptors for the other doors)")
    max_connections_per_client: int = Field(32, ge=1, le=100_000, description="Most HTTP connections open at once from one peer address")
    header_timeout_s: float = Field(10.0, gt=0, le=3600, description="A request's line and headers must arrive within this many seconds of the connection opening (or of the previous response), else the connection is closed")
    body_timeout_s: float = Field(30.0, gt=0, le=3600, description="A request's body must arrive within this many seconds of its headers, else 408")


class CalibrationSettings(_Section):
    enabled: bool = Field(True, description="Keep teacher labels from this deployment's traffic (a cascade's escalated local answer compared with the remote one) beside the ledger, for the router to learn from; no prompt or answer text unless log_content")
    max_labels: int = Field(50_000, ge=100, le=10_000_000, description="Labels kept; the oldest go first")
    shadow_rate: float = Field(0.02, ge=0, le=1, description="Share of locally answered requests that could have left the device which are also sent to the remote tier, after the client has its answer, to label the pair (a ledger row with reason SHADOW and its cost); 0 = off")
    shadow_max_concurrent: int = Field(1, ge=1, le=64, description="Shadow calls in flight at once; a sample that cannot start is dropped")
    target: Literal["quality", "spend"] = Field("quality", description="What the fit optimises: 'quality' (the cheapest point whose estimated agreement with the remote tier meets quality_target) or 'spend' (the point that sends spend_target of the traffic remote)")
    quality_target: float = Field(0.95, gt=0, le=1, description="Estimated agreement with the remote tier to meet (target = 'quality')")
    spend_target: float = Field(0.30, ge=0, le=1, description="Share of requests to send remote (target = 'spend')")
    min_labels: int = Field(50, ge=5, le=1_000_000, description="Labels needed before the fit replaces the shipped prior and threshold")
    refit_every: int = Field(25, ge=1, le=1_000_000, description="Refit after this many new labels (and at start)")
    fit_window: int = Field(2000, ge=10, le=20_000, description="The most recent labels the fit uses")


class FleetSettings(_Section):
    servers: list[str] = Field(default_factory=list, description="NATS server URLs of the fleet (nats://host:4222, tls://...); empty = no fleet: this box behaves exactly as a box alone")
    name: str = Field("edge", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Fleet name: the prefix of its buckets and subjects, so fleets can share a server")
    box: str = Field("", pattern=r"^[A-Za-z0-9_.-]{0,128}$", description="This box's name in the fleet; empty = the host name")
    creds_file: str = Field("", description="NATS credentials file (user JWT and nkey seed); must not be readable by other users")
    tls_ca_file: str = Field("", description="PEM CA bundle that signed the servers' certificates")
    tls_cert_file: str = Field("", description="PEM client certificate, for servers that ask for one")
    tls_key_file: str = Field("", description="PEM private key of that certificate")
    heartbeat_s: float = Field(10.0, ge=0.5, le=3600, description="Seconds between this box's heartbeats (name, version, model, uptime, spend today, lease), which edge fleet status lists")
    connect_timeout_s: float = Field(2.0, gt=0, le=60, description="Bound on one connection attempt; the daemon never waits for it")
    daily_budget_usd: float = Field(0.0, ge=0, le=1e9, description="The whole fleet's remote spend per UTC day, shared through leases; 0 = no fleet budget")
    lease_usd: float = Field(0.0, ge=0, le=1e9, description="The most of the fleet budget this box reserves at a time and may spend without asking (also while the fleet is away); each lease is sized to the box's recent spend rate, up to this; 0 = a tenth of daily_budget_usd")
    share_cache: bool = Field(True, description="Share answers that may leave this box (never local-only or personal-data ones) with the fleet's boxes through <name>_cache, and add theirs to this box's answer cache; needs [cache] enabled")
    share_labels: bool = Field(True, description="Publish this box's routing labels (embedding, scores, verdict; never prompt or answer text) on <name>_labels and start from the fleet's labels")


class CacheSettings(_Section):
    enabled: bool = Field(False, description="Answer repeated (exact) and near-repeated (semantic) requests from the answer cache")
    path: str = Field("", description="SQLite file of the cache; empty = next to the ledger")
    semantic: bool = Field(True, description="Also match prompts by MiniLM embedding cosine similarity (needs the router's encoder installed)")
    threshold: float = Field(0.95, gt=0, le=1, description="Cosine similarity at or above which a cached answer serves a different prompt")
    fallback_threshold: float = Field(0.88, gt=0, le=1, description="With no remote tier reachable and an unconfident local answer, a cached remote answer this close is served instead")
    guard: bool = Field(True, description="Refuse a semantic hit when the two prompts differ in negation, an antonym, a number or the order around to/from/than/by (edge.cache_guard)")
    ttl_s: float = Field(86_400.0, gt=0, le=365 * 86_400, description="Seconds a cached answer stays valid")
    max_entries: int = Field(10_000, ge=1, le=10_000_000, description="Entries kept; the least recently used go first")


class MetricsSettings(_Section):
    listen: HostPort = Field("", description="host:port of the Prometheus /metrics endpoint; empty = off. Keep it on loopback unless it has TLS: it shows backends, budgets and load")
    tls_cert_file: str = Field("", description="PEM certificate: with tls_key_file, /metrics speaks TLS only")
    tls_key_file: str = Field("", description="PEM private key of that certificate; must not be readable or writable by other users")
    tls_client_ca_file: str = Field("", description="PEM CA bundle: when set, scrapers must present a certificate it signed")

    @model_validator(mode="after")
    def _tls_pair(self) -> MetricsSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        return self


class TracingSettings(_Section):
    enabled: bool = Field(False, description="Emit OpenTelemetry spans (needs the opentelemetry-sdk package: pip install 'edge[otel]')")
    exporter: Literal["otlp", "console", "file"] = Field("otlp", description="'otlp' (the OTEL_EXPORTER_OTLP_* environment, needs opentelemetry-exporter-otlp), 'console' (stderr) or 'file' (JSON lines at tracing.file)")
    file: str = Field("", description="Where the 'file' exporter appends spans")
    service_name: str = Field("edge", description="service.name resource attribute")

    @model_validator(mode="after")
    def _file(self) -> TracingSettings:
        if self.enabled and self.exporter == "file" and not self.file:
            raise ValueError("exporter 'file' needs tracing.file")
        return self


class PriceOverride(BaseModel):
    """One `[[cost.prices]]` entry: a model's price, replacing or adding to the table."""

    model_config = ConfigDict(extra="forbid")
    provider: str = Field(min_length=1, max_length=64, description="Backend kind the model belongs to: 'openai', 'anthropic' or 'gemini'")
    model: str = Field(min_length=1, max_length=256, description="Model name as the provider knows it; also prices names that extend it ('gpt-4o' prices 'gpt-4o-2024-08-06')")
    input_per_mtok: float = Field(ge=0, le=100_000, description="USD per million prompt (input) tokens")
    output_per_mtok: float = Field(ge=0, le=100_000, description="USD per million completion (output) tokens")

    @field_validator("provider", "model")
    @classmethod
    def _normalized(cls, v: str) -> str:
        # Lookups are case-insensitive; store the form they compare against.
        return v.strip().lower()


class CostSettings(BaseModel):
    """The `[cost]` section: what local work costs, price overrides, and budgets."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    local_watts: float = Field(15.0, ge=0, le=100_000, description="Average power the device draws while the local model runs, in watts")
    usd_per_kwh: float = Field(0.30, ge=0, le=100, description="Electricity price in USD per kilowatt-hour")
    local_amortization_usd_per_hour: float = Field(0.0, ge=0, le=10_000, description="Device cost charged per hour the local model runs (purchase price / service hours); 0 = energy only")
    prices: list[PriceOverride] = Field(default_factory=list, description="Cloud model prices that replace or add to the bundled table")
    max_cost_per_request_usd: float = Field(0.0, ge=0, le=1_000_000, description="Refuse a request whose estimated cost is above this; 0 = no ceiling")
    daily_budget_usd: float = Field(0.0, ge=0, le=1_000_000_000, description="Most USD spent per UTC calendar day, from the ledger; 0 = no budget")
    monthly_budget_usd: float = Field(0.0, ge=0, le=1_000_000_000, description="Most USD spent per UTC calendar month, from the ledger; 0 = no budget")

    @field_validator("prices")
    @classmethod
    def _unique_prices(cls, v: list[PriceOverride]) -> list[PriceOverride]:
        keys = [(p.provider, p.model) for p in v]
        dupes = sorted({f"{p}/{m}" for p, m in keys if keys.count((p, m)) > 1})
        if dupes:
            raise ValueError(f"each provider/model may be priced once, repeated: {', '.join(dupes)}")
        return v


class Settings(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    onprem: list[RemoteEntry] = Field(default_factory=list, description="On-prem OpenAI-compatible servers, balanced by least outstanding requests")
    cloud: list[RemoteEntry] = Field(default_factory=list, description="Cloud providers, tried in this order")
    cost: CostSettings = Field(default_factory=CostSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    plan: PlanSettings = Field(default_factory=PlanSettings)
    ledger_path: str = Field("", description="SQLite ledger of every request; empty = EDGE_LEDGER or the user data dir")
    ledger_retention_days: int = Field(90, ge=0, le=36_500, description="Days of raw ledger rows kept; older ones are deleted, their daily aggregates (budgets, edge usage) stay. 0 = keep every row")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level")
    log_content: bool = Field(False, description="Put prompt and answer text in the per-request log line (off: logs carry ids, decisions and counts only)")

    @field_validator("local")
    @classmethod
    def _unique_names(cls, v: LocalSettings) -> LocalSettings:
        names = [m.name for m in v.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique, repeated: {', '.join(dupes)}")
        return v

    @field_validator("onprem")
    @classmethod
    def _onprem_urls(cls, v: list[RemoteEntry]) -> list[RemoteEntry]:
        for e in v:
            if e.kind != "openai":
                raise ValueError(f"{e.name}: on-prem servers speak the OpenAI-compatible API (kind = 'openai')")
            if not e.base_url:
                raise ValueError(f"{e.name}: on-prem servers need a base_url")
        return v

    @model_validator(mode="after")
    def _unique_backend_names(self) -> Settings:
        # A check across sections: its message starts with the key path itself (see _describe).
        seen: dict[str, str] = {}
        for section in ("onprem", "cloud"):
            for i, e in enumerate(getattr(self, section)):
                where = f"{section}.{i}.name"
                if e.name == "local":
                    raise ValueError(f"{where}: 'local' is the local tier's name; pick another")
                if e.name in seen:
                    raise ValueError(f"{where}: {e.name!r} is already the name of {seen[e.name]}; "
                                     "remote backend names must be unique")
                seen[e.name] = where.removesuffix(".name")
        if self.plan.planner and self.plan.planner not in seen:
            raise ValueError(f"plan.planner: {self.plan.planner!r} names no [[onprem]] or [[cloud]] backend; "
                             f"configured: {', '.join(seen) or 'none'}")
        return self


# Environment overrides for the most-used options: variable -> (section, key).
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "EDGE_LISTEN": ("server", "listen"),
    "EDGE_UNIX_SOCKET": ("server", "unix_socket"),
    "EDGE_MODELS_DIR": ("local", "models_dir"),
    "EDGE_DEFAULT_MODEL": ("local", "default_model"),
    "EDGE_THREADS": ("local", "n_threads"),
    "EDGE_QUEUE_SIZE": ("local", "queue_size"),
    "EDGE_LOG_LEVEL": ("", "log_level"),
    "EDGE_OFFLINE": ("routing", "offline"),
    "EDGE_METRICS_LISTEN": ("metrics", "listen"),
    "EDGE_HTTP_LISTEN": ("http", "listen"),
    "EDGE_CACHE": ("cache", "enabled"),
    "EDGE_TOKENS_FILE": ("security", "tokens_file"),
    "EDGE_PII": ("privacy", "pii"),
}


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> None:
    for var, (section, key) in ENV_OVERRIDES.items():
        if var not in environ:
            continue
        target = data.setdefault(section, {}) if section else data
        if not isinstance(target, dict):
            continue  # the schema reports the malformed section below
        target[key] = environ[var]


def _section_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The schema model that holds the keys at `loc` (a pydantic error location), or None."""
    model: type[BaseModel] = Settings
    for part in loc:
        if isinstance(part, int):
            continue  # an index into an array of tables: same model
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            model = args[0]
        else:
            return None
    return model


def _key_paths(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Every key of the schema as a dotted path ("local.queue_size"), arrays of tables excluded."""
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _key_paths(ann, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def _suggest(loc: tuple[Any, ...]) -> str:
    """"; did you mean X?" for an unknown key: a near spelling in the same section, else
    the same key in another section (a key put in the wrong table)."""
    parent, key = loc[:-1], str(loc[-1])
    section = _section_at(parent)
    prefix = "".join(f"{p}." for p in parent)
    if section is not None:
        close = difflib.get_close_matches(key, list(section.model_fields), n=1, cutoff=0.6)
        if close:
            return f"; did you mean {prefix}{close[0]}?"
    elsewhere = [p for p in _key_paths() if p.rpartition(".")[2] == key]
    return f"; did you mean {elsewhere[0]}?" if len(elsewhere) == 1 else ""


def _show(value: Any, env_var: str | None) -> str | None:
    """A bad value as the user wrote it (TOML-like), or None for tables and arrays."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, str):
        text = json.dumps(value if len(value) <= 60 else value[:57] + "...", ensure_ascii=False)
    else:
        return None
    return f"{env_var}={text}" if env_var else text


def _describe(err: ValidationError, origin: str, env_paths: dict[tuple[str, ...], str]) -> str:
    """One "key.path: why" line per problem. `env_paths` maps the locations an EDGE_*
    variable set to that variable, so a bad value is blamed on where it came from."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        # "Value error, ..." is pydantic's wrapper around our own validators' messages.
        why = str(e["ctx"]["error"]) if e["type"] == "value_error" and "error" in e.get("ctx", {}) \
            else e["msg"].removeprefix("Value error, ")
        if not loc and e["type"] == "value_error":
            # Checks across sections (model validators) name their key path in the message.
            lines.append(why)
            continue
        loc = loc or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key{_suggest(e['loc'])}")
            continue
        if e["type"] == "missing":
            lines.append(f"{loc}: required, not set")
            continue
        if e["type"] in ("model_type", "dict_type"):
            why = "Input should be a table"
        shown = _show(e.get("input"), env_paths.get(tuple(str(p) for p in e["loc"])))
        if shown is None:
            lines.append(f"{loc}: {why.replace('Input should', 'should', 1)}")
        elif why.startswith("Input should"):
            lines.append(f"{loc}: {shown} {why.replace('Input should', 'should', 1)}")
        else:
            lines.append(f"{loc}: {why} (got {shown})")
    return f"invalid config {origin}:\n  " + "\n  ".join(lines)


def _check_default_model(settings: Settings, origin: str, env_var: str | None) -> None:
    """`local.default_model` must name a [[local.models]] entry or a manifest model: else
    the daemon would fail later blaming local.models, a key the user may never have set."""
    name = settings.local.default_model
    configured = [m.name for m in settings.local.models]
    if not name or name in configured:
        return
    from edge.catalog import load_manifest  # lazy: edge.catalog imports this module

    try:
        manifest = [s.name for s in load_manifest().model if s.format == "gguf"]
    except ConfigError:
        return  # no manifest to check against; the daemon says so at start
    if name in manifest:
        return
    value = f"{env_var}={json.dumps(name)}" if env_var else json.dumps(name)
    known = ", ".join(dict.fromkeys(configured + manifest)) or "none"
    raise ConfigError(f"invalid config {origin}:\n  local.default_model: {value} is not a known model; "
                      f"known models: {known} (a GGUF of your own needs a [[local.models]] entry with that name)")


def load_settings(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read a TOML file (or nothing: all defaults), apply EDGE_* overrides, validate.

    Raises ConfigError naming each bad key and why.
    """
    environ = dict(os.environ) if environ is None else environ
    data: dict[str, Any] = {}
    origin = "(defaults)"
    if path is not None:
        origin = str(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except OSError as exc:  # a directory, no permission, an I/O error
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        except RecursionError:
            raise ConfigError(f"config file {path} is not valid TOML: arrays or tables nested too deeply") from None
    _apply_env(data, environ)
    env_paths = {(section, key) if section else (key,): var
                 for var, (section, key) in ENV_OVERRIDES.items() if var in environ}
    if path is None and env_paths:
        origin = "(defaults and EDGE_* environment variables)"
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin, env_paths)) from exc
    _check_default_model(settings, origin, env_paths.get(("local", "default_model")))
    return settings

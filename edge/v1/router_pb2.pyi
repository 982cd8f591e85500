from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RoutePreference(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTE_PREFERENCE_UNSPECIFIED: _ClassVar[RoutePreference]
    ROUTE_PREFERENCE_AUTO: _ClassVar[RoutePreference]
    ROUTE_PREFERENCE_LOCAL_ONLY: _ClassVar[RoutePreference]
    ROUTE_PREFERENCE_CLOUD_ONLY: _ClassVar[RoutePreference]

class Strategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STRATEGY_UNSPECIFIED: _ClassVar[Strategy]
    STRATEGY_AUTO: _ClassVar[Strategy]
    STRATEGY_DIRECT: _ClassVar[Strategy]
    STRATEGY_PLAN: _ClassVar[Strategy]

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_LOCAL: _ClassVar[Tier]
    TIER_ONPREM: _ClassVar[Tier]
    TIER_CLOUD: _ClassVar[Tier]
ROUTE_PREFERENCE_UNSPECIFIED: RoutePreference
ROUTE_PREFERENCE_AUTO: RoutePreference
ROUTE_PREFERENCE_LOCAL_ONLY: RoutePreference
ROUTE_PREFERENCE_CLOUD_ONLY: RoutePreference
STRATEGY_UNSPECIFIED: Strategy
STRATEGY_AUTO: Strategy
STRATEGY_DIRECT: Strategy
STRATEGY_PLAN: Strategy
TIER_UNSPECIFIED: Tier
TIER_LOCAL: Tier
TIER_ONPREM: Tier
TIER_CLOUD: Tier

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class GenerationParams(_message.Message):
    __slots__ = ("max_tokens", "temperature", "top_p", "stop", "seed")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    temperature: float
    top_p: float
    stop: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    def __init__(self, max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., stop: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ...) -> None: ...

class RoutingHints(_message.Message):
    __slots__ = ("preference", "max_latency_ms", "max_cost_usd", "strategy")
    PREFERENCE_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_USD_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    preference: RoutePreference
    max_latency_ms: int
    max_cost_usd: float
    strategy: Strategy
    def __init__(self, preference: _Optional[_Union[RoutePreference, str]] = ..., max_latency_ms: _Optional[int] = ..., max_cost_usd: _Optional[float] = ..., strategy: _Optional[_Union[Strategy, str]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("messages", "params", "routing", "request_id", "model")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    params: GenerationParams
    routing: RoutingHints
    request_id: str
    model: str
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., params: _Optional[_Union[GenerationParams, _Mapping]] = ..., routing: _Optional[_Union[RoutingHints, _Mapping]] = ..., request_id: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class ServedBy(_message.Message):
    __slots__ = ("tier", "backend", "model")
    TIER_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    tier: Tier
    backend: str
    model: str
    def __init__(self, tier: _Optional[_Union[Tier, str]] = ..., backend: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue_wait_ms", "time_to_first_token_ms", "total_ms", "tokens_per_second")
    QUEUE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    queue_wait_ms: float
    time_to_first_token_ms: float
    total_ms: float
    tokens_per_second: float
    def __init__(self, queue_wait_ms: _Optional[float] = ..., time_to_first_token_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., tokens_per_second: _Optional[float] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("code", "detail")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    code: str
    detail: str
    def __init__(self, code: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("request_id", "text", "finish_reason", "usage", "served_by", "timings", "trace", "degraded", "attempts", "cost_usd", "cache")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    text: str
    finish_reason: str
    usage: Usage
    served_by: ServedBy
    timings: Timings
    trace: _containers.RepeatedCompositeFieldContainer[Reason]
    degraded: bool
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    cost_usd: float
    cache: CacheHit
    def __init__(self, request_id: _Optional[str] = ..., text: _Optional[str] = ..., finish_reason: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., served_by: _Optional[_Union[ServedBy, _Mapping]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., trace: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., degraded: _Optional[bool] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., cost_usd: _Optional[float] = ..., cache: _Optional[_Union[CacheHit, _Mapping]] = ...) -> None: ...

class CacheHit(_message.Message):
    __slots__ = ("match", "similarity", "age_s", "original")
    MATCH_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    AGE_S_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    match: str
    similarity: float
    age_s: float
    original: ServedBy
    def __init__(self, match: _Optional[str] = ..., similarity: _Optional[float] = ..., age_s: _Optional[float] = ..., original: _Optional[_Union[ServedBy, _Mapping]] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("backend", "tier", "outcome", "latency_ms", "detail")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    backend: str
    tier: Tier
    outcome: str
    latency_ms: float
    detail: str
    def __init__(self, backend: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., outcome: _Optional[str] = ..., latency_ms: _Optional[float] = ..., detail: _Optional[str] = ...) -> None: ...

class GenerateStreamResponse(_message.Message):
    __slots__ = ("delta", "final", "notice")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    delta: str
    final: GenerateResponse
    notice: Reason
    def __init__(self, delta: _Optional[str] = ..., final: _Optional[_Union[GenerateResponse, _Mapping]] = ..., notice: _Optional[_Union[Reason, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "tier", "backend", "path", "size_bytes", "sha256", "context_length", "is_default", "state")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    tier: Tier
    backend: str
    path: str
    size_bytes: int
    sha256: str
    context_length: int
    is_default: bool
    state: str
    def __init__(self, name: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., backend: _Optional[str] = ..., path: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., context_length: _Optional[int] = ..., is_default: _Optional[bool] = ..., state: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("name", "state", "queue_depth", "queue_capacity", "active", "requests_total", "rejected_total", "cancelled_total", "tokens_generated_total", "last_completion_tokens", "n_threads", "resident_bytes", "profiled", "prompt_tokens_per_second", "generation_tokens_per_second")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REJECTED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_GENERATED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LAST_COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    N_THREADS_FIELD_NUMBER: _ClassVar[int]
    RESIDENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROFILED_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    GENERATION_TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    queue_depth: int
    queue_capacity: int
    active: int
    requests_total: int
    rejected_total: int
    cancelled_total: int
    tokens_generated_total: int
    last_completion_tokens: int
    n_threads: int
    resident_bytes: int
    profiled: bool
    prompt_tokens_per_second: float
    generation_tokens_per_second: float
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., queue_depth: _Optional[int] = ..., queue_capacity: _Optional[int] = ..., active: _Optional[int] = ..., requests_total: _Optional[int] = ..., rejected_total: _Optional[int] = ..., cancelled_total: _Optional[int] = ..., tokens_generated_total: _Optional[int] = ..., last_completion_tokens: _Optional[int] = ..., n_threads: _Optional[int] = ..., resident_bytes: _Optional[int] = ..., profiled: _Optional[bool] = ..., prompt_tokens_per_second: _Optional[float] = ..., generation_tokens_per_second: _Optional[float] = ...) -> None: ...

class HardwareSummary(_message.Message):
    __slots__ = ("fingerprint", "cpu_model", "physical_cores", "logical_cores", "isa", "ram_total_bytes", "ram_available_bytes", "gpu_offload", "gpus", "battery_percent", "on_battery", "thermal_throttled")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    PHYSICAL_CORES_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_CORES_FIELD_NUMBER: _ClassVar[int]
    ISA_FIELD_NUMBER: _ClassVar[int]
    RAM_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    RAM_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_OFFLOAD_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    BATTERY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    ON_BATTERY_FIELD_NUMBER: _ClassVar[int]
    THERMAL_THROTTLED_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    cpu_model: str
    physical_cores: int
    logical_cores: int
    isa: _containers.RepeatedScalarFieldContainer[str]
    ram_total_bytes: int
    ram_available_bytes: int
    gpu_offload: bool
    gpus: _containers.RepeatedScalarFieldContainer[str]
    battery_percent: float
    on_battery: bool
    thermal_throttled: bool
    def __init__(self, fingerprint: _Optional[str] = ..., cpu_model: _Optional[str] = ..., physical_cores: _Optional[int] = ..., logical_cores: _Optional[int] = ..., isa: _Optional[_Iterable[str]] = ..., ram_total_bytes: _Optional[int] = ..., ram_available_bytes: _Optional[int] = ..., gpu_offload: _Optional[bool] = ..., gpus: _Optional[_Iterable[str]] = ..., battery_percent: _Optional[float] = ..., on_battery: _Optional[bool] = ..., thermal_throttled: _Optional[bool] = ...) -> None: ...

class BudgetWindow(_message.Message):
    __slots__ = ("period", "spent_usd", "limit_usd", "remaining_usd")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    SPENT_USD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_USD_FIELD_NUMBER: _ClassVar[int]
    REMAINING_USD_FIELD_NUMBER: _ClassVar[int]
    period: str
    spent_usd: float
    limit_usd: float
    remaining_usd: float
    def __init__(self, period: _Optional[str] = ..., spent_usd: _Optional[float] = ..., limit_usd: _Optional[float] = ..., remaining_usd: _Optional[float] = ...) -> None: ...

class BackendStatus(_message.Message):
    __slots__ = ("name", "tier", "kind", "model", "breaker", "consecutive_failures", "breaker_opened_total", "retry_in_s", "outstanding", "requests_total", "failures_total", "out_of_rotation", "capabilities", "probing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    BREAKER_OPENED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RETRY_IN_S_FIELD_NUMBER: _ClassVar[int]
    OUTSTANDING_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FAILURES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_ROTATION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    PROBING_FIELD_NUMBER: _ClassVar[int]
    name: str
    tier: Tier
    kind: str
    model: str
    breaker: str
    consecutive_failures: int
    breaker_opened_total: int
    retry_in_s: float
    outstanding: int
    requests_total: int
    failures_total: int
    out_of_rotation: str
    capabilities: str
    probing: bool
    def __init__(self, name: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., kind: _Optional[str] = ..., model: _Optional[str] = ..., breaker: _Optional[str] = ..., consecutive_failures: _Optional[int] = ..., breaker_opened_total: _Optional[int] = ..., retry_in_s: _Optional[float] = ..., outstanding: _Optional[int] = ..., requests_total: _Optional[int] = ..., failures_total: _Optional[int] = ..., out_of_rotation: _Optional[str] = ..., capabilities: _Optional[str] = ..., probing: _Optional[bool] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("version", "state", "uptime_s", "models", "default_model", "backends", "network", "hardware", "budgets", "auth_required", "tls", "rate_limit_per_s", "pii_guard", "router", "fleet")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    AUTH_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_PER_S_FIELD_NUMBER: _ClassVar[int]
    PII_GUARD_FIELD_NUMBER: _ClassVar[int]
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    FLEET_FIELD_NUMBER: _ClassVar[int]
    version: str
    state: str
    uptime_s: float
    models: _containers.RepeatedCompositeFieldContainer[ModelStatus]
    default_model: str
    backends: _containers.RepeatedCompositeFieldContainer[BackendStatus]
    network: str
    hardware: HardwareSummary
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetWindow]
    auth_required: bool
    tls: str
    rate_limit_per_s: float
    pii_guard: str
    router: RouterFit
    fleet: FleetStatus
    def __init__(self, version: _Optional[str] = ..., state: _Optional[str] = ..., uptime_s: _Optional[float] = ..., models: _Optional[_Iterable[_Union[ModelStatus, _Mapping]]] = ..., default_model: _Optional[str] = ..., backends: _Optional[_Iterable[_Union[BackendStatus, _Mapping]]] = ..., network: _Optional[str] = ..., hardware: _Optional[_Union[HardwareSummary, _Mapping]] = ..., budgets: _Optional[_Iterable[_Union[BudgetWindow, _Mapping]]] = ..., auth_required: _Optional[bool] = ..., tls: _Optional[str] = ..., rate_limit_per_s: _Optional[float] = ..., pii_guard: _Optional[str] = ..., router: _Optional[_Union[RouterFit, _Mapping]] = ..., fleet: _Optional[_Union[FleetStatus, _Mapping]] = ...) -> None: ...

class FleetStatus(_message.Message):
    __slots__ = ("fleet", "box", "connected", "since_unix_s", "server", "last_error", "pending", "heartbeats_sent")
    FLEET_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    HEARTBEATS_SENT_FIELD_NUMBER: _ClassVar[int]
    fleet: str
    box: str
    connected: bool
    since_unix_s: float
    server: str
    last_error: str
    pending: int
    heartbeats_sent: int
    def __init__(self, fleet: _Optional[str] = ..., box: _Optional[str] = ..., connected: _Optional[bool] = ..., since_unix_s: _Optional[float] = ..., server: _Optional[str] = ..., last_error: _Optional[str] = ..., pending: _Optional[int] = ..., heartbeats_sent: _Optional[int] = ...) -> None: ...

class RouterFit(_message.Message):
    __slots__ = ("labels", "fitted", "threshold", "estimated_agreement", "remote_share", "target", "shadow_samples")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    FITTED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    REMOTE_SHARE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SHADOW_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    labels: int
    fitted: bool
    threshold: float
    estimated_agreement: float
    remote_share: float
    target: str
    shadow_samples: int
    def __init__(self, labels: _Optional[int] = ..., fitted: _Optional[bool] = ..., threshold: _Optional[float] = ..., estimated_agreement: _Optional[float] = ..., remote_share: _Optional[float] = ..., target: _Optional[str] = ..., shadow_samples: _Optional[int] = ...) -> None: ...

"""A small Python client for the daemon, sync and asyncio.

    from edge import Client
    with Client("127.0.0.1:50051") as c:
        print(c.ask("What is the capital of France?").text)

With `token=` every call carries `authorization: Bearer <token>`; with `ca_file=`
(and for mutual TLS `cert_file=` + `key_file=`) the channel speaks TLS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from edge.v1 import router_pb2 as pb
from edge.v1 import router_pb2_grpc as pb_grpc

__all__ = ["Client", "AsyncClient", "build_request", "DEFAULT_TARGET", "WIRE_LIMITS"]

DEFAULT_TARGET = "127.0.0.1:50051"
Messages = str | Sequence[tuple[str, str]] | Sequence[dict[str, str]]

_PREFERENCES = {
    "auto": pb.ROUTE_PREFERENCE_AUTO,
    "local_only": pb.ROUTE_PREFERENCE_LOCAL_ONLY,
    "cloud_only": pb.ROUTE_PREFERENCE_CLOUD_ONLY,
}
_STRATEGIES = {"auto": pb.STRATEGY_AUTO, "direct": pb.STRATEGY_DIRECT, "plan": pb.STRATEGY_PLAN}


def _messages(prompt: Messages, system: str | None) -> list[pb.ChatMessage]:
    out = [pb.ChatMessage(role="system", content=system)] if system else []
    if isinstance(prompt, str):
        out.append(pb.ChatMessage(role="user", content=prompt))
        return out
    for m in prompt:
        if isinstance(m, dict):
            out.append(pb.ChatMessage(role=m["role"], content=m["content"]))
        else:
            out.append(pb.ChatMessage(role=m[0], content=m[1]))
    return out


# What the wire's integer fields can carry (router.proto: int32, int64, uint32). The daemon
# checks its own, tighter, limits and names the field (a negative max_tokens included).
WIRE_LIMITS = {"max_tokens": (-(2**31), 2**31 - 1), "seed": (-(2**63), 2**63 - 1), "max_latency_ms": (0, 2**32 - 1)}


def _check_wire_ranges(**values: int | None) -> None:
    for name, value in values.items():
        lo, hi = WIRE_LIMITS[name]
        if value is not None and not lo <= value <= hi:
            raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")


def build_request(prompt: Messages, *, system: str | None = None, max_tokens: int = 0,
                  temperature: float | None = None, top_p: float | None = None, stop: Sequence[str] = (),
                  seed: int | None = None, model: str = "", preference: str = "auto",
                  max_latency_ms: int = 0, max_cost_usd: float = 0.0, request_id: str = "",
                  strategy: str = "auto") -> pb.GenerateRequest:
    """A GenerateRequest from a prompt string or (role, content) pairs.

    Raises ValueError naming the argument when a number does not fit its wire field
    (protobuf's own error names neither)."""
    _check_wire_ranges(max_tokens=max_tokens, seed=seed, max_latency_ms=max_latency_ms)
    params = pb.GenerationParams(max_tokens=max_tokens, stop=list(stop))
    if temperature is not None:
        params.temperature = temperature
    if top_p is not None:
        params.top_p = top_p
    if seed is not None:
        params.seed = seed
    try:
        pref = _PREFERENCES[preference]
    except KeyError:
        raise ValueError(f"preference must be one of {', '.join(_PREFERENCES)}") from None
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(_STRATEGIES)}")
    return pb.GenerateRequest(
        messages=_messages(prompt, system), params=params, model=model, request_id=request_id,
        routing=pb.RoutingHints(preference=pref, max_latency_ms=max_latency_ms, max_cost_usd=max_cost_usd,
                                strategy=_STRATEGIES[strategy]))


def tier_name(tier: int) -> str:
    """The wire's Tier value as the name traces, the ledger and the HTTP door use ("local", ...)."""
    return pb.Tier.Name(tier).removeprefix("TIER_").lower() if tier in pb.Tier.values() else "?"


def _credentials(ca_file: str | None, cert_file: str | None, key_file: str | None) -> grpc.ChannelCredentials | None:
    if not (ca_file or cert_file or key_file):
        return None
    if bool(cert_file) != bool(key_file):
        raise ValueError("cert_file and key_file go together (mutual TLS)")

    def read(p: str | None) -> bytes | None:
        return Path(p).expanduser().read_bytes() if p else None

    return grpc.ssl_channel_credentials(root_certificates=read(ca_file), private_key=read(key_file),
                                        certificate_chain=read(cert_file))


def _auth(token: str | None) -> tuple[tuple[str, str], ...] | None:
    return (("authorization", f"Bearer {token}"),) if token else None


class Client:
    """Blocking client. Each call takes an optional `timeout` (seconds), sent as the gRPC deadline."""

    def __init__(self, target: str = DEFAULT_TARGET, *, channel: grpc.Channel | None = None,
                 token: str | None = None, ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None) -> None:
        creds = _credentials(ca_file, cert_file, key_file)
        self._channel = channel or (grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target))
        self._stub = pb_grpc.EdgeRouterStub(self._channel)
        self._md = _auth(token)

    def ask(self, prompt: Messages, *, timeout: float | None = None, **kw: Any) -> pb.GenerateResponse:
        return self._stub.Generate(build_request(prompt, **kw), timeout=timeout, metadata=self._md)

    def stream(self, prompt: Messages, *, timeout: float | None = None, **kw: Any) -> Iterator[pb.GenerateStreamResponse]:
        """Yields messages with `delta` text, then one with `final`. Cancel with .cancel() on the iterator."""
        return self._stub.GenerateStream(build_request(prompt, **kw), timeout=timeout, metadata=self._md)

    def generate(self, request: pb.GenerateRequest, *, timeout: float | None = None) -> pb.GenerateResponse:
        return self._stub.Generate(request, timeout=timeout, metadata=self._md)

    def status(self, *, timeout: float | None = 10.0) -> pb.GetStatusResponse:
        return self._stub.GetStatus(pb.GetStatusRequest(), timeout=timeout, metadata=self._md)

    def list_models(self, *, timeout: float | None = 10.0) -> pb.ListModelsResponse:
        return self._stub.ListModels(pb.ListModelsRequest(), timeout=timeout, metadata=self._md)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """asyncio client, same calls and options as Client."""

    def __init__(self, target: str = DEFAULT_TARGET, *, channel: grpc.aio.Channel | None = None,
                 token: str | None = None, ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None) -> None:
        creds = _credentials(ca_file, cert_file, key_file)
        self._channel = channel or (grpc.aio.secure_channel(target, creds) if creds
                                    else grpc.aio.insecure_channel(target))
        self._stub = pb_grpc.EdgeRouterStub(self._channel)
        self._md = _auth(token)

    async def ask(self, prompt: Messages, *, timeout: float | None = None, **kw: Any) -> pb.GenerateResponse:
        return await self._stub.Generate(build_request(prompt, **kw), timeout=timeout, metadata=self._md)

    async def stream(self, prompt: Messages, *, timeout: float | None = None,
                     **kw: Any) -> AsyncIterator[pb.GenerateStreamResponse]:
        call = self._stub.GenerateStream(build_request(prompt, **kw), timeout=timeout, metadata=self._md)
        try:
            async for message in call:
                yield message
        finally:
            call.cancel()  # no-op once finished; stops generation if the caller broke off

    async def generate(self, request: pb.GenerateRequest, *, timeout: float | None = None) -> pb.GenerateResponse:
        return await self._stub.Generate(request, timeout=timeout, metadata=self._md)

    async def status(self, *, timeout: float | None = 10.0) -> pb.GetStatusResponse:
        return await self._stub.GetStatus(pb.GetStatusRequest(), timeout=timeout, metadata=self._md)

    async def list_models(self, *, timeout: float | None = 10.0) -> pb.ListModelsResponse:
        return await self._stub.ListModels(pb.ListModelsRequest(), timeout=timeout, metadata=self._md)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

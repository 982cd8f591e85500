"""Moving averages that turn past requests into predictions for the next one."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Ema", "LocalEstimate"]

ALPHA = 0.2  # weight of the newest observation: adapts within ~10 requests, smooths noise


@dataclass
class Ema:
    value: float | None = None
    alpha: float = ALPHA

    def add(self, x: float) -> None:
        self.value = x if self.value is None else self.alpha * x + (1 - self.alpha) * self.value


@dataclass
class LocalEstimate:
    """A local model's rates, seeded from its stored profile, updated from real traffic.

    Units: tokens/s for rates, seconds for times, tokens for lengths.
    """

    prompt_tps: Ema = field(default_factory=Ema)
    gen_tps: Ema = field(default_factory=Ema)
    profiled_gen_tps: float | None = None  # the hardware profile's rate: what an unloaded device does
    completion_tokens: Ema = field(default_factory=Ema)
    prompt_tokens: Ema = field(default_factory=Ema)   # the shape of this deployment's requests
    service_s: Ema = field(default_factory=Ema)
    seeded_at: float = 0.0  # when the profile that seeded the rates was measured (Unix seconds)

    def seed(self, prompt_tps: float, gen_tps: float, *, at: float = 0.0) -> None:
        self.prompt_tps.value, self.gen_tps.value = prompt_tps, gen_tps
        self.profiled_gen_tps = gen_tps
        self.seeded_at = at

    def observe(self, *, prompt_tokens: int, prompt_s: float, completion_tokens: int, decode_s: float,
                service_s: float) -> None:
        if prompt_s > 0 and prompt_tokens > 0:
            self.prompt_tps.add(prompt_tokens / prompt_s)
        if decode_s > 0 and completion_tokens > 1:
            self.gen_tps.add((completion_tokens - 1) / decode_s)
        self.completion_tokens.add(completion_tokens)
        if prompt_tokens > 0:
            self.prompt_tokens.add(prompt_tokens)
        self.service_s.add(service_s)

    def predict_s(self, *, prompt_tokens: int, max_tokens: int, waiting: int) -> float | None:
        """queue wait + prompt / prompt rate + expected output / generation rate; None until rates are known."""
        if not self.prompt_tps.value or not self.gen_tps.value:
            return None
        expected_out = min(max_tokens, self.completion_tokens.value or max_tokens)
        queue_wait = waiting * (self.service_s.value or 0.0)
        return queue_wait + prompt_tokens / self.prompt_tps.value + expected_out / self.gen_tps.value

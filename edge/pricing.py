"""What a request costs: the cloud price table, local energy and amortization.

Cloud prices come from the bundled table (`models/prices.toml`, carried in a
wheel as `edge/_data/prices.toml`) with the config's `[[cost.prices]]`
entries on top. All money is USD; token prices are USD per million tokens.

`CostSettings` is self-contained (pydantic and this module only) so it can
move into `edge.config` unchanged.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.errors import ConfigError
from edge.shipped import shipped_file

__all__ = [
    "Price",
    "PriceOverride",
    "PriceTable",
    "CostSettings",
    "cost_usd",
    "local_cost_usd",
]

_PER_MTOK = 1_000_000


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


@dataclass(frozen=True)
class Price:
    """A model's list price in USD per million tokens; `source` says where it came from."""

    provider: str
    model: str
    input_per_mtok: float
    output_per_mtok: float
    source: Literal["bundled", "config"] = "bundled"


class _TableFile(BaseModel):
    # The bundled file's schema; a malformed row is reported by key.
    model_config = ConfigDict(extra="forbid")
    as_of: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    model: list[PriceOverride] = Field(default_factory=list)


def _prices_path() -> Path:
    path = shipped_file("prices.toml")
    if path is not None:
        return path
    raise ConfigError("price table not found (expected edge/_data/prices.toml or models/prices.toml)")


def _read_table(path: Path) -> _TableFile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"price table not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"price table {path} is not valid TOML: {exc}") from exc
    try:
        return _TableFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid price table {path}: {problems}") from exc


def _extends(name: str, prefix: str) -> bool:
    # "gpt-4o" prices "gpt-4o-2024-08-06" but not a hypothetical "gpt-4omni":
    # the rest of the name must start at a separator.
    return name.startswith(prefix) and not name[len(prefix)].isalnum()


class PriceTable:
    """Prices by (provider, model). Build with `PriceTable.load`.

    Lookups are case-insensitive. Config overrides replace bundled rows of the
    same provider and model and take part in prefix matching like any row.
    """

    def __init__(self, prices: list[Price], as_of: str = "") -> None:
        self.as_of = as_of
        self._prices: dict[tuple[str, str], Price] = {}
        for p in prices:
            self._prices[(p.provider.lower(), p.model.lower())] = p

    @classmethod
    def load(cls, overrides: list[PriceOverride] | None = None, *, path: Path | None = None) -> PriceTable:
        """The bundled table (or `path`), then `overrides` on top.

        Raises ConfigError naming the file and key when the table is missing or malformed.
        """
        table = _read_table(path or _prices_path())
        prices = [Price(r.provider, r.model, r.input_per_mtok, r.output_per_mtok, "bundled") for r in table.model]
        prices += [Price(o.provider, o.model, o.input_per_mtok, o.output_per_mtok, "config") for o in overrides or ()]
        return cls(prices, as_of=table.as_of)

    def __len__(self) -> int:
        return len(self._prices)

    def price_for(self, provider: str, model: str) -> Price | None:
        """The exact row, else the longest row whose model name `model` extends; None if neither."""
        provider, model = provider.strip().lower(), model.strip().lower()
        exact = self._prices.get((provider, model))
        if exact is not None:
            return exact
        best: Price | None = None
        for (p, m), price in self._prices.items():
            if p == provider and len(m) < len(model) and _extends(model, m):
                if best is None or len(m) > len(best.model):
                    best = price
        return best

    def estimate_cost(self, provider: str, model: str, prompt_tokens: int, expected_output_tokens: int) -> float | None:
        """USD a request would cost at list price; None when the model's price is unknown."""
        price = self.price_for(provider, model)
        return None if price is None else cost_usd(price, prompt_tokens, expected_output_tokens)


def cost_usd(price: Price, prompt_tokens: int, completion_tokens: int) -> float:
    """USD for the given token counts at `price`. Negative counts raise ValueError."""
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError(f"token counts must be >= 0, got {prompt_tokens} and {completion_tokens}")
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / _PER_MTOK


def local_cost_usd(seconds: float, *, watts: float, usd_per_kwh: float, amortization_usd_per_hour: float) -> float:
    """USD the local model's run cost: energy plus device amortization.

    seconds: wall time the model ran; watts: average draw meanwhile;
    usd_per_kwh: electricity price; amortization_usd_per_hour: device cost
    charged per hour of use. energy = watts * seconds / 3.6e6 kWh.
    Negative inputs raise ValueError.
    """
    if min(seconds, watts, usd_per_kwh, amortization_usd_per_hour) < 0:
        raise ValueError("seconds, watts, usd_per_kwh and amortization_usd_per_hour must be >= 0")
    hours = seconds / 3600
    kwh = watts * hours / 1000
    return kwh * usd_per_kwh + hours * amortization_usd_per_hour

"""What a request costs: the cloud price table, local energy and amortization.

Cloud prices come from the bundled table (`models/prices.toml`, carried in a
wheel as `edge/_data/prices.toml`) with the config's `[[cost.prices]]`
entries on top. All money is USD; token prices are USD per million tokens.

The `[cost]` settings (CostSettings, PriceOverride) are declared with the rest of
the schema in edge.config.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.config import PriceOverride
from edge.errors import ConfigError
from edge.shipped import shipped_file

__all__ = [
    "Price",
    "PriceTable",
    "cost_usd",
    "local_cost_usd",
]

_PER_MTOK = 1_000_000


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

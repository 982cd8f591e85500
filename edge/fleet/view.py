"""`edge fleet status`: the boxes of the configured fleet, from their heartbeats.

It connects to the fleet's servers with the [fleet] settings of the config file `edge
serve` reads (credentials and TLS included), reads the bucket `<fleet>_boxes` and the
day's budget key, and prints one line per box: its name, how long ago it last beat,
its version, model, spend today and lease. A box whose last heartbeat is older than
AWAY_BEATS of its own intervals is marked away (stopped, or cut off from the fleet).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from edge.config import FleetSettings

__all__ = ["BoxView", "FleetView", "add_parsers", "read_fleet"]

AWAY_BEATS = 3


@dataclass(frozen=True)
class BoxView:
    name: str
    last_heartbeat_unix_s: float
    age_s: float
    away: bool
    version: str
    model: str
    spend_today_usd: float | None
    lease_usd: float | None
    uptime_s: float | None


@dataclass(frozen=True)
class FleetView:
    fleet: str
    server: str
    boxes: list[BoxView]
    budget_limit_usd: float | None = None   # today's fleet budget, when a box has leased from it
    budget_leased_usd: float | None = None  # what all boxes have leased of it today


class FleetUnavailable(Exception):
    """The fleet could not be read; the message is one line, with the fix where there is one."""


def _box(beat: dict[str, Any], now: float) -> BoxView:
    ts = float(beat.get("ts") or 0.0)
    every = float(beat.get("heartbeat_s") or 10.0)
    num = lambda k: None if beat.get(k) is None else float(beat[k])  # noqa: E731
    return BoxView(name=str(beat.get("box", "?")), last_heartbeat_unix_s=ts, age_s=max(0.0, now - ts),
                   away=now - ts > AWAY_BEATS * every, version=str(beat.get("version", "")),
                   model=str(beat.get("model", "")), spend_today_usd=num("spend_today_usd"),
                   lease_usd=num("lease_usd"), uptime_s=num("uptime_s"))


async def read_fleet(s: FleetSettings, *, timeout_s: float = 5.0) -> FleetView:
    """The fleet's boxes (by name) and today's budget; FleetUnavailable when it cannot be read."""
    import nats
    from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

    from edge.fleet.budget import budget_bucket, budget_key
    from edge.fleet.feed import kv_entries
    from edge.fleet.link import boxes_bucket, connect_options, describe_error, server_name

    seen: list[Exception] = []  # what the client met on the way (a refused login, before "no servers")

    async def note(exc: Exception) -> None:
        seen.append(exc)

    try:
        async with asyncio.timeout(timeout_s):
            # Each server once (nats-py 2.16 retries forever with max_reconnect_attempts=0).
            nc = await nats.connect(**connect_options(s, "edge fleet status"), allow_reconnect=True,
                                    max_reconnect_attempts=1, reconnect_time_wait=0.1, error_cb=note,
                                    closed_cb=_quiet, disconnected_cb=_quiet)
    except Exception as exc:  # noqa: BLE001 - whatever the client raised, one line says what and why
        raise FleetUnavailable(describe_error(_most_telling(seen) or exc, s)) from exc
    try:
        async with asyncio.timeout(timeout_s):
            js, now, boxes = nc.jetstream(), time.time(), []
            try:
                beats = await kv_entries(js, boxes_bucket(s.name), timeout_s=timeout_s)
                boxes = [_box(json.loads(beats[key]), now) for key in sorted(beats)]
            except NotFoundError:
                pass  # no box has joined this fleet yet
            view = FleetView(fleet=s.name, server=server_name(nc), boxes=boxes)
            try:
                day = json.loads((await (await js.key_value(budget_bucket(s.name))).get(budget_key(now))).value)
                view = FleetView(view.fleet, view.server, boxes, float(day["limit"]), float(day["granted"]))
            except (BucketNotFoundError, NotFoundError, KeyNotFoundError):
                pass  # no fleet budget, or no lease taken today
            return view
    except FleetUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001
        raise FleetUnavailable(f"reading fleet {s.name!r}: {describe_error(exc, s)}") from exc
    finally:
        await nc.close()


def _most_telling(seen: list[Exception]) -> Exception | None:
    """A refused login over whatever came after it: the server may reset the connection
    right after its -ERR, so the last error met can be a bare reset."""
    refused = [e for e in seen if "authorization" in (str(e) + type(e).__name__).lower()]
    return refused[0] if refused else (seen[-1] if seen else None)


async def _quiet(*_: Any) -> None:
    """The client's callbacks: errors reach the caller as exceptions, not as log noise."""


def _usd(x: float | None) -> str:
    return "-" if x is None else f"${x:.6f}"


def _age(s: float) -> str:
    return f"{s:.1f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.0f}h ago"


def render(view: FleetView) -> str:
    head = f"fleet {view.fleet!r} on {view.server or '?'}: {len(view.boxes)} box{'es' if len(view.boxes) != 1 else ''}"
    if view.budget_limit_usd is not None:
        head += f"; budget today {_usd(view.budget_leased_usd)} leased of {_usd(view.budget_limit_usd)}"
    rows = [("box", "last heartbeat", "version", "model", "spend today", "lease")]
    rows += [(b.name, _age(b.age_s) + (" (away)" if b.away else ""), b.version, b.model, _usd(b.spend_today_usd),
              _usd(b.lease_usd)) for b in view.boxes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([head, *lines])


def cmd_status(args: argparse.Namespace) -> int:
    from edge.config import load_settings

    settings = load_settings(args.config)
    if not settings.fleet.servers:
        print("edge: no fleet configured: set [fleet] servers in the config file (edge fleet status -c FILE)",
              file=sys.stderr)
        return 1
    try:
        view = asyncio.run(read_fleet(settings.fleet, timeout_s=args.timeout))
    except FleetUnavailable as exc:
        print(f"edge: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(view), indent=2) if args.json else render(view))
    return 0


def add_parsers(sub: Any) -> None:
    f = sub.add_parser("fleet", help="the fleet this box belongs to ([fleet] in the config file)")
    fsub = f.add_subparsers(dest="fleet_command", required=True)
    p = fsub.add_parser("status", help="the fleet's boxes: last heartbeat, version, model, spend today, lease")
    p.add_argument("--config", "-c", help="config file with the [fleet] section (the one edge serve reads)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the fleet (default: 5)")
    p.add_argument("--json", action="store_true", help="print the boxes as JSON")
    p.set_defaults(func=cmd_status)

"""`edge bench compare`: several boxes' reports side by side, with ratios to the first,
and each stated target a box misses flagged.

Targets: `ttft` (ms, at most) applies to the figures a person waits on before the first
word (the model's short-prompt TTFT and the daemon's), `tok_s` (at least) to the
generation rates, `rps` (at least) to the capacity. A figure a report did not measure
misses its target too ("not measured"), since nothing shows the box meets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from edge.bench.report_html import fmt, page, table
from edge.bench.report_json import METRICS, Metric, load_report
from edge.bench.svg import bar_chart

__all__ = ["Comparison", "compare_reports", "compare_files", "rows", "format_text", "render_compare_html"]

CHARTED = ("gen_tps", "daemon_tps", "ttft_short_ms", "daemon_ttft_ms", "capacity_rps", "grpc_rtt_ms", "rss_idle_mb")
_SLO_TEXT = {"ttft": ("--slo-ttft-ms", "at most"), "tok_s": ("--slo-tok-s", "at least"), "rps": ("--slo-rps", "at least")}


@dataclass
class Comparison:
    """Boxes (letter, path, report), the rows of the table, and every missed target
    as (box letter, metric key, text)."""

    boxes: list[tuple[str, str, dict[str, Any]]]
    slos: dict[str, float]
    misses: list[tuple[str, str, str]] = field(default_factory=list)

    def value(self, box: int, key: str) -> float | None:
        return self.boxes[box][2]["summary"].get(key)

    def missed(self, letter: str, key: str) -> bool:
        return any(m[0] == letter and m[1] == key for m in self.misses)


def _misses(metric: Metric, target: float, letter: str, value: float | None) -> str | None:
    option, bound = _SLO_TEXT[metric.slo]
    if value is None:
        return f"{letter}: {metric.label}: not measured ({option} {target:g})"
    bad = value > target if bound == "at most" else value < target
    return f"{letter}: {metric.label} {value:g} {metric.unit}, target {bound} {target:g} ({option})" if bad else None


def compare_reports(reports: list[tuple[str, dict[str, Any]]], slos: dict[str, float] | None = None) -> Comparison:
    """Compare `(path, report)` pairs; `slos` maps "ttft" / "tok_s" / "rps" to targets."""
    slos = {k: v for k, v in (slos or {}).items() if v is not None}
    cmp = Comparison([(chr(ord("A") + i), path, r) for i, (path, r) in enumerate(reports)], slos)
    for metric in METRICS:
        if metric.slo not in slos:
            continue
        for i, (letter, _, _) in enumerate(cmp.boxes):
            text = _misses(metric, slos[metric.slo], letter, cmp.value(i, metric.key))
            if text:
                cmp.misses.append((letter, metric.key, text))
    return cmp


def compare_files(paths: list[Path], slos: dict[str, float] | None = None) -> Comparison:
    """compare_reports on report files; BenchReportError for a file that is not one."""
    return compare_reports([(str(p), load_report(p)) for p in paths], slos)


def _at_least(report: dict[str, Any]) -> bool:
    """The capacity ladder stopped before a level failed: the figure is a lower bound."""
    return bool(report.get("sections", {}).get("capacity", {}).get("capacity_note"))


def _ratio(a: float | None, b: float | None) -> str:
    return f"{b / a:.2f}" if a and b is not None else "n/a"


def _legend(cmp: Comparison) -> list[str]:
    out = []
    for letter, path, r in cmp.boxes:
        fp = r["fingerprint"]
        out.append(f"{letter} = {r['host']} ({fp['cpu_model']}, {fp['physical_cores']} cores), {r['mode']} run, "
                   f"threads {r['options']['threads']}, {'reliable' if r['reliable'] else 'UNRELIABLE'}: "
                   f"{Path(path).name}")
    return out


def rows(cmp: Comparison) -> tuple[list[str], list[list[Any]], list[list[str]]]:
    """(header, rows, cell classes) of the table: each measured metric, each box's value
    (a missed target marked "!"), and each box's ratio to box A."""
    letters = [b[0] for b in cmp.boxes]
    header = ["figure", "unit", *letters, *[f"{x}/A" for x in letters[1:]]]
    out, classes = [], []
    for m in METRICS:
        values = [cmp.value(i, m.key) for i in range(len(cmp.boxes))]
        if all(v is None for v in values):
            continue
        cells = [fmt(v) + ("+" if m.key == "capacity_rps" and _at_least(cmp.boxes[i][2]) else "")
                 + (" !" if cmp.missed(x, m.key) else "") for i, (x, v) in enumerate(zip(letters, values))]
        out.append([m.label, m.unit, *cells, *[_ratio(values[0], v) for v in values[1:]]])
        classes.append(["", "", *["miss" if cmp.missed(x, m.key) else "num" for x in letters],
                        *["num"] * (len(letters) - 1)])
    return header, out, classes


def format_text(cmp: Comparison) -> str:
    """The table as aligned text, the legend above, missed targets below."""
    header, body, _ = rows(cmp)
    grid = [header, *body]
    widths = [max(len(str(r[c])) for r in grid) for c in range(len(header))]
    lines = _legend(cmp) + [""]
    for r in grid:
        lines.append("  ".join(str(v).ljust(w) if c < 2 else str(v).rjust(w) for c, (v, w) in enumerate(zip(r, widths))))
    lines.append("(! a missed target; + at least: the capacity ladder stopped before a level failed)")
    if cmp.slos:
        targets = ", ".join(f"{_SLO_TEXT[k][0]} {v:g}" for k, v in cmp.slos.items())
        lines += ["", f"targets ({targets}): " + ("all met" if not cmp.misses else f"{len(cmp.misses)} missed")]
        lines += [f"  MISSED {text}" for _, _, text in cmp.misses]
    return "\n".join(lines)


def render_compare_html(cmp: Comparison) -> str:
    """The table with missed targets highlighted, and a bar chart per key figure."""
    header, body, classes = rows(cmp)
    letters = [b[0] for b in cmp.boxes]
    charts = []
    by_key = {m.key: m for m in METRICS}
    for key in CHARTED:
        values = [cmp.value(i, key) for i in range(len(cmp.boxes))]
        if any(v is not None for v in values):
            m = by_key[key]
            charts.append(bar_chart(m.label, letters, [(m.unit, values)], m.unit))
    misses = "".join(f"<p class='bad'>MISSED {escape(t)}</p>" for _, _, t in cmp.misses)
    met = "<p class='ok'>Every stated target met.</p>" if cmp.slos and not cmp.misses else ""
    body_html = ("<h1>edge bench compare</h1>" + "".join(f"<p>{escape(x)}</p>" for x in _legend(cmp)) + met + misses
                 + table(header, body, classes)
                 + "<p class='note'>! a missed target; + at least: the capacity ladder stopped before a level failed</p>"
                 + f"<div class='charts'>{''.join(charts)}</div>")
    return page("edge bench compare", body_html)

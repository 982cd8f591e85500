"""`edge bench`: what this box delivers, measured on the box itself, with no network.

- `run_bench(BenchOptions(...))` runs the sections within a time budget and returns the
  report; `write_report(report, out_dir)` writes it as JSON and a self-contained HTML
  page; `summary_text(report)` is the terminal summary.
- `compare_files([A.json, B.json, ...], slos)` puts several boxes side by side
  (`format_text`, `render_compare_html`), flagging the targets each misses.

The sections (edge.bench.local, daemon, capacity, router_costs, confidence) are also
what the scripts in the repository's benchmarks/ folder call. Importing this package
loads neither llama.cpp nor numpy.
"""

from __future__ import annotations

from edge.bench.compare import Comparison, compare_files, compare_reports, format_text, render_compare_html
from edge.bench.report_json import METRICS, SCHEMA_VERSION, BenchReportError, load_report
from edge.bench.runner import run_bench, write_report
from edge.bench.state import DEFAULT_BUDGET_S, DEFAULT_P99_MS, QUICK_BUDGET_S, BenchOptions
from edge.bench.text import summary_text

__all__ = [
    "DEFAULT_BUDGET_S",
    "DEFAULT_P99_MS",
    "METRICS",
    "QUICK_BUDGET_S",
    "SCHEMA_VERSION",
    "BenchOptions",
    "BenchReportError",
    "Comparison",
    "compare_files",
    "compare_reports",
    "format_text",
    "load_report",
    "render_compare_html",
    "run_bench",
    "summary_text",
    "write_report",
]

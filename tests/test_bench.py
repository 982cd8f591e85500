"""`edge bench`: a quick run from the command line on the real model writes a JSON report with
the schema's keys and real figures and an HTML page whose plots render in headless Chromium;
`edge bench compare` puts two reports side by side and flags a missed target. The pure
parts (charts, noise verdicts, report loading) are checked without a model."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.bench import METRICS, SCHEMA_VERSION, compare_reports, format_text
from edge.bench.report_json import SECTIONS, TOP_KEYS, summary
from edge.bench.sampler import Sample, noise
from edge.bench.state import QUICK_BUDGET_S
from edge.bench.svg import bar_chart, line_chart

from .render import plot_pixels, screenshot

FINGERPRINT_KEYS = {"id", "host", "cpu_model", "physical_cores", "logical_cores", "ram_total_bytes", "os", "python",
                    "edge_version", "llama_cpp_python", "llama_system_info", "gpu_offload_supported", "gpus"}


@dataclass
class QuickRun:
    report: dict
    json_path: Path
    html_path: Path
    stdout: str
    stderr: str
    wall_s: float


def run_edge(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *argv], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, default_model_path: Path) -> QuickRun:
    out = tmp_path_factory.mktemp("bench")
    t0 = time.monotonic()
    r = run_edge("bench", "--quick", "--out", str(out), timeout=400)
    wall = time.monotonic() - t0
    assert r.returncode == 0, f"edge bench --quick exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    [json_path] = out.glob("bench-*.json")
    [html_path] = out.glob("bench-*.html")
    assert json_path.stem == html_path.stem
    return QuickRun(json.loads(json_path.read_text()), json_path, html_path, r.stdout, r.stderr, wall)


def _median(stat: dict) -> float:
    assert {"median", "min", "max", "n", "spread"} <= set(stat), stat
    assert stat["min"] <= stat["median"] <= stat["max"] and stat["n"] >= 1
    return stat["median"]


@pytest.mark.model
@pytest.mark.timeout(600)
def test_quick_bench_writes_the_schema_with_real_figures(quick_run: QuickRun) -> None:
    r = quick_run.report
    assert set(TOP_KEYS) <= set(r) and r["schema_version"] == SCHEMA_VERSION and r["kind"] == "edge-bench"
    assert r["mode"] == "quick" and r["budget_s"] == QUICK_BUDGET_S
    assert FINGERPRINT_KEYS <= set(r["fingerprint"]) and r["fingerprint"]["llama_cpp_python"]
    assert "CPU" in r["fingerprint"]["llama_system_info"]  # the build flags llama.cpp reports
    assert set(SECTIONS) == set(r["sections"])
    assert r["reliable"] == (not r["unreliable_reasons"])  # and when not reliable, it says why
    for name, section in r["sections"].items():
        assert {"other_cpu", "steal", "reliable", "reason"} <= set(section["noise"])
        if section.get("over_budget"):  # only when the box was so busy that the earlier sections overran
            assert not r["reliable"] and f"{name}: not run" in " ".join(r["unreliable_reasons"])
            pytest.skip(f"the box was too busy for a whole run: {r['unreliable_reasons']}")
        assert section["status"] == "ok", (name, section)
    # Each local model: rates by thread count, TTFT for a short and a long prompt.
    [model] = [m for m in r["sections"]["local"]["models"] if m["default"]]
    measured = [t["threads"] for t in model["by_threads"]]
    assert sorted(measured + model["threads_not_measured"]) == sorted(r["options"]["threads"])
    assert r["options"]["threads"][0] in measured  # the first always runs; the others while the budget lasts
    for t in model["by_threads"]:
        assert _median(t["gen_tps"]) > 0 and _median(t["prompt_tps"]) > 0
    short, long = _median(model["ttft_ms"]["short"]), _median(model["ttft_ms"]["long"])
    assert 0 < short < long and model["ttft_prompt_tokens"]["long"] > 5 * model["ttft_prompt_tokens"]["short"]
    gpu = r["sections"]["local"]["gpu"]
    assert gpu["offload"] or gpu["note"].startswith("CPU-only")  # says plainly why, when CPU-only
    # The daemon against direct llama-cpp-python, and the round trip.
    daemon = r["sections"]["daemon"]
    assert _median(daemon["streams"]["daemon_tps"]) > 0 and _median(daemon["streams"]["direct_tps"]) > 0
    assert 0 < _median(daemon["round_trips"]["generate_ms"]) < 1000
    # Capacity: levels offered, the answer to "past it" with the remote up (overflow goes remote).
    cap = r["sections"]["capacity"]
    assert cap["levels"] and cap["p99_limit_ms"] == 2000 and cap["past_capacity"]["healthy_after"]
    assert cap["past_capacity"]["remote_up"]["ok"] > 0
    router = r["sections"]["router"]
    assert _median(router["classifier"]["score_ms"]) > 0 and router["cache"]["entries"] >= 500
    assert 0 < router["confidence"]["ratio"] and router["confidence"]["scorer_us_per_token"] > 0
    res = r["sections"]["resources"]
    assert res["cold_start_s"] > 0 and res["daemon_rss_idle_bytes"] > 50e6 and res["daemon_rss_load_bytes"] > 50e6
    assert res["sensors"]["temperature_c"] is not None or res["sensors"]["temperature_note"].startswith("no sensors")
    assert len(res["timeline"]["t_s"]) > 10
    assert set(r["summary"]) == {m.key for m in METRICS} and r["summary"]["gen_tps"] == model["gen_tps"]


@pytest.mark.model
@pytest.mark.timeout(600)
def test_quick_bench_prints_progress_and_a_summary_within_its_time(quick_run: QuickRun) -> None:
    assert "[1/4 local" in quick_run.stderr and "[4/4 router" in quick_run.stderr
    out = quick_run.stdout
    assert out.startswith("edge bench on ") and "tok/s" in out and "capacity:" in out
    assert f"report: {quick_run.json_path}" in out and str(quick_run.html_path) in out
    assert ("reliable: yes" in out) == quick_run.report["reliable"]
    if quick_run.report["reliable"]:  # on a busy box the sections run long, and the report says the box was busy
        assert quick_run.wall_s < 90, f"--quick took {quick_run.wall_s:.0f} s"


@pytest.mark.model
@pytest.mark.timeout(600)
def test_the_html_report_is_self_contained_and_its_plots_render(quick_run: QuickRun, tmp_path: Path) -> None:
    html = quick_run.html_path.read_text()
    assert "<script" not in html and " src=" not in html and "href=" not in html and "@import" not in html
    assert html.count("<svg") >= 8
    ET.fromstring("<svg" + html.split("<svg", 1)[1].split("</svg>", 1)[0] + "</svg>")  # well-formed SVG
    pixels = plot_pixels(screenshot(quick_run.html_path, tmp_path / "report.png"))
    assert pixels["#3b6fb6"] > 5000, pixels   # bars and lines in the first colour
    assert pixels["#e07b39"] > 200, pixels    # the second series (p50 / remote-down bars, steal)


def _slower_box(report: dict, factor: float) -> dict:
    """The same report as a box `factor` times as fast (rates scaled, times divided)."""
    other = copy.deepcopy(report)
    other["host"] = "slower-box"
    s = other["summary"]
    for m in METRICS:
        if isinstance(s[m.key], (int, float)) and m.better:
            s[m.key] = s[m.key] * factor if m.better == "higher" else s[m.key] / factor
    return other


@pytest.mark.model
@pytest.mark.timeout(600)
def test_compare_two_reports_flags_the_box_that_misses_a_target(quick_run: QuickRun, tmp_path: Path) -> None:
    a = quick_run.json_path
    b = tmp_path / "bench-slower.json"
    b.write_text(json.dumps(_slower_box(quick_run.report, 0.5)))
    gen = quick_run.report["summary"]["gen_tps"]
    html = tmp_path / "cmp.html"
    r = run_edge("bench", "compare", str(a), str(b), "--slo-tok-s", f"{gen * 0.75:.3f}", "--html", str(html))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "A = " in out and "B = slower-box" in out and "B/A" in out
    gen_row = next(line for line in out.splitlines() if line.startswith("generation, default model"))
    assert " !" in gen_row and "0.50" in gen_row  # B's figure flagged, its ratio to A shown
    assert "MISSED B: generation, default model" in out and "MISSED A:" not in out.split("MISSED B")[0]
    assert 'class="miss"' in html.read_text() and "<svg" in html.read_text()


# -- without a model ------------------------------------------------------------------------

def test_charts_are_well_formed_svg() -> None:
    bars = bar_chart("t", ["1 thr", "2 thr"], [("gen", [80.0, 118.0]), ("prompt", [None, 900.0])], "tok/s",
                     [[(70.0, 90.0), (110.0, 120.0)], [None, None]])
    lines = line_chart("l", [("p99", [(0.5, 300.0), (1.0, None), (1.5, 2500.0)])], "ms", "req/s",
                       hline=("limit", 2000.0))
    for svg in (bars, lines):
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg")
    assert bars.count("<rect") == 1 + 3 + 2  # background, three bars, two legend swatches
    assert "stroke-dasharray" in lines


def test_noise_marks_a_busy_box_unreliable_with_the_reason() -> None:
    def samples(other: float, steal: float) -> list[Sample]:
        return [Sample(t=i / 2, other=other, steal=steal, temp_c=None, freq_mhz=None, watched_rss=None, own_rss=1)
                for i in range(6)]

    assert noise(samples(0.05, 0.0))["reliable"]
    busy = noise(samples(0.6, 0.0))
    assert not busy["reliable"] and "other programs used 60% of the CPUs" in busy["reason"]
    assert "CPU steal 20%" in noise(samples(0.0, 0.2))["reason"]


def test_summary_of_an_empty_run_is_every_key_with_none() -> None:
    assert summary({}) == {m.key: None for m in METRICS}


def test_compare_of_a_report_that_measured_nothing_says_not_measured() -> None:
    report = {"host": "h", "mode": "quick", "reliable": True, "summary": {m.key: None for m in METRICS},
              "options": {"threads": [1]}, "fingerprint": {"cpu_model": "x", "physical_cores": 1}}
    text = format_text(compare_reports([("a.json", report)], {"ttft": 100.0}))
    assert "MISSED A: time to first token, short prompt (model): not measured (--slo-ttft-ms 100)" in text


def test_compare_refuses_files_that_are_not_reports_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"kind": "something-else"}')
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"kind": "edge-bench", "schema_version": 0}))
    for path, says in ((bad, "not an edge bench report"), (old, "schema 0"), (tmp_path / "none.json", "cannot read")):
        r = run_edge("bench", "compare", str(path))
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and says in r.stderr and str(path) in r.stderr


def test_bench_options_are_checked_in_one_line() -> None:
    r = run_edge("bench", "--budget", "0")
    assert r.returncode == 2 and r.stderr.strip() == "edge: --budget: must be more than 0 and at most 86400 seconds, got 0"
    r = run_edge("bench", "--threads", "0")
    assert r.returncode == 2 and "--threads: must be between 1 and 512" in r.stderr

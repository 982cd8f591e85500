"""The bench report as one self-contained HTML page: tables and inline SVG plots, no
script and no external asset, so it opens in any browser on an air-gapped box."""

from __future__ import annotations

from html import escape
from typing import Any

from edge.bench.report_json import METRICS
from edge.bench.svg import bar_chart, line_chart

__all__ = ["page", "table", "fmt", "render_report"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:13px} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{background:#e8f5e9;border:1px solid #9ccc9f;padding:8px} .bad{background:#fdecea;border:1px solid #e8a29b;padding:8px}
.miss{background:#fdecea;color:#a00;font-weight:bold} .note{color:#555;font-size:13px} .charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{border:1px solid #e5e5e5}
"""


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 10_000 else f"{v:,.0f}"
    return str(v)


def table(header: list[str], rows: list[list[Any]], classes: list[list[str]] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header) if any(header) else ""
    body = []
    for r, row in enumerate(rows):
        cells = []
        for c, v in enumerate(row):
            cls = (classes[r][c] if classes else "") or ("num" if isinstance(v, (int, float)) else "")
            cells.append(f'<td class="{cls}">{escape(fmt(v))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{''.join(body)}</table>"


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def _stat(s: Any) -> tuple[float | None, tuple[float, float] | None]:
    return (s["median"], (s["min"], s["max"])) if isinstance(s, dict) and "median" in s else (None, None)


def _threads(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def _header(r: dict[str, Any]) -> str:
    fp = r["fingerprint"]
    banner = ('<p class="ok">Figures reliable: the box was quiet while they were measured.</p>' if r["reliable"] else
              '<p class="bad"><b>UNRELIABLE:</b> ' + "; ".join(escape(x) for x in r["unreliable_reasons"]) + "</p>")
    rows = [["CPU", f"{fp['cpu_model']} ({fp['physical_cores']} physical / {fp['logical_cores']} logical cores)"],
            ["RAM", f"{(fp['ram_total_bytes'] or 0) / 2**30:.1f} GiB"], ["OS", fp["os"]],
            ["Python / edge", f"{fp['python']} / {fp['edge_version']}"],
            ["llama-cpp-python", fp["llama_cpp_python"]], ["llama.cpp build", fp["llama_system_info"]],
            ["GPU offload", f"{fmt(fp['gpu_offload_supported'])}; GPUs: {', '.join(fp['gpus']) or 'none found'}"],
            ["ISA", " ".join(fp["isa"] or [])], ["fingerprint", fp["id"]]]
    problems = "".join(f'<p class="bad">{escape(p)}</p>' for p in r.get("problems", []))
    return (f"<h1>edge bench: {escape(r['host'])}</h1><p class='note'>{escape(r['created_at'])}, {r['mode']} run, "
            f"{r['elapsed_s']} s of a {r['budget_s']:g} s budget, schema {r['schema_version']}</p>"
            + banner + problems + table(["", ""], rows))


def _summary(r: dict[str, Any]) -> str:
    rows = [[m.label, r["summary"].get(m.key), m.unit] for m in METRICS]
    return "<h2>Summary</h2>" + table(["figure", "value", "unit"], rows)


def _status(s: dict[str, Any]) -> str:
    noise = s.get("noise") or {}
    extra = f" <b>Unreliable:</b> {escape(noise['reason'])}." if noise and not noise.get("reliable", True) else ""
    if s.get("status") != "ok":
        return f'<p class="bad">{escape(s.get("status", "?"))}: {escape(s.get("reason") or s.get("error") or "")}</p>'
    return (f"<p class='note'>{s.get('elapsed_s')} s; other programs' CPU {fmt(noise.get('other_cpu'))}, "
            f"steal {fmt(noise.get('steal'))}.{extra}</p>")


def _local(s: dict[str, Any]) -> str:
    out = ["<h2>Local models</h2>", _status(s)]
    if s.get("status") != "ok":
        return "".join(out)
    out.append(f"<p>{escape(s['gpu']['note'])}" + (f"; {escape(s['gpu']['fix'])}" if s["gpu"].get("fix") else "")
               + "</p>")
    for m in s["models"]:
        cats = [f"{t['threads']} thr" for t in m["by_threads"]]
        charts = []
        for key, title in (("gen_tps", "generation"), ("prompt_tps", "prompt processing")):
            vals, wh = zip(*(_stat(t[key]) for t in m["by_threads"]))
            charts.append(bar_chart(f"{m['name']}: {title}", cats, [(title, list(vals))], "tok/s", [list(wh)]))
        ttft = [(k, *_stat(m["ttft_ms"][k])) for k in ("short", "long")]
        charts.append(bar_chart(f"{m['name']}: time to first token", [f"{k} ({m['ttft_prompt_tokens'][k]} tok)"
                                                                      for k, _, _ in ttft],
                                [("median", [v for _, v, _ in ttft])], "ms", [[w for _, _, w in ttft]]))
        out.append(f"<h3>{escape(m['name'])}</h3><p class='note'>{m['size_bytes'] / 1e6:.0f} MB, loaded in "
                   f"{m['load_s']} s, +{m['rss_bytes'] / 1e6:.0f} MB RSS; fastest: {_threads(m['best_threads'])} "
                   f"({m['gen_tps']} tok/s generation)"
                   + (f"; threads {m['threads_not_measured']} not measured (budget)" if m.get("threads_not_measured")
                      else "") + f"</p><div class='charts'>{''.join(charts)}</div>")
    for sk in s.get("skipped", []):
        out.append(f"<p class='note'>{escape(sk['name'])}: not measured ({escape(sk['reason'])})</p>")
    return "".join(out)


def _daemon(s: dict[str, Any]) -> str:
    out = ["<h2>The daemon on this box</h2>", _status(s)]
    if s.get("status") != "ok":
        return "".join(out)
    st, rt = s["streams"], s["round_trips"]
    tps = [_stat(st["direct_tps"]), _stat(st["daemon_tps"])]
    ttft = [_stat(st["direct_ttft_ms"]), _stat(st["daemon_ttft_ms"])]
    charts = [bar_chart("streamed decode rate", ["direct", "daemon"], [("median", [v for v, _ in tps])], "tok/s",
                        [[w for _, w in tps]]),
              bar_chart("time to first token", ["direct", "daemon"], [("median", [v for v, _ in ttft])], "ms",
                        [[w for _, w in ttft]])]
    rows = [["daemon / direct (medians)", st["ratio"]], ["TTFT overhead (paired median)", st["ttft_overhead_ms"]["median"]],
            ["gRPC Generate round trip, ms (no model)", rt["generate_ms"]["median"]],
            ["health check round trip, ms", rt["health_ms"]["median"]], ["cold start to SERVING, s", s["cold_start_s"]],
            ["same text both ways", st["outputs_identical"]]]
    return "".join(out) + f"<div class='charts'>{''.join(charts)}</div>" + table(["", ""], rows)


def _capacity(s: dict[str, Any]) -> str:
    out = ["<h2>Capacity</h2>", _status(s)]
    if s.get("status") != "ok":
        return "".join(out)
    pts = [(lv["offered_rps"], lv["p99_ms"]) for lv in s["levels"]]
    p50 = [(lv["offered_rps"], lv["p50_ms"]) for lv in s["levels"]]
    past = s["past_capacity"]
    charts = [line_chart("latency by offered rate (local only)", [("p99", pts), ("p50", p50)], "ms",
                         "requests per second", hline=(f"p99 limit {s['p99_limit_ms']:g} ms", s["p99_limit_ms"])),
              bar_chart(f"past capacity: {past['offered_rps']} req/s", ["remote up", "remote down"],
                        [("p50", [past["remote_up"]["p50_ms"], past["remote_down"]["p50_ms"]]),
                         ("p99", [past["remote_up"]["p99_ms"], past["remote_down"]["p99_ms"]])], "ms")]
    rows = [[lv["offered_rps"], lv["requests"], lv["p50_ms"], lv["p99_ms"], lv["errors"], lv["held"]]
            for lv in s["levels"]]
    rows += [[past[k]["offered_rps"], past[k]["requests"], past[k]["p50_ms"], past[k]["p99_ms"], past[k]["errors"],
              f"{k}: {past[k]['remote_share']:.0%} remote"] for k in ("remote_up", "remote_down")]
    return ("".join(out) + f"<p><b>{s['capacity_rps']} req/s</b> held with p99 under {s['p99_limit_ms']:g} ms "
            f"(one at a time: {s['sequential_rps']} req/s; {s['max_tokens']}-token answers). Health after the "
            f"overload: {'SERVING' if past['healthy_after'] else 'NOT SERVING'}.</p>"
            + (f"<p class='note'>{escape(s['capacity_note'])}</p>" if s.get("capacity_note") else "")
            + f"<div class='charts'>{''.join(charts)}</div>"
            + table(["req/s", "requests", "p50 ms", "p99 ms", "refused", "held / phase"], rows))


def _router(s: dict[str, Any]) -> str:
    out = ["<h2>The router's own costs</h2>", _status(s)]
    if s.get("status") != "ok":
        return "".join(out)
    cats, vals, wh = [], [], []
    for part, keys in (("classifier", ("score_ms", "decision_ms")),
                       ("cache", ("exact_hit_ms", "semantic_ms", "semantic_hit_ms", "embed_ms", "store_ms"))):
        for k in keys:
            v, w = _stat(s.get(part, {}).get(k))
            if v is not None:
                cats.append(k.removesuffix("_ms").replace("_", " "))
                vals.append(v)
                wh.append(w)
    charts = [bar_chart("per call", cats, [("median", vals)], "ms", [wh])] if cats else []
    conf = s.get("confidence", {})
    text = (f"<p>Confidence scoring: generation at {fmt(conf.get('ratio'))} of its rate without it; "
            f"{fmt(conf.get('scorer_us_per_token'))} µs per token. Answer cache: {fmt(s.get('cache', {}).get('entries'))} "
            f"entries in one partition.</p>")
    skipped = [f"<p class='note'>{k}: {escape(v['reason'])}</p>" for k, v in s.items()
               if isinstance(v, dict) and v.get("status") == "skipped"]
    return "".join(out) + f"<div class='charts'>{''.join(charts)}</div>" + text + "".join(skipped)


def _resources(s: dict[str, Any]) -> str:
    tl, sens = s["timeline"], s["sensors"]
    xs = tl["t_s"]
    load = [("other programs", [(x, 100 * y) for x, y in zip(xs, tl["other_cpu"])]),
            ("steal", [(x, 100 * y) for x, y in zip(xs, tl["steal"])])]
    charts = [line_chart("other load during the run", load, "% of all CPUs", "seconds"),
              line_chart("daemon resident memory", [("RSS", list(zip(xs, tl["daemon_rss_mb"])))], "MB", "seconds")]
    if any(t is not None for t in tl["temp_c"]):
        charts.append(line_chart("hottest sensor", [("°C", list(zip(xs, tl["temp_c"])))], "°C", "seconds"))
    temp = sens["temperature_c"]
    rows = [["cold start to SERVING, s", s["cold_start_s"]],
            ["daemon RSS idle / under load, MB", f"{fmt((s['daemon_rss_idle_bytes'] or 0) / 1e6)} / "
                                                 f"{fmt((s['daemon_rss_load_bytes'] or 0) / 1e6)}"],
            ["temperature", f"{temp['min']:.0f}-{temp['max']:.0f} °C" if temp else sens["temperature_note"]],
            ["CPU clock", str(sens["clock_mhz"]) if sens["clock_mhz"] else sens["clock_note"]],
            ["throttling", f"{fmt(sens['throttled'])}; events: {fmt(sens['throttle_events'])} {sens['throttle_note']}"]]
    return ("<h2>Resources</h2>" + _status(s) + f"<div class='charts'>{''.join(charts)}</div>"
            + table(["", ""], rows))


def render_report(r: dict[str, Any]) -> str:
    """The whole page for one report."""
    s = r["sections"]
    body = (_header(r) + _summary(r) + _local(s["local"]) + _daemon(s["daemon"]) + _capacity(s["capacity"])
            + _router(s["router"]) + _resources(s["resources"]))
    return page(f"edge bench: {r['host']} {r['created_at']}", body)

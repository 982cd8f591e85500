"""The short summary `edge bench` prints in the terminal when it is done."""

from __future__ import annotations

from typing import Any

from edge.bench.report_json import failed_parts

__all__ = ["summary_text"]


def _n(v: Any, spec: str = ".0f") -> str:
    return "n/a" if v is None else format(v, spec)


def _local(s: dict[str, Any]) -> list[str]:
    lines = []
    for m in s["models"]:
        others = ", ".join(f"{t['threads']}: {_n(t['gen_tps']['median'])}" for t in m["by_threads"]
                           if t["threads"] != m["best_threads"])
        n = m["best_threads"]
        lines.append(f"  {m['name']}: generation {_n(m['gen_tps'])} tok/s at {n} thread{'' if n == 1 else 's'}"
                     + (f" ({others})" if others else "") + f", prompt {_n(m['prompt_tps'])} tok/s, "
                     f"TTFT {_n(m['ttft_ms']['short']['median'])} ms short / {_n(m['ttft_ms']['long']['median'])} ms long"
                     + (f"; threads {m['threads_not_measured']} not measured (budget)"
                        if m.get("threads_not_measured") else ""))
    lines.append(f"  {s['gpu']['note']}")
    lines += [f"  {k['name']}: not measured ({k['reason']})" for k in s.get("skipped", [])]
    return lines


def _daemon(s: dict[str, Any]) -> list[str]:
    st, rt = s["streams"], s["round_trips"]
    return [f"  daemon: {_n(st['daemon_tps']['median'])} tok/s streamed vs {_n(st['direct_tps']['median'])} direct "
            f"({_n(st['ratio'], '.2f')}x), TTFT {_n(st['daemon_ttft_ms']['median'])} ms "
            f"({_n(st['ttft_overhead_ms']['median'], '+.1f')} ms over direct), gRPC round trip "
            f"{_n(rt['generate_ms']['median'], '.2f')} ms"]


def _capacity(s: dict[str, Any]) -> list[str]:
    up, down = s["past_capacity"]["remote_up"], s["past_capacity"]["remote_down"]
    at_least = "at least " if s.get("capacity_note") else ""
    return [f"  capacity: {at_least}{s['capacity_rps']} req/s with p99 under {s['p99_limit_ms']:g} ms "
            f"({s['max_tokens']}-token answers); at {s['past_capacity']['offered_rps']} req/s: remote up "
            f"{up['remote_share']:.0%} sent remote, p99 {_n(up['p99_ms'])} ms; remote down "
            f"{down['errors']}/{down['requests']} refused, p99 {_n(down['p99_ms'])} ms"]


def _router(s: dict[str, Any]) -> list[str]:
    clf, cache, conf = s.get("classifier", {}), s.get("cache", {}), s.get("confidence", {})
    parts = []
    if "score_ms" in clf:
        parts.append(f"classifier {_n(clf['score_ms']['median'], '.2f')} ms")
    if "semantic_ms" in cache:
        parts.append(f"cache lookup {_n(cache['semantic_ms']['median'], '.2f')} ms at {cache['entries']} entries")
    if "ratio" in conf:
        parts.append(f"confidence scoring keeps {_n(conf['ratio'], '.0%')} of the generation rate")
    return [f"  router: {', '.join(parts) or 'not measured'}"]


def _resources(s: dict[str, Any]) -> list[str]:
    sens = s["sensors"]
    temp = sens["temperature_c"]
    mb = [None if s[k] is None else s[k] / 1e6 for k in ("daemon_rss_idle_bytes", "daemon_rss_load_bytes")]
    return [f"  resources: daemon RSS {_n(mb[0])} MB idle, {_n(mb[1])} MB under load; cold start "
            f"{_n(s['cold_start_s'], '.2f')} s; temperature "
            + (f"{temp['min']:.0f}-{temp['max']:.0f} °C" if temp else sens["temperature_note"])
            + ("; THROTTLED" if sens["throttled"] else "")]


def summary_text(r: dict[str, Any]) -> str:
    """A few lines: the box, each section's key figures (or why it did not run), reliability."""
    fp, s = r["fingerprint"], r["sections"]
    lines = [f"edge bench on {r['host']} ({fp['cpu_model']}, {fp['physical_cores']} cores, "
             f"{(fp['ram_total_bytes'] or 0) / 2**30:.0f} GiB; fingerprint {fp['id']}): {r['mode']} run, "
             f"{r['elapsed_s']} s"]
    lines += [f"  problem: {p}" for p in r.get("problems", [])]
    for name, render in (("local", _local), ("daemon", _daemon), ("capacity", _capacity), ("router", _router),
                         ("resources", _resources)):
        sec = s[name]
        if sec.get("status") == "ok":
            lines += render(sec)
        elif sec.get("status") == "skipped":
            lines.append(f"  {name}: skipped: {sec.get('reason')}")
    lines += [f"  FAILED {line}" for line in failed_parts(r)]
    lines.append("  reliable: yes" if r["reliable"] else
                 "  reliable: NO, " + "; ".join(r["unreliable_reasons"]) + " (run again on a quiet box)")
    return "\n".join(lines)

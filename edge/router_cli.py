"""`edge router status | export | import | reset`: the router's labels and fit, offline.

They read and write the calibration store beside the ledger (edge.calibration.store);
a running daemon picks up imported labels at its next refit or restart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parsers"]


def _store_path(args: argparse.Namespace) -> tuple[Any, Path]:
    from edge.config import load_settings
    from edge.ledger import default_ledger_path

    settings = load_settings(args.config)
    ledger = Path(settings.ledger_path).expanduser() if settings.ledger_path else default_ledger_path()
    return settings, ledger.with_suffix(".calibration.sqlite3")


def cmd_status(args: argparse.Namespace) -> int:
    from collections import Counter

    from edge.calibration.fit import fit
    from edge.calibration.store import CalibrationStore

    settings, path = _store_path(args)
    if not path.exists():
        print(f"no labels yet ({path}): the daemon makes them from cascade escalations and shadow samples")
        return 0
    store = CalibrationStore(path, max_labels=settings.calibration.max_labels)
    try:
        labels = store.recent(settings.calibration.fit_window)
        total = len(store)
    finally:
        store.close()
    c = settings.calibration
    by_source = Counter(x.source for x in labels)
    agree = sum(x.agrees for x in labels) / len(labels) if labels else 0.0
    if labels:
        print(f"labels: {total} ({', '.join(f'{k} {v}' for k, v in sorted(by_source.items()))}); "
              f"the local answer would have done in {agree:.0%} of the last {len(labels)}")
    else:
        print(f"no labels yet ({path}): the daemon makes them from cascade escalations and shadow samples")
    value = c.quality_target if c.target == "quality" else c.spend_target
    result = fit(labels, target=c.target, value=value, min_labels=c.min_labels)
    if result is None:
        print(f"no fit yet: {c.min_labels} labels needed (routing uses the shipped prior and its threshold)")
        return 0
    point = result.point
    print(point.describe())
    print(f"{'threshold':>10} {'remote share':>13} {'agreement':>10}")
    for t, share, agreement in point.curve:
        print(f"{t:>10.3f} {share:>13.2f} {agreement:>10.3f}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from edge.calibration.store import CalibrationStore

    settings, path = _store_path(args)
    store = CalibrationStore(path, max_labels=settings.calibration.max_labels)
    try:
        labels = store.labels()
    finally:
        store.close()
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    try:
        for x in labels:  # embeddings and labels: never prompt or answer text
            out.write(json.dumps({"embedding": [round(float(v), 6) for v in x.embedding] if x.embedding is not None
                                  else None, "acceptable": x.agrees, "difficulty": x.difficulty,
                                  "conf_mean": x.conf_mean, "conf_min": x.conf_min,
                                  "source": x.source, "ts": x.ts}) + "\n")
    finally:
        if args.out:
            out.close()
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    import numpy as np

    from edge.calibration.store import CalibrationStore, Label
    from edge.catalog import default_models_dir

    settings, path = _store_path(args)
    encoder = None
    store = CalibrationStore(path, max_labels=settings.calibration.max_labels)
    n = 0
    try:
        for line_no, line in enumerate(Path(args.file).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                acceptable = row["acceptable"]
                if not isinstance(acceptable, bool):
                    raise ValueError("'acceptable' must be true or false")
                if row.get("embedding") is not None:
                    vector = np.asarray(row["embedding"], dtype=np.float32)
                elif isinstance(row.get("prompt"), str):
                    if encoder is None:
                        from edge.router.classifier import SentenceEncoder

                        encoder = SentenceEncoder.from_models_dir(default_models_dir(settings.local.models_dir))
                    vector = encoder.embed(row["prompt"])
                else:
                    raise ValueError("each line needs 'prompt' (text) or 'embedding' (a list of numbers)")
                reading = [row.get("conf_mean"), row.get("conf_min")]
                if any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v > 0)
                       for v in reading):
                    raise ValueError("'conf_mean' and 'conf_min' are log-probabilities: numbers <= 0")
            except (ValueError, KeyError, TypeError) as exc:
                print(f"edge: {args.file} line {line_no}: {exc}", file=sys.stderr)
                return 1
            store._write(Label(source="import", agrees=acceptable, rule="import", embedding=vector,  # noqa: SLF001
                               difficulty=row.get("difficulty"), conf_mean=reading[0], conf_min=reading[1]))
            n += 1
    finally:
        store.close()
    print(f"imported {n} labels into {path}")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    _, path = _store_path(args)
    removed = [p for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")) if p.exists()]
    for p in removed:
        p.unlink()
    print(f"labels removed ({path}); routing uses the shipped prior until new labels accumulate" if removed
          else "no labels to remove")
    return 0


def add_parsers(sub: Any) -> None:
    r = sub.add_parser("router", help="the router's labels and its fit to this deployment")
    rsub = r.add_subparsers(dest="router_command", required=True)
    for name, func, text in (("status", cmd_status, "labels, the fit and its curve"),
                             ("export", cmd_export, "labels as JSON lines: embeddings and verdicts, no text"),
                             ("reset", cmd_reset, "delete every label (the shipped prior decides again)")):
        p = rsub.add_parser(name, help=text)
        p.add_argument("--config", "-c", help="config file (where the ledger, and so the labels, live)")
        if name == "export":
            p.add_argument("--out", help="write here instead of stdout")
        p.set_defaults(func=func)
    p = rsub.add_parser("import", help="add labelled examples: JSON lines with 'prompt' or 'embedding', and "
                                       "'acceptable' (would the local answer do?)")
    p.add_argument("file", metavar="FILE.jsonl")
    p.add_argument("--config", "-c", help="config file (where the ledger, and so the labels, live)")
    p.set_defaults(func=cmd_import)

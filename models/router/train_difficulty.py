"""Train the router's difficulty head and export it to ONNX.

Input: models/router/labels.jsonl (label.py: each task's prompt and whether the
local model answered it correctly). Each prompt becomes the classifier's feature
vector (edge.router.classifier: MiniLM embedding + extra_features, 386 numbers);
the target is 1 when the local model was WRONG.

The head is an L2-regularised logistic regression (numpy, Newton's method), fitted
on standardised features; the standardisation is folded into the exported weights,
so the ONNX graph is just MatMul + Add + Sigmoid. The regularisation strength is
chosen by 5-fold cross-validation on the training tasks only.

Evaluation holds out WHOLE families (default: arithmetic and factual), so the
reported metrics say how the head does on kinds of request it never saw. The
exported head is the one evaluated: fitted on the training families only.

    .venv/bin/python models/router/train_difficulty.py [--holdout arithmetic,factual] [--encoder dynq|int8]

The encoder variant (default "dynq", the derived dynamically quantized encoder the
classifier runs by default; "int8", the pulled file, is the fallback) is stamped into
the head's metadata: the classifier refuses a head trained for the other variant.
Writes models/router/difficulty_head.onnx and models/router/metrics.json (for int8:
difficulty_head.int8.onnx and metrics.int8.json), and prints the metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from edge.catalog import default_models_dir, ensure_router_models  # noqa: E402
from edge.router.classifier import (  # noqa: E402
    EXTRA_FEATURES,
    ENCODER_VARIANTS,
    FEATURE_SET,
    HEAD_INPUT,
    HEAD_OUTPUT,
    N_FEATURES,
    SentenceEncoder,
)

DEFAULT_HOLDOUT = ("arithmetic", "factual")
LAMBDAS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)


def load_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); nan with one class only."""
    pos, neg = p[y == 1], p[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class Standardiser:
    def __init__(self, x: np.ndarray) -> None:
        self.mean = x.mean(axis=0)
        self.std = x.std(axis=0) + 1e-6

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std


def fit_logreg(x: np.ndarray, y: np.ndarray, lam: float, iters: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method; the bias is not penalised.
    Returns (weights, bias) for standardised x."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, lam)
    reg[-1] = 0.0
    for _ in range(iters):
        p = sigmoid(xb @ w)
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w[:-1], float(w[-1])


def fit(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """Fit on raw features; returns (weights, bias) that apply to RAW features (standardisation folded in)."""
    st = Standardiser(x)
    w, b = fit_logreg(st(x), y, lam)
    return w / st.std, b - float(np.sum(w * st.mean / st.std))


def predict(x: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return sigmoid(x @ w + b)


def choose_lambda(x: np.ndarray, y: np.ndarray, fams: np.ndarray, folds: int = 5) -> tuple[float, dict[str, float]]:
    """K-fold cross-validated log-loss over the training tasks; the lowest wins.

    Folds are stratified by family (each fold holds a fifth of every family), seeded.
    Not leave-one-family-out: with one mostly-easy family among the training ones,
    leaving a family out shifts the base rate so far that the lowest loss always
    comes from the flattest head, whatever the features say."""
    rng = np.random.default_rng(0)
    fold = np.empty(len(y), dtype=int)
    for f in sorted(set(fams)):
        idx = np.flatnonzero(fams == f)
        fold[rng.permutation(idx)] = np.arange(len(idx)) % folds
    scores: dict[str, float] = {}
    for lam in LAMBDAS:
        p = np.empty(len(y))
        for k in range(folds):
            w, b = fit(x[fold != k], y[fold != k], lam)
            p[fold == k] = predict(x[fold == k], w, b)
        scores[str(lam)] = log_loss(y, p)
    best = min(scores, key=lambda k: scores[k])
    return float(best), scores


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    majority = max(y.mean(), 1 - y.mean())
    return {"n": int(len(y)), "auc": round(auc(y, p), 3), "accuracy": round(float(((p >= 0.5) == y).mean()), 3),
            "majority_baseline_accuracy": round(float(majority), 3), "log_loss": round(log_loss(y, p), 3),
            "brier": round(float(np.mean((p - y) ** 2)), 3), "wrong_rate": round(float(y.mean()), 3)}


def export_onnx(w: np.ndarray, b: float, path: Path, meta: dict[str, str]) -> None:
    """features[N, N_FEATURES] -> MatMul(W) -> Add(b) -> Sigmoid -> p_wrong[N, 1]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(w.astype(np.float32).reshape(N_FEATURES, 1), "W")
    bias = numpy_helper.from_array(np.asarray([b], dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", [HEAD_INPUT, "W"], ["logit_noBias"]),
         helper.make_node("Add", ["logit_noBias", "b"], ["logit"]),
         helper.make_node("Sigmoid", ["logit"], [HEAD_OUTPUT])],
        "difficulty_head",
        [helper.make_tensor_value_info(HEAD_INPUT, TensorProto.FLOAT, ["N", N_FEATURES])],
        [helper.make_tensor_value_info(HEAD_OUTPUT, TensorProto.FLOAT, ["N", 1])],
        initializer=[weights, bias])
    # Opset 13 / IR 7: loadable by every onnxruntime edge supports.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edge-train-difficulty")
    model.ir_version = 7
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=Path, default=HERE / "labels.jsonl")
    ap.add_argument("--holdout", default=",".join(DEFAULT_HOLDOUT), help="comma-separated families held out for test")
    ap.add_argument("--encoder", choices=ENCODER_VARIANTS, default="dynq", help="encoder variant to train for")
    ap.add_argument("--out", type=Path, help="default: difficulty_head.onnx (dynq), difficulty_head.int8.onnx (int8)")
    ap.add_argument("--metrics", type=Path, help="default: metrics.json (dynq), metrics.int8.json (int8)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    rows = load_rows(args.labels)
    holdout = tuple(f for f in args.holdout.split(",") if f)
    unknown = set(holdout) - {r["family"] for r in rows}
    if unknown:
        ap.error(f"--holdout: no such family in the labels: {sorted(unknown)}")
    suffix = "" if args.encoder == "dynq" else f".{args.encoder}"
    args.out = args.out or HERE / f"difficulty_head{suffix}.onnx"
    args.metrics = args.metrics or HERE / f"metrics{suffix}.json"
    encoder = SentenceEncoder.load(*ensure_router_models(default_models_dir()), threads=args.threads,
                                   variant=args.encoder)
    if encoder.variant != args.encoder:
        ap.error(f"asked for the {args.encoder!r} encoder but got {encoder.variant!r} (derivation failed? see the log)")
    x = np.stack([encoder.features(r["prompt"]) for r in rows]).astype(np.float64)
    y = np.asarray([0.0 if r["correct"] else 1.0 for r in rows])  # 1 = the local model was wrong
    fams = np.asarray([r["family"] for r in rows])
    test = np.isin(fams, holdout)
    train = ~test

    lam, cv = choose_lambda(x[train], y[train], fams[train])
    w, b = fit(x[train], y[train], lam)
    p = predict(x, w, b)

    per_family: dict[str, dict[str, Any]] = {}
    by_level: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_level[(r["family"], r["level"])].append(i)
    for f in sorted(set(fams)):
        idx = fams == f
        per_family[f] = {"split": "test" if f in holdout else "train", "tasks": int(idx.sum()),
                         "local_correct_rate": round(float(1 - y[idx].mean()), 3),
                         "mean_score": round(float(p[idx].mean()), 3),
                         "levels": {lv: {"tasks": len(ix), "local_correct_rate": round(float(1 - y[ix].mean()), 3),
                                         "mean_score": round(float(p[ix].mean()), 3)}
                                    for (ff, lv), ix in sorted(by_level.items()) if ff == f}}
    report = {
        "feature_set": FEATURE_SET,
        "encoder_variant": encoder.variant,
        "extra_features": list(EXTRA_FEATURES),
        "held_out_families": list(holdout),
        "train_families": sorted(set(fams[train])),
        "lambda": lam,
        "cv_log_loss_by_lambda": {k: round(v, 4) for k, v in cv.items()},
        "train": metrics(y[train], p[train]),
        "held_out": metrics(y[test], p[test]),
        "families": per_family,
    }
    meta = {"edge.feature_set": FEATURE_SET, "edge.encoder_variant": encoder.variant, "edge.held_out": ",".join(holdout),
            "edge.train_families": ",".join(report["train_families"]),
            "edge.held_out_auc": str(report["held_out"]["auc"]), "edge.lambda": str(lam)}
    export_onnx(w, b, args.out, meta)
    args.metrics.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

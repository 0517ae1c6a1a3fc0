#!/usr/bin/env python3
"""Trains the injection screen's classifier head: logistic regression over the gateway's own
sentence embeddings (`sluice embed`, all-MiniLM-L6-v2) of the evaluation rows' *train* split
(crates/sluice-guard/eval/injection.jsonl), with numpy — no torch. Writes the head as JSON
(crates/sluice-guard/heads/injection.json), which the gateway embeds at build time.

    scripts/train-injection-head.sh      (builds sluice, makes a venv with numpy, runs this)

The threshold is just above the highest out-of-fold score of a train-split ordinary prompt or
hard negative (5 folds: each row scored by a head that did not learn on it), never below 0.5 —
the issue's false-positive bounds, at the size of this set.
Deterministic: fixed initialisation, full-batch gradient descent.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ROWS = ROOT / "crates/sluice-guard/eval/injection.jsonl"
OUT = ROOT / "crates/sluice-guard/heads/injection.json"


def embed(sluice: str, model_dir: str, texts: list[str]) -> np.ndarray:
    lines = "".join(json.dumps(t) + "\n" for t in texts)
    out = subprocess.run(
        [sluice, "embed", "--model-dir", model_dir], input=lines, capture_output=True, text=True, check=True
    ).stdout
    return np.array([json.loads(l) for l in out.splitlines()], dtype=np.float64)


def fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Logistic regression, classes weighted to balance, L2 to keep the weights small on a few
    hundred rows; full-batch gradient descent from zero (deterministic)."""
    pos = y.sum()
    neg = len(y) - pos
    sample = np.where(y == 1, len(y) / (2 * pos), len(y) / (2 * neg))
    w = np.zeros(x.shape[1])
    b = 0.0
    lam, rate = 1e-2, 2.0
    for _ in range(3000):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        g = (p - y) * sample
        w -= rate * (x.T @ g / len(y) + lam * w)
        b -= rate * g.mean()
    return w, float(b)


def main() -> None:
    sluice = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/debug/sluice")
    model_dir = sys.argv[2] if len(sys.argv) > 2 else str(ROOT / "models/all-minilm-l6-v2")
    rows = [json.loads(l) for l in ROWS.read_text().splitlines() if l.strip()]
    train = [r for r in rows if r["split"] == "train"]
    x = embed(sluice, model_dir, [r["text"] for r in train])
    y = np.array([1.0 if r.get("injection") else 0.0 for r in train])
    w, b = fit(x, y)
    # The threshold from out-of-fold scores: a head scores the rows it learned on too well,
    # so each fifth of the rows is scored by a head trained on the other four.
    folds = np.arange(len(y)) % 5
    oof = np.zeros(len(y))
    for k in range(5):
        wk, bk = fit(x[folds != k], y[folds != k])
        oof[folds == k] = 1 / (1 + np.exp(-(x[folds == k] @ wk + bk)))
    negatives = oof[y == 0]
    threshold = float(max(0.5, min(0.99, negatives.max() + 0.02))) if len(negatives) else 0.5
    score = oof
    caught = float((score[y == 1] >= threshold).mean())
    head = {
        "model": "all-MiniLM-L6-v2",
        "dims": int(x.shape[1]),
        "threshold": round(threshold, 4),
        "bias": round(float(b), 6),
        "weights": [round(float(v), 6) for v in w],
        "trained_on": {"rows": len(y), "injections": int(y.sum()), "out_of_fold_detection": round(caught, 4)},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(head) + "\n")
    print(f"train-injection-head: {len(y)} rows, threshold {threshold:.3f}, out-of-fold detection {caught:.1%} -> {OUT}")


if __name__ == "__main__":
    main()

"""Choosing the tf-binding study's CNN settings on validation only (never test set B).

Each candidate trains on ELK1's A+C peaks with shuffled negatives (the study's split) at two
seeds; the table gives the best-epoch validation ROC AUC (what the choice uses) and, for the
record only, the test set's. Run: python benchmarks/tf_binding_models.py [--factor ELK1] [--round 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE = ["data.shuffles=1"]
#: round 1 (the first default: one shuffle per peak); chose two shuffles per peak
ROUND_1 = {
    "default (128x15, 30 epochs, 1 shuffle)": ONE,
    "cosine schedule": [*ONE, "scheduler.name=cosine"],
    "cosine, 60 epochs": [*ONE, "scheduler.name=cosine", "trainer.epochs=60"],
    "256 filters": [*ONE, "model.args={filters: 256, width: 15}"],
    "2 shuffles per peak": [],
    "hidden 64, dropout 0.3": [*ONE, "model.args={filters: 128, width: 15, hidden: 64, dropout: 0.3}"],
}
#: round 2, from round 1's choice (the example config: two shuffles per peak)
ROUND_2 = {
    "default (2 shuffles)": [],
    "3 shuffles per peak": ["data.shuffles=3"],
    "cosine schedule": ["scheduler.name=cosine"],
    "256 filters": ["model.args={filters: 256, width: 15}"],
    "filters of 19 bp": ["model.args={filters: 128, width: 19}"],
    "basset": ["model.name=basset", "model.args={}"],
}
ROUNDS = {1: ROUND_1, 2: ROUND_2}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--factor", default="ELK1")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--round", type=int, default=2, choices=sorted(ROUNDS))
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, sets in ROUNDS[args.round].items():
            val, test, secs = [], [], []
            for seed in map(int, args.seeds.split(",")):
                out = Path(tmp) / f"{len(rows)}_{seed}"
                cmd = [sys.executable, "-m", "biodl", "train", "--config", str(root / "examples/tf_binding_elk1.yaml"),
                       "--out", str(out), "--set", f"data.dataset=tf-binding:{args.factor}", "--set", f"seed={seed}",
                       "--set", "trainer.progress=false", "--set", "n_boot=100"]
                for s in sets:
                    cmd += ["--set", s]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                secs.append(time.perf_counter() - t0)
                m = json.loads((out / "metrics.json").read_text())
                val.append(m["val/roc_auc"])
                test.append(m["test/roc_auc"])
            rows.append((name, sum(val) / len(val), sum(test) / len(test), sum(secs) / len(secs)))
            print(f"{name:32s} val ROC AUC {rows[-1][1]:.4f}   (test, not used: {rows[-1][2]:.4f})   "
                  f"{rows[-1][3]:.0f} s", flush=True)
    best = max(rows, key=lambda r: r[1])
    print(f"chosen on validation: {best[0]} (val {best[1]:.4f}); its test ROC AUC {best[2]:.4f}")


if __name__ == "__main__":
    main()

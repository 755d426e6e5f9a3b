"""Model choice for the histopathology study: the workshop's CancerCNN (the baseline arm) beside
small ResNets, with and without H&E stain augmentation, each under the study's own protocol
(5-fold cross-validation by patient on the 10 embedded patients, same optimiser, schedule and
seed), timed on this machine.

The default is chosen on the inner validation patients of every fold (the mean over folds of
``val/roc_auc``), never on the test patients; the pooled out-of-fold test numbers are printed
for information, with patient-level (cluster bootstrap) CIs. Wall time per arm is the whole
study (decode from the cache, 5 x training, evaluation, pooling).

    python benchmarks/histopathology_models.py [--arms resnet,resnet_stain,cancer_cnn] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from biodl import runs
from biodl.studies import histopathology, run_config_study

#: arm -> the study's --set overrides
ARMS: dict[str, list[str]] = {
    "resnet": ["data.stain_jitter=0"],
    "resnet_stain": ["data.stain_jitter=0.05"],
    "cancer_cnn": ["model.name=cancer_cnn", "model.args={}", "data.stain_jitter=0"],
    "cancer_cnn_stain": ["model.name=cancer_cnn", "model.args={}", "data.stain_jitter=0.05"],
    "resnet_b2_stain": ["model.args={width: 16, blocks: 2, dropout: 0.2}", "data.stain_jitter=0.05"],
    "resnet_stain_15ep": ["data.stain_jitter=0.05", "trainer.epochs=15"],
}
COMMON = ["trainer.progress=false"]


def cell(m: dict[str, float], key: str) -> str:
    v, lo, hi = m.get(f"test/{key}"), m.get(f"test/{key}_ci_low"), m.get(f"test/{key}_ci_high")
    return "  n/a" if v is None else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arms", default="resnet,resnet_stain,cancer_cnn", help=f"comma-separated, from {', '.join(ARMS)}")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        ap.error(f"unknown arm {unknown[0]}; known: {', '.join(ARMS)}")
    root = args.out or Path(tempfile.mkdtemp(prefix="biodl-idc-models-"))
    results = {}
    for arm in arms:
        t0 = time.perf_counter()
        run_dir = run_config_study(histopathology.CONFIG, arm, root / arm, [*COMMON, *ARMS[arm]])
        seconds = time.perf_counter() - t0
        m = runs.read_metrics(run_dir / runs.METRICS)
        folds = int(runs.load_run_config(run_dir).data.folds)
        val = [runs.read_metrics(run_dir / "folds" / f"fold{k + 1}" / runs.METRICS).get("val/roc_auc")
               for k in range(folds)]
        results[arm] = (seconds, float(np.nanmean([np.nan if v is None else v for v in val])), m)
        print(f"{arm}: {seconds:.0f} s", flush=True)
    base = next(iter(results.values()))[0]
    print(f"\n{'arm':<18} {'time s':>7} {'x first':>9} {'val AUC (choice)':>17}   "
          f"{'F1 (IDC), out of fold':<24} {'balanced accuracy':<24} {'ROC AUC':<24}")
    for arm, (seconds, val, m) in results.items():
        print(f"{arm:<18} {seconds:7.0f} {seconds / base:9.2f} {val:17.3f}   {cell(m, 'f1'):<24} "
              f"{cell(m, 'balanced_accuracy'):<24} {cell(m, 'roc_auc'):<24}")
    print(f"\nruns in {root}")


if __name__ == "__main__":
    main()

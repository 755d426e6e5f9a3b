"""Bootstrap CIs of an image run's test metrics: scikit-learn's metric functions per resample
(what biodl did before, the baseline) against biodl's ``multiclass_scores`` (one confusion
matrix and one ranking per resample), same resamples, same CIs.

Both run 1,000 resamples of the same predictions: a two-class set of 1,000 test patches from 10
patients (cluster bootstrap, as the histopathology folds) and of 5,000 (the pooled out-of-fold
set), and a five-grade set of 400 (RetinaMNIST's test split, row bootstrap).

    python benchmarks/bootstrap_scores.py [--boot 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from biodl.evaluation import bootstrap_cis, multiclass_scores


def sklearn_scores(y: np.ndarray, prob: np.ndarray, graded: bool = False) -> dict[str, float]:
    """The baseline: the same metrics, each a scikit-learn call."""
    from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score, cohen_kappa_score,
                                 f1_score, matthews_corrcoef, precision_score, recall_score, roc_auc_score)

    k = prob.shape[1]
    pred = prob.argmax(axis=1)
    out = {"accuracy": accuracy_score(y, pred), "balanced_accuracy": balanced_accuracy_score(y, pred),
           "mcc": matthews_corrcoef(y, pred)}
    if len(np.unique(y)) == k:
        out["roc_auc"] = roc_auc_score(y, prob[:, 1]) if k == 2 else roc_auc_score(y, prob, multi_class="ovr")
    else:
        out["roc_auc"] = float("nan")
    if graded:
        out["qwk"] = cohen_kappa_score(y, pred, weights="quadratic", labels=list(range(k)))
    if k == 2:
        both = 0 < int(np.sum(y == 1)) < len(y)
        out.update(f1=f1_score(y, pred, zero_division=0), precision=precision_score(y, pred, zero_division=0),
                   sensitivity=recall_score(y, pred, zero_division=0) if np.any(y == 1) else float("nan"),
                   specificity=recall_score(1 - y, 1 - pred, zero_division=0) if np.any(y == 0) else float("nan"),
                   npv=precision_score(1 - y, 1 - pred, zero_division=0),
                   pr_auc=average_precision_score(y == 1, prob[:, 1]) if both else float("nan"))
    return {key: float(v) for key, v in out.items()}


def case(n: int, k: int, patients: int | None, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.2 * np.eye(k)[y]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    groups = np.sort(rng.integers(0, patients, n)) if patients else None
    return y, prob, groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boot", type=int, default=1000)
    args = ap.parse_args()
    cases = {"2 classes, 1,000 rows, 10 patients": (case(1000, 2, 10), False),
             "2 classes, 5,000 rows, 10 patients": (case(5000, 2, 10), False),
             "5 grades, 400 rows": (case(400, 5, None), True)}
    print(f"{'case':<36} {'scikit-learn s':>15} {'biodl s':>9} {'speed-up':>9}  same CIs")
    for name, ((y, prob, groups), graded) in cases.items():
        times, cis = [], []
        for score in (sklearn_scores, multiclass_scores):
            t0 = time.perf_counter()
            cis.append(bootstrap_cis(y, prob, lambda a, b, s=score, g=graded: s(a, b, g), args.boot, groups=groups))
            times.append(time.perf_counter() - t0)
        same = cis[0].keys() == cis[1].keys() and all(np.allclose(cis[0][m], cis[1][m], atol=1e-12) for m in cis[0])
        print(f"{name:<36} {times[0]:15.2f} {times[1]:9.2f} {times[0] / times[1]:8.1f}x  {same}")


if __name__ == "__main__":
    main()

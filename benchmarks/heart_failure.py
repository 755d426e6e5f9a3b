"""Heart-failure random-forest arm: the workshop's sequential loop against biodl's parallel
repeated hold-out, on the same 100 stratified 80/20 splits (split i: seed i).

1. workshop: one process, a Pipeline (one-hot encoding of the five binary columns + a
   500-tree random forest), ``predict`` and ``predict_proba`` per split;
2. biodl, same pipeline: ``biodl.tasks.holdout.repeated_holdout`` on all cores; its
   predictions must be identical to (1);
3. biodl's own arm: the study's random forest (the 11 features as they are, as the paper's
   R code did; the one-hot copies of 0/1 columns add nothing but work).

    python benchmarks/heart_failure.py [--splits 100]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, matthews_corrcoef, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from biodl.datasets import embedded_path
from biodl.tasks.holdout import Method, holdout_splits, repeated_holdout
from biodl.models.classical import random_forest

BINARY = ["anaemia", "diabetes", "high_blood_pressure", "sex", "smoking"]


def workshop_pipeline(features: list[str], seed: int) -> Pipeline:
    binary = [features.index(c) for c in BINARY]
    pre = ColumnTransformer([("onehot", OneHotEncoder(), binary)], remainder="passthrough")
    return Pipeline([("pre", pre), ("rf", RandomForestClassifier(n_estimators=500, random_state=seed))])


def workshop_loop(X: np.ndarray, y: np.ndarray, features: list[str], n: int) -> tuple[list[np.ndarray], float]:
    probs, mccs = [], []
    for i in range(n):
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=i)
        model = workshop_pipeline(features, i).fit(Xtr, ytr)
        pred = model.predict(Xte)
        prob = model.predict_proba(Xte)[:, 1]
        mccs.append(matthews_corrcoef(yte, pred))
        accuracy_score(yte, pred), roc_auc_score(yte, prob)
        probs.append(prob)
    return probs, float(np.mean(mccs))


def main() -> None:
    ap = argparse.ArgumentParser(description="workshop loop vs biodl repeated hold-out (random forest)")
    ap.add_argument("--splits", type=int, default=100)
    a = ap.parse_args()
    df = pd.read_csv(embedded_path("heart-failure"))
    features = [c for c in df.columns if c not in ("time", "DEATH_EVENT")]
    X, y = df[features].to_numpy(float), df["DEATH_EVENT"].to_numpy()

    t = time.perf_counter()
    ws_probs, ws_mcc = workshop_loop(X, y, features, a.splits)
    t_ws = time.perf_counter() - t

    splits = holdout_splits(y, a.splits)
    t = time.perf_counter()
    same = repeated_holdout([Method("ws", "workshop pipeline", lambda s: workshop_pipeline(features, s))], X, y, splits)
    t_same = time.perf_counter() - t
    identical = all(np.array_equal(p, q) for p, q in zip(ws_probs, same["ws"].scores, strict=True))

    t = time.perf_counter()
    ours = repeated_holdout([Method("rf", "random forest", random_forest)], X, y, splits)
    t_ours = time.perf_counter() - t

    print(f"{a.splits} splits, {os.cpu_count()} cores")
    print(f"workshop loop (1 process, one-hot pipeline)   {t_ws:7.1f} s   mean MCC {ws_mcc:+.3f}")
    print(f"biodl repeated_holdout, same pipeline         {t_same:7.1f} s   ratio {t_same / t_ws:.2f}   "
          f"predictions identical: {'yes' if identical else 'NO'}")
    print(f"biodl study arm (raw 0/1 columns, as paper)   {t_ours:7.1f} s   ratio {t_ours / t_ws:.2f}   "
          f"mean MCC {ours['rf'].metrics['mcc'].mean():+.3f}")


if __name__ == "__main__":
    main()

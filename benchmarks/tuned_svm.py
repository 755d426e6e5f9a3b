"""The heart-failure study's SVMs: scikit-learn's ``GridSearchCV`` (a standardising pipeline,
C over the paper's grid by stratified 5-fold CV on MCC) against ``biodl``'s ``SVMTuned``, which
standardises each fold once and fits the SVCs directly. Both on the same stratified 80/20
splits (split i: seed i), one process, one thread; the chosen C and the test decision values
must be identical.

    python benchmarks/tuned_svm.py [--splits 30]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import sklearn
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from biodl.datasets import embedded_path
from biodl.tasks.holdout import holdout_splits
from biodl.models.classical import C_GRID, SVMTuned


def grid_search(kernel: str, seed: int) -> GridSearchCV:
    return GridSearchCV(make_pipeline(StandardScaler(), SVC(kernel=kernel, random_state=seed)), {"svc__C": C_GRID},
                        scoring="matthews_corrcoef", cv=StratifiedKFold(5, shuffle=True, random_state=seed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=30)
    n = ap.parse_args().splits
    df = pd.read_csv(embedded_path("heart-failure"))
    y = df["DEATH_EVENT"].to_numpy(int)
    features = {"all 11": df.drop(columns=["time", "DEATH_EVENT"]).to_numpy(float),
                "SC + EF": df[["serum_creatinine", "ejection_fraction"]].to_numpy(float)}
    splits = holdout_splits(y, n)
    print(f"{n} splits, one thread; seconds for all splits")
    print(f"{'kernel':8s} {'features':9s} {'GridSearchCV':>13s} {'SVMTuned':>9s} {'speed-up':>9s}  same decisions")
    with threadpool_limits(1), sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
        for kernel in ("rbf", "linear"):
            for name, x in features.items():
                times, outs = [], []
                for make in (grid_search, lambda k, s: SVMTuned(k, tuple(C_GRID), seed=s)):
                    t = time.perf_counter()
                    outs.append([make(kernel, i).fit(x[tr], y[tr]).decision_function(x[te])
                                 for i, (tr, te) in enumerate(splits)])
                    times.append(time.perf_counter() - t)
                same = all(np.array_equal(a, b) for a, b in zip(*outs, strict=True))
                print(f"{kernel:8s} {name:9s} {times[0]:13.2f} {times[1]:9.2f} {times[0] / times[1]:8.2f}x  {same}")
                if not same:
                    raise SystemExit("SVMTuned differs from GridSearchCV")


if __name__ == "__main__":
    main()

"""The Trust section of a run's report: calibration before and after the run's recalibration,
the conformal prediction sets' coverage and size (every method side by side), and referral to a
human by uncertainty; from the run's saved files only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import runs
from . import html as h

__all__ = ["TRUST_TEXT", "trust_sections"]


TRUST_TEXT = {
    "ece": "expected calibration error: |observed - predicted| over 10 equal-width bins, weighted by their size",
    "ece_mass": "the same over 10 bins of equal size", "classwise_ece": "the mean over classes of each class's ECE",
    "mce": "the largest gap of a bin", "brier": "mean squared error of the probabilities",
    "nll": "mean negative log-likelihood of the true class"}


def trust_sections(run_dir: Path, metrics: dict[str, float], shown: set[str]) -> list[h.Section]:
    """Calibration before and after the run's recalibration (fitted on the validation split):
    the metrics with CIs, the map, and the reliability diagram after it."""
    from ..trust import calibration
    from ..evaluation import calibration_bins
    from .figures import reliability_diagram
    from .predictions import load_predictions

    def cell(key: str) -> str:
        v, lo, hi = metrics.get(key), metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
        if v is None:
            return ""
        return f"{v:.4f}" + (f" [{lo:.4f}, {hi:.4f}]" if lo is not None and hi is not None else "")

    rows = [{"metric": s, "what it is": TRUST_TEXT[s], "before": cell(f"test/{s}"), "after": cell(f"test/{s}_after")}
            for s in calibration.SCORES if f"test/{s}" in metrics]
    if not rows:
        return []
    y, prob, classes, patients = load_predictions(run_dir / runs.predictions_file("test"))
    cal = runs.read_calibration(run_dir)
    folds = sorted((run_dir / runs.FOLDS).glob(f"fold*/{runs.CALIBRATION}"))
    if cal is not None:
        params = {k: v for k, v in cal.model_dump(exclude_none=True).items()
                  if k not in ("method", "classes", "fitted_on", "x", "y")}
        what = (f"Recalibration: {cal.method} ({', '.join(f'{k} {v}' for k, v in params.items()) or 'a step map'}"
                f"), fitted on the {cal.fitted_on.get('n', '?')} validation predictions only "
                f"(calibration.json; biodl predict and evaluate apply it).")
    elif folds:
        what = f"Recalibration: each of the {len(folds)} folds' own map, fitted on its validation patients only."
    else:
        what = "No recalibration (calibration: none, or biodl calibrate RUN_DIR to fit one)."
    body = h.para(what) + h.table(pd.DataFrame(rows).drop(columns=[] if any(r["after"] for r in rows) else ["after"]))
    body += h.para("95% CIs by basic bootstrap, resampled as the metrics above: the binned ECE overestimates the "
                   "true calibration error, and the basic interval corrects for that, so it can lie below its own "
                   "point estimate.", "note")
    maps = [cal] if cal is not None else [runs.read_calibration(f.parent) for f in folds]
    if maps and all(m is not None for m in maps):
        after = (cal.apply(prob) if cal is not None else
                 calibration.apply_per_fold(prob, pd.read_csv(run_dir / runs.predictions_file("test"),
                                                              usecols=["fold"])["fold"].to_numpy(int), maps))
        what_rate = f"rate of {classes[1]}" if len(classes) == 2 else "accuracy (top label)"
        reliability_diagram(y, after, what_rate, "After recalibration (test)", run_dir / "test_calibration_after.png",
                            patients)
        shown.add("test_calibration_after.png")
        body += h.figure(run_dir / "test_calibration_after.png", "Reliability diagram after recalibration (the "
                         f"diagram before is under Calibration); ECE {calibration_bins(y, after)[1]:.4f}")
    body += _conformal(run_dir, metrics, classes)
    body += _referral(run_dir, metrics, shown)
    return [h.Section("trust", "Trust: calibration, prediction sets and referral", body)]


def _referral(run_dir: Path, metrics: dict[str, float], shown: set[str]) -> str:
    """Referral to a human by uncertainty: the curve and its summary numbers."""
    names = [k[len("test/aurc_"):] for k in metrics if k.startswith("test/aurc_")]
    if names and not (run_dir / "test_referral.png").is_file() and (run_dir / "test_referral.csv").is_file():
        from .figures import referral_plot

        table = pd.read_csv(run_dir / "test_referral.csv")
        referral_plot({name: part for name, part in table.groupby("by", sort=False)}, "Referral by uncertainty "
                      "(test)", run_dir / "test_referral.png")
    if not names or not (run_dir / "test_referral.png").is_file():
        return ""
    shown.update({"test_referral.png", "test_referral.csv", "test_referral.md"})
    rows = [{"referred by": n.replace("_", " "), "AURC (lower is better)": metrics[f"test/aurc_{n}"],
             "accuracy, all kept": metrics.get("test/accuracy"),
             "accuracy, 10% referred": metrics.get(f"test/accuracy_refer10_{n}"),
             "accuracy, 20% referred": metrics.get(f"test/accuracy_refer20_{n}")} for n in names]
    text = ("Referral: the test cases the model is least sure of go to a human. Predictive entropy is all the "
            "doubt about a case; mutual information (ensembles, MC dropout) is the part where members or passes "
            "disagree. Table: test_referral.csv.")
    if "test/mean_mutual_information" in metrics:
        text += f" Mean mutual information {metrics['test/mean_mutual_information']:.4f} nats."
    return h.para(text) + h.table(pd.DataFrame(rows), 3) + h.figure(
        run_dir / "test_referral.png", "Accuracy of the cases kept against the fraction referred (most uncertain "
                                       "first)")


def _conformal(run_dir: Path, metrics: dict[str, float], classes: list[str]) -> str:
    """The conformal prediction sets on the test split: coverage (overall and per class), size,
    and every method side by side."""
    from ..trust import conformal

    if metrics.get("test/conformal_coverage") is None:
        return ""
    pred = runs.read_conformal(run_dir)
    if pred is None:  # a k-fold parent: each fold has its own (same settings)
        found = sorted((run_dir / runs.FOLDS).glob(f"fold*/{runs.CONFORMAL}"))
        pred = runs.read_conformal(found[0].parent) if found else None
    head = (f"Prediction sets: {pred.method}, alpha {pred.alpha} (each set should hold the true class for at least "
            f"{1 - pred.alpha:.0%} of cases), from the {pred.on} probabilities, calibrated on validation cases only "
            f"({pred.n}{' in a fold' if not (run_dir / runs.CONFORMAL).exists() else ''}). " if pred is not None
            else "Prediction sets (conformal). ")
    empty = metrics.get("test/conformal_empty_sets") or 0.0
    head += (f"Test: coverage {metrics['test/conformal_coverage']:.3f}, mean set size "
             f"{metrics['test/conformal_set_size']:.2f}, empty sets {empty:.1%} "
             "(an empty set: no class is plausible enough; refer the case). Each case's set is in "
             "test_predictions.csv (column set).")
    per_class = {c: metrics[f"test/conformal_coverage_class{k}"] for k, c in enumerate(classes)
                 if metrics.get(f"test/conformal_coverage_class{k}") is not None}
    body = h.para(head) + (h.table(pd.DataFrame([{"coverage of the true class": "", **per_class}]), 3)
                           if per_class else "")
    rows = []
    for m in conformal.METHODS:
        for on in ("raw", "recalibrated"):
            cov = metrics.get(f"test/conformal_{m}_{on}_coverage")
            if cov is not None:
                rows.append({"method": m, "probabilities": on, "coverage": cov,
                             "mean set size": metrics.get(f"test/conformal_{m}_{on}_set_size")})
    if rows:
        body += h.para("Every method at the same alpha, calibrated on the same validation cases:") + h.table(
            pd.DataFrame(rows), 3)
    return body

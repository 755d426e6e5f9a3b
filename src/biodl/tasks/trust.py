"""What every classification task does after training, on the validation split only: fit the
recalibration (``calibration.json``) and the conformal predictor (``conformal.json``), report
the test split's calibration before and after and the sets' coverage, and apply both later
(``predict``, ``evaluate``). See ``biodl.trust.calibration`` and ``biodl.trust.conformal``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from .. import runs
from ..engine.distributed import is_main_process
from ..errors import ConfigError, DataError


__all__ = [
    "check_calibration", "trust", "trust_of", "compare_conformal", "uncertainty_columns", "referral",
    "add_prediction_column", "run_sets",
]


def check_calibration(config: BaseModel, n_classes: int, graded: bool = False) -> None:
    """Refuse, before training, a recalibration or conformal method the run's classes cannot take."""
    from ..trust.calibration import BINARY_ONLY

    if config.calibration in BINARY_ONLY and n_classes != 2:
        raise ConfigError("calibration", f"{config.calibration} recalibrates two-class runs; this one has "
                                         f"{n_classes} classes (use temperature, vector or none)")
    if config.conformal.method == "ordinal" and not graded:
        raise ConfigError("conformal.method", "ordinal sets are for graded labels (data.graded: true); use lac, "
                                              "aps or mondrian")


def trust(run_dir: Path, config: BaseModel, classes: list[str], graded: bool, val: tuple[np.ndarray, np.ndarray],
          test: tuple[np.ndarray, np.ndarray], patients: np.ndarray | None = None) -> dict[str, float]:
    """After training, on the validation split only: fit the recalibration (``config.calibration``,
    ``calibration.json``) and the conformal predictor (``config.conformal``, ``conformal.json``);
    returns the test split's calibration metrics before and after and the conformal sets'
    coverage and size (``test/conformal_*``), and adds each test case's set to
    ``test_predictions.csv``. ``val`` and ``test``: (labels (N,), probabilities (N, K)). A
    validation split that cannot be fitted is a warning: that part is left out."""
    import warnings

    from ..trust import calibration, conformal

    cal = pred = None
    where = run_dir / runs.predictions_file("val")
    if config.calibration != "none":
        try:
            cal = calibration.fit(config.calibration, *val, where=where)
        except DataError as exc:
            warnings.warn(f"{exc}; the probabilities are not recalibrated", stacklevel=2)
    c = config.conformal
    if c.method != "none":
        source = cal.apply(val[1]) if c.on == "recalibrated" and cal is not None else val[1]
        try:
            pred = conformal.fit(c.method, val[0], source, c.alpha, seed=config.seed, where=str(where))
            pred.on = "recalibrated" if c.on == "recalibrated" and cal is not None else "raw"
        except DataError as exc:
            warnings.warn(f"{exc}; no prediction sets", stacklevel=2)
    if is_main_process():
        if cal is not None:
            runs.write_calibration(run_dir, cal)
        if pred is not None:
            runs.write_conformal(run_dir, pred)
    y, prob = test
    metrics = calibration.calibration_metrics(y, prob, None if cal is None else cal.apply(prob), "test",
                                              config.n_boot, patients)
    if pred is not None:  # every rank computes the same sets (under DDP only rank 0 writes)
        member = pred.sets(cal.apply(prob) if pred.on == "recalibrated" else prob)
        metrics.update({f"test/conformal_{k}": v for k, v in conformal.set_scores(y, member).items()})
        if is_main_process():
            add_prediction_column(run_dir / runs.predictions_file("test"), "set", conformal.describe(member, classes))
        if c.compare:
            metrics.update(compare_conformal(val, test, cal, c.alpha, graded, config.seed))
    return metrics


def trust_of(parts: Any, prefix: str, y: np.ndarray, members: np.ndarray, n_boot: int,
             patients: np.ndarray | None, predictions: Path) -> dict[str, float]:
    """A trained run's recalibration and prediction sets (``parts``: its
    :class:`~biodl.inference.predictor.RunParts`, or a predictor) on labelled cases (``biodl
    evaluate``, ``calibrate``): ``<prefix>/`` calibration metrics before and after, set coverage and
    size, and each case's set added to the ``predictions`` CSV. ``members``: each member's (M, N, K)
    raw probabilities of the cases (or (N, K), their mean, where the members have no maps of
    their own); ``y``: (N,) labels."""
    from ..trust import calibration, conformal

    prob = parts.combine(members, recalibrated=False)
    after = parts.combine(members) if parts.recalibrates else None
    metrics = calibration.calibration_metrics(y, prob, after, prefix, n_boot, patients)
    member = parts.sets(members)
    if member is not None:
        metrics.update({f"{prefix}/conformal_{k}": v for k, v in conformal.set_scores(y, member).items()})
        if is_main_process():
            add_prediction_column(predictions, "set", conformal.describe(member, parts.classes))
    return metrics


def compare_conformal(val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], cal, alpha: float,
                      graded: bool, seed: int) -> dict[str, float]:
    """Every conformal method (ordinal for grades only) on the raw and, with ``cal``, the
    recalibrated probabilities: ``test/conformal_<method>_<raw|recalibrated>_{coverage,set_size}``."""
    from ..trust import conformal

    out: dict[str, float] = {}
    sources = {"raw": (val[1], test[1])}
    if cal is not None:
        sources["recalibrated"] = (cal.apply(val[1]), cal.apply(test[1]))
    for method in conformal.METHODS:
        if method == "ordinal" and not graded:
            continue
        for name, (pv, pt) in sources.items():
            try:
                member = conformal.fit(method, val[0], pv, alpha, seed=seed).sets(pt)
            except DataError:
                continue
            s = conformal.set_scores(test[0], member)
            out[f"test/conformal_{method}_{name}_coverage"] = s["coverage"]
            out[f"test/conformal_{method}_{name}_set_size"] = s["set_size"]
    return out


def uncertainty_columns(samples: np.ndarray) -> dict[str, np.ndarray]:
    """(P, N, K) probabilities of P members or MC-dropout passes -> each case's predictive
    ``entropy`` and, when P > 1, their disagreement (``mutual_information``): (N,) each."""
    from ..trust import uncertainty

    if len(samples) == 1:
        return {"entropy": uncertainty.entropy(samples[0])}
    parts = uncertainty.decompose(samples)
    return {"entropy": parts["entropy"], "mutual_information": parts["mutual_information"]}


def referral(run_dir: Path, y: np.ndarray, prob: np.ndarray, parts: dict[str, np.ndarray],
             prefix: str = "test", patients: np.ndarray | None = None) -> dict[str, float]:
    """Referral to a human by each uncertainty in ``parts`` (see :func:`uncertainty_columns`):
    the area under the risk-coverage curve and the accuracy kept after referring 10% and 20%
    (``<prefix>/aurc_<name>``...), the mean mutual information when there is one, and (rank 0)
    ``<prefix>_referral.png`` and ``<prefix>_referral.csv``, the accuracy kept against the
    fraction referred with its 95% bootstrap interval (``patients``, (N,) ids: patients
    resampled, as the metrics). ``y`` (N,), ``prob`` (N, K)."""
    import pandas as pd

    from ..trust import uncertainty
    from ..evaluation import bootstrap_counts
    from ..report.figures import referral_plot
    from ..report.tables import write_table

    metrics: dict[str, float] = {}
    curves = {}
    counts = bootstrap_counts(len(y), 200, 0, patients)
    for name, values in parts.items():
        metrics.update(uncertainty.referral_metrics(y, prob, values, prefix, name))
        curves[name.replace("_", " ")] = uncertainty.referral_curve(y, prob, values, counts=counts)
    if "mutual_information" in parts:
        metrics[f"{prefix}/mean_mutual_information"] = float(parts["mutual_information"].mean())
    if is_main_process():
        referral_plot(curves, f"Referral by uncertainty ({prefix})", run_dir / f"{prefix}_referral.png")
        table = pd.concat([c.assign(by=name) for name, c in curves.items()], ignore_index=True)
        write_table(table, run_dir / f"{prefix}_referral", "Accuracy of the cases kept when the most uncertain are "
                    f"referred, with its 95% bootstrap interval ({'patients' if patients is not None else 'cases'} "
                    "resampled)")
    return metrics


def add_prediction_column(path: Path, name: str, values: list) -> None:
    """Add (or replace) column ``name`` of a predictions CSV, rewritten atomically."""
    import pandas as pd

    from ..io import atomic_write_text

    df = pd.read_csv(path, keep_default_na=False, dtype={"patient": str, "source": str})
    df[name] = values
    atomic_write_text(path, df.to_csv(index=False, float_format="%.8g"))


def run_sets(run_dir: Path, prob: np.ndarray, seed: int | None = None) -> np.ndarray | None:
    """(N, K) set membership from ``run_dir``'s conformal predictor for the model's (N, K)
    probabilities ``prob`` (recalibrated first when the predictor takes recalibrated ones);
    None when the run has no predictor."""
    pred = runs.read_conformal(run_dir)
    if pred is None:
        return None
    if pred.on == "recalibrated" and (cal := runs.read_calibration(run_dir)) is not None:
        prob = cal.apply(prob)
    return pred.sets(prob, seed)

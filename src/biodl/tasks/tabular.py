"""Binary classification of tabular (clinical) records with a neural net.

Data: a CSV with numeric feature columns and a 0/1 target, checked row by row.
Split: stratified train/validation/test. Preprocessing (feature list and
standardisation) is fitted on the training rows only and saved as
``preprocess.json``, so ``predict`` applies exactly what the model saw.
Model: one logit per row; loss: BCE with logits, weighted by class frequency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator
from torch.utils.data import TensorDataset

from ..trust import conformal
from .. import runs
from ..config import Strict, TabularRunConfig
from ..data import TabularPreprocessor, feature_dataset, load_table, read_csv, stratified_split
from ..datasets import embedded_path
from ..engine import Trainer
from ..engine.checkpoint import load_model_weights
from ..engine.inferer import resolve_device
from ..errors import DataError
from ..io import atomic_write_text, sha256_file
from ..engine.distributed import is_main_process
from ..evaluation import binary_metrics, binary_prob_scores
from ..models import create_model
from ..report.predictions import prediction_artefacts, save_predictions
from ..repro import seed_everything
from .common import (
    Stopwatch,
    TrainResult,
    finish_run,
    make_trainer,
    refuse_overwrite,
    run_path,
    run_weights,
    score_predictions,
    start_run,
    write_results,
)
from .trust import referral, run_sets, trust, trust_of, uncertainty_columns


__all__ = [
    "PreprocessFile", "data_path", "train", "load_run", "load_test_split", "evaluate", "predict", "fit_predict_net",
]


class PreprocessFile(Strict):
    """``preprocess.json`` of a tabular run (see :class:`TabularPreprocessor`)."""

    features: list[str] = Field(min_length=1)
    binary: list[str]
    target: str
    mean: list[float]
    std: list[float]
    classes: list[str]
    pos_weight: float | None = None
    members: int | None = Field(None, ge=2, description="a deep ensemble's parent: its members' runs are in members/")

    @model_validator(mode="after")
    def _sizes(self) -> "PreprocessFile":
        if not len(self.mean) == len(self.std) == len(self.features):
            raise ValueError(f"mean and std need one value per feature ({len(self.features)})")
        if any(not s > 0 for s in self.std):
            raise ValueError("std values must be positive")
        return self


def data_path(config: TabularRunConfig) -> Path:
    return embedded_path(config.data.dataset) if config.data.dataset else Path(config.data.path)


def _loss(pos_weight: float | None):
    weight = torch.tensor(pos_weight) if pos_weight is not None else None

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = weight.to(out.device) if weight is not None else None
        return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y.to(out.dtype), pos_weight=w)

    return loss


def _probability(out: torch.Tensor) -> torch.Tensor:
    """(B, 1) logits -> (B,) probability of class 1."""
    return torch.sigmoid(out.squeeze(-1))


def _model(config: TabularRunConfig, n_features: int) -> torch.nn.Module:
    return create_model(config.model.name, in_features=n_features, num_outputs=1, **config.model.args)


def _trainer(config: TabularRunConfig, model: torch.nn.Module, run_dir: Path | None, pos_weight: float | None,
             device: torch.device, train: bool = True) -> Trainer:
    return make_trainer(config, model, _loss(pos_weight), binary_metrics(), _probability, run_dir, device, train)


def _split(config: TabularRunConfig, y: np.ndarray, where: Path) -> dict[str, np.ndarray]:
    seed = config.data.split_seed if config.data.split_seed is not None else config.seed
    return stratified_split(y, config.data.val_fraction, config.data.test_fraction, seed, where=str(where))


def train(config: TabularRunConfig, out: str | Path | None = None, resume: bool = False) -> TrainResult:
    """Validate the data, train, pick the best epoch on validation, evaluate on test; write the run directory."""
    d = config.data
    path = data_path(config)
    x, y, features = load_table(path, d.target, d.features, d.drop, d.binary)
    split = _split(config, y, path)
    train_rows = split["train"]
    pre = TabularPreprocessor.fit(x[train_rows], features, [c for c in d.binary if c in features], d.target,
                                  d.standardize, y[train_rows] if config.trainer.class_weights else None)
    device = resolve_device(config.trainer.device)
    if config.ensemble > 1:
        return _train_ensemble(config, pre, split, y, path, device, out, resume)
    run_dir = run_path(config, out, resume, device)
    seed_everything(config.seed, config.deterministic)
    trainer = _trainer(config, _model(config, len(features)), run_dir, pre.pos_weight, device)
    manifest = start_run(config, run_dir, resume, device, pre.to_dict(), {"data": path},
                         {"split_sizes": {k: int(len(v)) for k, v in split.items()},
                          "class_counts": {k: np.bincount(y[v], minlength=2).tolist() for k, v in split.items()},
                          "classes": [f"{d.target}={k}" for k in (0, 1)]})
    data = {k: feature_dataset(pre.transform(x[v]), y[v]) for k, v in split.items()}
    watch = Stopwatch()
    with watch("train"):
        trainer.fit(data["train"], data["val"], resume=resume)
    with watch("evaluate"):
        metrics = finish_run(trainer, run_dir, data["val"], data["test"])
        classes = [f"{d.target}={k}" for k in (0, 1)]
        prob, scores = _test_report(trainer, data["test"], y[split["test"]], classes, config.n_boot, "test", run_dir,
                                    split["test"])
        metrics.update(scores)
        val_y, val_prob = y[split["val"]], trainer.predict(data["val"]).numpy().astype(np.float64)
        val_prob = np.column_stack([1 - val_prob, val_prob])
        if is_main_process():
            save_predictions(run_dir, "val", val_y, val_prob, classes, split["val"])
        metrics.update(trust(run_dir, config, classes, False, (val_y, val_prob),
                             (y[split["test"]], np.column_stack([1 - prob, prob]))))
        if is_main_process():
            from ..report.tensorboard import log_extras

            example = trainer.prepare_batch(data["test"][:2][0])
            log_extras(run_dir / runs.TENSORBOARD, step=trainer.epoch, graph=(trainer.module, example),
                       pr=(y[split["test"]], np.column_stack([1 - prob, prob]), classes))
    write_results(run_dir, metrics, manifest, watch=watch)
    return TrainResult(run_dir, metrics, trainer)


def _train_ensemble(config: TabularRunConfig, pre: TabularPreprocessor, split: dict[str, np.ndarray], y: np.ndarray,
                    path: Path, device: torch.device, out, resume: bool) -> TrainResult:
    """The parent of a deep ensemble: every member is trained on the same split, so the parent's
    preprocessing (fitted on the same training rows) is every member's."""
    from .ensemble import train_ensemble

    classes = [f"{config.data.target}={k}" for k in (0, 1)]
    extra = {"split_sizes": {k: int(len(v)) for k, v in split.items()},
             "class_counts": {k: np.bincount(y[v], minlength=2).tolist() for k, v in split.items()},
             "classes": classes, "note": f"deep ensemble of {config.ensemble} members (seeds {config.seed}..."
                                         f"{config.seed + config.ensemble - 1}), one split"}
    return train_ensemble(config, out, resume, device, train, binary_prob_scores, classes, False,
                          {**pre.to_dict(), "members": config.ensemble}, extra, inputs={"data": path})


def _test_report(trainer: Trainer, data: TensorDataset, y: np.ndarray, classes: list[str], n_boot: int, prefix: str,
                 out_dir: Path, rows: np.ndarray | None) -> tuple[np.ndarray, dict[str, float]]:
    """Metrics with CIs of ``data`` (labels ``y``), ``<prefix>_predictions.csv`` with each row's
    predictive entropy (and with MC dropout the passes' mutual information) and the referral
    curves. Returns ((N,) probabilities of class 1, metrics)."""
    samples = trainer.predict_passes(data).numpy().astype(np.float64)  # (passes, N): P(class 1)
    samples = np.stack([1 - samples, samples], axis=-1)
    prob, parts = samples[..., 1].mean(axis=0), uncertainty_columns(samples)
    both = np.column_stack([1 - prob, prob])
    metrics = score_predictions(y, both, classes, binary_prob_scores, n_boot, prefix, out_dir, rows=rows, after=parts)
    metrics.update(referral(out_dir, y, both, parts, prefix))
    return prob, metrics


# ----------------------------------------------------------------------------- using a finished run


def load_run(run_dir: str | Path, checkpoint: str = "best") -> tuple[TabularRunConfig, TabularPreprocessor, Trainer]:
    """Config, preprocessing and a Trainer holding the run's ``best`` (or ``last``) weights."""
    run_dir = Path(run_dir)
    config = runs.load_run_config(run_dir)
    saved = runs.read_preprocess(run_dir, PreprocessFile, "tabular").model_dump()
    members = saved.pop("members")
    pre = TabularPreprocessor.from_dict(saved)
    if members:  # an ensemble parent: the mean of its members (same split, so the same preprocessing)
        from ..models.ensemble import LogitMean

        model = LogitMean([load_run(runs.member_dir(run_dir, k), checkpoint)[2].module for k in range(members)])
    else:
        tensors, source = run_weights(run_dir, checkpoint)
        model = _model(config, len(pre.features))
        load_model_weights(model, tensors, source)
    device = resolve_device(config.trainer.device)
    return config, pre, _trainer(config, model, None, pre.pos_weight, device, train=False)


def load_test_split(run_dir: Path, config: TabularRunConfig,
                    pre: TabularPreprocessor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw features, labels, row numbers) of the run's own test split, from its data file,
    which must be unchanged since training (sha256 against manifest.json)."""
    recorded = runs.read_manifest(run_dir).get("inputs", {}).get("data", {})
    path = data_path(config)
    if recorded.get("sha256") and recorded["sha256"] != sha256_file(path):
        raise DataError(path, "has changed since the run was trained (sha256 differs from manifest.json)")
    x, y, _ = load_table(path, pre.target, pre.features, [], pre.binary)
    rows = _split(config, y, path)["test"]
    return x[rows], y[rows], rows


def evaluate(run_dir: str | Path, data: str | Path | None = None, checkpoint: str = "best",
             overwrite: bool = False) -> tuple[dict[str, float], Path]:
    """Metrics of a trained run on its own test split (data unchanged, checked by sha256) or on a labelled CSV."""
    run_dir = Path(run_dir)
    config, pre, trainer = load_run(run_dir, checkpoint)
    if data is None:
        x, y, rows = load_test_split(run_dir, config, pre)
        name = "test"
    else:
        path = Path(data)
        x, y, _ = load_table(path, pre.target, pre.features, [], pre.binary)
        rows, name = None, path.stem
    out = run_dir / "evaluation" / f"{name}.json"
    refuse_overwrite(out, overwrite)
    data = feature_dataset(pre.transform(x), y)
    metrics = trainer.evaluate(data, prefix=name)
    metrics[f"{name}/n"] = float(len(y))
    out.parent.mkdir(exist_ok=True)
    prob, scores = _test_report(trainer, data, y, [f"{pre.target}={k}" for k in (0, 1)], config.n_boot, name,
                                out.parent, rows)
    metrics.update(scores)
    metrics.update(trust_of(run_dir, name, y, np.column_stack([1 - prob, prob]), config.n_boot, None,
                            [f"{pre.target}={k}" for k in (0, 1)], out.parent / f"{name}_predictions.csv"))
    prediction_artefacts(out.parent, name)
    runs.write_metrics(out.parent, metrics, out.name)
    return metrics, out


def predict(run_dir: str | Path, input_csv: str | Path, out: str | Path | None = None, checkpoint: str = "best",
            overwrite: bool = False, threshold: float = 0.5) -> Path:
    """Write ``input columns + probability + predicted`` for every row of a CSV of new records."""
    run_dir, input_csv = Path(run_dir), Path(input_csv)
    config, pre, trainer = load_run(run_dir, checkpoint)
    df = read_csv(input_csv)
    x = pre.features_from(df, input_csv)
    out = Path(out) if out is not None else run_dir / "predictions" / f"{input_csv.stem}.csv"
    refuse_overwrite(out, overwrite)
    samples = trainer.predict_passes(feature_dataset(x)).numpy().astype(np.float64)
    raw = samples.mean(axis=0)
    cal = runs.read_calibration(run_dir)
    prob = raw if cal is None else cal.apply(np.column_stack([1 - raw, raw]))[:, 1]
    df[f"probability_{pre.target}"] = np.round(prob, 6)  # recalibrated when the run has calibration.json
    if cal is not None:
        df[f"raw_probability_{pre.target}"] = np.round(raw, 6)
    df[f"predicted_{pre.target}"] = (prob >= threshold).astype(int)
    member = run_sets(run_dir, np.column_stack([1 - raw, raw]))
    if member is not None:  # the conformal set: {0}, {1}, both, or none
        df[f"set_{pre.target}"] = conformal.describe(member, ["0", "1"])
    for name, values in uncertainty_columns(np.stack([1 - samples, samples], axis=-1)).items():
        df[name] = np.round(values, 6)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, df.to_csv(index=False))
    return out


def fit_predict_net(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int, model: str = "logistic",
                    epochs: int = 30, batch_size: int = 16, lr: float = 0.01, **model_args: Any
                    ) -> tuple[np.ndarray, np.ndarray, torch.nn.Module]:
    """Train a tabular net in memory through the engine (no run directory) and predict.

    Features are standardised on the training rows; the loss is class-weighted BCE; SGD with
    momentum 0.9. Returns (labels at 0.5, probabilities, model). Deterministic given ``seed``.
    """
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    seed_everything(seed)
    net = create_model(model, in_features=x_train.shape[1], num_outputs=1, **model_args)
    n_pos = float(y_train.sum())
    trainer = Trainer(net, _loss((len(y_train) - n_pos) / n_pos), lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9),
                      postprocess=_probability, max_epochs=epochs, batch_size=batch_size, seed=seed, device="cpu")
    trainer.fit(feature_dataset(scaler.transform(x_train), y_train))
    prob = trainer.predict(feature_dataset(scaler.transform(x_test))).numpy().astype(np.float64)
    return (prob >= 0.5).astype(int), prob, trainer.module

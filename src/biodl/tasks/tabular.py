"""Binary classification of tabular (clinical) records with a neural net.

Data: a CSV with numeric feature columns and a 0/1 target, checked row by row.
Split: stratified train/validation/test. Preprocessing (feature list and
standardisation) is fitted on the training rows only and saved as
``preprocess.json``, so a prediction applies exactly what the model saw.
Model: one logit per row; loss: BCE with logits, weighted by class frequency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import TensorDataset

from .. import runs
from ..config import Positive, Strict, TabularRunConfig
from ..data import TabularPreprocessor, feature_dataset, load_table, numeric_columns, read_csv, stratified_split
from ..datasets import embedded_path
from ..engine import Trainer
from ..engine.distributed import is_main_process
from ..engine.inferer import Inferer
from ..engine.trainer import resolve_device
from ..errors import ConfigError, DataError
from ..evaluation import binary_metrics, binary_prob_scores
from ..io import sha256_file
from ..models import create_model
from ..report.predictions import prediction_artefacts, save_predictions
from ..repro import seed_everything
from .common import (Run, Stopwatch, finish_run, finish_trial, make_trainer, refuse_overwrite, run_path,
                     score_predictions, start_run, without_test, write_results)
from .trust import referral, trust, trust_of, uncertainty_columns

__all__ = [
    "PreprocessFile", "data_path", "classes", "network", "train", "load_test_split", "evaluate", "fit_predict_net",
    "TabularEnd", "END",
]


class PreprocessFile(Strict):
    """``preprocess.json`` of a tabular run (see :class:`TabularPreprocessor`)."""

    features: list[str] = Field(min_length=1)
    binary: list[str]
    target: str
    mean: list[float]
    std: list[Positive]
    classes: list[str]
    pos_weight: float | None = None
    members: int | None = Field(None, ge=2, description="a deep ensemble's parent: its members' runs are in members/")

    @model_validator(mode="after")
    def _sizes(self) -> "PreprocessFile":
        if not len(self.mean) == len(self.std) == len(self.features):
            raise ValueError(f"mean and std need one value per feature ({len(self.features)})")
        return self


def data_path(config: TabularRunConfig) -> Path:
    return embedded_path(config.data.dataset) if config.data.dataset else Path(config.data.path)


def classes(target: str) -> list[str]:
    """The class names of a tabular run: ``<target>=0`` and ``<target>=1``."""
    return [f"{target}={k}" for k in (0, 1)]


def _loss(pos_weight: float | None):
    weight = torch.tensor(pos_weight) if pos_weight is not None else None

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = weight.to(out.device) if weight is not None else None
        return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y.to(out.dtype), pos_weight=w)

    return loss


def _probability(out: torch.Tensor) -> torch.Tensor:
    """(B, 1) logits -> (B,) probability of class 1."""
    return torch.sigmoid(out.squeeze(-1))


def network(config: TabularRunConfig, n_features: int) -> torch.nn.Module:
    """The run's network, untrained: one logit per row of ``n_features`` inputs."""
    return create_model(config.model.name, in_features=n_features, num_outputs=1, **config.model.args)


def _trainer(config: TabularRunConfig, model: torch.nn.Module, run_dir: Path | None, pos_weight: float | None,
             device: torch.device, train: bool = True) -> Trainer:
    return make_trainer(config, model, _loss(pos_weight), binary_metrics(), _probability, run_dir, device, train)


def _split(config: TabularRunConfig, y: np.ndarray, where: Path) -> dict[str, np.ndarray]:
    seed = config.data.split_seed if config.data.split_seed is not None else config.seed
    return stratified_split(y, config.data.val_fraction, config.data.test_fraction, seed, where=str(where))


def train(config: TabularRunConfig, out: str | Path | None = None, resume: bool = False) -> Run:
    """Validate the data, train, pick the best epoch on validation, evaluate on test; write the run directory."""
    d = config.data
    path = data_path(config)
    x, y, features = load_table(path, d.target, d.features, d.drop, d.binary)
    split = without_test(config, _split(config, y, path))  # a tuning trial: the test rows are never touched
    if config.trial and config.ensemble > 1:
        raise ConfigError("trial", "a tuning trial trains one model (ensemble: 1)")
    train_rows = split["train"]
    pre = TabularPreprocessor.fit(x[train_rows], features, [c for c in d.binary if c in features], d.target,
                                  d.standardize, y[train_rows] if config.trainer.class_weights else None)
    device = resolve_device(config.trainer.device)
    if config.ensemble > 1:
        return _train_ensemble(config, pre, split, y, path, device, out, resume)
    run_dir = run_path(config, out, resume, device)
    seed_everything(config.seed, config.deterministic)
    trainer = _trainer(config, network(config, len(features)), run_dir, pre.pos_weight, device)
    manifest = start_run(config, run_dir, resume, device, pre.to_dict(), {"data": path},
                         {"split_sizes": {k: int(len(v)) for k, v in split.items()},
                          "class_counts": {k: np.bincount(y[v], minlength=2).tolist() for k, v in split.items()},
                          "classes": [f"{d.target}={k}" for k in (0, 1)]})
    data = {k: feature_dataset(pre.transform(x[v]), y[v]) for k, v in split.items()}
    watch = Stopwatch()
    with watch("train"):
        trainer.fit(data["train"], data["val"], resume=resume)
    if config.trial:
        return finish_trial(trainer, run_dir, data["val"], manifest, watch)
    with watch("evaluate"):
        metrics = finish_run(trainer, run_dir, data["val"], data["test"])
        names = classes(d.target)
        samples = trainer.predict_passes(data["test"]).numpy().astype(np.float64)
        prob, scores = _test_report(samples, y[split["test"]], names, config.n_boot, "test", run_dir, split["test"])
        metrics.update(scores)
        val_y, val_prob = y[split["val"]], trainer.predict(data["val"]).numpy().astype(np.float64)
        val_prob = np.column_stack([1 - val_prob, val_prob])
        if is_main_process():
            save_predictions(run_dir, "val", val_y, val_prob, names, split["val"])
        metrics.update(trust(run_dir, config, names, False, (val_y, val_prob),
                             (y[split["test"]], np.column_stack([1 - prob, prob]))))
        if is_main_process():
            from ..report.tensorboard import log_extras

            example = trainer.prepare_batch(data["test"][:2][0])
            log_extras(run_dir / runs.TENSORBOARD, step=trainer.epoch, graph=(trainer.module, example),
                       pr=(y[split["test"]], np.column_stack([1 - prob, prob]), names))
    write_results(run_dir, metrics, manifest, watch=watch)
    return Run(run_dir, metrics, trainer)


def _train_ensemble(config: TabularRunConfig, pre: TabularPreprocessor, split: dict[str, np.ndarray], y: np.ndarray,
                    path: Path, device: torch.device, out, resume: bool) -> Run:
    """The parent of a deep ensemble: every member is trained on the same split, so the parent's
    preprocessing (fitted on the same training rows) is every member's."""
    from .ensemble import train_ensemble

    names = classes(config.data.target)
    extra = {"split_sizes": {k: int(len(v)) for k, v in split.items()},
             "class_counts": {k: np.bincount(y[v], minlength=2).tolist() for k, v in split.items()},
             "classes": names, "note": f"deep ensemble of {config.ensemble} members (seeds {config.seed}..."
                                         f"{config.seed + config.ensemble - 1}), one split"}
    return train_ensemble(config, out, resume, device, train, binary_prob_scores, names, False,
                          {**pre.to_dict(), "members": config.ensemble}, extra, inputs={"data": path})


def _test_report(samples: np.ndarray, y: np.ndarray, names: list[str], n_boot: int, prefix: str, out_dir: Path,
                 rows: np.ndarray | None, points: tuple[str, ...] | bool = ()) -> tuple[np.ndarray, dict[str, float]]:
    """Metrics with CIs of (S, N) probabilities of class 1 ``samples`` (S: MC-dropout passes, or
    members' passes; their mean is the prediction) for labels ``y``, ``<prefix>_predictions.csv``
    with each row's predictive entropy (and with several samples their mutual information) and
    the referral curves. Returns ((N,) probabilities of class 1, metrics)."""
    samples = np.stack([1 - samples, samples], axis=-1)
    prob, parts = samples[..., 1].mean(axis=0), uncertainty_columns(samples)
    both = np.column_stack([1 - prob, prob])
    metrics = score_predictions(y, both, names, binary_prob_scores, n_boot, prefix, out_dir, rows=rows, after=parts,
                                points=points)
    metrics.update(referral(out_dir, y, both, parts, prefix))
    return prob, metrics


def load_test_split(run_dir: Path, config: TabularRunConfig,
                    pre: "PreprocessFile") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw features, labels, row numbers) of the run's own test split, from its data file,
    which must be unchanged since training (sha256 against manifest.json)."""
    recorded = runs.read_manifest(run_dir).get("inputs", {}).get("data", {})
    path = data_path(config)
    if recorded.get("sha256") and recorded["sha256"] != sha256_file(path):
        raise DataError(path, "has changed since the run was trained (sha256 differs from manifest.json)")
    x, y, _ = load_table(path, pre.target, pre.features, [], pre.binary)
    rows = _split(config, y, path)["test"]
    return x[rows], y[rows], rows


def evaluate(predictor, data: str | Path | None = None, overwrite: bool = False) -> tuple[dict[str, float], Path]:
    """Metrics of a trained run (``predictor``: :func:`biodl.load`) on its own test split (the data
    unchanged, checked by sha256) or on a labelled CSV ``data``, as ``RUN_DIR/evaluation/<name>.json``
    with the predictions, tables and figures beside it."""
    run_dir, pre = predictor.run_dir, predictor.pre
    if data is None:
        x, y, rows = load_test_split(run_dir, predictor.config, pre)
        name = "test"
    else:
        path = Path(data)
        x, y, _ = load_table(path, pre.target, pre.features, [], pre.binary)
        rows, name = None, path.stem
    out = run_dir / runs.EVALUATION / f"{name}.json"
    refuse_overwrite(out, overwrite)
    samples = predictor.samples(predictor.read(x))
    out.parent.mkdir(exist_ok=True)
    _, metrics = _test_report(samples[..., 1].reshape(-1, len(y)), y, predictor.classes, predictor.config.n_boot,
                              name, out.parent, rows, points=True)
    metrics[f"{name}/n"] = float(len(y))
    metrics.update(trust_of(predictor, name, y, samples.mean(axis=1), predictor.config.n_boot, None,
                            out.parent / runs.predictions_file(name)))
    prediction_artefacts(out.parent, name)
    runs.write_metrics(out.parent, metrics, out.name)
    return metrics, out


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


# ----------------------------------------------------------------------------- the inference end


class _FeatureNet(nn.Module):
    """(B, F) raw feature values -> (B, 2) logits ``[0, z]`` (softmax: P(class 0), P(class 1)):
    the run's standardisation, then the network's logit ``z``."""

    def __init__(self, module: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.model = module
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model((x.float() - self.mean) / self.std).float()
        return torch.cat([torch.zeros_like(z), z], dim=1)


class TabularEnd:
    """The tabular task's end for :mod:`biodl.inference.predictor`: new records as a DataFrame, a
    CSV file or a (N, F) array of the run's features (in ``preprocess.json``'s order)."""

    output = "classes"
    preprocess = PreprocessFile

    def classes(self, pre: "PreprocessFile") -> list[str]:
        return classes(pre.target)

    def network(self, config: TabularRunConfig, pre: "PreprocessFile") -> nn.Module:
        return network(config, len(pre.features))

    def inferer(self, config: TabularRunConfig, pre: "PreprocessFile", module: nn.Module,
                device: torch.device) -> Inferer:
        return Inferer(module, device=device, precision=config.trainer.precision, postprocess=_probability,
                       batch_size=config.data.batch_size, num_workers=config.data.num_workers,
                       mc_dropout=config.model.mc_dropout, seed=config.seed)

    def read(self, pre: "PreprocessFile", inputs: Any) -> tuple[TensorDataset, pd.DataFrame]:
        if isinstance(inputs, (str, Path)):
            df = read_csv(Path(inputs))
            raw = numeric_columns(df, pre.features, inputs, pre.binary)
        elif isinstance(inputs, pd.DataFrame):
            df, raw = inputs, numeric_columns(inputs, pre.features, "table", pre.binary)
        else:
            raw = np.asarray(inputs, dtype=np.float64)
            if raw.ndim != 2 or raw.shape[1] != len(pre.features):
                raise DataError("features", f"expected (N, {len(pre.features)}) values of {', '.join(pre.features)}, "
                                            f"got {raw.shape}")
            df = pd.DataFrame(raw, columns=pre.features)
        return feature_dataset(_transform(pre, raw)), df

    def probabilities(self, outputs: torch.Tensor) -> np.ndarray:
        """(P, N) probabilities of class 1 -> (P, N, 2) float64."""
        p = outputs.numpy().astype(np.float64)
        return np.stack([1 - p, p], axis=-1)

    def module(self, inferer: Inferer, pre: "PreprocessFile", tta: bool = True) -> nn.Module:
        return _FeatureNet(inferer.module, pre.mean, pre.std)

    def export_sample(self, predictor: Any) -> tuple[np.ndarray, Any, dict, dict]:
        """For ``biodl export``: the test rows' raw features, and their descriptions."""
        pre = predictor.pre
        inputs = load_test_split(predictor.run_dir, predictor.config, pre)[0].astype(np.float32)
        first = {"name": "features", "dtype": "float32", "shape": ["batch", len(pre.features)],
                 "columns": pre.features}
        return inputs, inputs, first, {"inside_graph": "(x - mean) / std per column, the networks, the "
                                                       "recalibration, softmax", "mean": pre.mean, "std": pre.std,
                                       "binary_columns": pre.binary}


def _transform(pre: "PreprocessFile", raw: np.ndarray) -> np.ndarray:
    """(N, F) raw values -> (N, F) float32 model inputs, as training standardised them."""
    return TabularPreprocessor.from_dict(pre.model_dump(exclude={"members"})).transform(raw)


#: the tabular task's inference end
END = TabularEnd()

"""The test report of an image run: metrics with CIs (patients resampled where known) from the
predictions, the referral curves, the most confident right and wrong test images, the slide maps
of test patients, and TensorBoard's extras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config import ImageRunConfig
from ..data.arrays import ImageDataset, ImageSet
from ..engine import Trainer
from ..engine.distributed import is_main_process
from ..evaluation import multiclass_scores
from .common import score_predictions
from .image_data import trace
from .trust import referral, uncertainty_columns

__all__ = ["slide_maps", "report_split", "show_examples", "log_tensorboard"]


def slide_maps(config: ImageRunConfig, data: ImageSet, run_dir: Path, pred: pd.DataFrame) -> list[str]:
    """Slide maps of the test patients (two-class runs whose file names carry patch positions)."""
    from ..report.slides import write_slide_maps

    if len(data.classes) != 2 or not config.data.coordinates or not is_main_process():
        return []
    return write_slide_maps(run_dir, data.images, pred, data.classes[1], config.data.coordinates)


def report_split(samples: np.ndarray, data: ImageDataset, graded: bool, n_boot: int, prefix: str,
                 out_dir: Path | None, points: tuple[str, ...] | bool = ()) -> tuple[np.ndarray, dict[str, float]]:
    """95% bootstrap CIs of the metrics of (S, N, K) probabilities ``samples`` (S: MC-dropout passes,
    or members' passes; their mean is the prediction) on ``data`` (resampling patients when the
    set has patient ids, else images) and the expected calibration error; with ``out_dir``, also
    ``<prefix>_predictions.csv`` with each image's row, file and patient (from which the report
    derives its tables and figures), each image's predictive entropy (and with several samples
    their mutual information), and the referral curve by each. ``points``: the metrics whose
    value comes from here too (two-class runs: the positive class's F1, predictive values,
    sensitivity, specificity and PR AUC, which the engine does not log). Returns (probabilities
    (N, K), metrics)."""
    prob, parts = samples.mean(axis=0), uncertainty_columns(samples)
    rows, patients, sources = trace(data)
    y = data.labels.numpy()
    metrics = score_predictions(y, prob, data.classes, lambda a, b: multiclass_scores(a, b, graded), n_boot, prefix,
                                out_dir, rows=rows, patients=patients, sources=sources, points=points, after=parts)
    if out_dir is not None:
        metrics.update(referral(out_dir, y, prob, parts, prefix, patients))
    return prob, metrics


def _part(data: ImageDataset, n: int) -> ImageDataset:
    """The first ``n`` samples of ``data``, as a view."""
    rows = data.indices if data.indices is not None else torch.arange(len(data))
    return ImageDataset(data.data, indices=rows[:n].numpy())


def show_examples(data: ImageDataset, prob: np.ndarray, path: Path, n: int = 8) -> None:
    """``path``: a figure of the ``n`` most confident right and the ``n`` most confident wrong
    predictions on ``data`` (probabilities ``prob``, (N, K)), captioned true -> predicted (p)."""
    from ..report.figures import image_examples

    y, pred, conf = data.labels.numpy(), prob.argmax(axis=1), prob.max(axis=1)
    order = np.argsort(-conf, kind="stable")
    right = [i for i in order if pred[i] == y[i]][:n]
    wrong = [i for i in order if pred[i] != y[i]][:n]
    picks = right + wrong
    if not picks:
        return
    images = data.on_host()[torch.as_tensor(picks)][0].movedim(1, -1).numpy()
    c = data.classes
    image_examples(images, [f"{c[y[i]]} → {c[pred[i]]} ({conf[i]:.2f})" for i in picks],
                   ["#1a7f37"] * len(right) + ["#cf222e"] * len(wrong),
                   f"{len(right)} most confident right, {len(wrong)} most confident wrong", path)


def log_tensorboard(trainer: Trainer, train_set: ImageDataset, test: ImageDataset, prob: np.ndarray, log_dir: Path,
                    n_embed: int = 1000) -> None:
    """TensorBoard extras: 64 training images, the graph, per-class PR curves on ``test`` and the
    projector of up to ``n_embed`` test images' penultimate-layer features."""
    from ..report.tensorboard import last_linear, log_extras, thumbnails

    grid = train_set.on_host()[torch.arange(min(64, len(train_set)))][0]
    part = _part(test, n_embed)
    head = last_linear(trainer.module)
    embedding = None
    if head is not None and len(part):
        feats = trainer.layer_inputs(part, head)
        y, pred, c = part.labels.numpy(), prob[: len(part)].argmax(axis=1), test.classes
        meta = [[c[a], c[b], "yes" if a == b else "no"] for a, b in zip(y, pred, strict=True)]
        embedding = (feats, meta, ["true", "predicted", "correct"], thumbnails(part[torch.arange(len(part))][0]))
    example = trainer.prepare_batch(grid[:2])
    log_extras(log_dir, step=trainer.epoch, images=grid, graph=(trainer.module, example),
               pr=(test.labels.numpy(), prob, test.classes), embedding=embedding)

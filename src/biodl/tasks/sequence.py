"""DNA sequence classification (``task: sequence``), e.g. whether a transcription factor binds a
peak: sequences -> one-hot (N, 4, L) -> a sequence CNN (``deepbind``, ``basset``) -> test metrics
with bootstrap CIs, resampling groups (a peak and its shuffles) where the data has them.

Data (:mod:`biodl.data.sequences`): the training file, with dinucleotide-shuffled (or background)
negatives when it holds positives only; the test set from ``data.test`` (made the same way when it
holds positives only) or carved from training. Splits are grouped, so a peak and its shuffle never
straddle training and validation. Training reads a random strand of each sequence; validation,
test and prediction average both strands (``model.strands``). ``preprocess.json`` holds the
classes and the length the model sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn
from torch.utils.data import TensorDataset

from .. import runs
from ..config import SequenceRunConfig, Strict
from ..data.sequences import (SequenceSet, fit_length, load_sequences, one_hot, reverse_complement,
                              with_background_negatives, with_shuffled_negatives)
from ..data.splits import grouped_split
from ..datasets import embedded_path
from ..engine.distributed import is_main_process
from ..engine.inferer import Inferer, resolve_device
from ..engine.optim import optimizer_factory
from ..errors import ConfigError, DataError
from ..evaluation import BINARY_EXTRAS, multiclass_metrics, multiclass_scores
from ..models import create_model
from ..models.sequence import StrandAverage
from ..report.predictions import save_predictions
from ..repro import seed_everything
from .common import (Run, SoftmaxEnd, Stopwatch, best_predictions, class_weights, finish_trial, make_trainer,
                     refuse_overwrite, run_path, score_predictions, start_run, weighted_cross_entropy, without_test,
                     write_results)
from .trust import referral, trust, trust_of, uncertainty_columns

__all__ = ["PreprocessFile", "FACTORS", "load_split", "network", "train", "evaluate", "SequenceEnd", "END"]

#: the embedded experiments (``data.dataset: tf-binding:<FACTOR>``) -> their file stem
FACTORS = {"ELK1": "ELK1_GM12878_ELK1_(1277-1)_Stanford", "GABPA": "GABPA_GM12878_GABP_HudsonAlpha",
           "REST": "REST_GM12878_NRSF_HudsonAlpha", "MYC": "MYC_H1-hESC_c-Myc_Stanford",
           "CTCFL": "CTCFL_K562_CTCFL_(SC-98982)_HudsonAlpha"}


class PreprocessFile(Strict):
    """``preprocess.json`` of a sequence run: the class names and the length the model sees."""

    classes: list[str] = Field(min_length=2)
    length: int = Field(ge=1)
    negatives: str | None = None


def _paths(config: SequenceRunConfig) -> tuple[Path, Path | None]:
    """(training file, test file or None) of the run's data."""
    d = config.data
    if d.dataset is None:
        return Path(d.path), Path(d.test) if d.test is not None else None
    kind, _, factor = d.dataset.partition(":")
    if kind != "tf-binding" or factor not in FACTORS:
        raise ConfigError("data.dataset", f"unknown sequence data set {d.dataset!r}; known: "
                                          f"{', '.join(f'tf-binding:{f}' for f in FACTORS)}")
    root = embedded_path("tf-binding")
    return root / f"{FACTORS[factor]}_AC.seq.gz", root / f"{FACTORS[factor]}_B.seq.gz"


def _labelled(config: SequenceRunConfig, data: SequenceSet, seed: int) -> SequenceSet:
    """``data``, with negatives made as ``data.negatives`` says when it holds positives only."""
    if len(np.unique(data.labels)) > 1:
        return data
    if data.classes != ["0", "1"] or data.labels[0] != 1:
        raise DataError(data.source, f"holds one class ({data.classes[data.labels[0]]!r}) and no way to make "
                                     "negatives (a positives-only file is a FASTA without labels or a .seq of "
                                     "Bound 1)")
    if config.data.negatives == "shuffle":
        return with_shuffled_negatives(data, seed, config.data.shuffles)
    return with_background_negatives(data, config.data.negatives)


def load_split(config: SequenceRunConfig) -> tuple[SequenceSet, dict[str, np.ndarray], SequenceSet | None, Path]:
    """(training sequences, their train/val(/test) parts, the test set or None, the training
    file), every fault a one-line DataError before anything is written."""
    path, test_path = _paths(config)
    d = config.data
    labels = d.labels if d.dataset is None else None
    data = _labelled(config, load_sequences(path, labels), config.seed)
    test = _labelled(config, load_sequences(test_path, classes=data.classes), config.seed + 1) \
        if test_path and not config.trial else None  # a tuning trial does not open the test file
    groups = data.groups if data.groups is not None else np.asarray(data.ids)
    seed = config.seed
    parts = (grouped_split(data.labels, groups, d.val_fraction, d.test_fraction, seed, str(path)) if not test_path
             else _train_val(data.labels, groups, d.val_fraction, seed, path))
    return data, parts, test, path


def _train_val(labels: np.ndarray, groups: np.ndarray, val_fraction: float, seed: int,
               where: Path) -> dict[str, np.ndarray]:
    """Training and validation indices, grouped, classes stratified as far as the groups allow."""
    from sklearn.model_selection import StratifiedGroupKFold

    k = max(2, round(1 / val_fraction))
    if len(np.unique(groups)) < k:
        raise DataError(where, f"{len(np.unique(groups))} groups are too few for a grouped validation split")
    train, val = next(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(labels, labels, groups))
    return {"train": np.sort(train), "val": np.sort(val)}


def network(config: SequenceRunConfig, n_classes: int, length: int, where: str | Path = "model") -> nn.Module:
    """The run's network, untrained; sequences shorter than its first convolution are refused."""
    model = create_model(config.model.name, num_classes=n_classes, **config.model.args)
    if length < getattr(model, "min_length", 1):
        raise DataError(where, f"sequences of {length} bp are shorter than {config.model.name}'s first convolution "
                               f"({model.min_length} bp)")
    return model


def _strands(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Evaluation on both strands: the log of the mean of the two strands' probabilities."""
    return StrandAverage(module)(x)


class _RandomStrand:
    """Training batches: each sequence on a random strand (its reverse complement half the time)."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        if not train:
            return x
        flip = (torch.rand(len(x), generator=self.generator) < 0.5).to(x.device)
        return torch.where(flip[:, None, None], reverse_complement(x), x)


def _dataset(data: SequenceSet, length: int, rows: np.ndarray | None = None) -> TensorDataset:
    part = data if rows is None else data.subset(rows)
    return TensorDataset(torch.from_numpy(part.one_hot(length)), torch.from_numpy(part.labels))


def train(config: SequenceRunConfig, out: str | Path | None = None, resume: bool = False) -> Run:
    """Load and split, train, pick the best epoch on validation, report test metrics with CIs."""
    if config.ensemble > 1:
        raise ConfigError("ensemble", "deep ensembles of sequence runs are not supported yet")
    watch = Stopwatch()
    with watch("load"):
        data, parts, test, path = load_split(config)
    length = config.data.length or max(len(s) for s in data.sequences)
    n_classes = len(data.classes)
    seed_everything(config.seed, config.deterministic)  # before the network's initial weights are drawn
    model = network(config, n_classes, length, path)
    weights = class_weights(data.labels[parts["train"]], data.classes, path, "sequences")
    pre = {"classes": data.classes, "length": int(length), "negatives": "; ".join(data.notes) or None}
    device = resolve_device(config.trainer.device)
    run_dir = run_path(config, out, resume, device)
    loss = weighted_cross_entropy(weights if config.trainer.class_weights else None)
    trainer = make_trainer(config, model, loss, multiclass_metrics(n_classes), lambda o: torch.softmax(o, dim=1),
                           run_dir, device, optimizer=optimizer_factory(config.optimizer),
                           show=("train/loss", "val/loss", "val/roc_auc", "lr"),
                           batch_transform=_RandomStrand(config.seed) if config.data.reverse_complement else None,
                           eval_forward=_strands if config.model.strands else None)
    parts = without_test(config, parts)  # a tuning trial never reads its test sequences
    sets = {k: _dataset(data, length, v) for k, v in parts.items()}
    test_set = None if config.trial else test if test is not None else data.subset(parts["test"])
    if test_set is not None:
        sets["test"] = _dataset(test_set, length)
    extra = {"split": "grouped", "split_sizes": {k: len(v) for k, v in sets.items()}, "classes": data.classes,
             "class_counts": {k: np.bincount(v.tensors[1].numpy(), minlength=n_classes).tolist()
                              for k, v in sets.items()}, "negatives": data.notes}
    inputs = {"data": path, **({"test": _paths(config)[1]} if test is not None else {})}
    manifest = start_run(config, run_dir, resume, device, pre, inputs, extra)
    with watch("train"):
        trainer.fit(sets["train"], sets["val"], resume=resume)
    if config.trial:
        return finish_trial(trainer, run_dir, sets["val"], manifest, watch)
    with watch("evaluate"):
        metrics, samples, val_prob = best_predictions(trainer, run_dir, sets)
        prob, scores = _report(samples, test_set, data.classes, config.n_boot, "test", run_dir)
        metrics.update(scores)
        val = data.subset(parts["val"])
        if is_main_process():
            save_predictions(run_dir, "val", val.labels, val_prob, data.classes, parts["val"], val.ids, val.groups)
        metrics.update(trust(run_dir, config, data.classes, False, (val.labels, val_prob), (test_set.labels, prob),
                             test_set.groups))
    write_results(run_dir, metrics, manifest, watch=watch)
    return Run(run_dir, metrics, trainer)


def _report(samples: np.ndarray, data: SequenceSet, classes: list[str], n_boot: int, prefix: str,
            out_dir: Path | None, every_point: bool = False) -> tuple[np.ndarray, dict[str, float]]:
    """Metrics with 95% CIs (groups resampled where the set has them) of (S, N, K) probabilities,
    ``<prefix>_predictions.csv`` (record ids as sources) and the referral curves. The point values
    are the engine's (it evaluated the split) but for the two-class extras, or all of them with
    ``every_point``."""
    prob, parts = samples.mean(axis=0), uncertainty_columns(samples)
    points = True if every_point else BINARY_EXTRAS if len(classes) == 2 else ()
    metrics = score_predictions(data.labels, prob, classes, multiclass_scores, n_boot, prefix, out_dir,
                                rows=np.arange(len(data)), patients=data.groups, sources=data.ids, points=points,
                                after=parts)
    if out_dir is not None:
        metrics.update(referral(out_dir, data.labels, prob, parts, prefix, data.groups))
    return prob, metrics


def evaluate(predictor, data: str | Path | None = None, overwrite: bool = False) -> tuple[dict[str, float], Path]:
    """Metrics of a trained run (``predictor``: :func:`biodl.load`) on its own test set (the
    embedded or given test file) or on a labelled file ``data``, as ``RUN_DIR/evaluation/<name>.json``."""
    config, pre = predictor.config, predictor.pre
    if data is None:
        _, test_path = _paths(config)
        if test_path is None:
            raise ConfigError("--data", "this run carved its test set from its training file; give a labelled "
                                        "file with --data")
        path, name = test_path, "test"
    else:
        path, name = Path(data), Path(data).name.split(".")[0]
    out = predictor.run_dir / runs.EVALUATION / f"{name}.json"
    refuse_overwrite(out, overwrite)
    seqs = _labelled(config, load_sequences(path, classes=pre.classes), config.seed + 1)
    samples = predictor.samples(_dataset(seqs, pre.length))
    out.parent.mkdir(exist_ok=True)
    _, metrics = _report(samples.reshape(-1, *samples.shape[2:]), seqs, pre.classes, config.n_boot, name,
                         out.parent, every_point=True)
    metrics[f"{name}/n"] = float(len(seqs))
    metrics.update(trust_of(predictor, name, seqs.labels, samples.mean(axis=1), config.n_boot, seqs.groups,
                            out.parent / runs.predictions_file(name)))
    runs.write_metrics(out.parent, metrics, out.name)
    return metrics, out


# ----------------------------------------------------------------------------- the inference end


class SequenceEnd(SoftmaxEnd):
    """The sequence task's end for :mod:`biodl.inference.predictor`: new sequences as a file
    (FASTA, CSV, .seq, a folder of FASTA), or a list of strings; one row per record, by id."""

    preprocess = PreprocessFile

    def network(self, config: SequenceRunConfig, pre: PreprocessFile) -> nn.Module:
        return network(config, len(pre.classes), pre.length)

    def inferer(self, config: SequenceRunConfig, pre: PreprocessFile, module: nn.Module,
                device: torch.device) -> Inferer:
        return Inferer(module, device=device, precision=config.trainer.precision,
                       postprocess=lambda o: torch.softmax(o, dim=1),
                       eval_forward=_strands if config.model.strands else None, batch_size=config.data.batch_size,
                       num_workers=config.data.num_workers, mc_dropout=config.model.mc_dropout, seed=config.seed)

    def read(self, pre: PreprocessFile, inputs: Any) -> tuple[TensorDataset, pd.DataFrame]:
        if isinstance(inputs, (str, Path)):
            found = load_sequences(inputs)  # any form; a FASTA needs no labels (they are not used)
        else:
            seqs = [str(s).upper() for s in inputs]
            found = SequenceSet([f"seq{i}" for i in range(len(seqs))], seqs, np.zeros(len(seqs), np.int64),
                                list(pre.classes), source="sequences")
        x = one_hot(fit_length(found.sequences, pre.length, found.source))
        return TensorDataset(torch.from_numpy(x), torch.zeros(len(found), dtype=torch.int64)), \
            pd.DataFrame({"id": found.ids})

    def module(self, inferer: Inferer, pre: PreprocessFile, tta: bool = True) -> nn.Module:
        """(B, 4, L) one-hot floats -> (B, K) scores (both strands averaged with ``tta``)."""
        return StrandAverage(inferer.module) if tta and inferer.eval_forward is not None else inferer.module

    def export_sample(self, predictor: Any) -> tuple[np.ndarray, Any, dict, dict]:
        """For ``biodl export``: the test sequences one-hot, as strings, and their descriptions."""
        pre, config = predictor.pre, predictor.config
        data, parts, held_out, _ = load_split(config)
        seqs = held_out if held_out is not None else data.subset(parts["test"])
        first = {"name": "sequences", "dtype": "float32", "shape": ["batch", 4, pre.length],
                 "layout": "one-hot, channels A, C, G, T (an ambiguity code: the mean of its bases, N = 0.25 each)"}
        strands = " on both strands (the mean with the reverse complement)" if config.model.strands else ""
        return seqs.one_hot(pre.length), list(seqs.sequences), first, {
            "inside_graph": f"the networks{strands}, the recalibration, softmax", "length": pre.length,
            "fit": "centre crop, or N padding on both sides, to the length"}


#: the sequence task's inference end
END = SequenceEnd()

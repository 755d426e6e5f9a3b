"""A trained run as one object: ``biodl.load(RUN_DIR) -> Predictor``.

Every way of using a finished run (``biodl predict``, ``evaluate``, ``explain``, ``export``,
``calibrate``, ``wsi infer``, Python) goes through here, so they all see the same run.

A run is read as named parts, each checked when it is loaded (a missing part, a part from another
task's run, classes that disagree, a checkpoint of the wrong shape or with NaN weights, non-finite
statistics: one line naming the file, before anything is predicted):

- the run's config and classes, and its task's *end* (``END`` of ``biodl.tasks.<task>``): the
  ``preprocess.json`` schema, the network, the input reader (paths, uint8 arrays, a DataFrame ->
  exactly what the run saw, stain normalisation included) and the network's inferer;
- its members: one network for a single run, each fold's for a k-fold parent, each member's for
  a deep ensemble; each with its own normalisation and, where it was validated alone (a single
  run, a fold), its own recalibration and conformal predictor;
- the parent's recalibration and conformal predictor, fitted on the members' mean (an ensemble).

One rule combines them (any map may be absent; as scikit-learn's ``CalibratedClassifierCV``)::

    p = R_parent( mean_m R_m( softmax( net_m( norm_m(x) ) ) ) )

The raw probabilities are the same without any R. Prediction sets: members with their own
conformal predictors (a single run is one) vote, a class in more than half of their sets is in
the set (Gasparin & Ramdas 2024: coverage at least 1 - 2 alpha, in practice near 1 - alpha);
otherwise the parent's conformal predictor takes the mean.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel
from torch import nn
from torch.utils.data import Dataset

from .. import runs
from ..engine.checkpoint import load_model_weights, model_state
from ..engine.inferer import Inferer, resolve_device
from ..errors import BiodlError, RunDirError
from ..tasks.registry import task_spec
from ..trust import uncertainty
from ..trust.calibration import Recalibration
from ..trust.conformal import ConformalPredictor, describe
from .members import MemberMean

__all__ = ["TaskEnd", "Inputs", "MemberParts", "RunParts", "Member", "Predictor", "MapPredictor", "MemberMean",
           "PREDICTORS", "load", "PROB", "RAW"]


PROB, RAW = "p_", "raw_p_"
Kind = Literal["single", "kfold", "ensemble"]


class TaskEnd(Protocol):
    """What a task gives the predictor (``END`` in its module): HF-pipeline style, a fixed driver
    with per-task ends."""

    #: ``classes``: one probability per class; ``map``: a probability per pixel (segmentation)
    output: str
    #: the schema of the run's ``preprocess.json``
    preprocess: type[BaseModel]

    def classes(self, pre: Any) -> list[str]: ...
    def network(self, config: Any, pre: Any) -> nn.Module: ...
    def inferer(self, config: Any, pre: Any, network: nn.Module, device: torch.device) -> Inferer: ...
    def read(self, pre: Any, inputs: Any) -> tuple[Any, pd.DataFrame]: ...
    def probabilities(self, outputs: torch.Tensor) -> np.ndarray: ...
    def module(self, inferer: Inferer, pre: Any, tta: bool = True) -> nn.Module: ...


@dataclass
class Inputs:
    """New data as the run's networks take it: ``data`` (a dataset of inputs) and ``ids`` (one row
    per case: what identifies it, e.g. the image file, or the input table's own columns)."""

    data: Any
    ids: pd.DataFrame


@dataclass
class MemberParts:
    """One trained network's run directory, config, preprocessing and checkpoint, and the
    recalibration and conformal predictor the predictor applies to it alone."""

    run_dir: Path
    config: Any
    pre: Any
    checkpoint: Path
    recalibration: Recalibration | None = None
    conformal: ConformalPredictor | None = None


def _children(run_dir: Path, pre: Any) -> tuple[Kind, list[Path]]:
    folds, members = getattr(pre, "folds", None), getattr(pre, "members", None)
    if folds:
        return "kfold", [runs.fold_dir(run_dir, k) for k in range(folds)]
    if members:
        return "ensemble", [runs.member_dir(run_dir, k) for k in range(members)]
    return "single", []


def _check_classes(part: Recalibration | ConformalPredictor | None, k: int, where: Path) -> None:
    if part is not None and part.classes != k:
        raise RunDirError(where, f"is for {part.classes} classes; the run has {k}")


@dataclass
class RunParts:
    """A run directory's parts, read and checked, without its networks (see the module
    docstring): what ``calibrate`` needs, and what a :class:`Predictor` adds networks to."""

    run_dir: Path
    config: Any
    pre: Any
    end: TaskEnd
    kind: Kind
    members: list[MemberParts]
    recalibration: Recalibration | None = None
    conformal: ConformalPredictor | None = None

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str = "best") -> "RunParts":
        """Read and check every part of ``run_dir`` but the networks (RunDirError naming the file
        on any fault)."""
        run_dir = Path(run_dir)
        config = runs.load_run_config(run_dir)
        end = task_spec(config.task, run_dir / runs.CONFIG).load().END
        pre = runs.read_preprocess(run_dir, end.preprocess, config.task)
        k = len(end.classes(pre))
        kind, children = _children(run_dir, pre)
        if kind == "single":
            members = [MemberParts(run_dir, config, pre, runs.checkpoint_prefix(run_dir, checkpoint),
                                   runs.read_calibration(run_dir), runs.read_conformal(run_dir))]
            parts = cls(run_dir, config, pre, end, kind, members)
        else:
            members = []
            for child in children:
                child_config = runs.load_run_config(child)
                if child_config.task != config.task:
                    raise RunDirError(child / runs.CONFIG, f"is a {child_config.task} run inside a {config.task} run")
                child_pre = runs.read_preprocess(child, end.preprocess, config.task)
                if end.classes(child_pre) != end.classes(pre):
                    raise RunDirError(child / runs.PREPROCESS, f"classes {end.classes(child_pre)} differ from the "
                                                               f"parent's {end.classes(pre)}")
                own = kind == "kfold"  # a fold was validated alone; an ensemble's maps are the parent's
                members.append(MemberParts(child, child_config, child_pre, runs.checkpoint_prefix(child, checkpoint),
                                           runs.read_calibration(child) if own else None,
                                           runs.read_conformal(child) if own else None))
            parts = cls(run_dir, config, pre, end, kind, members,
                        *((runs.read_calibration(run_dir), runs.read_conformal(run_dir)) if kind == "ensemble"
                          else (None, None)))
        for where, cal, pred in [*((m.run_dir, m.recalibration, m.conformal) for m in parts.members),
                                 (run_dir, parts.recalibration, parts.conformal)]:
            _check_classes(cal, k, where / runs.CALIBRATION)
            _check_classes(pred, k, where / runs.CONFORMAL)
        return parts

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def classes(self) -> list[str]:
        return list(self.end.classes(self.pre))

    @property
    def recalibrates(self) -> bool:
        """Whether any recalibration applies (the parent's, or any member's)."""
        return self.recalibration is not None or any(m.recalibration is not None for m in self.members)

    @property
    def recalibration_sites(self) -> list[Path]:
        """The run directories whose ``calibration.json`` this run applies: each fold of a k-fold
        parent, else the run itself."""
        return [m.run_dir for m in self.members] if self.kind == "kfold" else [self.run_dir]

    def combine(self, prob: np.ndarray, recalibrated: bool = True) -> np.ndarray:
        """Each member's probabilities (M, N, K) -> the run's (N, K): their mean, each member
        recalibrated by its own map and the mean by the parent's (``recalibrated``). A run whose
        members have no maps of their own (one network, an ensemble) also takes their mean (N, K)."""
        prob = np.asarray(prob, dtype=np.float64)
        maps = [m.recalibration for m in self.members]
        if prob.ndim == 2:  # the members' mean already
            if len(maps) > 1 and any(c is not None for c in maps):
                raise ValueError(f"a run of {len(maps)} members with their own recalibrations needs each member's "
                                 "probabilities, (M, N, K)")
            prob, maps = prob[None], maps[:1]
        if not recalibrated:
            return prob.mean(axis=0)
        mean = np.mean([p if c is None else c.apply(p) for c, p in zip(maps, prob, strict=True)], axis=0)
        return mean if self.recalibration is None else self.recalibration.apply(mean)

    def sets(self, prob: np.ndarray) -> np.ndarray | None:
        """Prediction sets, (N, K) bool membership, from the model's own (raw) probabilities:
        each member's (M, N, K), or (N, K) for a run of one network or an ensemble; None when the
        run has no conformal predictor. Members with their own predictors (a single run, the
        folds of a k-fold parent) vote, each on its own probabilities (recalibrated first where
        its predictor takes them): a class is in the set when more than half of them hold it."""
        prob = np.asarray(prob, dtype=np.float64)
        if all(m.conformal is not None for m in self.members):
            if prob.ndim == 2 and len(self.members) > 1:
                raise ValueError(f"a run of {len(self.members)} members with their own prediction sets needs each "
                                 "member's probabilities, (M, N, K)")
            prob = prob if prob.ndim == 3 else prob[None]
            votes = sum(_member_sets(m.conformal, m.recalibration, p).astype(int)
                        for m, p in zip(self.members, prob, strict=True))
            return votes * 2 > len(self.members)
        if self.conformal is None:
            return None
        return _member_sets(self.conformal, self.recalibration, prob if prob.ndim == 2 else prob.mean(axis=0))

    def table(self, samples: np.ndarray) -> pd.DataFrame:
        """The prediction columns of (M, P, N, K) raw probabilities (P MC-dropout passes of each
        of M members), one vocabulary for every run: ``p_<class>`` (the run's probabilities,
        recalibrated where it has a recalibration), ``raw_p_<class>`` (the networks' own),
        ``predicted`` (the class of the largest ``p_``), ``set`` (the prediction set, where the
        run has a conformal predictor), ``entropy`` (of the raw probabilities) and
        ``mutual_information`` (the members' and passes' disagreement; 0 for one network and
        one pass)."""
        members = samples.mean(axis=1)
        raw, final = self.combine(members, recalibrated=False), self.combine(members)
        classes = self.classes
        df = pd.DataFrame({**{f"{PROB}{c}": final[:, k] for k, c in enumerate(classes)},
                           **{f"{RAW}{c}": raw[:, k] for k, c in enumerate(classes)}})
        df["predicted"] = [classes[i] for i in final.argmax(axis=1)]
        if (member := self.sets(members)) is not None:
            df["set"] = describe(member, classes)
        parts = uncertainty.decompose(samples.reshape(-1, *samples.shape[2:]))
        df["entropy"], df["mutual_information"] = parts["entropy"], parts["mutual_information"]
        return df


def _member_sets(pred: ConformalPredictor, cal: Recalibration | None, prob: np.ndarray) -> np.ndarray:
    return pred.sets(cal.apply(prob) if pred.on == "recalibrated" and cal is not None else prob)


@dataclass
class Member(MemberParts):
    """A member with its network loaded: ``inferer`` runs it as it was trained (device,
    precision, normalisation, test-time augmentation, MC dropout)."""

    inferer: Inferer = field(default=None, repr=False)  # type: ignore[assignment]


class Predictor(RunParts):
    """A trained run (any task; a single run, a k-fold parent or an ensemble) ready to predict.
    Load one with :func:`load` (``biodl.load``).

    Example:
        >>> predictor = biodl.load("runs/idc")
        >>> predictor.predict("new_patches/")  # a DataFrame, one row per image
        >>> predictor.predict_proba(images_uint8)  # (N, K) probabilities
    """

    members: list[Member]

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str = "best",  # type: ignore[override]
             device: str | torch.device = "auto") -> "Predictor":
        """Read and check the run's parts (see :meth:`RunParts.load`), then build and load each
        member's network on ``device`` (``auto``: a GPU when there is one)."""
        parts = RunParts.load(run_dir, checkpoint)
        device = device if isinstance(device, torch.device) else resolve_device(device)
        members = []
        for m in parts.members:
            network = parts.end.network(m.config, m.pre)
            load_model_weights(network, model_state(m.checkpoint), m.checkpoint.with_suffix(".safetensors"))
            members.append(Member(**vars(m), inferer=parts.end.inferer(m.config, m.pre, network, device)))
        return PREDICTORS[parts.end.output](**{**vars(parts), "members": members})

    @property
    def device(self) -> torch.device:
        return self.members[0].inferer.device

    def read(self, inputs: Any) -> Inputs:
        """New data (paths, arrays or a table, see the task's reader) as the networks take it; a
        dataset the task's own loader made (e.g. a run's test split) is taken as it is."""
        if isinstance(inputs, Inputs):
            return inputs
        if isinstance(inputs, Dataset):
            return Inputs(inputs, pd.DataFrame(index=range(len(inputs))))
        return Inputs(*self.end.read(self.pre, inputs))

    def samples(self, data: Any) -> np.ndarray:
        """(M, P, N, K) raw probabilities: each member's P MC-dropout passes (P = 1 without) over
        ``data`` (inputs as :meth:`read` takes them, or the dataset the task's loader gives)."""
        data = data.data if isinstance(data, Inputs) else data
        return _finite(np.stack([self.end.probabilities(m.inferer.predict_passes(data)) for m in self.members]),
                       self.run_dir, axis=(0, 1, 3))

    def predict_proba(self, inputs: Any, recalibrated: bool = True) -> np.ndarray:
        """(N, K) class probabilities of ``inputs``: the run's (recalibrated where it has a
        recalibration), or the networks' own (``recalibrated=False``)."""
        return self.combine(self.samples(self.read(inputs)).mean(axis=1), recalibrated)

    def predict(self, inputs: Any) -> pd.DataFrame:
        """One row per case: what identifies it, then the columns of :meth:`RunParts.table`."""
        found = self.read(inputs)
        table = self.table(self.samples(found))
        if clash := [c for c in found.ids.columns if c in table.columns]:  # e.g. an earlier prediction's table
            warnings.warn(f"the input's column{'s' * (len(clash) > 1)} {', '.join(map(str, clash[:4]))}"
                          f"{' ...' if len(clash) > 4 else ''} replaced by this prediction's", stacklevel=2)
        return pd.concat([found.ids.drop(columns=clash).reset_index(drop=True), table], axis=1)

    def as_module(self, recalibrated: bool = True, member: int | None = None, tta: bool = True) -> nn.Module:
        """The run as one torch module (for export and attributions): the networks' input as the
        task's end takes it (images: (B, C, H, W) floats in [0, 1]; tables: (B, F) raw feature
        values) -> (B, K) scores whose softmax is the run's probabilities (``recalibrated``) or
        the networks' own: a lone network's logits, else log-probabilities. ``member``: that
        member alone (with its own recalibration); ``tta``: with the run's test-time augmentation."""
        chosen = self.members if member is None else [self.members[member]]
        nets = [self.end.module(m.inferer, m.pre, tta) for m in chosen]
        maps = [m.recalibration if recalibrated else None for m in chosen]
        parent = self.recalibration if recalibrated and member is None else None
        if len(nets) == 1 and maps[0] is None and parent is None:
            return nets[0].to(self.device).eval()  # a lone network: its logits
        return MemberMean(nets, maps, parent).to(self.device).eval()


def _finite(prob: np.ndarray, run_dir: Path, axis: tuple[int, ...] | None = None) -> np.ndarray:
    """``prob`` when every value is finite; else a BiodlError (NaN would argmax to the first class)."""
    bad = ~np.isfinite(prob)
    if bad.any():
        cases = f" for {int(bad.any(axis=axis).sum())} of {prob.shape[2]} cases" if axis else ""
        raise BiodlError(run_dir, f"its network gave NaN or infinite probabilities{cases}; inputs far outside its "
                                  "training data?")
    return prob


class MapPredictor(Predictor):
    """A run whose output is a probability per pixel (segmentation): one network, no
    recalibration or sets; a threshold (``threshold``, chosen on the training images) turns a
    map into a mask inside the image's field of view."""

    @property
    def threshold(self) -> float:
        return self.end.threshold(self.run_dir)

    def predict_proba(self, inputs: Any, recalibrated: bool = True) -> list[np.ndarray]:
        """One (H, W) probability map per image (``recalibrated`` has no effect)."""
        return self._maps(self.read(inputs))

    def _maps(self, found: Inputs) -> list[np.ndarray]:
        return [_finite(self.end.map(self.members[0].inferer, self.config, self.pre, image), self.run_dir)
                for image in found.data]

    def predict_maps(self, inputs: Any) -> tuple[Inputs, list[np.ndarray], list[np.ndarray]]:
        """(the inputs as read, each image's (H, W) probability map, each image's (H, W) bool mask:
        the map at the threshold, inside the field of view)."""
        found = self.read(inputs)
        maps, t = self._maps(found), self.threshold
        return found, maps, [self.end.mask(p, image, t) for p, image in zip(maps, found.data, strict=True)]

    def predict(self, inputs: Any) -> pd.DataFrame:
        """One row per image (see :meth:`summarise`)."""
        return self.summarise(*self.predict_maps(inputs))

    def summarise(self, found: Inputs, maps: list[np.ndarray], masks: list[np.ndarray]) -> pd.DataFrame:
        """One row per image of :meth:`predict_maps`: its size, the threshold, the pixels called
        positive (inside the field of view), their share of the field of view, and the mean
        probability there."""
        rows = []
        for p, mask, image in zip(maps, masks, found.data, strict=True):
            fov = self.end.fov(image)
            rows.append({"height": p.shape[0], "width": p.shape[1], "threshold": self.threshold,
                         "positive_pixels": int(mask.sum()), "fov_pixels": int(fov.sum()),
                         "positive_share": float(mask.sum() / max(int(fov.sum()), 1)),
                         "mean_probability": float(p[fov].mean()) if fov.any() else float("nan")})
        return pd.concat([found.ids.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


#: what a task's end gives (``TaskEnd.output``) -> the predictor class that drives it
PREDICTORS: dict[str, type[Predictor]] = {"classes": Predictor, "map": MapPredictor}


def load(run_dir: str | Path, checkpoint: str = "best", device: str | torch.device = "auto") -> Predictor:
    """A trained run as one object (see :class:`Predictor`). ``checkpoint``: ``best`` (the epoch
    the run's monitor chose; ``last`` when it kept none) or ``last``; ``device``: ``auto``, ``cpu``,
    ``cuda``..."""
    return Predictor.load(run_dir.run_dir if hasattr(run_dir, "run_dir") else run_dir, checkpoint, device)

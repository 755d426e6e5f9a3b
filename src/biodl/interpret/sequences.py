"""``biodl explain`` for sequence runs: which bases of a DNA sequence drive the model's score.

Methods (``--method``, comma-separated; default ``ig,ism``):

Every method explains the log-odds of the target class (:class:`LogOdds`; a confident
model's log-probability is flat near 0 and its gradients vanish).

- ``ig``: integrated gradients (captum) from a reference sequence to the one-hot input, summed
  over the four channels: each position's share of the log-odds' change from the reference.
  References (``--baseline``): ``shuffle`` (default; the mean over ``SHUFFLES`` dinucleotide
  shuffles of the sequence itself, DeepLIFT's and DeepSHAP's choice for DNA, so composition
  alone earns nothing), ``uniform`` (every position N: 0.25 each) or ``zeros``.
- ``ixg`` (input x gradient: the gradient at the base present) and ``saliency`` (the largest
  gradient magnitude over the four bases).
- ``ism``: in-silico mutagenesis, every base at every position, the change in the log-odds of
  the target class; the position's importance is minus the mean change of its three
  substitutions (how much losing the base present costs).

Each sequence gets ``NNN.png`` (a letter track per gradient method, the bases scaled by their
signed attribution, and the mutation map), ``sequences.png`` shows every explained sequence's
first track, and ``explain.json`` the numbers: per method the best window of ``WINDOW`` bases
(its sequence and summed attribution), deletion and insertion curves (bases replaced by N in
order of importance, or put back into an all-N sequence) and, for the first sequence, the
model-randomisation sanity check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import BiodlError

__all__ = ["METHODS", "BASELINES", "SHUFFLES", "WINDOW", "LogOdds", "explain_sequences", "attribute_sequence",
           "letters"]

METHODS = {"ig": "integrated gradients", "ixg": "input x gradient", "saliency": "gradient magnitude",
           "ism": "in-silico mutagenesis"}
BASELINES = ("shuffle", "uniform", "zeros")
#: dinucleotide shuffles averaged over by the ``shuffle`` reference
SHUFFLES = 10
#: the width of the best window reported per sequence and method
WINDOW = 10
BASES = "ACGT"


def _parse(methods: str | None, baseline: str | None) -> tuple[list[str], str]:
    names = [m.strip().lower() for m in (methods or "ig,ism").split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise BiodlError("--method", f"{bad[0] if bad else methods!r} does not apply to sequences; known: "
                                     f"{', '.join(METHODS)}")
    baseline = baseline or "shuffle"
    if baseline not in BASELINES:
        raise BiodlError("--baseline", f"unknown reference {baseline!r} for sequences; known: {', '.join(BASELINES)}")
    return names, baseline


def letters(x: Tensor) -> str:
    """The bases of a one-hot sequence (4, L): a column that is not one base is ``N``."""
    top, idx = x.max(dim=0)
    return "".join(BASES[int(i)] if float(t) == 1.0 else "N" for t, i in zip(top, idx, strict=True))


def _references(x: Tensor, kind: str, seed: int) -> Tensor:
    """(R, 4, L) IG references for a one-hot sequence ``x`` (4, L)."""
    from ..data.sequences import dinucleotide_shuffle, one_hot

    if kind == "uniform":
        return torch.full_like(x, 0.25)[None]
    if kind == "zeros":
        return torch.zeros_like(x)[None]
    rng = np.random.default_rng(seed)
    seq = letters(x)
    return torch.from_numpy(one_hot([dinucleotide_shuffle(seq, rng) for _ in range(SHUFFLES)])).to(x)


class LogOdds(nn.Module):
    """A classifier's log-odds: (B, 4, L) -> (B, K), column k the log of p_k / (1 - p_k) from
    its softmax (computed from log-probabilities, so it does not saturate where p_k is near 1,
    as a log-probability does: gradients stay informative for confident predictions)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        logp = torch.log_softmax(self.model(x).float(), dim=1)
        k = logp.shape[1]
        others = logp[:, None, :] + torch.where(torch.eye(k, dtype=torch.bool, device=x.device), float("-inf"), 0.0)
        return logp - torch.logsumexp(others, dim=2)


def _log_odds(model: nn.Module, target: int):
    odds = LogOdds(model)

    def score(batch: Tensor) -> Tensor:  # (B, 4, L) -> (B,) log-odds of the target class
        return odds(batch)[:, target]
    return score


def attribute_sequence(method: str, model: nn.Module, x: Tensor, target: int, baseline: str = "shuffle",
                       steps: int = 50, seed: int = 0) -> tuple[Tensor, dict[str, Any]]:
    """One method's (L,) signed attribution per position of a one-hot sequence ``x`` (1, 4, L)
    to the log-odds of class ``target`` (:class:`LogOdds` of ``model``), and its diagnostics;
    ``ism`` also gives the (4, L) map as ``info["map"]``."""
    from .attributions import attribute
    from .motifs import mutation_map

    if method == "ism":
        m = mutation_map(_log_odds(model, target), x[0])
        return torch.from_numpy(-m.sum(axis=0) / 3), {"map": m}
    if method == "ig":
        maps, deltas = [], []
        odds = LogOdds(model)
        for ref in _references(x[0], baseline, seed):
            a, info = attribute("ig", odds, x, target, ref[None], steps, seed)
            maps.append(a)
            deltas.append(info["convergence_delta"])
        return torch.stack(maps).mean(0), {"baseline": baseline, "references": len(maps), "steps": steps,
                                           "convergence_delta": max(deltas)}
    a, info = attribute(method, LogOdds(model), x, target, steps=steps, seed=seed)
    return a, info


def _best_window(seq: str, a: np.ndarray) -> dict[str, Any]:
    w = min(WINDOW, len(a))
    sums = np.convolve(a, np.ones(w), mode="valid")
    at = int(np.argmax(sums))
    return {"start": at, "sequence": seq[at:at + w], "attribution": float(sums[at])}


def _track(ax, seq: str, a: np.ndarray, title: str) -> None:
    """The bases of ``seq`` as letters of height ``a`` (signed: below the axis where negative)."""
    from .motifs import draw_letter

    for i, (base, v) in enumerate(zip(seq, a, strict=True)):
        if abs(v) > 1e-6:
            draw_letter(ax, base, i, min(v, 0.0), abs(v))
    lim = float(np.abs(a).max()) or 1.0
    ax.set_xlim(0, len(seq))
    ax.set_ylim(-lim * 1.05, lim * 1.05)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)


def _figure(seq: str, maps: dict[str, np.ndarray], ism: np.ndarray | None, title: str, path: Path) -> None:
    from ..report.figures import pyplot, save_figure

    plt = pyplot()
    rows = [m for m in maps if m != "ism"] + (["ism"] if ism is not None else [])
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(8.0, len(seq) * 0.1), 1.6 * len(rows)), squeeze=False)
    for ax, meth in zip(axes[:, 0], rows, strict=True):
        if meth == "ism":
            lim = float(np.abs(ism).max()) or 1.0  # cells span [i, i + 1], under the letters above
            ax.imshow(ism, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, extent=(0, len(seq), 4, 0))
            ax.set_yticks(np.arange(4) + 0.5, list(BASES))
            ax.tick_params(labelsize=6)
            ax.set_title(f"{title} - ism: change in log-odds for each substitution", fontsize=8)
        else:
            _track(ax, seq, maps[meth], f"{title} - {meth}: {METHODS[meth]}")
    save_figure(fig, path, tight_layout=True)


def _overview(seqs: list[str], maps: list[np.ndarray], titles: list[str], method: str, path: Path) -> None:
    from ..report.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(len(seqs), 1, figsize=(max(8.0, len(seqs[0]) * 0.1), 1.2 * len(seqs)), squeeze=False)
    for ax, seq, a, title in zip(axes[:, 0], seqs, maps, titles, strict=True):
        _track(ax, seq, a, f"{title} ({method})")
    save_figure(fig, path, tight_layout=True)


def _pick_test(predictor: Any, pick: str, n: int) -> tuple[Tensor, list[dict]]:
    """The ``n`` most confident test sequences of each outcome, spread over groups."""
    from torch.utils.data import TensorDataset

    from ..tasks.sequence import load_split
    from .explain import _outcomes, _pick_rows

    data, parts, test, _ = load_split(predictor.config)
    test = test if test is not None else data.subset(parts["test"])
    x = torch.from_numpy(test.one_hot(predictor.pre.length))
    prob = predictor.predict_proba(TensorDataset(x, torch.from_numpy(test.labels)), recalibrated=False)
    picked = _pick_rows(test.labels, prob, _outcomes(pick), n, test.groups)
    meta = [{"source": test.ids[i], "outcome": o, "true": predictor.classes[test.labels[i]]} for i, o in picked]
    return x[[i for i, _ in picked]], meta


def explain_sequences(run_dir: Path, out: Path, images: list[Path], methods: str | None, target: str, pick: str,
                      n: int, baseline: str | None, steps: int, sanity: bool, layer: str | None) -> None:
    """A sequence run's attributions of the records in ``images`` (sequence files, each read as
    ``biodl predict`` reads it), or of test sequences picked by outcome, into ``out`` (see the
    module docstring). The model is the run's, both strands averaged (``model.strands``)."""
    from ..inference.predictor import load
    from ..progress import progress_bar
    from .checks import deletion_insertion, sanity_check
    from .explain import _target

    names, baseline = _parse(methods, baseline)
    if layer is not None:
        raise BiodlError("--layer", "activation maps are drawn for image runs only")
    predictor = load(run_dir)
    classes = predictor.classes
    _target(target, classes, 0)  # a bad --target fails before any work
    if images:
        found = [predictor.read(Path(f)) for f in images]
        x_all = torch.cat([f.data.tensors[0] for f in found])
        meta = [{"source": f"{path}: {rid}"} for path, f in zip(images, found, strict=True) for rid in f.ids["id"]]
    else:
        x_all, meta = _pick_test(predictor, pick, n)
    model = predictor.as_module(recalibrated=False).to(predictor.device).eval()
    with torch.no_grad():
        prob = torch.softmax(model(x_all.to(predictor.device)).float(), 1).cpu()
    uniform = torch.full_like(x_all[:1], 0.25).to(predictor.device)
    records, first = [], []
    with progress_bar() as bar:
        task = bar.add_task("attributions", total=len(x_all) * len(names))
        for i, (x, m) in enumerate(zip(x_all, meta, strict=True)):
            x = x[None].to(predictor.device)
            k = _target(target, classes, int(prob[i].argmax()))
            seq = letters(x[0].cpu())
            rec = {**m, "sequence": seq, "predicted": classes[int(prob[i].argmax())], "target": classes[k],
                   "probability": float(prob[i, k]), "methods": {}}
            maps, ism = {}, None
            for meth in names:
                a, info = attribute_sequence(meth, model, x, k, baseline, steps, predictor.config.seed + i)
                if meth == "ism":
                    ism = info.pop("map")
                maps[meth] = a.numpy()
                faith = deletion_insertion(model, x, k, a.to(x.device), delete_to=uniform, insert_into=uniform)
                rec["methods"][meth] = {**info, "best_window": _best_window(seq, maps[meth]),
                                        **{key: faith[key] for key in ("deletion_auc", "insertion_auc", "deletion",
                                                                       "insertion")}}
                bar.advance(task)
            title = f"{i:03d} {m.get('outcome', '')} {m['source']}: {rec['target']} p={rec['probability']:.2f}"
            _figure(seq, maps, ism, title, out / f"{i:03d}.png")
            rec["png"] = f"{i:03d}.png"
            records.append(rec)
            first.append(maps[names[0]])
    _overview([r["sequence"] for r in records], first, [f"{i:03d} {r['source']}" for i, r in enumerate(records)],
              names[0], out / "sequences.png")
    checks = {}
    if sanity:
        x0 = x_all[:1].to(predictor.device)
        k0 = _target(target, classes, int(prob[0].argmax()))
        for meth in names:
            checks[meth] = sanity_check(lambda mdl, xx, kk, meth=meth: attribute_sequence(
                meth, mdl, xx, kk, baseline, steps, predictor.config.seed)[0], model, x0, k0)
    from ..io import atomic_write_json

    atomic_write_json(out / "explain.json", {
        "run": str(run_dir.resolve()), "methods": names, "target": target, "baseline": baseline, "steps": steps,
        "sequences": records, "sanity_check": checks,
        "summary": {meth: {"deletion_auc_mean": float(np.mean([r["methods"][meth]["deletion_auc"] for r in records])),
                           "insertion_auc_mean": float(np.mean([r["methods"][meth]["insertion_auc"]
                                                                for r in records])),
                           "sanity_flagged": checks.get(meth, {}).get("flagged")} for meth in names}})

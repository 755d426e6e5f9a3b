"""Reading what a sequence CNN learned: its first-layer filters as position weight matrices,
compared with known motifs, drawn as sequence logos; and in-silico mutagenesis.

- **Filter PWMs** (DeepBind's and Basset's way): the subsequences where a filter fires above half
  its largest activation over a set of sequences, stacked and counted per position: a
  (width, 4) probability matrix (A, C, G, T) per filter, with the number of sites it came from.
- **Matching** (after Tomtom's Pearson column correlation; Gupta et al. 2007): the mean over
  aligned columns of the Pearson correlation of two PWMs' columns, maximised over offsets (at
  least ``min_overlap`` columns) and both strands.
- **Known motifs** are read from a JASPAR-format file (``>ID name`` then rows ``A [ counts ]``
  for A, C, G, T), and can be made from an IUPAC consensus (:func:`consensus_pwm`).
- **In-silico mutagenesis**: every base at every position substituted, the change in the
  model's score for each: a (4, L) map.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..data.sequences import IUPAC
from ..errors import DataError

__all__ = ["filter_pwms", "information_content", "read_jaspar", "consensus_pwm", "motif_similarity",
           "draw_letter", "draw_logo", "logo_figure", "mutation_map", "mutation_figure"]

BASES = "ACGT"


@torch.no_grad()
def filter_pwms(conv: nn.Conv1d, x: torch.Tensor, threshold: float = 0.5, pseudocount: float = 0.1,
                batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(F, width, 4) PWMs of a first convolution ``conv`` over one-hot sequences ``x`` (N, 4, L)
    and (F,) the number of sites each came from: the windows where the filter's activation is
    above ``threshold`` x its largest one (positive activations only)."""
    conv = conv.eval()
    width, pad = conv.kernel_size[0], conv.padding[0] if isinstance(conv.padding, tuple) else 0
    device = conv.weight.device
    acts = torch.cat([conv(x[i:i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)])  # (N, F, P)
    top = acts.amax(dim=(0, 2)).clamp_min(0)  # (F,)
    padded = torch.nn.functional.pad(x.float(), (pad, pad), value=0.25)  # windows over the padding see N
    windows = padded.unfold(2, width, 1)  # (N, 4, P, width)
    pwms, sites = [], []
    for f in range(acts.shape[1]):
        hit = (acts[:, f] > threshold * top[f]) & (acts[:, f] > 0) if top[f] > 0 else torch.zeros_like(acts[:, f],
                                                                                                          dtype=bool)
        n, p = torch.nonzero(hit, as_tuple=True)
        counts = windows[n, :, p].sum(dim=0).T.numpy() if len(n) else np.zeros((width, 4))  # (width, 4)
        counts = counts + pseudocount
        pwms.append(counts / counts.sum(axis=1, keepdims=True))
        sites.append(len(n))
    return np.stack(pwms), np.asarray(sites)


def information_content(pwm: np.ndarray) -> np.ndarray:
    """(..., width) bits of each column of (..., width, 4) PWMs (2 minus the column's entropy)."""
    p = np.clip(pwm, 1e-12, 1)
    return 2 + (p * np.log2(p)).sum(axis=-1)


def consensus_pwm(consensus: str, strength: float = 0.97) -> np.ndarray:
    """A (len, 4) PWM from an IUPAC consensus: each column puts ``strength`` on the bases its
    letter stands for (shared equally), the rest spread over the others."""
    rows = []
    for letter in consensus.upper():
        if letter not in IUPAC:
            raise ValueError(f"{letter!r} is not an IUPAC letter")
        bases = IUPAC[letter]
        if len(bases) == 4:
            rows.append([0.25] * 4)
            continue
        rest = (1 - strength) / (4 - len(bases))
        rows.append([strength / len(bases) if b in bases else rest for b in BASES])
    return np.asarray(rows)


def read_jaspar(path: str | Path) -> dict[str, np.ndarray]:
    """The motifs of a JASPAR-format file: name (``ID name`` of its header) -> (width, 4) PWM."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc.strerror or exc})") from None
    motifs: dict[str, np.ndarray] = {}
    for block in re.split(r"^>", text, flags=re.M)[1:]:
        lines = [ln.strip() for ln in block.strip().splitlines() if ln.strip()]
        name = lines[0]
        rows = {}
        for ln in lines[1:]:
            m = re.match(r"^([ACGT])\s*\[?([^\]]*)\]?$", ln)
            if not m:
                raise DataError(path, f"motif {name!r}: a row {ln[:30]!r} is not 'A [ counts ]'")
            rows[m.group(1)] = [float(v) for v in m.group(2).split()]
        if set(rows) != set(BASES) or len({len(v) for v in rows.values()}) != 1:
            raise DataError(path, f"motif {name!r}: needs rows A, C, G, T of one length")
        counts = np.asarray([rows[b] for b in BASES]).T
        motifs[name] = counts / counts.sum(axis=1, keepdims=True)
    if not motifs:
        raise DataError(path, "holds no JASPAR motif ('>ID name' headers)")
    return motifs


def _reverse_complement(pwm: np.ndarray) -> np.ndarray:
    return pwm[::-1, ::-1]


def motif_similarity(pwm: np.ndarray, motif: np.ndarray, min_overlap: int = 5) -> tuple[float, int, str]:
    """(score, offset of ``motif`` against ``pwm``, strand ``+``/``-``): the largest mean Pearson
    correlation of aligned columns over offsets with at least ``min_overlap`` columns, on both
    strands of ``pwm`` (see the module docstring)."""
    best = (-1.0, 0, "+")
    need = min(min_overlap, len(pwm), len(motif))
    for strand, q in (("+", pwm), ("-", _reverse_complement(pwm))):
        for offset in range(-(len(motif) - need), len(q) - need + 1):
            lo, hi = max(0, offset), min(len(q), offset + len(motif))
            if hi - lo < need:
                continue
            a, b = q[lo:hi], motif[lo - offset:hi - offset]
            a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
            den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
            r = np.where(den > 0, (a * b).sum(axis=1) / np.where(den > 0, den, 1), 0.0)
            if r.mean() > best[0]:
                best = (float(r.mean()), offset, strand)
    return best


#: the usual nucleotide colours of logos; N grey
COLOURS = {"A": "#109648", "C": "#255C99", "G": "#F7B32B", "T": "#D62839", "N": "#888888"}


def draw_letter(ax, base: str, x: float, y: float, height: float) -> None:
    """The letter ``base`` filling the box [x + 0.05, x + 0.95] x [y, y + height] on axes ``ax``."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.patches import PathPatch
    from matplotlib.textpath import TextPath
    from matplotlib.transforms import Affine2D

    path = TextPath((0, 0), base, size=1, prop=FontProperties(family="DejaVu Sans", weight="bold"))
    box = path.get_extents()
    t = Affine2D().translate(-box.x0, -box.y0).scale(0.9 / box.width, height / box.height).translate(x + 0.05, y)
    ax.add_patch(PathPatch(t.transform_path(path), color=COLOURS.get(base, COLOURS["N"]), lw=0))


def draw_logo(pwm: np.ndarray, ax, title: str | None = None) -> None:
    """A sequence logo of a (width, 4) PWM on matplotlib axes ``ax``: at each position the letters
    stacked by probability x the column's information content (bits), the largest on top."""
    ic = information_content(pwm)
    for i, column in enumerate(pwm):
        y = 0.0
        for k in np.argsort(column):
            height = column[k] * ic[i]
            if height <= 1e-3:
                continue
            draw_letter(ax, BASES[k], i, y, height)
            y += height
    ax.set_xlim(0, len(pwm))
    ax.set_ylim(0, 2)
    ax.set_ylabel("bits")
    ax.set_xticks(np.arange(len(pwm)) + 0.5, [str(i + 1) for i in range(len(pwm))], fontsize=6)
    if title:
        ax.set_title(title, fontsize=8)


@torch.no_grad()
def mutation_map(score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> np.ndarray:
    """(4, L): for a one-hot sequence ``x`` (4, L), the change in ``score`` (a batch (B, 4, L) ->
    (B,) scores, e.g. the log-odds of binding) when the base at each position is replaced by each
    base (0 for the base already there)."""
    length = x.shape[-1]
    variants = x.repeat(4 * length, 1, 1)  # (4L, 4, L): variant b * L + p puts base b at position p
    idx = torch.arange(4 * length)
    variants[idx, :, idx % length] = 0
    variants[idx, idx // length, idx % length] = 1
    base = score(x[None])[0]
    return (score(variants) - base).reshape(4, length).cpu().numpy()


def logo_figure(logos: list[tuple[np.ndarray, str]], path: str | Path) -> None:
    """A PNG of sequence logos, one (width, 4) PWM and its title a row."""
    from ..report.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(len(logos), 1, figsize=(6, 1.3 * (len(logos) + 1)), squeeze=False)
    for ax, (pwm, title) in zip(axes[:, 0], logos, strict=True):
        draw_logo(pwm, ax, title)
    save_figure(fig, path, tight_layout=True)


def mutation_figure(maps: list[np.ndarray], titles: list[str], path: str | Path) -> None:
    """A PNG of (4, L) mutation maps (:func:`mutation_map`), one a row, red where a substitution
    raises the score, blue where it lowers it, each on its own symmetric scale."""
    from ..report.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(len(maps), 1, figsize=(10, 1.6 * len(maps)), squeeze=False)
    for ax, m, title in zip(axes[:, 0], maps, titles, strict=True):
        lim = float(np.abs(m).max()) or 1.0
        ax.imshow(m, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_yticks(range(4), list(BASES))
        ax.set_title(title, fontsize=8)
    save_figure(fig, path, tight_layout=True)

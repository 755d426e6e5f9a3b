"""k-mer spectra of DNA sequences and the linear baselines on them (the gkm-SVM family that
sequence CNNs are measured against; Ghandi et al. 2014, Lee 2016).

- **Spectrum**: for each k in ``ks``, the count of every k-mer in the sequence (windows holding an
  ambiguity code such as N are skipped); with ``both_strands`` the reverse complement's counts are
  added, so a k-mer and its reverse complement count the same (binding is strand-blind).
- **Gapped k-mers** (``gapped=(l, k)``): every l-long window contributes, for each choice of k of
  its l positions (the first and last always kept), the k-mer read at those positions; the other
  positions are wildcards. This is the gkm feature space (the gkm-SVM kernel is its inner
  product), computed explicitly, sparse.
- **Baseline**: an L2-regularised logistic regression (or a linear SVM) on the spectrum, each
  sequence's counts scaled to unit length, so length and GC content alone do not carry it.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

__all__ = ["kmer_codes", "spectrum", "kmer_names", "KmerBaseline"]

_CODE = np.full(256, -1, dtype=np.int64)
for _i, _b in enumerate("ACGT"):
    _CODE[ord(_b)] = _i
    _CODE[ord(_b.lower())] = _i


def _codes(sequences: list[str]) -> list[np.ndarray]:
    """Each sequence as base codes 0-3 (A, C, G, T), -1 for anything else."""
    return [_CODE[np.frombuffer(s.encode("ascii"), dtype=np.uint8)] for s in sequences]


def kmer_codes(codes: np.ndarray, positions: tuple[int, ...]) -> np.ndarray:
    """The integer code (base 4) of the k-mer read at ``positions`` (offsets within a window) of
    every window of ``codes``: (L,) one sequence's base codes -> (W,), or (N, L) sequences of one
    length -> (N, W); -1 where a read base is ambiguous."""
    span = positions[-1] + 1
    n = codes.shape[-1] - span + 1
    if n <= 0:
        return np.zeros((*codes.shape[:-1], 0), dtype=np.int64)
    out = np.zeros((*codes.shape[:-1], n), dtype=np.int64)
    bad = np.zeros(out.shape, dtype=bool)
    for p in positions:
        part = codes[..., p:p + n]
        out = out * 4 + np.maximum(part, 0)
        bad |= part < 0
    out[bad] = -1
    return out


def _reverse_complement_codes(codes: np.ndarray) -> np.ndarray:
    """The reverse complement of (..., L) base codes."""
    return np.where(codes >= 0, 3 - codes, -1)[..., ::-1]


def _patterns(ks: tuple[int, ...], gapped: tuple[int, int] | None) -> list[tuple[int, ...]]:
    """The position patterns of the features: contiguous k-mers, then gapped (l, k) ones."""
    out = [tuple(range(k)) for k in ks]
    if gapped is not None:
        length, k = gapped
        out += [(0, *inner, length - 1) for inner in combinations(range(1, length - 1), k - 2)]
    return out


def spectrum(sequences: list[str], ks: tuple[int, ...] = (1, 2, 3, 4, 5, 6), both_strands: bool = True,
             gapped: tuple[int, int] | None = None):
    """(N, F) scipy CSR matrix of k-mer counts (float32): a block of 4**k columns per contiguous
    k in ``ks``, then one block of 4**k per gapped pattern of ``gapped`` = (l, k). See the module
    docstring."""
    from scipy import sparse

    patterns = _patterns(ks, gapped)
    offsets = np.cumsum([0] + [4 ** len(p) for p in patterns])
    codes = _codes(sequences)
    lengths = np.array([len(c) for c in codes], dtype=np.int64)
    rows, cols = [], []
    for length in np.unique(lengths):  # the sequences of one length at once: (n, length) codes
        which = np.flatnonzero(lengths == length)
        block = np.stack([codes[i] for i in which])
        strands = [block, _reverse_complement_codes(block)] if both_strands else [block]
        for offset, pattern in zip(offsets[:-1], patterns, strict=True):
            for strand in strands:
                c = kmer_codes(strand, pattern)
                keep = c >= 0
                rows.append(np.broadcast_to(which[:, None], c.shape)[keep])
                cols.append(c[keep] + offset)
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    m = sparse.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(sequences), int(offsets[-1])))
    m.sum_duplicates()
    return m


def kmer_names(ks: tuple[int, ...] = (1, 2, 3, 4, 5, 6), gapped: tuple[int, int] | None = None) -> list[str]:
    """The feature names of :func:`spectrum`'s columns (``ACG``; gapped ones with ``.`` wildcards)."""
    names = []
    for pattern in _patterns(ks, gapped):
        span = pattern[-1] + 1
        for code in range(4 ** len(pattern)):
            letters = ["."] * span
            for j, p in enumerate(pattern):
                letters[p] = "ACGT"[(code // 4 ** (len(pattern) - 1 - j)) % 4]
            names.append("".join(letters))
    return names


#: the regularisation strengths the baseline chooses among, by grouped cross-validation
CS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)  # on ELK1 the optimum is 100, inside


def _fold_auc(model, x, y: np.ndarray, train: np.ndarray, val: np.ndarray) -> float:
    """ROC AUC on ``val`` of ``model`` fitted on ``train`` (rows of ``x``, ``y``)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y[val], model.fit(x[train], y[train]).predict_proba(x[val])[:, 1]))


class KmerBaseline:
    """An L2 logistic regression on k-mer spectra (each sequence's counts scaled to unit length):
    ``fit(sequences, labels, groups)``, ``predict_proba(sequences)`` -> (N, 2). Its strength
    ``C`` is chosen among :data:`CS` by 3-fold cross-validation on the training sequences,
    grouped (a peak and its shuffles in one fold), by ROC AUC: never on a test set. The
    ``len(CS) x 3`` fits run in ``n_jobs`` worker processes (-1: all cores); each fit sees only its
    own fold, so ``n_jobs`` changes the wall time and nothing else."""

    def __init__(self, ks: tuple[int, ...] = (1, 2, 3, 4, 5, 6), both_strands: bool = True,
                 gapped: tuple[int, int] | None = None, cs: tuple[float, ...] = CS, seed: int = 0,
                 n_jobs: int = -1) -> None:
        self.ks, self.both_strands, self.gapped, self.cs, self.seed = ks, both_strands, gapped, tuple(cs), seed
        self.n_jobs = n_jobs
        self.cv_auc: dict[float, float] = {}

    def features(self, sequences: list[str]):
        from sklearn.preprocessing import normalize

        return normalize(spectrum(sequences, self.ks, self.both_strands, self.gapped))  # unit length per sequence

    def _model(self, c: float):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=c, max_iter=3000, random_state=self.seed)

    def fit(self, sequences: list[str], labels: np.ndarray, groups: np.ndarray | None = None) -> "KmerBaseline":
        from joblib import Parallel, delayed
        from sklearn.model_selection import GroupKFold, StratifiedKFold

        x, y = self.features(sequences), np.asarray(labels)
        if len(self.cs) > 1:
            folds = (GroupKFold(3).split(x, y, groups) if groups is not None
                     else StratifiedKFold(3, shuffle=True, random_state=self.seed).split(x, y))
            folds = list(folds)
            aucs = Parallel(n_jobs=self.n_jobs)(delayed(_fold_auc)(self._model(c), x, y, tr, va)
                                                for c in self.cs for tr, va in folds)
            for i, c in enumerate(self.cs):
                self.cv_auc[c] = float(np.mean(aucs[i * len(folds):(i + 1) * len(folds)]))
            self.C = max(self.cs, key=lambda c: (self.cv_auc[c], -c))  # the weaker of equals
        else:
            self.C = self.cs[0]
        self.estimator = self._model(self.C).fit(x, y)
        return self

    def predict_proba(self, sequences: list[str]) -> np.ndarray:
        return self.estimator.predict_proba(self.features(sequences))

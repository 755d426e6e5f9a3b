"""DNA sequences as data: reading (FASTA, DeepBind ``.seq`` tables, CSV), checking, one-hot
encoding, reverse complements and dinucleotide-shuffled negatives.

- **Alphabet.** A, C, G, T, and the IUPAC ambiguity codes (N, R, Y, S, W, K, M, B, D, H, V),
  upper or lower case (soft-masked repeats are read as the bases they are). One-hot columns are in
  the order A, C, G, T; an ambiguity code is the mean of the bases it stands for (N: 0.25 each,
  R = A/G: 0.5 each), as Basset and Selene encode it. Any other letter (a gap ``-``, ``U``, a
  digit) is an error naming the record and the position.
- **Length.** Models see one length: sequences longer are cut to their centre, shorter ones are
  padded with N on both sides (more on the right when odd), with a warning counting them.
- **Reverse complement.** With columns A, C, G, T, the complement reverses the channel order, so
  the reverse complement of a one-hot (..., 4, L) is ``x.flip(-1).flip(-2)``.
- **Dinucleotide shuffle** (Altschul & Erikson 1985): a random sequence with exactly the
  dinucleotide counts (and the first and last letters) of the original, drawn uniformly among
  them by a random Eulerian walk; DeepBind's negatives. Seeded.
"""

from __future__ import annotations

import csv
import gzip
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, path_problem
from ..io import check_gzip

__all__ = [
    "BASES", "IUPAC", "SequenceSet", "one_hot", "reverse_complement", "dinucleotide_shuffle", "fit_length",
    "read_fasta", "read_seq_table", "read_sequence_csv", "read_fasta_folder", "load_sequences",
    "with_shuffled_negatives", "with_background_negatives",
]

BASES = "ACGT"
#: each IUPAC code -> the bases it stands for
IUPAC = {"A": "A", "C": "C", "G": "G", "T": "T", "N": "ACGT", "R": "AG", "Y": "CT", "S": "CG", "W": "AT",
         "K": "GT", "M": "AC", "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG"}
_CODES = np.zeros((256, 4), dtype=np.float32)  # byte -> its one-hot column
for _code, _bases in IUPAC.items():
    for _b in _bases:
        for _c in (_code, _code.lower()):
            _CODES[ord(_c), BASES.index(_b)] = 1.0 / len(_bases)
_VALID = _CODES.sum(axis=1) > 0


@dataclass
class SequenceSet:
    """Labelled sequences: ``ids`` (record names), ``sequences`` (upper case), ``labels`` (N,)
    int64 indices into ``classes``, and ``groups`` (N,) str or None: sequences that must stay on
    one side of a split (a peak and its shuffles; a patient's records)."""

    ids: list[str]
    sequences: list[str]
    labels: np.ndarray
    classes: list[str]
    groups: np.ndarray | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sequences)

    def subset(self, index: np.ndarray) -> "SequenceSet":
        index = np.asarray(index)
        return SequenceSet([self.ids[i] for i in index], [self.sequences[i] for i in index], self.labels[index],
                           list(self.classes), None if self.groups is None else self.groups[index], self.source,
                           list(self.notes))

    def one_hot(self, length: int | None = None) -> np.ndarray:
        """(N, 4, L) float32; ``length``: fitted to it first (see :func:`fit_length`)."""
        seqs = self.sequences if length is None else fit_length(self.sequences, length, self.source)
        return one_hot(seqs)


def one_hot(sequences: list[str]) -> np.ndarray:
    """Sequences of one length -> (N, 4, L) float32 (A, C, G, T; ambiguity codes fractional)."""
    if not sequences:
        return np.zeros((0, 4, 0), dtype=np.float32)
    lengths = {len(s) for s in sequences}
    if len(lengths) != 1:
        raise ValueError(f"sequences of {len(lengths)} lengths; fit them to one first (fit_length)")
    codes = np.frombuffer("".join(sequences).encode("ascii"), dtype=np.uint8).reshape(len(sequences), -1)
    return np.ascontiguousarray(_CODES[codes].transpose(0, 2, 1))


def reverse_complement(x):
    """The reverse complement of a one-hot (..., 4, L) array or tensor (A, C, G, T columns)."""
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x[..., ::-1, ::-1])
    return x.flip(-1).flip(-2)


def fit_length(sequences: list[str], length: int, where: str = "sequences") -> list[str]:
    """Every sequence at ``length``: the centre of a longer one, a shorter one padded with N on
    both sides; a warning says how many were changed."""
    out, changed = [], 0
    for s in sequences:
        if len(s) > length:
            start = (len(s) - length) // 2
            s, changed = s[start:start + length], changed + 1
        elif len(s) < length:
            left = (length - len(s)) // 2
            s, changed = "N" * left + s + "N" * (length - len(s) - left), changed + 1
        out.append(s)
    if changed:
        warnings.warn(f"{where}: {changed} of {len(sequences)} sequences cut to their centre or padded with N to "
                      f"{length} bp", stacklevel=2)
    return out


def dinucleotide_shuffle(seq: str, rng: np.random.Generator) -> str:
    """A uniformly random sequence with exactly the dinucleotide counts of ``seq`` (and its first
    and last letters): Altschul & Erikson's Eulerian walk with a random last-edge arborescence."""
    if len(seq) < 3:
        return seq
    edges: dict[str, list[str]] = {}
    for a, b in zip(seq[:-1], seq[1:], strict=True):
        edges.setdefault(a, []).append(b)
    last = seq[-1]
    while True:  # a random last edge out of every vertex but the final one, until they form a tree into it
        chosen = {v: int(rng.integers(len(out))) for v, out in edges.items() if v != last}
        if all(_reaches(v, last, {u: edges[u][i] for u, i in chosen.items()}) for v in chosen):
            break
    walk = {}
    for v, out in edges.items():
        if v in chosen:
            keep = out[chosen[v]]
            rest = out[:chosen[v]] + out[chosen[v] + 1:]
            walk[v] = [rest[i] for i in rng.permutation(len(rest))] + [keep]
        else:
            walk[v] = [out[i] for i in rng.permutation(len(out))]
    position = {v: 0 for v in walk}
    result, current = [seq[0]], seq[0]
    for _ in range(len(seq) - 1):
        step = walk[current][position[current]]
        position[current] += 1
        current = step
        result.append(current)
    return "".join(result)


def _reaches(v: str, last: str, step: dict[str, str]) -> bool:
    seen = set()
    while v != last:
        if v in seen or v not in step:
            return False
        seen.add(v)
        v = step[v]
    return True


# ----------------------------------------------------------------------------- reading


def _text(path: Path) -> str:
    """The file's text (gunzipped when it ends in .gz); faults as DataErrors."""
    if (problem := path_problem(path)) is not None:
        raise DataError(path, problem)
    if path.is_dir():
        raise DataError(path, "is a folder, not a sequence file")
    try:
        if path.suffix == ".gz":
            check_gzip(path, DataError)
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return f.read()
        return path.read_text(encoding="utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot be read as text ({exc})") from None


def _check(path: Path, record: str, seq: str) -> str:
    """``seq`` upper-cased, or a DataError naming the record and the first letter outside the
    alphabet; an empty or all-N sequence is an error too."""
    raw = seq.encode("ascii", errors="replace")
    bad = np.flatnonzero(~_VALID[np.frombuffer(raw, dtype=np.uint8)]) if raw else []
    if len(bad):
        raise DataError(path, f"record {record!r}, position {bad[0] + 1}: {seq[bad[0]]!r} is not a DNA letter "
                              "(A, C, G, T or an IUPAC code such as N)")
    seq = seq.upper()
    if not seq.strip("N"):
        raise DataError(path, f"record {record!r}: {'empty' if not seq else 'all N'}; nothing to read")
    return seq


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """(id, sequence) of every record of a FASTA file (``.fa``, ``.fasta``, ``.fna``, gzipped
    too); the id is the header's first word. No records, a header without a sequence, text before
    the first header, a duplicate id or a bad letter is a DataError naming the record."""
    path = Path(path)
    records: list[tuple[str, list[str]]] = []
    for n, line in enumerate(io.StringIO(_text(path)), start=1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            name = line[1:].split()[0] if line[1:].split() else ""
            if not name:
                raise DataError(path, f"line {n}: a header without a name")
            records.append((name, []))
        elif not records:
            raise DataError(path, f"line {n}: sequence text before the first '>' header (is this FASTA?)")
        else:
            records[-1][1].append(line)
    if not records:
        raise DataError(path, "no FASTA records (no '>' header line)")
    out, seen = [], set()
    for name, parts in records:
        if name in seen:
            raise DataError(path, f"record {name!r} appears twice")
        seen.add(name)
        if not parts:
            raise DataError(path, f"record {name!r}: a header without a sequence")
        out.append((name, _check(path, name, "".join(parts))))
    return out


def read_seq_table(path: str | Path) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """A DeepBind ``.seq[.gz]`` table (tab-separated ``FoldID EventID seq Bound``) -> (ids,
    sequences, labels 0/1, fold ids)."""
    path = Path(path)
    rows = list(csv.reader(io.StringIO(_text(path)), delimiter="\t"))
    if not rows or [c.strip() for c in rows[0]][:4] != ["FoldID", "EventID", "seq", "Bound"]:
        raise DataError(path, "not a DeepBind .seq table (header: FoldID, EventID, seq, Bound, tab-separated)")
    ids, seqs, labels, folds = [], [], [], []
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 4:
            raise DataError(path, f"line {n}: {len(row)} columns, not 4")
        fold, name, seq, bound = (c.strip() for c in row[:4])
        if bound not in ("0", "1"):
            raise DataError(path, f"line {n} (record {name!r}): Bound is {bound!r}, not 0 or 1")
        ids.append(name)
        seqs.append(_check(path, name, seq))
        labels.append(int(bound))
        folds.append(fold)
    if not ids:
        raise DataError(path, "no sequences")
    _unique(path, ids)
    return ids, seqs, np.asarray(labels, dtype=np.int64), folds


def _unique(path: Path, ids: list[str]) -> None:
    seen: set[str] = set()
    for name in ids:
        if name in seen:
            raise DataError(path, f"record {name!r} appears twice")
        seen.add(name)


def read_sequence_csv(path: str | Path) -> tuple[list[str], list[str], list[str], list[str] | None]:
    """A CSV with columns ``sequence`` and ``label`` (optional ``id``, ``group``) -> (ids,
    sequences, labels as text, groups or None)."""
    from .tabular import read_csv

    path = Path(path)
    table = read_csv(path)
    missing = [c for c in ("sequence", "label") if c not in table.columns]
    if missing:
        raise DataError(path, f"a sequence table needs the columns sequence and label (missing: {', '.join(missing)})")
    ids = [str(v) for v in table["id"]] if "id" in table.columns else [f"row{i + 2}" for i in range(len(table))]
    _unique(path, ids)
    labels = [str(v).strip() for v in table["label"]]
    if "" in labels:
        raise DataError(path, f"record {ids[labels.index('')]!r}: empty label")
    seqs = [_check(path, i, str(s).strip()) for i, s in zip(ids, table["sequence"], strict=True)]
    groups = [str(v) for v in table["group"]] if "group" in table.columns else None
    return ids, seqs, labels, groups


def read_fasta_folder(folder: str | Path) -> tuple[list[str], list[str], list[str]]:
    """A folder with one FASTA per class (``<class>.fa[.gz]``, as image class folders) -> (ids,
    sequences, labels as class names)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if _is_fasta(p))
    if not files:
        raise DataError(folder, "holds no FASTA file (<class>.fa, .fasta, .fna, gzipped too)")
    ids, seqs, labels = [], [], []
    for f in files:
        name = f.name.split(".")[0]
        for rid, seq in read_fasta(f):
            ids.append(rid)
            seqs.append(seq)
            labels.append(name)
    _unique(folder, ids)
    return ids, seqs, labels


def _is_fasta(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return path.is_file() and name.endswith((".fa", ".fasta", ".fna"))


def load_sequences(path: str | Path, labels: str | Path | None = None, classes: list[str] | None = None
                   ) -> SequenceSet:
    """Labelled sequences from ``path``: a DeepBind ``.seq[.gz]`` table (labels 0/1; a record
    ``X_peak`` and its shuffle ``X_shuf`` form group ``X``), a CSV of
    ``sequence,label[,group][,id]``, a folder of one FASTA per class, or one FASTA file whose
    labels come from ``labels`` (a CSV ``id,label``; every record needs one) or, without it, all
    one class ``1`` (positives, e.g. peaks, to shuffle negatives from). ``classes``: the class
    names in label order (default: sorted)."""
    path = Path(path)
    groups = None
    if path.is_dir():
        ids, seqs, names = read_fasta_folder(path)
    elif path.name.lower().removesuffix(".gz").endswith(".seq"):
        ids, seqs, y, _ = read_seq_table(path)
        names = [str(v) for v in y]
        classes = classes or ["0", "1"]
        groups = [i.removesuffix("_peak").removesuffix("_shuf") for i in ids]  # a test peak and its shuffle
    elif path.suffix.lower() == ".csv":
        ids, seqs, names, groups = read_sequence_csv(path)
    elif _is_fasta(path) or (path_problem(path) is None and path.suffix.lower() == ".gz"):
        records = read_fasta(path)
        ids, seqs = [r[0] for r in records], [r[1] for r in records]
        names = _fasta_labels(path, ids, labels) if labels is not None else ["1"] * len(ids)
        classes = classes or (None if labels is not None else ["0", "1"])
    elif path_problem(path) is not None:
        raise DataError(path, path_problem(path))
    else:
        raise DataError(path, "not a sequence file: a FASTA (.fa, .fasta, .fna), a DeepBind .seq table, a CSV of "
                              "sequence,label, or a folder of one FASTA per class")
    classes = list(classes) if classes is not None else sorted(set(names))
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise DataError(path, f"labels {unknown} are not among the classes {classes}")
    return SequenceSet(ids, seqs, np.asarray([classes.index(n) for n in names], dtype=np.int64), classes,
                       None if groups is None else np.asarray(groups), str(path))


def _fasta_labels(path: Path, ids: list[str], labels: str | Path) -> list[str]:
    from .tabular import read_csv

    labels = Path(labels)
    table = read_csv(labels)
    if not {"id", "label"} <= set(table.columns):
        raise DataError(labels, "a labels table needs the columns id and label")
    by_id = dict(zip(table["id"].astype(str), table["label"].astype(str).str.strip(), strict=True))
    missing = [i for i in ids if i not in by_id or not by_id[i]]
    if missing:
        raise DataError(labels, f"no label for record {missing[0]!r} of {path.name}"
                                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return [by_id[i] for i in ids]


# ----------------------------------------------------------------------------- negatives


def with_shuffled_negatives(data: SequenceSet, seed: int, per_positive: int = 1) -> SequenceSet:
    """``data`` (positives: label 1, or every sequence when it holds one class) with
    ``per_positive`` dinucleotide shuffles of each as negatives (label 0, id ``<id>_shuf<k>``);
    each shuffle is in its positive's group, so a split never separates them."""
    if len(data.classes) > 2 or (len(data.classes) == 2 and (data.labels == 0).any()):
        raise DataError(data.source, "holds negatives already; shuffled negatives are made for positives only")
    rng = np.random.default_rng(seed)
    groups = list(data.groups) if data.groups is not None else list(data.ids)
    ids, seqs, labels, out_groups = list(data.ids), list(data.sequences), [1] * len(data), list(groups)
    for k in range(per_positive):
        for rid, seq, g in zip(data.ids, data.sequences, groups, strict=True):
            ids.append(f"{rid}_shuf{k}")
            seqs.append(dinucleotide_shuffle(seq, rng))
            labels.append(0)
            out_groups.append(g)
    return SequenceSet(ids, seqs, np.asarray(labels, dtype=np.int64), ["0", "1"], np.asarray(out_groups),
                       data.source, [*data.notes, f"{per_positive} dinucleotide shuffle(s) of each positive as "
                                                  f"negatives (seed {seed})"])


def with_background_negatives(data: SequenceSet, background: str | Path) -> SequenceSet:
    """``data`` (positives) with the records of the FASTA ``background`` (flanking regions, random
    genomic background) as negatives."""
    if len(data.classes) > 2 or (len(data.classes) == 2 and (data.labels == 0).any()):
        raise DataError(data.source, "holds negatives already; background negatives are added to positives only")
    records = read_fasta(background)
    ids = list(data.ids) + [r[0] for r in records]
    _unique(Path(background), ids)
    groups = list(data.groups) if data.groups is not None else list(data.ids)
    return SequenceSet(ids, list(data.sequences) + [r[1] for r in records],
                       np.asarray([1] * len(data) + [0] * len(records), dtype=np.int64), ["0", "1"],
                       np.asarray(groups + [r[0] for r in records]), data.source,
                       [*data.notes, f"{len(records)} background sequences from {Path(background).name} as negatives"])

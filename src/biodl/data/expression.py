"""RNA-seq expression tables (genes x samples): reading with validation, and normalisation.

Every function takes and returns a pandas table with genes as rows and samples as columns, as
count matrices are stored (Elegant SciPy, edgeR, DESeq2 all use this orientation).

- **Library size**: the column sums (reads counted over the table's genes).
- **CPM**: counts per million, ``count / library size x 1e6``; **log-CPM**: ``log2(CPM + 1)``.
- **RPKM**: reads per kilobase of gene per million reads, ``1e9 x count / (library size x
  length)``, with the library size over every gene of the table (as Elegant SciPy computes it);
  **TPM**: each gene's reads per kilobase, rescaled so that each sample sums to a million. Genes
  without a known length are left out of both (and returned, so that the caller reports them).
- **Quantile normalisation**: every sample gets the same distribution, the mean of the sorted
  samples; tied values in a sample share the mean of the reference values at their ranks (the
  usual definition; Bolstad et al. 2003).
- **DESeq2 size factors** (Anders & Huber 2010, median of ratios): each sample's median, over
  the genes with no zero count, of its count divided by the gene's geometric mean over samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import check_gzip

__all__ = ["read_counts", "read_gene_lengths", "MAX_LIBRARY", "load_cohort", "Cohort", "library_sizes", "cpm",
           "log_cpm", "rpkm", "tpm", "quantile_normalize", "size_factors"]


def read_counts(path: str | Path) -> pd.DataFrame:
    """A counts table (CSV, optionally gzipped; first column the gene ids, then one column per
    sample) as genes x samples floats. Faults (a non-numeric or negative value, a duplicate gene
    or sample id, no rows) are one-line ``DataError`` s naming the file, the gene and the sample."""
    path = Path(path)
    if path.suffix == ".gz" and path.is_file():
        check_gzip(path, DataError)
    try:
        raw = pd.read_csv(path, index_col=0, keep_default_na=False)  # numbers parsed in C; anything else stays text
        if not _numeric(raw):  # find the first bad cell
            raw = pd.read_csv(path, index_col=0, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(path, "no such counts table") from None
    except (OSError, ValueError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(path, f"cannot be read as a CSV table ({str(exc).splitlines()[0]})") from None
    if raw.empty or raw.shape[1] == 0:
        raise DataError(path, "no genes or no samples")
    dup_genes = raw.index[raw.index.duplicated()]
    if len(dup_genes):
        raise DataError(path, f"gene {dup_genes[0]!r} appears twice")
    seen: set[str] = set()
    for name in _header(path)[1:]:  # pandas renames a repeated column (x, x.1): read the names as written
        if name in seen:
            raise DataError(path, f"sample {name!r} appears twice")
        seen.add(name)
    values = raw if _numeric(raw) else raw.apply(pd.to_numeric, errors="coerce")
    bad = values.isna()
    if bad.to_numpy().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        raise DataError(path, f"gene {raw.index[r]!r}, sample {raw.columns[c]!r}: {raw.iat[r, c]!r} is not a number")
    inf = ~np.isfinite(values.to_numpy())
    if inf.any():
        r, c = np.argwhere(inf)[0]
        raise DataError(path, f"gene {raw.index[r]!r}, sample {raw.columns[c]!r}: {raw.iat[r, c]!r} is not a finite "
                              "count")
    neg = values.to_numpy() < 0
    if neg.any():
        r, c = np.argwhere(neg)[0]
        raise DataError(path, f"gene {raw.index[r]!r}, sample {raw.columns[c]!r}: a negative count "
                              f"({values.iat[r, c]})")
    libs = values.sum(axis=0)
    if not np.isfinite(libs.to_numpy()).all() or (libs > MAX_LIBRARY).any():
        bad = libs.index[~np.isfinite(libs.to_numpy()) | (libs > MAX_LIBRARY).to_numpy()][0]
        raise DataError(path, f"sample {bad!r}: counts summing to {libs[bad]:.3g}, more reads than any library "
                              f"holds ({MAX_LIBRARY:.0e}); are these counts?")
    if (libs == 0).any():
        raise DataError(path, f"sample {libs.index[libs.to_numpy() == 0][0]!r}: every count is 0 (an empty library: "
                              "nothing to normalise)")
    values.index.name = raw.index.name or "gene"
    return values.astype(np.float64)


def _numeric(table: pd.DataFrame) -> bool:
    return all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in table.dtypes)


#: the most reads a sample's counts may sum to (a deep RNA-seq library holds ~1e8)
MAX_LIBRARY = 1e13


def read_gene_lengths(path: str | Path) -> pd.Series:
    """A gene-lengths CSV (columns ``GeneSymbol`` and ``GeneLength``, in bases) as gene ->
    length. A missing file or column, a duplicate gene, or a length that is not a positive
    number is a one-line DataError naming the file (and the gene)."""
    from .tabular import read_csv

    path = Path(path)
    table = read_csv(path)
    missing = [c for c in ("GeneSymbol", "GeneLength") if c not in table.columns]
    if missing:
        raise DataError(path, f"a gene-lengths table needs the columns GeneSymbol and GeneLength (missing: "
                              f"{', '.join(missing)})")
    length = pd.to_numeric(table["GeneLength"], errors="coerce")
    bad = ~(np.isfinite(length.fillna(-1)) & (length > 0))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, f"row {i + 2} (gene {table['GeneSymbol'].iat[i]!r}): length "
                              f"{table['GeneLength'].iat[i]!r} is not a positive number")
    dup = table["GeneSymbol"].duplicated()
    if dup.any():
        raise DataError(path, f"gene {table['GeneSymbol'][dup].iat[0]!r} appears twice")
    return pd.Series(length.to_numpy(np.float64), index=table["GeneSymbol"], name="GeneLength")


def _header(path: Path) -> list[str]:
    import csv
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
        return next(csv.reader(f), [])


def library_sizes(counts: pd.DataFrame) -> pd.Series:
    """Each sample's reads over the table's genes."""
    return counts.sum(axis=0)


def cpm(counts: pd.DataFrame) -> pd.DataFrame:
    """Counts per million reads of each sample's library."""
    return counts / library_sizes(counts) * 1e6


def log_cpm(counts: pd.DataFrame) -> pd.DataFrame:
    """``log2(CPM + 1)``."""
    return np.log2(cpm(counts) + 1.0)


def _with_lengths(counts: pd.DataFrame, lengths: pd.Series) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """(the counts of the genes with a positive length, their lengths, the genes without one)."""
    known = lengths.reindex(counts.index)
    ok = known.notna() & (known > 0)
    return counts[ok.to_numpy()], known[ok].to_numpy(np.float64), list(counts.index[~ok.to_numpy()])


def rpkm(counts: pd.DataFrame, lengths: pd.Series) -> tuple[pd.DataFrame, list[str]]:
    """(reads per kilobase per million, the genes left out for want of a length). ``lengths``:
    gene id -> length in bases. The library size counts every gene of the table."""
    libs = library_sizes(counts).to_numpy(np.float64)
    kept, length, missing = _with_lengths(counts, lengths)
    return kept * 1e9 / (length[:, None] * libs[None, :]), missing


def tpm(counts: pd.DataFrame, lengths: pd.Series) -> tuple[pd.DataFrame, list[str]]:
    """(transcripts per million, the genes left out for want of a length): reads per kilobase,
    each sample rescaled to sum to a million over the genes with a length."""
    kept, length, missing = _with_lengths(counts, lengths)
    rate = kept / (length[:, None] / 1e3)
    return rate / rate.sum(axis=0) * 1e6, missing


def quantile_normalize(table: pd.DataFrame) -> pd.DataFrame:
    """Every sample (column) given the same distribution: the mean over samples of the sorted
    values. A value's rank in its sample picks its new value; values tied within a sample get the
    mean of the reference values over the ranks they share."""
    x = table.to_numpy(np.float64)
    n, m = x.shape
    reference = np.sort(x, axis=0).mean(axis=1)  # (n,) ascending
    out = np.empty_like(x)
    for j in range(m):
        order = np.argsort(x[:, j], kind="stable")
        values = x[order, j]
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])  # first rank of each run of ties
        ends = np.r_[starts[1:], n]
        sums = np.add.reduceat(reference, starts)
        out[order, j] = np.repeat(sums / (ends - starts), ends - starts)
    return pd.DataFrame(out, index=table.index, columns=table.columns)


def size_factors(counts: pd.DataFrame) -> pd.Series:
    """DESeq2's size factors (median of ratios). Genes with a zero in any sample have no
    geometric mean and are left out; a table where every gene has a zero is an error."""
    x = counts.to_numpy(np.float64)
    usable = (x > 0).all(axis=1)
    if not usable.any():
        raise DataError("counts", "every gene has a zero count in some sample: DESeq2's size factors are undefined")
    logs = np.log(x[usable])
    log_ratio = logs - logs.mean(axis=1, keepdims=True)
    return pd.Series(np.exp(np.median(log_ratio, axis=0)), index=counts.columns, name="size_factor")


#: which sample of a patient with several is kept (lower first); normal tissue is never kept
SAMPLE_PRIORITY = {"Primary_Tumor": 0, "Metastatic": 1, "Additional_Metastatic": 2}


@dataclass
class Cohort:
    """A counts table with its samples: ``counts`` genes x samples (one tumour sample per patient,
    in the samples table's order), ``samples`` indexed by sample id, and what was left out."""

    counts: pd.DataFrame
    samples: pd.DataFrame
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> sample ids (or genes)

    def check(self, time: str, event: str, folds: int, clusters: int, known: pd.Series | None,
              counts_path: Path, samples_path: Path) -> None:
        """Every fault the usual analyses would meet, as a DataError before anything is written:
        too few genes or samples for ``clusters``, fewer survival times or events than ``folds``,
        ``known`` classes (e.g. subclasses; None: none) of one class or with a class smaller
        than ``folds``."""
        genes, n = self.counts.shape
        if genes < max(10, clusters + 1):
            raise DataError(counts_path, f"{genes} genes: the clustering needs at least {max(10, clusters + 1)}")
        if n < 2 * clusters:
            raise DataError(samples_path, f"{n} samples are too few for {clusters} clusters (set clusters lower)")
        surv = self.samples[time].notna()
        if int(surv.sum()) < folds:
            raise DataError(samples_path, f"{int(surv.sum())} samples with a survival time: fewer than the {folds} "
                                          "folds")
        if (events := int(self.samples.loc[surv, event].sum())) < folds:
            raise DataError(samples_path, f"column {event!r}: {events} events among the samples with a survival "
                                          f"time; survival models need at least one per fold ({folds})")
        if known is not None:
            sizes = known.value_counts()
            if len(sizes) < 2:
                raise DataError(samples_path, f"column {known.name!r}: {len(sizes)} class(es); comparing and "
                                              "predicting classes needs two or more")
            if sizes.min() < folds:
                raise DataError(samples_path, f"column {known.name!r}: class {sizes.idxmin()!r} has {sizes.min()} "
                                              f"samples, fewer than the {folds} folds")


def _row(samples: pd.DataFrame, i: int) -> str:
    return f"row {i + 2} (sample {samples['sample_id'].iat[i]!r})"


def load_cohort(counts_path: str | Path, samples_path: str | Path, time: str = "os_time_years",
                event: str = "os_event", patient: str | None = "patient", sample_type: str | None = "sample_type"
                ) -> Cohort:
    """Read and cross-check a counts table and its samples table (``sample_id``, then the
    survival ``time`` and ``event`` columns; ``patient`` and ``sample_type`` where present).

    Faults are one-line ``DataError`` s naming the file, the row or column and the fault: samples
    in one table and not the other, a duplicate sample id, a survival time that is negative or
    not a number, an event other than 0/1. Samples without a survival time stay (they have
    expression) and are counted; non-integer counts are rounded with a warning naming the genes.
    One sample per patient: tumour samples only (``sample_type`` not ``Solid_Tissue_Normal``),
    the first by :data:`SAMPLE_PRIORITY` (a primary tumour before a metastasis)."""
    import warnings

    from .tabular import read_csv

    counts_path, samples_path = Path(counts_path), Path(samples_path)
    counts = read_counts(counts_path)
    samples = read_csv(samples_path)
    for col in ("sample_id", time, event):
        if col not in samples.columns:
            raise DataError(samples_path, f"no column {col!r} (needed: sample_id, {time}, {event})")
    dup = samples["sample_id"].duplicated()
    if dup.any():
        raise DataError(samples_path, f"{_row(samples, int(np.flatnonzero(dup)[0]))}: the sample id appears twice")
    ids = set(samples["sample_id"])
    only_counts = [c for c in counts.columns if c not in ids]
    if only_counts:
        raise DataError(counts_path, f"sample {only_counts[0]!r} (and {len(only_counts) - 1} more) is not in "
                                     f"{samples_path.name}" if len(only_counts) > 1 else
                        f"sample {only_counts[0]!r} is not in {samples_path.name}")
    only_samples = [s for s in samples["sample_id"] if s not in set(counts.columns)]
    if only_samples:
        raise DataError(samples_path, f"sample {only_samples[0]!r} has no column in {counts_path.name}")
    t = pd.to_numeric(samples[time].replace("", np.nan), errors="coerce")
    bad = samples[time].ne("") & (t.isna() | ~np.isfinite(t.fillna(0)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(samples_path, f"{_row(samples, i)}, column {time!r}: {samples[time].iat[i]!r} is not a number")
    if (t < 0).any():
        i = int(np.flatnonzero(t < 0)[0])
        raise DataError(samples_path, f"{_row(samples, i)}, column {time!r}: a negative survival time ({t.iat[i]})")
    e = pd.to_numeric(samples[event].replace("", np.nan), errors="coerce")
    bad = (samples[event].ne("") & ~e.isin([0, 1])) | (t.notna() & e.isna())
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(samples_path, f"{_row(samples, i)}, column {event!r}: {samples[event].iat[i]!r} is not 0 or 1")
    samples = samples.assign(**{time: t, event: e}).set_index("sample_id", drop=False)
    fractional = counts.index[(counts.to_numpy() != np.round(counts.to_numpy())).any(axis=1)]
    if len(fractional):
        warnings.warn(f"{counts_path}: {len(fractional)} gene{'s' if len(fractional) > 1 else ''} with non-integer "
                      f"counts rounded ({', '.join(map(str, fractional[:5]))})", stacklevel=2)
        counts = counts.round()
    dropped: dict[str, list[str]] = {"rounded genes": [str(g) for g in fractional]}
    keep = pd.Series(True, index=samples.index)
    if sample_type and sample_type in samples.columns:
        normal = samples[sample_type].str.contains("Normal", case=False)
        dropped["normal tissue"] = list(samples.index[normal])
        keep &= ~normal
    if patient and patient in samples.columns:
        empty = samples[patient].astype(str).str.strip() == ""
        if empty.any():
            i = int(np.flatnonzero(empty.to_numpy())[0])
            raise DataError(samples_path, f"{_row(samples, i)}: empty {patient!r}; every sample needs its patient "
                                          "(one sample per patient is kept), or leave the column out")
        rank = samples[sample_type].map(SAMPLE_PRIORITY).fillna(9) if sample_type in samples.columns else 0
        order = samples.assign(_rank=rank)[keep].sort_values(["_rank"], kind="stable")
        first = order.drop_duplicates(patient, keep="first").index
        dropped["second sample of a patient"] = [s for s in samples.index[keep] if s not in set(first)]
        keep &= samples.index.isin(first)
    dropped["no survival time"] = list(samples.index[keep & samples[time].isna()])
    kept = samples[keep]
    return Cohort(counts[list(kept.index)], kept, dropped)

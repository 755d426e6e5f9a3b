"""Single-cell count data: cells x genes, sparse, with a metadata table per cell.

Readers (:func:`load_cells` picks by form):

- **AnnData** ``.h5ad`` (the ``anndata`` package): ``layers["counts"]`` when present (scanpy
  users keep the raw counts there and normalised values in ``X``), else ``X``; genes are
  ``var_names``, cells ``obs_names``, metadata ``obs``.
- **10x Matrix Market** folders: ``matrix.mtx[.gz]`` (genes x cells), ``features.tsv[.gz]``
  (or ``genes.tsv[.gz]`` of Cell Ranger 2; the first column, the gene id, names the gene; rows
  whose third column is not ``Gene Expression`` are dropped) and ``barcodes.tsv[.gz]``.
- **A genes x cells CSV** (optionally gzipped; first column the gene ids), with a metadata CSV
  whose first column is the cell id. Several count tables (e.g. one per plate) are joined on
  their genes, a gene absent from a table counting 0 there; cell ids repeated across tables
  (well names on several plates) become ``<file name>/<id>`` where each table has its own
  metadata table.

Counts must be finite, non-negative integers (``normalised=True`` accepts any finite,
non-negative values); cell and gene ids unique; every cell in the metadata and every metadata
row a cell. Each fault is one :class:`~biodl.errors.DataError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from ..errors import DataError
from ..io import check_gzip

__all__ = ["CellCounts", "load_cells", "read_h5ad", "read_10x", "read_count_table", "read_metadata",
           "concat_cells", "HDF5_MAGIC"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass
class CellCounts:
    """``x``: (cells, genes) CSR counts (float32); ``genes``: (G,) gene ids; ``obs``: one row per
    cell (index: the cell ids, in ``x``'s row order), its metadata; ``source``: where it came from."""

    x: sparse.csr_matrix
    genes: np.ndarray
    obs: pd.DataFrame
    source: str

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def cells(self) -> np.ndarray:
        return self.obs.index.to_numpy(dtype=str)

    def subset(self, rows: np.ndarray) -> "CellCounts":
        rows = np.asarray(rows)
        return CellCounts(self.x[rows], self.genes, self.obs.iloc[rows], self.source)


def _check(x: sparse.csr_matrix, genes: Sequence[str], cells: Sequence[str], where: Path | str,
           normalised: bool) -> None:
    """Finite, non-negative (integer unless ``normalised``) values; unique, non-empty ids."""
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(where, f"holds no {'cells' if x.shape[0] == 0 else 'genes'}")
    for kind, ids in (("gene", genes), ("cell", cells)):
        seen = pd.Index(ids)
        if seen.has_duplicates:
            raise DataError(where, f"{kind} {seen[seen.duplicated()][0]!r} appears twice")
    data = x.data
    bad = ~np.isfinite(data)
    if bad.any() or (data < 0).any() or (not normalised and (data != np.round(data)).any()):
        if bad.any():
            fault = "is not a finite number"
            at = np.flatnonzero(bad)[0]
        elif (data < 0).any():
            fault, at = "is negative", np.flatnonzero(data < 0)[0]
        else:
            fault = "is not a whole count (normalised values? set data.normalised: true)"
            at = np.flatnonzero(data != np.round(data))[0]
        row = int(np.searchsorted(x.indptr, at, side="right") - 1)
        raise DataError(where, f"cell {cells[row]!r}, gene {genes[x.indices[at]]!r}: {data[at]!r} {fault}")


def _csr(x) -> sparse.csr_matrix:
    out = sparse.csr_matrix(x, dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def read_h5ad(path: str | Path, normalised: bool = False) -> CellCounts:
    """An AnnData file (see the module docstring for which matrix is read)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc.strerror or exc})") from None
    if magic != HDF5_MAGIC:
        raise DataError(path, "is not an .h5ad file (not HDF5)")
    import anndata

    try:
        adata = anndata.read_h5ad(path)
        x = adata.layers["counts"] if "counts" in adata.layers else adata.X
        x = _csr(x)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(path, f"cannot be read as AnnData ({why})") from None
    genes, obs = adata.var_names.to_numpy(dtype=str), adata.obs.copy()
    obs.index = obs.index.astype(str)
    _check(x, genes, obs.index, path, normalised)
    return CellCounts(x, genes, obs, str(path))


def _one_of(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        for p in (folder / name, folder / f"{name}.gz"):
            if p.is_file():
                return p
    raise DataError(folder, f"a 10x folder needs {' or '.join(names)} (optionally .gz); it is missing")


def _table(path: Path, header: bool = False) -> pd.DataFrame:
    if path.suffix == ".gz":
        check_gzip(path, DataError)
    try:
        return pd.read_csv(path, sep="\t", header=0 if header else None, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(path, f"cannot be read as a tab-separated table ({str(exc).splitlines()[0]})") from None


def read_10x(folder: str | Path, normalised: bool = False) -> CellCounts:
    """A 10x Matrix Market folder (see the module docstring)."""
    from scipy.io import mmread

    folder = Path(folder)
    matrix = _one_of(folder, ("matrix.mtx",))
    features = _one_of(folder, ("features.tsv", "genes.tsv"))
    barcodes = _one_of(folder, ("barcodes.tsv",))
    if matrix.suffix == ".gz":
        check_gzip(matrix, DataError)
    try:
        x = _csr(mmread(str(matrix)).T)  # the file is genes x cells
    except (OSError, ValueError, IndexError, EOFError) as exc:
        raise DataError(matrix, f"cannot be read as a Matrix Market file ({str(exc).splitlines()[0]})") from None
    feats, cells = _table(features), _table(barcodes)
    if feats.empty or cells.empty:
        raise DataError(features if feats.empty else barcodes, "is empty")
    if x.shape != (len(cells), len(feats)):
        raise DataError(matrix, f"is {x.shape[1]} genes x {x.shape[0]} cells, but {features.name} lists "
                                f"{len(feats)} genes and {barcodes.name} {len(cells)} cells")
    keep = (feats[2] == "Gene Expression").to_numpy() if feats.shape[1] > 2 else np.ones(len(feats), bool)
    x, genes = (x[:, np.flatnonzero(keep)] if not keep.all() else x), feats[0].to_numpy(dtype=str)[keep]
    obs = pd.DataFrame(index=pd.Index(cells[0].to_numpy(dtype=str), name="cell"))
    _check(x, genes, obs.index, matrix, normalised)
    return CellCounts(_csr(x), genes, obs, str(folder))


def read_count_table(path: str | Path, normalised: bool = False) -> CellCounts:
    """A genes x cells CSV (first column the gene ids), with no metadata yet."""
    from .expression import read_counts

    table = read_counts(path)  # numbers, finite, non-negative, unique ids, no empty cell (one-line errors)
    x = _csr(table.to_numpy(np.float32).T)
    obs = pd.DataFrame(index=pd.Index(table.columns.astype(str), name="cell"))
    _check(x, table.index.astype(str), obs.index, path, normalised)
    return CellCounts(x, table.index.to_numpy(dtype=str), obs, str(path))


def read_metadata(path: str | Path) -> pd.DataFrame:
    """A cell metadata CSV (optionally gzipped): the first column the cell ids (unique; R's
    ``write.csv`` form, a header one field short, too), then any columns, read as text."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such cell metadata table")
    if path.name.endswith(".gz"):
        check_gzip(path, DataError)
    try:
        table = pd.read_csv(path, index_col=0, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(path, "empty file (no header row)") from None
    except (OSError, ValueError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(path, f"cannot be read as a CSV table ({str(exc).splitlines()[0]})") from None
    if table.shape[1] < 1 or table.empty:
        raise DataError(path, "a cell metadata table needs the cell id first, then at least one column, and rows")
    table.index = table.index.astype(str)
    if table.index.has_duplicates:
        raise DataError(path, f"cell {table.index[table.index.duplicated()][0]!r} appears twice")
    return table


def concat_cells(parts: list[CellCounts], unique: bool = False) -> CellCounts:
    """Cells of several tables, joined on the union of their genes (a gene a table lacks counts
    0 there), genes in first-seen order. With ``unique``, cell ids that repeat across tables
    (e.g. well names on several plates) become ``<table name>/<id>`` (the table name: its file
    name up to the first dot); without, a repeat is an error."""
    if len(parts) == 1:
        return parts[0]
    ids = pd.Index(np.concatenate([p.cells for p in parts]))
    if unique and ids.has_duplicates:
        parts = [CellCounts(p.x, p.genes, p.obs.set_axis(Path(p.source).name.split(".")[0] + "/" + p.obs.index),
                            p.source) for p in parts]
    genes = pd.Index(pd.unique(np.concatenate([p.genes for p in parts])))
    blocks = []
    for p in parts:
        cols = genes.get_indexer(p.genes)
        coo = p.x.tocoo()
        blocks.append(sparse.csr_matrix((coo.data, (coo.row, cols[coo.col])), shape=(len(p), len(genes))))
    obs = pd.concat([p.obs for p in parts])
    if obs.index.has_duplicates:
        raise DataError(parts[0].source, f"cell {obs.index[obs.index.duplicated()][0]!r} appears in two tables")
    return CellCounts(_csr(sparse.vstack(blocks)), genes.to_numpy(dtype=str), obs,
                      "; ".join(p.source for p in parts))


def _attach(cells: CellCounts, metadata: Path) -> CellCounts:
    """``cells`` with the metadata table's columns; every cell must have a row and every row a cell."""
    table = read_metadata(metadata)
    missing = cells.obs.index.difference(table.index, sort=False)
    if len(missing):
        raise DataError(metadata, f"has no row for {len(missing)} cell(s) of the counts, e.g. {missing[0]!r}")
    extra = table.index.difference(cells.obs.index, sort=False)
    if len(extra):
        raise DataError(metadata, f"lists {len(extra)} cell(s) not in the counts, e.g. {extra[0]!r}")
    obs = cells.obs.join(table.drop(columns=[c for c in table.columns if c in cells.obs.columns]))
    return CellCounts(cells.x, cells.genes, obs, cells.source)


def _read_one(path: Path, normalised: bool) -> CellCounts:
    if path.is_dir():
        return read_10x(path, normalised)
    if path.name.endswith(".h5ad"):
        return read_h5ad(path, normalised)
    if path.name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        return read_count_table(path, normalised)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    raise DataError(path, "is not single-cell counts (.h5ad, a 10x folder, or a genes x cells .csv[.gz])")


#: the cells last read by :func:`load_cells`, by their files' contents: a study or a k-fold run reads
#: the same tables once per child run (the cell-lines study 21 times, ~1 s each); kept only up to
#: :data:`_KEEP_BYTES` of counts, so that an atlas is not held twice
_LAST: dict[tuple, CellCounts] = {}
_KEEP_BYTES = 512 * 2**20


def _files_key(paths: list[Path], metas: list[Path], normalised: bool) -> tuple | None:
    """(path, BLAKE2 of the bytes) of every file read (a 10x folder's files), or None where one
    cannot be read. Hashing is ~100x faster than parsing a count table."""
    import hashlib

    key = []
    try:
        for p in [*paths, *metas]:
            for f in sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]:
                h = hashlib.blake2b()
                with open(f, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        h.update(chunk)
                key.append((str(f.resolve()), h.hexdigest()))
    except OSError:
        return None
    return (tuple(key), len(paths), normalised)


def load_cells(paths: str | Path | Sequence[str | Path], metadata: str | Path | Sequence[str | Path] | None = None,
               normalised: bool = False) -> CellCounts:
    """Cells from one or several count files or folders (joined on genes), with the metadata
    tables (one per count file, or one for all) joined by cell id. The cells last read are kept in
    memory and given again (a copy) while the files' bytes are unchanged."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    metas = [] if metadata is None else [Path(m) for m in ([metadata] if isinstance(metadata, (str, Path))
                                                            else metadata)]
    key = _files_key(paths, metas, normalised)
    if key is not None and key in _LAST:
        cells = _LAST[key]
    else:
        cells = _load_cells(paths, metas, normalised)
        _LAST.clear()
        if key is not None and cells.x.data.nbytes + cells.x.indices.nbytes <= _KEEP_BYTES:
            _LAST[key] = cells
    return CellCounts(cells.x.copy(), cells.genes.copy(), cells.obs.copy(), cells.source)


def _load_cells(paths: list[Path], metas: list[Path], normalised: bool) -> CellCounts:
    if metas and len(metas) not in (1, len(paths)):
        raise DataError(metas[0], f"{len(metas)} metadata tables for {len(paths)} count files: give one, or one each")
    parts = [_read_one(p, normalised) for p in paths]
    if len(metas) == len(parts) and len(parts) > 1:
        parts = [_attach(p, m) for p, m in zip(parts, metas, strict=True)]
        metas = []
    cells = concat_cells(parts, unique=not metas)
    return _attach(cells, metas[0]) if metas else cells

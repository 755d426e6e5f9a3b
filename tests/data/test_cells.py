"""Single-cell readers: the same small table as CSV, .h5ad and a 10x folder gives identical
matrices; plates with repeated well names are joined; every bad input is one line."""

import gzip

import numpy as np
import pandas as pd
import pytest
from scipy import io as sio
from scipy import sparse

from biodl.data.cells import load_cells
from biodl.errors import DataError

GENES = ["ENSG01", "ENSG02", "ENSG03", "ENSG04", "ENSG05"]
CELLS = ["c1", "c2", "c3", "c4"]
COUNTS = np.array([[0, 3, 1, 0], [2, 0, 0, 7], [0, 0, 5, 1], [1, 1, 1, 1], [0, 9, 0, 0]])  # genes x cells


def write_csv(path, counts=COUNTS, genes=GENES, cells=CELLS):
    pd.DataFrame(counts, index=pd.Index(genes, name=""), columns=cells).to_csv(path)
    return path


def write_meta(path, cells=CELLS, labels=("A", "B", "A", "B")):
    pd.DataFrame({"cell": cells, "line": list(labels)[:len(cells)]}).to_csv(path, index=False)
    return path


def write_10x(folder, counts=COUNTS, genes=GENES, cells=CELLS, gz=True, features="features.tsv"):
    folder.mkdir(parents=True, exist_ok=True)
    sio.mmwrite(str(folder / "matrix.mtx"), sparse.coo_matrix(counts))
    rows = "".join(f"{g}\tSYM{g[-2:]}\tGene Expression\n" for g in genes)
    text = {features: rows, "barcodes.tsv": "".join(f"{c}\n" for c in cells)}
    for name, body in text.items():
        (folder / name).write_text(body)
    if gz:
        for name in ("matrix.mtx", features, "barcodes.tsv"):
            (folder / f"{name}.gz").write_bytes(gzip.compress((folder / name).read_bytes()))
            (folder / name).unlink()
    return folder


def write_h5ad(path, counts=COUNTS, genes=GENES, cells=CELLS, layer=False):
    import anndata

    x = sparse.csr_matrix(counts.T.astype(np.float32))
    adata = anndata.AnnData(X=x * 0.5 if layer else x, obs=pd.DataFrame({"line": ["A", "B", "A", "B"]}, index=cells),
                            var=pd.DataFrame(index=genes))
    if layer:
        adata.layers["counts"] = x
    adata.write_h5ad(path)
    return path


def test_csv_h5ad_and_10x_of_one_table_read_the_same(tmp_path):
    forms = [load_cells(write_csv(tmp_path / "c.csv"), write_meta(tmp_path / "m.csv")),
             load_cells(write_h5ad(tmp_path / "c.h5ad")), load_cells(write_h5ad(tmp_path / "l.h5ad", layer=True)),
             load_cells(write_10x(tmp_path / "tenx")), load_cells(write_10x(tmp_path / "v2", gz=False,
                                                                             features="genes.tsv"))]
    for cells in forms:
        assert cells.genes.tolist() == GENES and cells.cells.tolist() == CELLS
        assert isinstance(cells.x, sparse.csr_matrix) and cells.x.dtype == np.float32
        assert np.array_equal(cells.x.toarray(), COUNTS.T), cells.source
    assert forms[0].obs["line"].tolist() == forms[1].obs["line"].tolist() == ["A", "B", "A", "B"]


def test_plates_are_joined_on_their_genes_and_repeated_wells_renamed(tmp_path):
    p1 = write_csv(tmp_path / "plate1.count.csv", COUNTS[:4], GENES[:4])
    p2 = write_csv(tmp_path / "plate2.count.csv.gz", COUNTS[1:], GENES[1:])
    m1, m2 = write_meta(tmp_path / "m1.csv"), write_meta(tmp_path / "m2.csv", labels="BBAA")
    cells = load_cells([p1, p2], [m1, m2])
    assert cells.genes.tolist() == GENES and len(cells) == 8
    assert cells.cells[0] == "plate1/c1" and cells.cells[4] == "plate2/c1"
    dense = cells.x.toarray()
    assert np.array_equal(dense[:4, 4], [0, 0, 0, 0])  # plate 1 lacks ENSG05: 0 there
    assert np.array_equal(dense[4:, 0], [0, 0, 0, 0]) and np.array_equal(dense[4:, 1:], COUNTS[1:].T)
    assert cells.obs["line"].tolist() == list("ABAB") + list("BBAA")
    with pytest.raises(DataError, match="appears in two tables"):  # one metadata table cannot tell them apart
        load_cells([p1, p2], m1)


def _bad(tmp_path, case):
    if case == "negative":
        counts = COUNTS.copy()
        counts[2, 1] = -1
        return (write_csv(tmp_path / "c.csv", counts), write_meta(tmp_path / "m.csv")), "negative count"
    if case == "fractional":
        return (write_csv(tmp_path / "c.csv", COUNTS + 0.5), write_meta(tmp_path / "m.csv")), "not a whole count"
    if case == "cell without metadata":
        return (write_csv(tmp_path / "c.csv"), write_meta(tmp_path / "m.csv", CELLS[:3])), "has no row for 1 cell"
    if case == "metadata without cell":
        return (write_csv(tmp_path / "c.csv"), write_meta(tmp_path / "m.csv", [*CELLS, "c9"], "ABABA")), \
            "not in the counts, e.g. 'c9'"
    if case == "duplicate gene":
        return (write_csv(tmp_path / "c.csv", genes=[*GENES[:4], "ENSG01"]), None), "gene 'ENSG01' appears twice"
    if case == "duplicate cell":
        return (write_10x(tmp_path / "x", cells=["c1", "c2", "c1", "c4"]), None), "cell 'c1' appears twice"
    if case == "not h5ad":
        (tmp_path / "c.h5ad").write_text("cell,gene\n")
        return (tmp_path / "c.h5ad", None), "not an .h5ad file"
    if case == "10x missing barcodes":
        folder = write_10x(tmp_path / "x")
        (folder / "barcodes.tsv.gz").unlink()
        return (folder, None), "needs barcodes.tsv"
    if case == "10x wrong shape":
        folder = write_10x(tmp_path / "x", gz=False)
        (folder / "barcodes.tsv").write_text("c1\nc2\n")
        return (folder, None), "but features.tsv lists 5 genes and barcodes.tsv 2 cells"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["negative", "fractional", "cell without metadata", "metadata without cell",
                                  "duplicate gene", "duplicate cell", "not h5ad", "10x missing barcodes",
                                  "10x wrong shape"])
def test_bad_single_cell_input_is_one_error_naming_the_file(tmp_path, case):
    (counts, meta), fragment = _bad(tmp_path, case)
    with pytest.raises(DataError) as info:
        load_cells(counts, meta)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_normalised_values_are_accepted_when_declared(tmp_path):
    cells = load_cells(write_csv(tmp_path / "c.csv", COUNTS * 0.25), normalised=True)
    assert np.allclose(cells.x.toarray(), COUNTS.T * 0.25)


def test_the_last_cells_read_are_given_again_until_a_file_changes(tmp_path, monkeypatch):
    """A k-fold run reads its tables once per fold: the second read comes from memory, as a copy
    that the caller may change, and a file rewritten in place (same size) is read again."""
    from biodl.data import cells as cells_module

    counts, meta = write_csv(tmp_path / "c.csv"), write_meta(tmp_path / "m.csv")
    first = load_cells(counts, meta)
    calls = []
    real = cells_module._load_cells
    monkeypatch.setattr(cells_module, "_load_cells", lambda *a: calls.append(a) or real(*a))
    second = load_cells(counts, meta)
    assert calls == [] and np.array_equal(second.x.toarray(), first.x.toarray())
    second.x.data[:] = 0
    second.obs["line"] = "Z"
    third = load_cells(counts, meta)
    assert calls == [] and np.array_equal(third.x.toarray(), COUNTS.T) and third.obs["line"].tolist()[0] == "A"
    changed = COUNTS.copy()
    changed[0, 1] = 4  # 3 -> 4: same size on disk
    before = counts.stat().st_size
    write_csv(counts, changed)
    assert counts.stat().st_size == before
    assert load_cells(counts, meta).x.toarray()[1, 0] == 4 and len(calls) == 1
    assert load_cells(counts).obs.columns.tolist() == [] and len(calls) == 2  # without the metadata: read again
    monkeypatch.setattr(cells_module, "_KEEP_BYTES", 8)  # counts larger than that are not kept
    load_cells(counts, meta)
    load_cells(counts, meta)
    assert len(calls) == 4

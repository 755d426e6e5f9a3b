"""Single-cell preprocessing: normalisation by hand, the dispersion-based gene choice, fitting
on training cells only, alignment of other gene sets, and the saved state."""

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from biodl.data.cells import CellCounts
from biodl.errors import DataError
from biodl.omics.cells import CellPreprocess, normalise, quality, seurat_hvg


def cells_of(counts, genes=None, ids=None):
    counts = np.asarray(counts, np.float32)
    genes = np.asarray(genes if genes is not None else [f"g{i}" for i in range(counts.shape[1])])
    ids = ids if ids is not None else [f"c{i}" for i in range(len(counts))]
    return CellCounts(sparse.csr_matrix(counts), genes, pd.DataFrame(index=pd.Index(ids)), "test")


def test_normalise_and_log1p_on_a_hand_worked_table():
    x = sparse.csr_matrix(np.array([[1, 3, 0], [2, 2, 4], [0, 0, 0]], np.float32))
    out = normalise(x, target_sum=100).toarray()
    # cell 1: total 4 -> 25, 75; cell 2: total 8 -> 25, 25, 50; cell 3: empty stays 0
    expect = np.log1p(np.array([[25, 75, 0], [25, 25, 50], [0, 0, 0]]))
    assert np.allclose(out, expect, atol=1e-5)


def test_quality_counts_detected_genes_and_counts():
    cells = cells_of([[1, 0, 2, 0], [5, 5, 5, 5], [0, 0, 0, 1]])
    assert quality(cells, min_genes=2).tolist() == [True, True, False]
    assert quality(cells, min_genes=1, min_counts=4).tolist() == [False, True, False]


def _population(rng, n=120, genes=400, variable=(3, 17, 41)):
    """Poisson cells, every gene of mean 2, but a few genes off in half the cells and at 4 in the
    other half (the same mean, so in the same bin: Seurat's dispersion is compared within bins)."""
    lam = np.full((n, genes), 2.0)
    for g in variable:
        lam[: n // 2, g] = 0.0
        lam[n // 2:, g] = 4.0
    return rng.poisson(lam).astype(np.float32)


def test_the_genes_that_vary_between_cells_are_chosen():
    rng = np.random.default_rng(0)
    x = sparse.csr_matrix(_population(rng))
    chosen = seurat_hvg(normalise(x), n_top=3)
    assert chosen.tolist() == [3, 17, 41]


def test_the_gene_choice_sees_training_cells_only():
    rng = np.random.default_rng(1)
    train = _population(rng)
    test_a = rng.poisson(2.0, (30, 400)).astype(np.float32)
    test_b = test_a.copy()
    test_b[:, 50] = rng.poisson(40.0, 30)  # a gene wildly variable in test cells only
    fits = []
    for test in (test_a, test_b):
        data = cells_of(np.vstack([train, test]))
        fits.append(CellPreprocess(n_top_genes=5).fit(data.subset(np.arange(len(train)))))
    assert fits[0].genes.tolist() == fits[1].genes.tolist() and "g50" not in fits[0].genes
    assert np.array_equal(fits[0].mean, fits[1].mean)


def test_other_gene_sets_are_aligned_by_id():
    rng = np.random.default_rng(2)
    train = cells_of(_population(rng))
    pre = CellPreprocess(n_top_genes=10, clip=None).fit(train)
    same = pre.transform(train)
    order = rng.permutation(400)
    shuffled = cells_of(train.x.toarray()[:, order], train.genes[order])
    assert np.allclose(pre.transform(shuffled), same, atol=1e-5)  # the gene order of new data does not matter
    extra = cells_of(np.hstack([train.x.toarray(), rng.poisson(1.0, (120, 4))]), [*train.genes, *"wxyz"])
    assert pre.transform(extra).shape == same.shape
    drop = pre.genes[0]
    keep = np.flatnonzero(train.genes != drop)
    fewer = cells_of(train.x.toarray()[:, keep], train.genes[keep])
    with pytest.warns(UserWarning, match=r"90.0% of the model's 10 genes are present"):
        z = pre.transform(fewer)
    assert np.allclose(z[:, 0], -pre.mean[0] / pre.std[0])  # a missing gene counts 0
    few = cells_of(train.x.toarray()[:, :3], train.genes[:3])
    with pytest.raises(DataError, match="fewer than 50%"):
        pre.transform(few)


def test_scaling_pca_and_the_saved_state_round_trip():
    rng = np.random.default_rng(3)
    train = cells_of(_population(rng))
    pre = CellPreprocess(n_top_genes=8, n_pcs=3).fit(train)
    z = pre.transform(train)
    assert z.shape == (120, 3) and pre.n_features == 3
    assert np.allclose(z.mean(axis=0), 0, atol=1e-4)  # principal components of centred training cells
    meta, arrays = pre.state()
    back = CellPreprocess.from_state(meta, arrays)
    assert np.array_equal(back.transform(train), z) and back.counts == pre.counts
    arrays["std"] = arrays["std"][:-1]
    with pytest.raises(DataError, match="does not fit its 8 genes"):
        CellPreprocess.from_state(meta, arrays, "x.safetensors")

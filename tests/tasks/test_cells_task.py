"""task: cells on the embedded CellBench plates in a reduced setting: a plate held out, genes
chosen on training cells only, prediction and evaluation on other forms and gene sets, leave one
plate out, and bad input."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from biodl.data.cells import load_cells
from biodl.datasets import embedded_path
from biodl.omics.cells import CellPreprocess
from tests.conftest import assert_one_line_error, main_ok
from tests.data.test_cells import write_10x, write_h5ad  # noqa: F401 (write_h5ad used below)

QUICK = ["--set", "trainer.epochs=4", "--set", "trainer.progress=false", "--set", "n_boot=100",
         "--set", "data.preprocess.n_top_genes=500"]


def _config(tmp_path, **data):
    cfg = {"name": "cells", "task": "cells", "data": {"dataset": "cellbench", **data}}
    (tmp_path / "cells.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "cells.yaml"


@pytest.fixture(scope="module")
def plates():
    root = embedded_path("cellbench")
    return load_cells(sorted(root.glob("*.count.csv.gz")), sorted(root.glob("*.metadata.csv.gz")))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cells")
    main_ok("train", "--config", _config(tmp), "--out", tmp / "run", *QUICK)
    return tmp / "run"


def test_a_held_out_plate_is_told_apart_and_the_genes_come_from_training_cells(run, plates):
    m = json.loads((run / "metrics.json").read_text())
    assert m["test/median_f1"] >= 0.95 and m["test/ci_clusters"] == 1  # one plate: CIs resample its cells
    pred = pd.read_csv(run / "test_predictions.csv", keep_default_na=False)
    assert pred["patient"].nunique() == 1  # the whole test set is one plate
    plate = pred["patient"].iloc[0]
    assert len(pred) == int(((plates.obs["batch"] == plate) & (plates.obs["demuxlet_cls"] == "SNG")).sum())
    manifest = json.loads((run / "manifest.json").read_text())
    train = manifest["groups"]["train"]
    assert plate not in train and manifest["counts"]["cells_outside_only"] == 338  # the doublets
    steps = pd.read_csv(run / "cells.csv").set_index("step")["n"]
    assert steps["cells read"] == 909 and steps["cells trained and tested on"] == 571
    assert steps["highly variable genes the network reads"] == 500
    pre = json.loads((run / "preprocess.json").read_text())
    sng = plates.obs["demuxlet_cls"].to_numpy() == "SNG"
    rows = np.flatnonzero(sng & np.isin(plates.obs["batch"].to_numpy(), train))
    val = set(pd.read_csv(run / "val_predictions.csv", keep_default_na=False)["source"])
    rows = np.asarray([r for r in rows if plates.cells[r] not in val])
    refit = CellPreprocess(n_top_genes=500).fit(plates.subset(rows))
    assert pre["genes"] == refit.genes.tolist() and len(pre["panel"]) == plates.x.shape[1]


def test_predict_reads_other_forms_and_gene_orders_by_gene_id(run, plates, tmp_path, cli):
    first = plates.subset(np.arange(12))
    order = np.random.default_rng(0).permutation(len(first.genes))
    counts = first.x.toarray().T[order]  # genes x cells, genes shuffled
    write_10x(tmp_path / "tenx", counts.astype(int), first.genes[order].tolist(), first.cells.tolist())
    r = cli("predict", run, tmp_path / "tenx", "--out", tmp_path / "p.csv")
    assert r.code == 0, r.err
    table = pd.read_csv(tmp_path / "p.csv")
    import biodl

    direct = biodl.load(run).predict(first)
    assert table["cell"].tolist() == first.cells.tolist()
    assert np.allclose(table.filter(like="p_").to_numpy(), direct.filter(like="p_").to_numpy(), atol=1e-5)
    pre = json.loads((run / "preprocess.json").read_text())
    keep = ~np.isin(first.genes, pre["genes"][:100])  # drop 100 of the model's genes: a warning, still predicted
    write_10x(tmp_path / "fewer", first.x.toarray().T[keep].astype(int), first.genes[keep].tolist(),
              first.cells.tolist())
    r = cli("predict", run, tmp_path / "fewer", "--out", tmp_path / "q.csv")
    assert r.code == 0 and "80.0% of the model's 500 genes are present" in r.err
    few = np.isin(first.genes, pre["genes"][:200])
    write_10x(tmp_path / "few", first.x.toarray().T[few].astype(int), first.genes[few].tolist(), first.cells.tolist())
    assert_one_line_error(cli("predict", run, tmp_path / "few", "--out", tmp_path / "x.csv"), "40% of the model's")
    assert not (tmp_path / "x.csv").exists()


def test_evaluate_on_other_cells_scores_the_classes_present_and_counts_unknown_ones(run, plates, tmp_path, cli):
    import anndata
    from scipy import sparse

    obs = plates.obs
    rows = np.flatnonzero((obs["demuxlet_cls"] == "SNG").to_numpy() & obs["cell_line_demuxlet"].isin(
        ["A549", "H838"]).to_numpy())[:60]
    sub = plates.subset(rows)
    labels = sub.obs["cell_line_demuxlet"].to_numpy().copy()
    labels[:5] = "PC9"  # a line the run never saw
    adata = anndata.AnnData(X=sparse.csr_matrix(sub.x), obs=pd.DataFrame({"cell_line_demuxlet": labels},
                                                                         index=sub.cells),
                            var=pd.DataFrame(index=sub.genes))
    adata.write_h5ad(tmp_path / "other.h5ad")
    r = cli("evaluate", run, "--data", tmp_path / "other.h5ad")
    assert r.code == 0, r.err
    m = json.loads((run / "evaluation" / "other.json").read_text())
    assert m["other/n"] == 55 and m["other/unknown_class_cells"] == 5
    assert m["other/median_f1"] >= 0.95  # over A549 and H838, the classes present
    assert 0 <= m["other/unknown_class_unassigned"] <= 1


def test_leave_one_plate_out(tmp_path, plates):
    main_ok("train", "--config", _config(tmp_path, split="kfold", folds=3), "--out", tmp_path / "k", *QUICK,
            "--set", "trainer.epochs=3")
    folds = pd.read_csv(tmp_path / "k" / "folds.csv")
    assert folds["test groups"].tolist() == [1, 1, 1] and folds["test cells"].sum() == 571
    pred = pd.read_csv(tmp_path / "k" / "test_predictions.csv", keep_default_na=False)
    assert sorted(pred.groupby("fold")["patient"].first()) == sorted(plates.obs["batch"].unique())
    m = json.loads((tmp_path / "k" / "metrics.json").read_text())
    assert m["test/median_f1"] >= 0.95 and m["test/ci_clusters"] == 3


@pytest.mark.parametrize(("sets", "fragment"), [
    (["data.label=line"], "no label column 'line'"),
    (["data.only={demuxlet_cls: [SNG]}", "data.split=kfold", "data.folds=4"], "3 groups are fewer than the 4 folds"),
    (["data.only={cell_line_demuxlet: [A549]}"], "every cell is of one class ('A549')")])
def test_bad_settings_are_one_line_errors_and_nothing_is_written(tmp_path, cli, sets, fragment):
    args = [a for s in sets for a in ("--set", s)]
    assert_one_line_error(cli("train", "--config", _config(tmp_path), "--out", tmp_path / "o", *QUICK, *args),
                          fragment)
    assert not (tmp_path / "o").exists()


def test_a_class_with_fewer_cells_than_folds(tmp_path, cli):
    counts = np.random.default_rng(0).poisson(3, (300, 10))  # genes x cells
    genes = [f"g{i}" for i in range(300)]
    cells = [f"c{i}" for i in range(10)]
    pd.DataFrame(counts, index=genes, columns=cells).to_csv(tmp_path / "c.csv")
    pd.DataFrame({"cell": cells, "line": ["A"] * 8 + ["B"] * 2}).to_csv(tmp_path / "m.csv", index=False)
    data = {"path": [str(tmp_path / "c.csv")], "metadata": [str(tmp_path / "m.csv")], "label": "line",
            "split": "kfold", "folds": 3, "preprocess": {"min_genes": 10}}
    cfg = {"name": "x", "task": "cells", "data": data}
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(cfg))
    assert_one_line_error(cli("train", "--config", tmp_path / "x.yaml", "--out", tmp_path / "o"),
                          "a class has 2 rows, fewer than the 3 folds")
    assert not (tmp_path / "o").exists()


def test_evaluate_a_counts_csv_with_its_metadata_and_export(run, plates, tmp_path, cli):
    rows = np.flatnonzero((plates.obs["demuxlet_cls"] == "SNG").to_numpy())[:40]
    sub = plates.subset(rows)
    pd.DataFrame(sub.x.toarray().T.astype(int), index=sub.genes, columns=sub.cells).to_csv(tmp_path / "c.csv")
    sub.obs[["cell_line_demuxlet"]].rename_axis("cell").to_csv(tmp_path / "m.csv")
    r = cli("evaluate", run, "--data", tmp_path / "c.csv", "--metadata", tmp_path / "m.csv")
    assert r.code == 0, r.err
    assert json.loads((run / "evaluation" / "c.json").read_text())["c/n"] == 40
    assert_one_line_error(cli("evaluate", run, "--metadata", tmp_path / "m.csv"), "goes with --data")
    pytest.importorskip("onnxruntime")
    r = cli("export", run, "--out", tmp_path / "m.onnx")
    assert r.code == 0, r.err
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["inputs"][0]["shape"] == ["batch", plates.x.shape[1]] and meta["parity"]["classes_identical"]

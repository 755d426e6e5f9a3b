"""The cell-lines study (the tutorial's run, 5 epochs): every method out of plate side by side, the
leave-one-line-out rejection table, the map, and its flags for your own data."""

import json

import pandas as pd
import pytest

from tests.conftest import assert_one_line_error


@pytest.fixture(scope="module")
def study(tutorial):
    """The run of the cell-lines tutorial (5 epochs; executed once a session)."""
    return tutorial("08-cell-lines.ipynb").run("cells")


def test_every_method_out_of_plate_side_by_side(study):
    table = pd.read_csv(study / "methods.csv", keep_default_na=False)
    assert table["protocol"].value_counts().to_dict() == {"leave one plate out": 5, "5-fold CV (Abdelaal's)": 5}
    assert table["method"].iloc[0].startswith("MLP") and "linear SVM" in table["method"].tolist()
    assert (table["median F1"] >= 0.9).all() and table["unassigned"].iloc[0].endswith("%")
    m = json.loads((study / "metrics.json").read_text())
    assert m["test/median_f1"] == pytest.approx(table["median F1"].iloc[0], abs=1e-3)
    cv = json.loads((study / "cv5" / "metrics.json").read_text())  # plates mixed: 5 folds of every plate's cells
    assert cv["test/ci_clusters"] == 3 and len(list((study / "cv5" / "folds").iterdir())) == 5
    genes = pd.read_csv(study / "markers.csv", keep_default_na=False)
    assert len(genes) == 5 and genes["MLP (integrated gradients)"].str.startswith("ENSG").all()


def test_a_held_out_line_comes_out_unassigned(study):
    table = pd.read_csv(study / "rejection.csv", keep_default_na=False).set_index("rule")
    assert set(table.index) == {"max_probability", "knn", "mahalanobis", "SVM decision value", "conformal set"}
    novel = table["held-out line"].str.split("%").str[0].astype(float)
    known = table["known"].str.split("%").str[0].astype(float)
    assert (novel > 80).all() and (known < 20).all()  # a line never seen is left unassigned, the known ones kept
    assert len(list((study / "leave_one_line_out").iterdir())) == 5
    assert (study / "cells_map.png").stat().st_size > 20_000
    html = (study / "report.html").read_text()
    for title in ("Identity", "Cells no known line fits", "Map"):
        assert title in html


def test_your_own_cells_need_their_label_column(tmp_path, cli):
    from tests.data.test_cells import write_csv, write_meta

    write_csv(tmp_path / "c.csv")
    write_meta(tmp_path / "m.csv")
    assert_one_line_error(cli("run", "cell-lines", "--data", tmp_path / "c.csv", "--metadata", tmp_path / "m.csv",
                              "--label", "celltype", "--out", tmp_path / "o"), "no label column 'celltype'")
    assert not (tmp_path / "o").exists()


def test_the_study_on_your_own_cells(tmp_path, cli):
    """Counts CSV + metadata with columns of one's own naming: no doublets, no preset selection."""
    import numpy as np

    from biodl.data.cells import load_cells
    from biodl.datasets import embedded_path

    root = embedded_path("cellbench")
    cells = load_cells(sorted(root.glob("*.count.csv.gz")), sorted(root.glob("*.metadata.csv.gz")))
    obs = cells.obs
    rows = np.concatenate([np.flatnonzero(((obs["batch"] == b) & (obs["demuxlet_cls"] == "SNG")).to_numpy())[:60]
                           for b in sorted(obs["batch"].unique())])
    sub = cells.subset(rows)
    ids = [c.replace("/", "_") for c in sub.cells]
    pd.DataFrame(sub.x.toarray().T.astype(int), index=sub.genes, columns=ids).to_csv(tmp_path / "counts.csv.gz")
    pd.DataFrame({"cell": ids, "celltype": sub.obs["cell_line_demuxlet"].to_numpy(),
                  "donor": sub.obs["batch"].to_numpy()}).to_csv(tmp_path / "cells.csv", index=False)
    r = cli("run", "cell-lines", "--data", tmp_path / "counts.csv.gz", "--metadata", tmp_path / "cells.csv",
            "--label", "celltype", "--group", "donor", "--out", tmp_path / "o", "--set", "trainer.epochs=2",
            "--set", "trainer.progress=false", "--set", "n_boot=100", "--set", "data.preprocess.n_top_genes=300")
    assert r.code == 0, r.err
    rejection = pd.read_csv(tmp_path / "o" / "rejection.csv", keep_default_na=False)
    assert list(rejection.columns) == ["rule", "known", "held-out line"]  # no doublets in these cells
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["test/ci_clusters"] == 3

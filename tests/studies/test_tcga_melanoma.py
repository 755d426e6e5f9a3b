"""The TCGA melanoma study (a reduced run on the embedded data) and one-line errors for bad tables."""

import json

import numpy as np
import pandas as pd
import pytest

from biodl.datasets import embedded_path
from tests.conftest import assert_one_line_error, main_ok

FAST = ["--set", "folds=3", "--set", "repeats=1", "--set", "mlp_epochs=5", "--set", "cox_epochs=5",
        "--set", "cluster_genes=300", "--set", "model_genes=40", "--set", "survival_genes=20", "--set", "n_boot=200"]
HERE = embedded_path("tcga-skcm")


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tcga") / "run"
    main_ok("run", "tcga-melanoma", "--out", out, *FAST)
    return out


def test_outputs_and_numbers(study_run):
    names = {p.name for p in study_run.iterdir()}
    for png in ("library_sizes.png", "distributions.png", "heatmap.png", "pca_subclass.png", "km_subclass.png",
                "km_cluster.png"):
        assert png in names, png
    for stem in ("library_sizes", "contingency_hierarchical", "survival_subclass", "cox_subclass", "subclass_models",
                 "survival_models", "subclass_genes", "survival_genes"):
        assert {f"{stem}.csv", f"{stem}.md"} <= names, stem
    m = json.loads((study_run / "metrics.json").read_text())
    assert m["samples"] == 468 and m["genes"] == 2454 and m["genes_without_length"] == 2454 - 2267
    assert 0 < m["ari_hierarchical"] < 1 and all(isinstance(v, (int, float)) for v in m.values())
    sizes = pd.read_csv(study_run / "library_sizes.csv")
    counts = pd.read_csv(HERE / "skcm_counts.csv.gz", index_col=0).round()[sizes["sample"]]
    assert sizes["library_size"].tolist() == counts.sum().tolist()
    # DESeq2's estimateSizeFactorsForMatrix, written out once more: exp(median(log count - log geometric mean))
    x = counts.to_numpy()[(counts.to_numpy() > 0).all(axis=1)]
    log_ratios = np.log(x) - np.log(x).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(sizes["deseq2_size_factor"], np.exp(np.median(log_ratios, axis=0)), rtol=1e-9)
    # survival by subclass: lifelines' log-rank test and medians on the same samples
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    s = pd.read_csv(HERE / "skcm_samples.csv").set_index("sample_id")
    kept = pd.read_csv(study_run / "library_sizes.csv")["sample"]
    s = s.loc[kept]
    s = s[s["os_time_years"].notna() & s["RNASEQ.CLUSTER_CONSENHIER"].notna()]
    test = multivariate_logrank_test(s["os_time_years"], s["RNASEQ.CLUSTER_CONSENHIER"], s["os_event"])
    assert m["logrank_p_subclass"] == pytest.approx(test.p_value, rel=1e-9)
    immune = s[s["RNASEQ.CLUSTER_CONSENHIER"] == "immune"]
    km = KaplanMeierFitter().fit(immune["os_time_years"], immune["os_event"])
    assert m["median_years_subclass/immune"] == pytest.approx(km.median_survival_time_)
    table = pd.read_csv(study_run / "survival_subclass.csv")
    assert table["n"].sum() == len(s) and table["deaths"].sum() == int(s["os_event"].sum())
    # the models: one row per fold, scores in range, the CI around the mean
    folds = pd.read_csv(study_run / "subclass_folds.csv")
    assert len(folds) == 3 and folds.filter(like="_roc_auc").to_numpy().min() > 0.5
    assert m["subclass/mlp/macro_f1_low"] <= m["subclass/mlp/macro_f1_mean"] <= m["subclass/mlp/macro_f1_high"]
    assert 0.4 < m["survival/penalised_cox/c_index_mean"] < 0.9
    manifest = json.loads((study_run / "manifest.json").read_text())
    assert manifest["left_out"] == {"rounded genes": 1, "normal tissue": 1, "second sample of a patient": 3,
                                    "no survival time": 13}
    assert "Clusters and the TCGA 2015 subclasses" in (study_run / "report.html").read_text()


def test_bad_tables_are_one_line_and_write_nothing(tmp_path, cli):
    counts = pd.read_csv(HERE / "skcm_counts.csv.gz", index_col=0).iloc[:50, :40]
    samples = pd.read_csv(HERE / "skcm_samples.csv").set_index("sample_id").loc[counts.columns]
    samples = samples.rename_axis("sample_id").reset_index()
    counts.round().to_csv(tmp_path / "counts.csv")
    samples.to_csv(tmp_path / "samples.csv", index=False)
    args = ["run", "tcga-melanoma", "--counts", tmp_path / "counts.csv", "--samples", tmp_path / "samples.csv"]
    bad = counts.round().copy()
    bad.iat[3, 2] = -4
    bad.to_csv(tmp_path / "neg.csv")
    assert_one_line_error(cli(*args[:2], "--counts", tmp_path / "neg.csv", "--samples", tmp_path / "samples.csv",
                              "--out", tmp_path / "o1"), "neg.csv", f"gene {counts.index[3]!r}", "negative count")
    samples.drop(index=5).to_csv(tmp_path / "fewer.csv", index=False)
    assert_one_line_error(cli(*args[:4], "--samples", tmp_path / "fewer.csv", "--out", tmp_path / "o2"),
                          "counts.csv", f"sample {samples['sample_id'].iat[5]!r} is not in fewer.csv")
    s2 = samples.copy()
    s2.loc[7, "os_event"] = 3
    s2.to_csv(tmp_path / "event.csv", index=False)
    assert_one_line_error(cli(*args[:4], "--samples", tmp_path / "event.csv", "--out", tmp_path / "o3"),
                          "event.csv", "column 'os_event'", "not 0 or 1")
    assert_one_line_error(cli(*args, "--out", tmp_path / "o4", "--set", "folds=50"), "samples.csv",
                          "fewer than the 50 folds")
    assert not any((tmp_path / f"o{k}").exists() for k in range(1, 5))

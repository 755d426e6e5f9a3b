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


@pytest.fixture
def small(tmp_path):
    """A 60-gene, 40-sample slice of the embedded tables, as files to damage."""
    counts = pd.read_csv(HERE / "skcm_counts.csv.gz", index_col=0).iloc[:60, :40].round()
    samples = pd.read_csv(HERE / "skcm_samples.csv").set_index("sample_id").loc[counts.columns]
    return counts, samples.rename_axis("sample_id").reset_index()


def _edit(kind, counts, samples, tmp_path):
    """(counts, samples, extra --set overrides, the fault expected) for one kind of damage."""
    c, s, sets = counts.copy(), samples.copy(), []
    if kind == "inf count":
        c = c.astype(object)
        c.iat[4, 3] = "inf"
        return c, s, sets, "is not a finite count"
    if kind == "overflowing counts":
        c.iloc[:, 5] = 1e300
        return c, s, sets, "more reads than any library"
    if kind == "zero library":
        c.iloc[:, 6] = 0
        return c, s, sets, "every count is 0"
    if kind == "all-zero table":
        return c * 0, s, sets, "every count is 0"
    if kind == "single gene":
        return c[c.gt(0).all(axis=1)].iloc[:1], s, sets, "1 genes: the clustering needs at least"
    if kind == "no events":
        s["os_event"] = 0
        return c, s, sets, "0 events"
    if kind == "one subclass":
        s["RNASEQ.CLUSTER_CONSENHIER"] = "immune"
        return c, s, sets, "1 class(es)"
    if kind == "more clusters than fit":
        return c.iloc[:, :20], s.iloc[:20], ["--set", "clusters=12"], "20 samples are too few for 12 clusters"
    if kind == "subclass typo":
        return c, s, ["--set", "subclass=RNASEQ.CLUSTR"], "no column 'RNASEQ.CLUSTR'"
    if kind == "empty patient":
        s.loc[3, "patient"] = ""
        return c, s, sets, "empty 'patient'"
    lengths = tmp_path / "lengths.csv"
    if kind == "gene lengths missing":
        return c, s, ["--set", f"gene_lengths={tmp_path / 'nope.csv'}"], "nope.csv"
    if kind == "gene lengths without id column":
        lengths.write_text("Gene,GeneLength\nA,100\n")
    elif kind == "gene lengths not numbers":
        lengths.write_text("GeneSymbol,GeneLength\nA,100\nB,-5\n")
    return c, s, ["--set", f"gene_lengths={lengths}"], "lengths.csv"


@pytest.mark.parametrize("kind", ["inf count", "overflowing counts", "zero library", "all-zero table", "single gene",
                                  "no events", "one subclass", "more clusters than fit", "subclass typo",
                                  "empty patient", "gene lengths missing", "gene lengths without id column",
                                  "gene lengths not numbers"])
def test_every_input_fault_is_found_before_the_run_folder_exists(small, tmp_path, cli, kind):
    counts, samples, sets, fault = _edit(kind, *small, tmp_path)
    counts.to_csv(tmp_path / "counts.csv")
    samples.to_csv(tmp_path / "samples.csv", index=False)
    r = cli("run", "tcga-melanoma", "--counts", tmp_path / "counts.csv", "--samples", tmp_path / "samples.csv",
            "--out", tmp_path / "run", *FAST, *sets)
    assert_one_line_error(r, fault)
    assert not (tmp_path / "run").exists()


def test_the_documented_subclass_skip_runs_and_tables_hold_no_inf_or_nan(small, tmp_path, cli, study_run):
    counts, samples = small
    counts.to_csv(tmp_path / "counts.csv")
    samples.to_csv(tmp_path / "samples.csv", index=False)
    r = cli("run", "tcga-melanoma", "--counts", tmp_path / "counts.csv", "--samples", tmp_path / "samples.csv",
            "--out", tmp_path / "run", *FAST, "--set", "subclass=", "--set", "cluster_genes=30",
            "--set", "clusters=2")
    assert r.code == 0, r.err
    assert not list((tmp_path / "run").glob("*subclass*")) and (tmp_path / "run" / "km_cluster.png").exists()
    for run in (tmp_path / "run", study_run):
        for table in [*run.glob("*.csv"), *run.glob("*.md")]:
            cells = {c.strip() for line in table.read_text().splitlines() for c in line.replace("|", ",").split(",")}
            assert not cells & {"inf", "-inf", "nan", "NaN", "Infinity"}, table
    medians = pd.read_csv(study_run / "survival_subclass.csv")["median_years"].astype(str)
    assert medians.str.fullmatch(r"[\d.]+|not reached").all()


def test_a_gzipped_counts_table_that_inflates_like_a_bomb_is_refused(tmp_path, monkeypatch):
    import gzip

    from biodl import io
    from biodl.data.expression import read_counts
    from biodl.errors import DataError

    monkeypatch.setattr(io, "INFLATE_FLOOR", 1 << 20)  # the rule at a test's scale
    with gzip.open(tmp_path / "bomb.csv.gz", "wt") as f:
        f.write("gene,s1\n" + "g,0\n" * 2_000_000)
    with pytest.raises(DataError, match="bomb.csv.gz: inflates more than 100-fold"):
        read_counts(tmp_path / "bomb.csv.gz")
    assert read_counts(HERE / "skcm_counts.csv.gz").shape[1] > 100  # the embedded table is read as before

"""RNA-seq normalisation on hand-worked tables, and bad counts tables."""

import gzip

import numpy as np
import pandas as pd
import pytest

from biodl.datasets import embedded_path
from biodl.data.expression import cpm, log_cpm, quantile_normalize, read_counts, rpkm, size_factors, tpm
from biodl.errors import DataError

#: 3 genes x 4 samples; libraries of 100, 200, 200 and 100 reads
COUNTS = pd.DataFrame({"s1": [10, 30, 60], "s2": [0, 100, 100], "s3": [20, 20, 160], "s4": [5, 15, 80]},
                      index=["g1", "g2", "g3"], dtype=float)
LENGTHS = pd.Series({"g1": 1000, "g2": 2000, "g3": 500})


def test_cpm_and_rpkm_by_hand():
    expected_cpm = pd.DataFrame({"s1": [1e5, 3e5, 6e5], "s2": [0, 5e5, 5e5], "s3": [1e5, 1e5, 8e5],
                                 "s4": [5e4, 1.5e5, 8e5]}, index=COUNTS.index)
    pd.testing.assert_frame_equal(cpm(COUNTS), expected_cpm)
    np.testing.assert_allclose(log_cpm(COUNTS).to_numpy(), np.log2(expected_cpm.to_numpy() + 1))
    # 1e9 x count / (library x length): s1 g1 = 1e9 x 10 / (100 x 1000) = 1e5, ...
    expected_rpkm = pd.DataFrame({"s1": [1e5, 1.5e5, 1.2e6], "s2": [0, 2.5e5, 1e6], "s3": [1e5, 5e4, 1.6e6],
                                  "s4": [5e4, 7.5e4, 1.6e6]}, index=COUNTS.index)
    got, missing = rpkm(COUNTS, LENGTHS)
    pd.testing.assert_frame_equal(got, expected_rpkm)
    assert missing == []
    # a gene without a length is left out and named; the library still counts its reads
    got, missing = rpkm(COUNTS, LENGTHS.drop("g2"))
    assert missing == ["g2"] and got.loc["g1", "s1"] == pytest.approx(1e5)
    # TPM: reads per kb (s1: 10, 15, 120), rescaled to a million
    t, _ = tpm(COUNTS, LENGTHS)
    assert t["s1"].tolist() == pytest.approx([1e6 * 10 / 145, 1e6 * 15 / 145, 1e6 * 120 / 145])
    np.testing.assert_allclose(t.sum(axis=0), 1e6)


def test_quantile_normalisation_with_ties():
    """The textbook example (Wikipedia, 'Quantile normalization'): sample B has two 4s."""
    x = pd.DataFrame({"A": [5, 2, 3, 4], "B": [4, 1, 4, 2], "C": [3, 4, 6, 8]}, index=list("ijkl"), dtype=float)
    q = quantile_normalize(x)
    # the reference: means of the sorted columns (2, 3, 4.667, 5.667); B's tied 4s share ranks 3 and 4
    expected = pd.DataFrame({"A": [17 / 3, 2, 3, 14 / 3], "B": [31 / 6, 2, 31 / 6, 3], "C": [2, 3, 14 / 3, 17 / 3]},
                            index=list("ijkl"))
    pd.testing.assert_frame_equal(q, expected)
    # without ties every sample ends with exactly the same distribution
    rng = np.random.default_rng(0)
    y = pd.DataFrame(rng.gamma(2.0, 50.0, (200, 6)) * rng.uniform(0.5, 3, 6))
    qy = quantile_normalize(y)
    sorted_cols = np.sort(qy.to_numpy(), axis=0)
    assert np.allclose(sorted_cols, sorted_cols[:, :1])
    assert (qy.rank().to_numpy() == y.rank().to_numpy()).all()  # ranks within a sample are kept


def test_size_factors_are_the_median_of_ratios():
    # g1 has a zero (in s2): only g2 and g3 have geometric means
    gm2, gm3 = (30 * 100 * 20 * 15) ** 0.25, (60 * 100 * 160 * 80) ** 0.25
    ratios = {"s1": (30 / gm2, 60 / gm3), "s2": (100 / gm2, 100 / gm3), "s3": (20 / gm2, 160 / gm3),
              "s4": (15 / gm2, 80 / gm3)}
    expected = pd.Series({s: np.sqrt(a * b) for s, (a, b) in ratios.items()})  # the median of two: their middle
    np.testing.assert_allclose(size_factors(COUNTS).to_numpy(), expected.to_numpy())
    # scaling a sample's counts scales its factor; the factors' geometric mean is 1
    doubled = COUNTS.assign(s4=COUNTS["s4"] * 2)
    assert size_factors(doubled)["s4"] / size_factors(doubled)[["s1", "s2", "s3"]].prod() ** (1 / 3) == \
        pytest.approx(2 * size_factors(COUNTS)["s4"] / size_factors(COUNTS)[["s1", "s2", "s3"]].prod() ** (1 / 3))
    assert np.exp(np.log(size_factors(COUNTS)).mean()) == pytest.approx(1.0)
    with pytest.raises(DataError, match="every gene has a zero"):
        size_factors(COUNTS.assign(s1=0.0))


def test_bad_counts_tables(tmp_path):
    def write(name, text):
        (tmp_path / name).write_text(text)
        return tmp_path / name

    good = write("good.csv", "gene,a,b\ng1,1,2\ng2,3,4\n")
    assert read_counts(good).to_numpy().tolist() == [[1, 2], [3, 4]]
    with gzip.open(tmp_path / "good.csv.gz", "wt") as f:
        f.write("gene,a,b\ng1,1,2\n")
    assert read_counts(tmp_path / "good.csv.gz").shape == (1, 2)
    cases = {"neg.csv": ("gene,a,b\ng1,1,-2\n", "gene 'g1', sample 'b': a negative count"),
             "text.csv": ("gene,a,b\ng1,1,x\n", "gene 'g1', sample 'b': 'x' is not a number"),
             "blank.csv": ("gene,a,b\ng1,1,\n", "gene 'g1', sample 'b': '' is not a number"),
             "dupgene.csv": ("gene,a,b\ng1,1,2\ng1,3,4\n", "gene 'g1' appears twice"),
             "dupsample.csv": ("gene,a,a\ng1,1,2\n", "sample 'a' appears twice"),
             "empty.csv": ("gene\n", "no genes or no samples")}
    for name, (text, fault) in cases.items():
        with pytest.raises(DataError, match=fault) as err:
            read_counts(write(name, text))
        assert name in str(err.value)
    with pytest.raises(DataError, match="no such counts table"):
        read_counts(tmp_path / "missing.csv")


def _cohort_files(tmp_path, counts="gene,s1,s2,s3\ng1,1,2,3\ng2,4.5,5,6\n", samples=None):
    samples = samples or ("sample_id,patient,sample_type,os_time_years,os_event\n"
                          "s1,P1,Primary_Tumor,1.5,1\ns2,P1,Metastatic,1.5,1\ns3,P2,Metastatic,,\n")
    (tmp_path / "counts.csv").write_text(counts)
    (tmp_path / "samples.csv").write_text(samples)
    return tmp_path / "counts.csv", tmp_path / "samples.csv"


def test_cohort_keeps_one_tumour_per_patient(tmp_path):
    from biodl.data.expression import load_cohort

    with pytest.warns(UserWarning, match="1 gene with non-integer counts rounded .g2."):
        c = load_cohort(*_cohort_files(tmp_path))
    assert list(c.counts.columns) == ["s1", "s3"] and c.counts.loc["g2", "s1"] == 4  # 4.5 rounds to even
    assert c.dropped["second sample of a patient"] == ["s2"] and c.dropped["no survival time"] == ["s3"]
    assert c.samples["os_time_years"].tolist()[0] == 1.5 and np.isnan(c.samples["os_time_years"].iat[1])
    with pytest.warns(UserWarning, match="SERPINA3"):  # the one fractional gene of the embedded table
        embedded = load_cohort(embedded_path("tcga-skcm") / "skcm_counts.csv.gz",
                               embedded_path("tcga-skcm") / "skcm_samples.csv")
    assert embedded.counts.shape == (2454, 468) and embedded.samples["patient"].is_unique
    assert embedded.dropped["normal tissue"] == ["GN.A4U8.Solid_Tissue_Normal"]
    assert len(embedded.dropped["no survival time"]) == 13


def test_cohort_bad_input(tmp_path):
    from biodl.data.expression import load_cohort

    head = "sample_id,patient,sample_type,os_time_years,os_event\n"
    cases = {
        "missing sample": ("gene,s1,s2,s4\ng1,1,2,3\n", None, "counts.csv", "sample 's4' is not in samples.csv"),
        "extra sample": ("gene,s1,s2\ng1,1,2\n", None, "samples.csv", "sample 's3' has no column in counts.csv"),
        "negative time": (None, head + "s1,P1,Primary_Tumor,-1,1\ns2,P2,Metastatic,1,0\ns3,P3,Metastatic,2,0\n",
                          "samples.csv", "row 2 (sample 's1'), column 'os_time_years': a negative survival time"),
        "text time": (None, head + "s1,P1,Primary_Tumor,soon,1\ns2,P2,Metastatic,1,0\ns3,P3,Metastatic,2,0\n",
                      "samples.csv", "column 'os_time_years': 'soon' is not a number"),
        "bad event": (None, head + "s1,P1,Primary_Tumor,1,2\ns2,P2,Metastatic,1,0\ns3,P3,Metastatic,2,0\n",
                      "samples.csv", "row 2 (sample 's1'), column 'os_event': '2' is not 0 or 1"),
        "dup sample": (None, head + "s1,P1,Primary_Tumor,1,1\ns1,P2,Metastatic,1,0\ns3,P3,Metastatic,2,0\n",
                       "samples.csv", "row 3 (sample 's1'): the sample id appears twice"),
        "no time column": (None, "sample_id,os_event\ns1,1\ns2,0\ns3,1\n", "samples.csv", "no column 'os_time_years'"),
    }
    for name, (counts, samples, where, fault) in cases.items():
        paths = _cohort_files(tmp_path, **{k: v for k, v in (("counts", counts), ("samples", samples)) if v})
        with pytest.raises(DataError, match=fault.replace("(", r"\(").replace(")", r"\)")) as err:
            load_cohort(*paths)
        assert where in str(err.value), name

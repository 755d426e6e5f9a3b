import numpy as np
import pytest
import torch

from biodl.evaluation import bootstrap_cis, f1_optimal_threshold, fov_scores, multiclass_metrics, multiclass_scores


@pytest.mark.parametrize("n_classes", [2, 5])
def test_torchmetrics_and_scikit_learn_versions_agree(n_classes):
    rng = np.random.default_rng(0)
    y = np.arange(200) % n_classes
    logits = rng.normal(size=(200, n_classes)) + 1.5 * np.eye(n_classes)[y]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    tm = {k: float(v) for k, v in multiclass_metrics(n_classes, graded=True)(torch.tensor(prob, dtype=torch.float32),
                                                                             torch.tensor(y)).items()}
    sk = multiclass_scores(y, prob, graded=True)
    for k in ("accuracy", "balanced_accuracy", "mcc", "qwk", "roc_auc"):
        assert tm[k] == pytest.approx(sk[k], abs=1e-4), k


def test_quadratic_kappa_by_hand():
    # predictions one grade off everywhere on grades 0..2: kappa from the definition
    y = np.array([0, 1, 2, 0, 1, 2])
    prob = np.eye(3)[[1, 2, 1, 1, 2, 1]]
    from sklearn.metrics import cohen_kappa_score

    assert multiclass_scores(y, prob, graded=True)["qwk"] == pytest.approx(
        cohen_kappa_score(y, prob.argmax(1), weights="quadratic"))


def test_bootstrap_cis_bracket_the_estimate():
    rng = np.random.default_rng(1)
    y = np.arange(300) % 3
    prob = np.eye(3)[np.where(rng.random(300) < 0.7, y, (y + 1) % 3)] * 0.8 + 0.2 / 3
    cis = bootstrap_cis(y, prob, multiclass_scores, n_boot=300)
    point = multiclass_scores(y, prob)
    for k, (lo, hi) in cis.items():
        assert lo <= point[k] <= hi, k
    assert 0.6 < cis["accuracy"][0] < 0.7 < cis["accuracy"][1] < 0.8


def test_calibration_bins_by_hand_and_against_torchmetrics():
    from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

    from biodl.evaluation import calibration_bins

    # by hand: two bins used; [0.0, 0.1): p = 0.05 twice, one positive; [0.9, 1.0]: 0.95, 1.0, positive both
    bins, ece = calibration_bins(np.array([0, 1, 1, 1]), np.array([0.05, 0.05, 0.95, 1.0]))
    assert [(b["lo"], b["n"]) for b in bins] == [(0.0, 2), (0.9, 2)]
    assert bins[0]["observed"] == 0.5 and bins[1]["confidence"] == pytest.approx(0.975)
    assert ece == pytest.approx(0.5 * abs(0.5 - 0.05) + 0.5 * abs(1 - 0.975))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 0.999)
    ours = calibration_bins(y, p)[1]
    theirs = binary_calibration_error(torch.tensor(p), torch.tensor(y), n_bins=10).item()
    assert ours == pytest.approx(theirs, abs=1e-6) and ours > 0.01
    # two columns: the second is P(class 1)
    assert calibration_bins(y, np.column_stack([1 - p, p]))[1] == pytest.approx(ours)
    y3 = rng.integers(0, 4, 400)
    logits = rng.normal(size=(400, 4)) + 2.0 * np.eye(4)[y3]
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    theirs = multiclass_calibration_error(torch.tensor(prob), torch.tensor(y3), 4, n_bins=10).item()
    assert calibration_bins(y3, prob)[1] == pytest.approx(theirs, abs=1e-6)


def test_binary_prob_scores_match_scikit_learn_and_torchmetrics():
    from sklearn.metrics import average_precision_score, f1_score, matthews_corrcoef, precision_score, roc_auc_score

    from biodl.evaluation import PREDICTIVE_VALUES, binary_metrics, binary_prob_scores

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.35 * y + 0.65 * rng.random(200), 0, 1)
    s = binary_prob_scores(y, p)
    pred = p >= 0.5
    assert s["mcc"] == pytest.approx(matthews_corrcoef(y, pred))
    assert s["f1"] == pytest.approx(f1_score(y, pred))
    assert s["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert s["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert s["precision"] == pytest.approx(precision_score(y, pred))
    assert s["npv"] == pytest.approx(precision_score(1 - y, ~pred))
    tm = {k: float(v) for k, v in binary_metrics()(torch.tensor(p, dtype=torch.float32), torch.tensor(y)).items()}
    assert tm.keys() == s.keys() - set(PREDICTIVE_VALUES)
    for k in tm:
        assert s[k] == pytest.approx(tm[k], abs=1e-5), k
    one = binary_prob_scores(np.ones(5, int), np.full(5, 0.7))  # a bootstrap resample of one class
    assert np.isnan(one["roc_auc"]) and np.isnan(one["specificity"]) and one["sensitivity"] == 1.0


def test_cluster_bootstrap_is_wider_and_matches_the_patient_level_spread():
    """40 patients of 25 identical images each: the images add no information beyond their
    patient, so the cluster CI must match the binomial spread over 40 patients, and the row CI
    (which believes in 1,000 independent images) is about sqrt(25) = 5 times too narrow."""
    from biodl.evaluation import bootstrap_cis

    n_pat, m, p_correct = 40, 25, 0.7
    correct = np.zeros(n_pat, bool)
    correct[: int(n_pat * p_correct)] = True
    y = np.repeat(np.arange(n_pat) % 2, m)
    pred = np.repeat(np.where(correct, np.arange(n_pat) % 2, 1 - np.arange(n_pat) % 2), m)
    prob = np.column_stack([1.0 - pred, pred.astype(float)])
    groups = np.repeat(np.arange(n_pat), m)

    def accuracy(a, b):
        return {"accuracy": float((b.argmax(1) == a).mean())}

    lo_c, hi_c = bootstrap_cis(y, prob, accuracy, 2000, groups=groups)["accuracy"]
    lo_r, hi_r = bootstrap_cis(y, prob, accuracy, 2000)["accuracy"]
    analytic = 2 * 1.96 * np.sqrt(p_correct * (1 - p_correct) / n_pat)  # 0.284
    assert (hi_c - lo_c) == pytest.approx(analytic, rel=0.15)
    assert (hi_c - lo_c) > 3.5 * (hi_r - lo_r)
    assert lo_c < p_correct < hi_c


@pytest.mark.parametrize("k", [2, 3, 5])
def test_numpy_scores_equal_scikit_learn_with_ties_and_missing_classes(k):
    """The bootstrap's fast scores are scikit-learn's metrics, to rounding: on tied scores (two
    decimals), on resamples that miss a predicted or a true class, and for grades."""
    from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score, cohen_kappa_score,
                                 f1_score, matthews_corrcoef, precision_score, recall_score, roc_auc_score)

    from biodl.evaluation import multiclass_scores

    rng = np.random.default_rng(k)
    for trial in range(30):
        n = int(rng.integers(20, 300))
        y = rng.integers(0, k, n)
        logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y] * rng.random()
        prob = np.round(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 2)
        if trial % 5 == 4:  # a class nobody predicts
            prob[:, -1] = 0.0
        got = multiclass_scores(y, prob, graded=True)
        pred = prob.argmax(1)
        want = {"accuracy": accuracy_score(y, pred), "balanced_accuracy": balanced_accuracy_score(y, pred),
                "mcc": matthews_corrcoef(y, pred),
                "qwk": cohen_kappa_score(y, pred, weights="quadratic", labels=list(range(k))),
                "roc_auc": roc_auc_score(y, prob[:, 1]) if k == 2 else
                np.mean([roc_auc_score(y == c, prob[:, c]) for c in range(k)])}
        if k == 2:
            want.update(f1=f1_score(y, pred, zero_division=0), precision=precision_score(y, pred, zero_division=0),
                        sensitivity=recall_score(y, pred), specificity=recall_score(1 - y, 1 - pred),
                        npv=precision_score(1 - y, 1 - pred, zero_division=0),
                        pr_auc=average_precision_score(y, prob[:, 1]))
        assert set(got) == set(want)
        for key, v in want.items():
            assert got[key] == pytest.approx(v, abs=1e-12), (trial, key)
    y = np.array([0, 0, 2, 2])  # class 1 absent: the macro AUC is undefined, balanced accuracy over the present
    prob = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]])
    got = multiclass_scores(y, prob)
    assert np.isnan(got["roc_auc"]) and got["balanced_accuracy"] == pytest.approx(0.5)


def test_calibration_scores_on_hand_built_examples():
    from biodl.evaluation import calibration_bins, calibration_scores

    y = np.array([1, 1, 0, 0])
    p1 = np.array([0.9, 0.6, 0.4, 0.2])
    s = calibration_scores(y, np.column_stack([1 - p1, p1]))
    # four bins of one: gaps 0.1, 0.4, 0.4, 0.2
    assert s["ece"] == pytest.approx((0.1 + 0.4 + 0.4 + 0.2) / 4) and s["mce"] == pytest.approx(0.4)
    assert s["classwise_ece"] == pytest.approx(s["ece"])  # two classes: P(0) is 1 - P(1)
    assert s["brier"] == pytest.approx((0.01 + 0.16 + 0.16 + 0.04) / 4)
    assert s["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.6, 0.8])))
    # equal mass, two bins: {0.2, 0.4} (observed 0, confidence 0.3), {0.6, 0.9} (observed 1, confidence 0.75)
    bins, ece_mass = calibration_bins(y, p1, n_bins=2, strategy="mass")
    assert [b["n"] for b in bins] == [2, 2] and ece_mass == pytest.approx(0.5 * 0.3 + 0.5 * 0.25)
    # three classes: top-label ECE, classwise ECE over the three one-vs-rest columns, multi-class Brier
    y3 = np.array([0, 1, 2, 2])
    prob = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.25, 0.25], [0.05, 0.05, 0.9]])
    s3 = calibration_scores(y3, prob)
    # top labels: 0.7 right, 0.8 right, 0.5 wrong, 0.9 right -> gaps 0.3, 0.2, 0.5, 0.1 in four bins
    assert s3["ece"] == pytest.approx((0.3 + 0.2 + 0.5 + 0.1) / 4) and s3["mce"] == pytest.approx(0.5)
    onehot = np.eye(3)[y3]
    assert s3["brier"] == pytest.approx(np.mean(((prob - onehot) ** 2).sum(1)))
    per_class = [calibration_bins((y3 == c).astype(int), prob[:, c])[1] for c in range(3)]
    assert s3["classwise_ece"] == pytest.approx(np.mean(per_class))
    perfect = calibration_scores(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert perfect["ece"] == perfect["brier"] == perfect["mce"] == 0 and perfect["nll"] == pytest.approx(0)


def _ece(y, prob):
    from biodl.evaluation import calibration_bins

    return {"ece": calibration_bins(y, prob)[1]}


def test_basic_bootstrap_reflects_the_percentile_interval_about_the_estimate():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.95, 300)
    y = (rng.uniform(size=300) < p).astype(int)
    prob = np.column_stack([1 - p, p])
    t = _ece(y, prob)["ece"]
    lo, hi = bootstrap_cis(y, prob, _ece, 200, seed=4)["ece"]
    blo, bhi = bootstrap_cis(y, prob, _ece, 200, seed=4, method="basic")["ece"]
    assert (blo, bhi) == pytest.approx((2 * t - hi, 2 * t - lo))
    assert bootstrap_cis(y, prob, _ece, 200, seed=4, method="basic", floor=0.0)["ece"] == (max(blo, 0.0), bhi)
    with pytest.raises(ValueError, match="percentile or basic"):
        bootstrap_cis(y, prob, _ece, 10, method="bca")


def test_basic_intervals_cover_a_known_calibration_error_where_percentile_ones_miss():
    """P(y=1 | p) = p**1.3: the population ECE (10 equal-width bins) is ~0.071. The plug-in
    ECE of 200 cases overestimates it, so percentile intervals miss it far more often than 5%."""
    rng = np.random.default_rng(0)
    big = rng.uniform(0.05, 0.95, 1_000_000)
    truth = _ece((rng.uniform(size=big.size) < big**1.3).astype(int), np.column_stack([1 - big, big]))["ece"]
    assert truth == pytest.approx(0.071, abs=0.002)
    cover = {"percentile": 0, "basic": 0}
    for r in range(40):
        p = rng.uniform(0.05, 0.95, 200)
        y = (rng.uniform(size=200) < p**1.3).astype(int)
        for method in cover:
            lo, hi = bootstrap_cis(y, np.column_stack([1 - p, p]), _ece, 200, seed=r, method=method, floor=0.0)["ece"]
            cover[method] += lo <= truth <= hi
    assert cover["basic"] >= 30 and cover["percentile"] <= 24, cover


def test_metrics_count_only_fov_pixels():
    mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], bool)
    prob = np.array([[.9, .4, .6, .1], [.8, .2, .1, .3], [.1, .7, .2, .2], [.9, .9, .9, .0]])
    fov = np.ones((4, 4), bool)
    fov[3] = False  # the last row is outside: its mistakes must not count
    s = fov_scores(prob, mask, fov, {"_at05": 0.5})
    # inside: vessels at .9 .4 .8 -> TP 2, FN 1; background .6 .1 .2 .1 .3 .1 .7 .2 .2 -> FP 2, TN 7
    assert s["sensitivity_at05"] == pytest.approx(2 / 3)
    assert s["specificity_at05"] == pytest.approx(7 / 9)
    assert s["accuracy_at05"] == pytest.approx(9 / 12)
    assert s["f1_at05"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    from sklearn.metrics import roc_auc_score

    assert s["roc_auc"] == pytest.approx(roc_auc_score(mask[fov], prob[fov]))


def test_f1_optimal_threshold():
    rng = np.random.default_rng(0)
    mask = rng.random((50, 50)) < 0.2
    prob = np.where(mask, 0.55 + 0.4 * rng.random((50, 50)), 0.5 * rng.random((50, 50)))  # separable at 0.5-0.55
    t = f1_optimal_threshold([prob], [mask], [np.ones_like(mask)])
    assert 0.5 <= t <= 0.55


def test_count_scores_by_hand_and_against_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, f1_score, matthews_corrcoef, precision_score, recall_score

    from biodl.evaluation import confusion_counts, count_scores

    y = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    called = np.array([1, 1, 0, 1, 0, 0, 0, 0], bool)
    c = confusion_counts(y, called)
    assert c == (2.0, 1.0, 1.0, 4.0)
    s = count_scores(c)
    assert s["sensitivity"] == 2 / 3 and s["specificity"] == 4 / 5 and s["precision"] == 2 / 3
    assert s["npv"] == 4 / 5 and s["accuracy"] == 6 / 8 and s["f1"] == 4 / 6
    assert s["mcc"] == pytest.approx(matthews_corrcoef(y, called))
    assert s["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, called))
    rng = np.random.default_rng(3)
    y, called = rng.random(300) < 0.3, rng.random(300) < 0.4
    s = count_scores(confusion_counts(y, called))
    assert s["sensitivity"] == pytest.approx(recall_score(y, called))
    assert s["specificity"] == pytest.approx(recall_score(~y, ~called))
    assert s["precision"] == pytest.approx(precision_score(y, called))
    assert s["npv"] == pytest.approx(precision_score(~y, ~called))
    assert s["f1"] == pytest.approx(f1_score(y, called))
    # a class absent: its rate, the balanced accuracy and MCC are undefined; nothing called: precision 0
    none = count_scores(confusion_counts(np.zeros(4, bool), np.zeros(4, bool)))
    assert np.isnan(none["sensitivity"]) and np.isnan(none["mcc"]) and np.isnan(none["balanced_accuracy"])
    assert none["specificity"] == 1.0 and none["precision"] == 0.0 and none["f1"] == 0.0
    same = count_scores(confusion_counts(np.array([1, 0, 1], bool), np.ones(3, bool)))
    assert same["mcc"] == 0.0 and same["specificity"] == 0.0  # both classes, one decision for all


def test_canonical_names_aliases_inside_keys_and_leaves_the_rest():
    from biodl.evaluation import ALIASES, VOCABULARY, canonical

    assert canonical("test/tpr") == "test/sensitivity" and canonical("recall") == "sensitivity"
    assert canonical("test/tnr_ci_low") == "test/specificity_ci_low"
    assert canonical("human/auc") == "human/roc_auc" and canonical("mlp/macro_auc_mean") == "mlp/roc_auc_mean"
    for key in ("test/roc_auc", "test/pr_auc_labels", "sensitivity_opt", "test/precision", "val/loss", "tprx"):
        assert canonical(key) == key
    assert set(ALIASES.values()) <= set(VOCABULARY) and not set(ALIASES) & set(VOCABULARY)


def test_every_task_gives_one_quantity_one_key_and_one_value():
    """The same predictions scored the way each task scores them: tabular (binary), two-class
    image, segmentation (a 1-pixel-high map), the paper's hold-out, and expression (multiclass)
    use only the vocabulary's names, and a quantity they share has the same value."""
    from biodl.omics.expression_models import classification_scores
    from biodl.tasks.holdout import binary_scores
    from biodl.evaluation import ALIASES, BINARY_METRICS, PREDICTIVE_VALUES, VOCABULARY, binary_prob_scores, canonical

    rng = np.random.default_rng(5)
    y = (rng.random(120) < 0.4).astype(int)
    p = np.clip(0.4 * y + 0.6 * rng.random(120), 0.01, 0.99)
    prob = np.column_stack([1 - p, p])
    by_task = {
        "tabular": binary_prob_scores(y, p),
        "image": multiclass_scores(y, prob),
        "segmentation": {k.removesuffix("_at05"): v for k, v in fov_scores(
            p[None], y[None].astype(bool), np.ones((1, 120), bool), {"_at05": 0.5}).items()},
        "holdout": binary_scores(y, (p >= 0.5).astype(int), p),
        "expression": classification_scores(y, prob),
    }
    assert set(by_task["tabular"]) == set(BINARY_METRICS) | set(PREDICTIVE_VALUES)
    known = set(VOCABULARY) | {"macro_f1", "pr_auc_labels", "roc_auc_labels"}
    for task, scores in by_task.items():
        assert set(scores) <= known and not set(scores) & set(ALIASES), task
        assert all(canonical(k) == k for k in scores), task
    for name in VOCABULARY:
        values = {task: s[name] for task, s in by_task.items() if name in s}
        assert len(values) < 2 or np.allclose(list(values.values()), next(iter(values.values()))), (name, values)
    assert {t for t, s in by_task.items() if "sensitivity" in s} == {"tabular", "image", "segmentation", "holdout"}
    assert {t for t, s in by_task.items() if "npv" in s} == {"tabular", "image"}


def test_bootstrap_counts_draw_rows_or_whole_clusters():
    from biodl.evaluation import bootstrap_counts

    rows = bootstrap_counts(50, 300, seed=1)
    assert rows.shape == (300, 50) and (rows.sum(axis=1) == 50).all()
    assert rows.mean() == pytest.approx(1.0, abs=0.02) and np.array_equal(rows, bootstrap_counts(50, 300, seed=1))
    groups = np.array(["p2", "p1", "p2", "p3", "p1", "p2"])
    c = bootstrap_counts(6, 400, seed=2, groups=groups)
    assert (c[:, 0] == c[:, 2]).all() and (c[:, 0] == c[:, 5]).all() and (c[:, 1] == c[:, 4]).all()
    assert (c[:, [1, 0, 3]].sum(axis=1) == 3).all()  # three patients drawn per resample, each with all its rows
    assert (c[:, 0] == 0).any() and (c[:, 0] == 3).any()


def test_curve_bands_equal_the_curves_of_materialised_resamples():
    """The bands from weighted cumulative counts are the quantiles of the curves that
    scikit-learn draws on each resample written out row by row (ties in the scores included)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    from biodl.evaluation import bootstrap_counts, curve_bands

    rng = np.random.default_rng(4)
    pos = rng.random(80) < 0.35
    score = np.round(np.clip(0.3 * pos + 0.7 * rng.random(80), 0, 1), 2)  # two decimals: tied scores
    counts = bootstrap_counts(80, 60, seed=3, groups=np.arange(80) // 4)
    grid = np.linspace(0, 1, 101)
    bands = curve_bands(pos, score, counts, grid)
    roc, pr = [], []
    for w in counts:
        idx = np.repeat(np.arange(80), w)
        if pos[idx].all() or not pos[idx].any():
            continue
        fpr, tpr, _ = roc_curve(pos[idx], score[idx], drop_intermediate=False)
        roc.append(np.interp(grid, fpr, tpr))
        precision, recall, _ = precision_recall_curve(pos[idx], score[idx])
        precision, recall = precision[:-1], recall[:-1]  # without scikit-learn's added end point (0, 1)
        pr.append(np.array([precision[recall >= r].max() if (recall >= r).any() else 0.0 for r in grid]))
    for name, curves in (("roc", roc), ("pr", pr)):
        want = np.quantile(np.array(curves), [0.025, 0.975], axis=0)
        np.testing.assert_allclose(np.array(bands[name]), want, atol=1e-12, err_msg=name)
    lo, hi = bands["roc"]
    assert (lo <= hi).all() and (hi - lo).max() > 0.1  # a band, not a line


def test_calibration_bins_carry_intervals_that_widen_when_patients_are_resampled():
    from biodl.evaluation import bootstrap_counts, calibration_bins

    rng = np.random.default_rng(6)
    patient_p = rng.uniform(0.05, 0.95, 30)
    p = np.repeat(patient_p, 20)  # 30 patients of 20 cases that share one probability and one outcome
    y = np.repeat((rng.random(30) < patient_p).astype(int), 20)
    plain, _ = calibration_bins(y, p, counts=bootstrap_counts(600, 300, seed=0))
    clustered, _ = calibration_bins(y, p, counts=bootstrap_counts(600, 300, seed=0, groups=np.arange(600) // 20))
    assert [b["observed"] for b in plain] == [b["observed"] for b in clustered]
    for b in plain + clustered:
        assert b["observed_low"] <= b["observed"] <= b["observed_high"]
    wide = [c["observed_high"] - c["observed_low"] > b["observed_high"] - b["observed_low"]
            for b, c in zip(plain, clustered, strict=True) if 0 < b["observed"] < 1]
    assert sum(wide) >= 0.75 * len(wide) and len(wide) >= 3
    # a bin whose 4 cases all survived: every resample agrees, yet the interval is the Wilson one
    agree = calibration_bins(np.zeros(4, int), np.full(4, 0.15), counts=bootstrap_counts(4, 200))[0][0]
    assert agree["observed"] == agree["observed_low"] == 0.0
    assert agree["observed_high"] == pytest.approx(0.4899, abs=1e-4)  # 1.96^2/4 / (1 + 1.96^2/4)


def test_one_group_cannot_be_resampled_so_its_rows_are_with_a_warning():
    from biodl.evaluation import bootstrap_counts

    rng = np.random.default_rng(0)
    p1 = rng.random(200)
    y = (rng.random(200) < p1).astype(int)  # accuracy about 0.75, varying between resamples
    prob = np.stack([1 - p1, p1], axis=1)

    def accuracy(yy, pp):
        return {"accuracy": float((pp.argmax(1) == yy).mean())}

    with pytest.warns(UserWarning, match="one group"):
        lo, hi = bootstrap_cis(y, prob, accuracy, 300, groups=np.full(200, "plate1"))["accuracy"]
    assert (lo, hi) == bootstrap_cis(y, prob, accuracy, 300)["accuracy"] and hi - lo > 0.02  # not [a, a]
    with pytest.warns(UserWarning, match="one group"):
        counts = bootstrap_counts(200, 50, 0, np.full(200, "plate1"))
    assert counts.sum(axis=1).tolist() == [200] * 50 and len(np.unique(counts[0])) > 1  # rows drawn, not all-or-none

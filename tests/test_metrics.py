import numpy as np
import pytest
import torch

from biodl.metrics import bootstrap_cis, multiclass_metrics, multiclass_scores


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

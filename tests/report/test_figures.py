import numpy as np
import pytest
from PIL import Image

from biodl.report import per_class_curves
from biodl.evaluation import one_vs_rest_scores as _one_vs_rest


def test_per_class_curves_and_scores_handle_a_class_missing_from_the_labels(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)  # class 2 never occurs
    prob = rng.dirichlet(np.ones(3), 200)
    prob[:, 1] += 1.0 * y  # class 1 is detectable
    prob /= prob.sum(axis=1, keepdims=True)
    auc, ap = _one_vs_rest(y, prob)
    from sklearn.metrics import average_precision_score, roc_auc_score

    assert auc[1] == pytest.approx(roc_auc_score(y == 1, prob[:, 1]), abs=1e-12) and auc[1] > 0.8
    assert ap[0] == pytest.approx(average_precision_score(y == 0, prob[:, 0]), abs=1e-12)
    assert np.isnan(auc[2]) and np.isnan(ap[2])
    per_class_curves(y, prob, ["a", "b", "<never>"], "test", tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as im:
        im.load()
        assert im.format == "PNG" and im.width > 2 * im.height > 400

"""Recalibration fitted on validation predictions: each method recovers a known distortion,
round-trips through its JSON file, and refuses what it cannot fit."""

import json

import numpy as np
import pytest

from biodl import runs
from biodl.trust import calibration
from biodl.errors import ConfigError, DataError, RunDirError


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _overconfident(n=20000, k=4, t=2.0, seed=0):
    """Labels drawn from softmax(L) and a model that reports softmax(t * L): too sure by t."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 1.5
    truth = _softmax(logits)
    y = (rng.random(n)[:, None] > np.cumsum(truth, 1)).sum(1)
    return y, _softmax(t * logits)


def test_temperature_scaling_recovers_a_known_temperature():
    y, prob = _overconfident(t=2.0)
    cal = calibration.fit("temperature", y, prob)
    assert cal.temperature == pytest.approx(2.0, rel=0.05)
    assert cal.fitted_on["nll_after"] < cal.fitted_on["nll_before"] and cal.fitted_on["n"] == len(y)
    out = cal.apply(prob)
    assert np.allclose(out.sum(1), 1) and (out.argmax(1) == prob.argmax(1)).all()  # argmax kept
    y2, under = _overconfident(t=0.5, seed=1)
    assert calibration.fit("temperature", y2, under).temperature == pytest.approx(0.5, rel=0.05)


def test_vector_scaling_recovers_per_class_scales():
    y, prob = _overconfident(t=2.0, k=3)
    cal = calibration.fit("vector", y, prob)
    np.testing.assert_allclose(cal.scale, [0.5] * 3, rtol=0.08)
    b = np.asarray(cal.bias)
    np.testing.assert_allclose(b - b.mean(), 0, atol=0.05)  # a common bias changes nothing


def test_platt_and_isotonic_for_two_classes():
    rng = np.random.default_rng(0)
    s_true = rng.normal(size=20000) * 2
    y = (rng.random(20000) < 1 / (1 + np.exp(-s_true))).astype(int)
    p1 = 1 / (1 + np.exp(-(3 * s_true - 1)))  # the model's log-odds: 3 s - 1
    prob = np.column_stack([1 - p1, p1])
    platt = calibration.fit("platt", y, prob)
    assert platt.a == pytest.approx(1 / 3, rel=0.06) and platt.b == pytest.approx(1 / 3, abs=0.06)
    iso = calibration.fit("isotonic", y, prob)
    assert np.all(np.diff(iso.y) >= 0) and iso.fitted_on["nll_after"] < iso.fitted_on["nll_before"]
    from sklearn.isotonic import IsotonicRegression

    ref = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p1, y)
    new = np.linspace(0, 1, 101)
    np.testing.assert_allclose(iso.apply(np.column_stack([1 - new, new]))[:, 1], ref.predict(new), atol=1e-12)


def test_a_recalibration_round_trips_and_a_damaged_file_is_one_line(tmp_path):
    y, prob = _overconfident(n=2000)
    cal = calibration.fit("temperature", y, prob)
    runs.write_calibration(tmp_path, cal)
    again = runs.read_calibration(tmp_path)
    np.testing.assert_array_equal(again.apply(prob), cal.apply(prob))
    assert runs.read_calibration(tmp_path / "elsewhere") is None
    bad = json.loads((tmp_path / "calibration.json").read_text())
    bad["temperature"] = -1
    (tmp_path / "calibration.json").write_text(json.dumps(bad))
    with pytest.raises(RunDirError, match="temperature"):
        runs.read_calibration(tmp_path)


def test_what_cannot_be_fitted_is_refused():
    y, prob = _overconfident(n=200, k=3)
    with pytest.raises(ConfigError, match="two-class runs"):
        calibration.fit("platt", y, prob)
    with pytest.raises(ConfigError, match="unknown recalibration"):
        calibration.fit("histogram", y, prob)
    with pytest.raises(DataError, match="validation split is empty"):
        calibration.fit("temperature", y[:0], prob[:0])
    with pytest.raises(DataError, match="one class only"):
        calibration.fit("temperature", np.zeros(5, int), prob[:5])


@pytest.mark.parametrize("method", ["temperature", "vector", "platt", "isotonic"])
def test_the_torch_map_equals_the_numpy_map(method):
    """Fold models inside a k-fold run's mean carry their recalibration in torch: same numbers."""
    import torch

    y, prob = _overconfident(n=3000, k=2, seed=3)
    cal = calibration.fit(method, y, prob)
    logp = torch.log(torch.from_numpy(np.clip(prob, 1e-12, None)))
    np.testing.assert_allclose(cal.log_prob(logp).exp().numpy(), cal.apply(prob), atol=1e-9)


@pytest.mark.parametrize("k", [2, 4])
def test_the_bootstraps_three_scores_equal_the_full_set(k):
    from biodl.evaluation import calibration_scores

    y, prob = _overconfident(n=500, k=k, seed=5)
    full = calibration_scores(y, prob)
    fast = calibration.ece_brier_nll(y, prob)
    assert fast == pytest.approx({key: full[key] for key in calibration.WITH_CIS}, abs=1e-12)

"""The Cox partial likelihood by hand on four subjects (two tied deaths), and Harrell's C."""

import math

import numpy as np
import pytest
import torch

from biodl.evaluation.survival import concordance_index, cox_loss

TIME = torch.tensor([3.0, 2.0, 1.0, 2.0])  # subject 4 dies at t = 2 with subject 2: a tie
EVENT = torch.tensor([0, 1, 1, 1])
RISK = torch.tensor([0.3, 0.5, 0.1, -0.2], dtype=torch.float64)


def test_cox_loss_by_hand():
    e = [math.exp(v) for v in RISK.tolist()]  # subjects 1..4
    # t = 1: subject 3 dies, all four at risk; t = 2: subjects 2 and 4 die, subjects 1, 2 and 4 at risk
    first = 0.1 - math.log(sum(e))
    at_two = e[0] + e[1] + e[3]
    breslow = first + (0.5 - 0.2) - 2 * math.log(at_two)
    efron = first + (0.5 - 0.2) - math.log(at_two) - math.log(at_two - 0.5 * (e[1] + e[3]))
    assert cox_loss(RISK, TIME, EVENT, "breslow").item() == pytest.approx(-breslow / 3, rel=1e-12)
    assert cox_loss(RISK, TIME, EVENT, "efron").item() == pytest.approx(-efron / 3, rel=1e-12)
    # without ties the two agree (and are Cox's own); the order of the rows does not matter
    untied = torch.tensor([3.0, 2.0, 1.0, 2.5])
    assert cox_loss(RISK, untied, EVENT, "breslow").item() == pytest.approx(cox_loss(RISK, untied, EVENT).item())
    perm = torch.tensor([2, 0, 3, 1])
    assert cox_loss(RISK[perm], TIME[perm], EVENT[perm]).item() == pytest.approx(cox_loss(RISK, TIME, EVENT).item())
    # a shift of every risk changes nothing; no events: 0 with a gradient
    assert cox_loss(RISK + 5, TIME, EVENT).item() == pytest.approx(cox_loss(RISK, TIME, EVENT).item())
    r = RISK.clone().requires_grad_(True)
    zero = cox_loss(r, TIME, torch.zeros(4))
    zero.backward()
    assert zero.item() == 0 and r.grad is not None
    with pytest.raises(ValueError, match="ties"):
        cox_loss(RISK, TIME, EVENT, "exact")


def test_cox_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    time = torch.tensor(rng.integers(1, 6, 30).astype(float))  # many ties
    event = torch.tensor(rng.integers(0, 2, 30))
    risk = torch.tensor(rng.normal(size=30), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: cox_loss(x, time, event, "efron"), (risk,))


def test_concordance_by_hand():
    time = np.array([1.0, 2.0, 3.0, 4.0])
    event = np.array([1, 1, 0, 1])
    # comparable pairs: (1,2), (1,3), (1,4), (2,3), (2,4); subject 3 is censored before 4
    assert concordance_index(time, np.array([4.0, 3.0, 2.0, 1.0]), event) == 1.0
    assert concordance_index(time, np.array([1.0, 2.0, 3.0, 4.0]), event) == 0.0
    assert concordance_index(time, np.array([2.0, 2.0, 1.0, 1.0]), event) == pytest.approx((0.5 + 1 + 1 + 1 + 1) / 5)

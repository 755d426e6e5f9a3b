"""Bags of tiles: k x k windows of a tile grid, a bag positive when one of its tiles is, and
padding to one batch that the attention model reads as the bags themselves."""

import numpy as np
import pytest
import torch

from biodl.data.bags import bag_labels, pad_bags, window_bags
from biodl.errors import DataError
from biodl.models import create_model


def test_a_grid_is_cut_into_windows_row_by_row():
    cols, rows = np.meshgrid(np.arange(6), np.arange(4))  # a 6 x 4 grid of 50-px tiles from (1000, 500)
    xy = np.stack([1000 + 50 * cols.ravel(), 500 + 50 * rows.ravel()], axis=1)
    bags = window_bags(xy, tile=50, k=3)
    # windows of 3 x 3 tiles: columns 0-2 and 3-5, rows 0-2 and 3: four bags, numbered row by row
    assert np.bincount(bags).tolist() == [9, 9, 3, 3]
    assert bags[0] == 0 and bags[5] == 1 and bags[18] == 2 and bags[23] == 3
    sparse = window_bags(xy, tile=50, k=3, min_tiles=4)
    assert np.bincount(sparse[sparse >= 0]).tolist() == [9, 9] and (sparse[18:] == -1).all()
    labels = np.zeros(24, int)
    labels[22] = 1  # one positive tile, in the bottom-right window
    assert bag_labels(bags, labels).tolist() == [0, 0, 0, 1]
    with pytest.raises(DataError, match="positions must be"):
        window_bags(np.zeros((0, 2)), 50, 3)


def test_padding_changes_nothing_the_model_computes():
    torch.manual_seed(0)
    model = create_model("abmil", in_features=4).eval()
    bags = [torch.randn(3, 4), torch.randn(5, 4), torch.randn(1, 4)]
    x, mask = pad_bags(bags)
    assert x.shape == (3, 5, 4) and mask.sum(1).tolist() == [3, 5, 1]
    with torch.no_grad():
        together = model(x, mask)
        alone = torch.cat([model(b[None]) for b in bags])
    assert torch.allclose(together, alone, atol=1e-6)
    with pytest.raises(ValueError, match="at least one tile"):
        pad_bags([torch.randn(0, 4)])


def test_bag_set_pads_with_nan_and_subsamples_large_training_bags():
    import torch

    from biodl.data.bags import BagSet

    bags = [torch.arange(6.0).reshape(3, 2), torch.arange(20.0).reshape(10, 2)]
    x, y = BagSet(bags, np.array([0, 1]))[torch.tensor([0, 1])]
    assert x.shape == (2, 10, 2) and torch.isnan(x[0, 3:]).all() and torch.equal(x[1], bags[1])
    assert y.tolist() == [0, 1]
    torch.manual_seed(0)
    x, _ = BagSet(bags, np.array([0, 1]), max_tiles=4)[torch.tensor([1, 0])]
    assert x.shape == (2, 4, 2) and torch.isnan(x[1, 3:]).all()
    rows = x[0, :, 0].int().tolist()  # four distinct tiles of bag 1, in their order
    assert len(set(rows)) == 4 and rows == sorted(rows) and all(r % 2 == 0 for r in rows)

import numpy as np
import pytest
import torch
from torch import nn

from biodl.data.transforms import BatchAugment, ImagePreprocess, channel_stats, dihedral_tta


def test_channel_stats_match_numpy_over_the_chosen_rows():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 9, 7, 3), dtype=np.uint8)
    rows = rng.permutation(300)[:170]
    mean, std = channel_stats(images, rows, chunk=16)
    ref = images[rows].reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, ref.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=0), rtol=1e-9)
    np.testing.assert_allclose(channel_stats(images)[0], (images.reshape(-1, 3) / 255.0).mean(axis=0), rtol=1e-12)


class _Corner(nn.Module):
    """Logits from the top-left pixel only: changes under every flip and rotation."""

    def forward(self, x):
        v = x[:, 0, 0, 0]
        return torch.stack([v, -v], dim=1)


def test_dihedral_tta_averages_probabilities_over_the_eight_views():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) / 10
    out = dihedral_tta(_Corner(), x)
    assert out.shape == (2, 2)
    corners = x[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]  # each corner reaches the top-left in two of the eight views
    p = torch.softmax(torch.stack([corners, -corners], dim=2), dim=2).mean(dim=1)
    torch.testing.assert_close(out.exp(), p)
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(2))
    conv = nn.Sequential(nn.Conv2d(1, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())  # invariant: TTA changes nothing
    torch.testing.assert_close(dihedral_tta(conv, x), torch.log_softmax(conv(x), dim=1))
    wide = torch.rand(3, 1, 4, 6)  # not square: the 4 flips only
    assert dihedral_tta(conv, wide).shape == (3, 2)


def test_augment_keeps_shape_range_and_is_seeded():
    x = torch.rand(5, 3, 16, 16)
    torch.manual_seed(0)
    a = BatchAugment()(x.clone())
    torch.manual_seed(0)
    b = BatchAugment()(x.clone())
    assert a.shape == x.shape and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, x)
    pre = ImagePreprocess([0.5] * 3, [0.25] * 3)
    u8 = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    torch.testing.assert_close(pre(u8), torch.full((1, 3, 2, 2), 2.0))


@pytest.mark.parametrize("bad", [np.zeros((0, 4, 4, 3), dtype=np.uint8)])
def test_channel_stats_of_nothing_does_not_divide_by_zero(bad):
    mean, std = channel_stats(bad)
    assert mean == [0.0, 0.0, 0.0] and std == [1e-3] * 3

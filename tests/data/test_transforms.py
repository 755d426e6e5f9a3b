import numpy as np
import pytest
import torch
from torch import nn

from biodl.data.transforms import BatchAugment, ImagePreprocess, channel_stats, dihedral_tta, flip_tta_map


@pytest.mark.parametrize("channels", [3, 1])
def test_channel_stats_match_numpy_over_the_chosen_rows(tmp_path, channels):
    """Rows in any order, some twice (a weighted draw), from memory or the disk cache."""
    from biodl.data.cache import DiskArray

    rng = np.random.default_rng(channels)
    images = rng.integers(0, 256, (300, 9, 7, channels), dtype=np.uint8)
    images[:5] = 255  # saturated rows: the top bin counted
    rows = np.concatenate([rng.permutation(300)[:170], [0, 0, 17]])
    np.save(tmp_path / "images.npy", images)
    ref = images[rows].reshape(-1, channels) / 255.0
    for held in (images, DiskArray(tmp_path / "images.npy")):
        mean, std = channel_stats(held, rows, chunk=16)
        np.testing.assert_allclose(mean, ref.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(std, ref.std(axis=0), rtol=1e-9)
    np.testing.assert_allclose(channel_stats(images)[0], (images.reshape(-1, channels) / 255.0).mean(axis=0),
                               rtol=1e-12)


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


def test_flip_tta_map_is_the_mean_probability_of_the_four_flips_flipped_back():
    x = torch.rand(2, 1, 4, 6)
    ramp = torch.arange(6.0).view(1, 1, 1, 6)

    class Ramp(nn.Module):  # a logit that grows to the right: not flip-equivariant
        def forward(self, v):
            return v + ramp

    out = flip_tta_map(Ramp(), x)
    # un-flipping a left-right view's map gives x + ramp mirrored; up-down flips are equivariant here
    p = (2 * torch.sigmoid(x + ramp) + 2 * torch.sigmoid(x + ramp.flip(-1))) / 4
    assert out.shape == (2, 1, 4, 6)
    torch.testing.assert_close(torch.sigmoid(out), p)
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=True)
    with torch.no_grad():  # a symmetric kernel is equivariant to every flip: TTA changes nothing
        conv.weight.copy_(torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).view(1, 1, 3, 3) / 8)
        torch.testing.assert_close(flip_tta_map(conv, x), conv(x), atol=1e-5, rtol=1e-5)


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


def _tissue(n=4, size=12, seed=0):
    """(n, 3, size, size) pink-purple RGB in (0, 1): pixels an H&E stain could have made."""
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor([0.75, 0.45, 0.70]).view(1, 3, 1, 1)
    return (base + 0.15 * (torch.rand(n, 3, size, size, generator=g) - 0.5)).clamp(0.05, 0.95)


def test_hed_deconvolution_matches_scikit_image_and_round_trips():
    from skimage.color import hed2rgb, rgb2hed

    from biodl.data.transforms import HEDJitter

    x = _tissue()
    jit = HEDJitter(0.05)
    stains = jit.to_stains(x)  # (B, H, W, 3)
    od = -np.log(1e-6)  # scikit-image scales optical densities by 1 / -ln(1e-6) and clips negative ones to 0
    ref = rgb2hed(x.movedim(1, -1).double().numpy())
    np.testing.assert_allclose(stains.clamp_min(0).double().numpy() / od, ref, atol=1e-6)
    np.testing.assert_allclose(jit.to_image(torch.from_numpy(ref * od).float()).movedim(1, -1).numpy(), hed2rgb(ref),
                               atol=1e-5)
    np.testing.assert_allclose(jit.to_image(stains).numpy(), x.numpy(), atol=1e-5)  # no clipping: invertible
    assert torch.allclose(HEDJitter(0.0)(x), x, atol=1e-5)  # sigma 0: the image back


def test_hed_jitter_scales_and_shifts_each_stain_of_each_image_alone():
    from biodl.data.transforms import HEDJitter

    x = _tissue()
    jit = HEDJitter(0.1)
    u = torch.tensor([[0.5, 0.5, 0.5, 0.5, 0.5, 0.5],  # image 0: unchanged
                      [1.0, 0.5, 0.5, 0.5, 0.5, 0.5],  # image 1: haematoxylin x 1.1
                      [0.5, 0.5, 0.5, 0.5, 1.0, 0.5],  # image 2: eosin + 0.1
                      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])  # image 3: every stain x 0.9 - 0.1
    out = jit(x, u)
    assert torch.allclose(out[0], x[0], atol=1e-5)
    before, after = jit.to_stains(x), jit.to_stains(out)
    inside = ((out > 0.001) & (out < 0.999)).all(1)  # pixels the [0, 1] clamp left alone
    assert inside.float().mean() > 0.9
    for i, scale, shift in ((1, [1.1, 1, 1], [0, 0, 0]), (2, [1, 1, 1], [0, 0.1, 0]), (3, [0.9] * 3, [-0.1] * 3)):
        want = before[i] * torch.tensor(scale) + torch.tensor(shift)
        torch.testing.assert_close(after[i][inside[i]], want[inside[i]], atol=2e-4, rtol=1e-4)
    assert not torch.allclose(out[1], x[1], atol=1e-3)


def test_stain_jitter_follows_the_same_geometric_draws_as_without_it():
    """Stain augmentation draws its numbers after the others: a run without it augments exactly as
    before, and with it each image is the un-stained augmentation, then jittered."""
    from biodl.data.transforms import HEDJitter

    x = _tissue(6)
    torch.manual_seed(3)
    plain = BatchAugment()(x)
    u = torch.rand(6, 6)
    torch.manual_seed(3)
    stained = BatchAugment(stain=0.05)(x)
    torch.testing.assert_close(stained, HEDJitter(0.05)(plain, u))
    torch.manual_seed(3)
    torch.testing.assert_close(BatchAugment(stain=0.0)(x), plain)

"""Attribution methods, their sanity check and faithfulness, on a model trained here to see a
bright square at a known place."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from biodl.errors import BiodlError
from biodl.interpret import METHODS, PixelModel, attribute, deletion_insertion, parse_methods, sanity_check
from biodl.interpret.attributions import baseline_image, last_conv_blocks

S, LO, HI = 32, 4, 16  # 32 px images; class 1 has a 12 px bright square at rows/cols 4-15


def _squares(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 20, (n, 3, S, S)).astype(np.float32) / 255
    y = np.arange(n) % 2
    x[y == 1, :, LO:HI, LO:HI] = 250 / 255
    return torch.tensor(x), torch.tensor(y)


@pytest.fixture(scope="module")
def square_model():
    """A small CNN with global average pooling, trained to tell images with the square (1) from
    images without (0); returns it behind its normalisation, in eval mode."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                        nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(32, 2))
    model = PixelModel(net, [0.2] * 3, [0.2] * 3)
    x, y = _squares(256, 0)
    opt = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=1e-3)
    for _ in range(4):
        perm = torch.randperm(256)
        for i in range(0, 256, 32):
            b = perm[i:i + 32]
            loss = nn.functional.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    xt, yt = _squares(20, 1)
    assert (model(xt).argmax(1) == yt).all()
    return model


def _inside_share(amap):
    pos = amap.clamp(min=0)
    return float(pos[LO:HI, LO:HI].sum() / pos.sum())


@pytest.mark.parametrize("method", ["gradcam", "ig"])
def test_gradcam_and_ig_put_most_positive_mass_inside_the_square(square_model, method):
    xt, _ = _squares(10, 1)
    shares = [_inside_share(attribute(method, square_model, xt[i:i + 1], 1)[0]) for i in (1, 3, 5, 7, 9)]
    assert min(shares) >= 0.7, shares  # the square is 14% of the image


def test_every_method_gives_an_image_sized_map_and_parameters_stay_trainable(square_model):
    x = _squares(2, 3)[0][1:2]
    for method in METHODS:
        amap, info = attribute(method, square_model, x, 1, steps=8)
        assert amap.shape == (S, S) and torch.isfinite(amap).all(), method
        assert amap.abs().sum() > 0, method
    assert all(p.requires_grad for p in square_model.parameters())
    _, info = attribute("gradcam", square_model, x, 1)
    assert info["layer"] == "model.6" and info["feature_map"] == [16, 16]  # the last ReLU: 16 x 16 maps


def test_integrated_gradients_are_complete(square_model):
    """IG's attributions sum to f(x) - f(baseline) (the convergence delta says how nearly)."""
    x = _squares(2, 4)[0][1:2]
    for base in ("black", "blurred", "masked"):
        amap, info = attribute("ig", square_model, x, 1, baseline=base, steps=100)
        b = baseline_image(base, x)
        with torch.no_grad():
            gap = float(square_model(x)[0, 1] - square_model(b)[0, 1])
        assert float(amap.sum()) == pytest.approx(gap, abs=0.02 * abs(gap) + info["convergence_delta"] + 1e-4)
        assert info["convergence_delta"] < 0.05 * abs(gap)


def test_baselines_and_bad_names():
    x = torch.rand(1, 3, 16, 16)
    m = baseline_image("masked", x)
    assert torch.equal(m[..., 6:10, :], x[..., 6:10, :]) and m[..., :6, :].abs().sum() == 0
    assert m[..., 10:, :].abs().sum() == 0
    blurred = baseline_image("blurred", x)
    assert blurred.std() < x.std() / 2 and abs(float(blurred.mean() - x.mean())) < 0.05
    assert torch.equal(baseline_image(torch.ones(1, 3, 16, 16), x), torch.ones(1, 3, 16, 16))
    with pytest.raises(BiodlError, match="unknown baseline"):
        baseline_image("grey", x)
    assert parse_methods("IG, gradcam") == ["ig", "gradcam"]
    with pytest.raises(BiodlError, match="unknown method 'lime'"):
        parse_methods("ig,lime")


def test_pixel_model_applies_the_normalisation():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    x = torch.rand(2, 3, 8, 8)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 0.125]
    expected = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(PixelModel(net, mean, std)(x), expected)


def test_last_conv_block_skips_pooled_maps():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 2))
    [(name, module)] = last_conv_blocks(net, torch.rand(1, 3, 8, 8))
    assert name == "1" and module is net[1]


def test_gradcam_of_an_ensemble_sums_every_members_map():
    """Two copies of one net stand for it exactly (the mean of equal probabilities): their summed
    Grad-CAM must equal the one-member ensemble's, where a map of one member alone would be half."""
    from biodl.inference.members import MemberMean
    from biodl.interpret.attributions import PixelModel, attribute
    from biodl.models import create_model

    torch.manual_seed(0)
    net = create_model("resnet_small", num_classes=2, width=8, blocks=1).eval()
    x = torch.rand(1, 3, 16, 16)
    norm = ([0.5] * 3, [0.25] * 3)
    one = MemberMean([PixelModel(net, *norm)])
    two = MemberMean([PixelModel(net, *norm), PixelModel(copy.deepcopy(net), *norm)])
    blocks = last_conv_blocks(two, x)
    assert [n.split(".")[:3] for n, _ in blocks] == [["members", "0", "model"], ["members", "1", "model"]]
    single, info1 = attribute("gradcam", one, x, 1)
    joint, info2 = attribute("gradcam", two, x, 1)
    assert info2["members"] == 2 and "members" not in info1 and single.abs().max() > 0
    torch.testing.assert_close(joint, single, rtol=1e-4, atol=1e-6)


def _edges(model, x, target):
    """A degenerate 'explanation' that ignores the model: image gradient magnitude."""
    g = x[0].mean(0)
    out = torch.zeros_like(g)
    out[:, 1:] += (g[:, 1:] - g[:, :-1]).abs()
    out[1:, :] += (g[1:, :] - g[:-1, :]).abs()
    return out.detach()


def test_sanity_check_flags_an_edge_detector_and_passes_ig(square_model):
    x = _squares(2, 5)[0][1:2]
    edges = sanity_check(_edges, square_model, x, 1)
    assert edges["flagged"] and all(s["spearman"] == pytest.approx(1) and s["ssim"] == pytest.approx(1)
                                    for s in edges["steps"])
    ig = sanity_check(lambda m, xx, t: attribute("ig", m, xx, t)[0], square_model, x, 1)
    assert not ig["flagged"] and ig["steps"][-1]["spearman"] < 0.5
    assert [s["randomised_from"] for s in ig["steps"]] == ["model.9", "model.5", "model.3", "model.0"]
    assert all(p.requires_grad for p in square_model.parameters())  # the model itself is untouched
    before = square_model(x)
    assert torch.equal(before, square_model(x))


def test_deletion_and_insertion_reward_a_faithful_map(square_model):
    x = _squares(2, 6)[0][1:2]
    ig = attribute("ig", square_model, x, 1)[0]
    noise = torch.rand(S, S, generator=torch.Generator().manual_seed(0))
    good = deletion_insertion(square_model, x, 1, ig)
    rand = deletion_insertion(square_model, x, 1, noise)
    assert good["deletion"][0] == pytest.approx(good["insertion"][-1])  # nothing deleted = all inserted
    assert good["deletion"][0] > 0.9
    assert len(good["deletion"]) == len(good["fractions"]) == 21
    assert good["deletion_auc"] < rand["deletion_auc"] - 0.2
    assert good["insertion_auc"] > rand["insertion_auc"]


def test_picks_spread_over_patients_most_confident_first():
    from biodl.interpret.explain import _pick_rows

    y = np.ones(6, int)
    prob = np.column_stack([1 - np.array([0.99, 0.98, 0.97, 0.9, 0.8, 0.7]), [0.99, 0.98, 0.97, 0.9, 0.8, 0.7]])
    patients = np.array(["a", "a", "a", "b", "c", "b"])
    assert [i for i, _ in _pick_rows(y, prob, ["tp"], 4)] == [0, 1, 2, 3]  # no patients: by confidence
    assert [i for i, _ in _pick_rows(y, prob, ["tp"], 4, patients)] == [0, 3, 4, 1]  # a, b, c, then a again

"""Attention MIL: attention is a distribution over a bag's real tiles, uniform over identical
tiles, and a model trained on synthetic bags finds the one planted positive tile."""

import torch

from biodl.models import create_model


def test_attention_sums_to_one_over_real_tiles_and_is_uniform_over_identical_ones():
    torch.manual_seed(0)
    model = create_model("abmil", in_features=8).eval()
    bags = torch.randn(3, 6, 8)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] + [False] * 5])
    a = model.attention(bags, mask)
    assert a.shape == (3, 6) and torch.allclose(a.sum(1), torch.ones(3))
    assert (a[1, 4:] == 0).all() and a[2, 0] == 1
    same = torch.randn(1, 1, 8).expand(1, 5, 8)
    assert torch.allclose(model.attention(same), torch.full((1, 5), 0.2))
    padded = torch.cat([bags[1:2, :4], torch.randn(1, 2, 8) * 100], dim=1)  # padding's values do not matter
    assert torch.allclose(model(padded, mask[1:2]), model(bags[1:2], mask[1:2]), atol=1e-6)


def test_a_planted_positive_tile_gets_the_most_attention():
    g = torch.Generator().manual_seed(0)
    n_bags, n_tiles, d = 400, 12, 16
    signal = torch.randn(d, generator=g)
    bags = torch.randn(n_bags, n_tiles, d, generator=g)
    y = (torch.arange(n_bags) % 2).long()
    where = torch.randint(0, n_tiles, (n_bags,), generator=g)
    bags[y == 1, where[y == 1]] += 3 * signal  # one positive tile per positive bag
    torch.manual_seed(0)
    model = create_model("abmil", in_features=d, hidden=32, attention=16, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(bags[:300]), y[:300]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        test = slice(300, None)
        accuracy = (model(bags[test]).argmax(1) == y[test]).float().mean()
        top = model.attention(bags[test]).argmax(1)
    pos = y[test] == 1
    assert accuracy > 0.9
    assert (top[pos] == where[test][pos]).float().mean() > 0.8  # attention rank 1 on the planted tile


def test_nan_padding_is_the_mask_and_mean_pooling_weighs_tiles_equally():
    torch.manual_seed(0)
    model = create_model("abmil", in_features=8).eval()
    bags = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    padded = bags.clone()
    padded[1, 3:] = float("nan")
    assert torch.allclose(model(padded), model(bags, mask), atol=1e-6)
    assert torch.allclose(model.attention(padded), model.attention(bags, mask))
    assert model.tile_logits(padded).shape == (2, 5, 2) and torch.isfinite(model.tile_logits(padded)).all()
    mean = create_model("abmil", in_features=8, pooling="mean").eval()
    assert torch.allclose(mean.attention(padded)[1], torch.tensor([1 / 3] * 3 + [0.0] * 2))
    # mean pooling: the head on the mean of the real tiles' embeddings
    h = mean.embed(bags[1, :3]).mean(0)
    assert torch.allclose(mean(padded)[1], mean.head(h), atol=1e-6)

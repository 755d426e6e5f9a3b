"""Tiled prediction: exact reassembly, and blended overlaps."""

import pytest
import torch

from biodl.engine.tiling import tiled_predict


@pytest.mark.parametrize("tile,overlap,multiple", [(256, 32, 8), (64, 16, 8), (40, 0, 8), (2048, 0, 1)])
def test_tiling_reassembles_an_image_exactly(tile, overlap, multiple):
    x = torch.rand(2, 150, 97)
    y = tiled_predict(torch.nn.Identity(), x, tile, overlap, batch=3, multiple=multiple)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x, rtol=0, atol=1e-6)


def test_tiling_blends_overlaps():
    """A model that outputs a constant per tile: overlapping tiles mix, so the seam is a ramp."""
    calls = []

    def per_tile(t):
        calls.append(len(t))
        return torch.arange(len(t), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, *t.shape[-2:]) + len(calls)

    out = tiled_predict(per_tile, torch.zeros(1, 64, 112), 64, 16, batch=8)
    row = out[0, 32]
    assert sum(calls) == 2 and row[0] == 1 and row[-1] == 2  # two tiles: x = 0 and x = 48
    seam = row[48:64]
    assert (seam[1:] >= seam[:-1]).all() and 1 < seam[8] < 2

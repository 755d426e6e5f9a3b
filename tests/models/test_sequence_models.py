"""Sequence CNNs: any length from their minimum, strand symmetry under reverse-complement
averaging, and arguments checked."""

import pytest
import torch

from biodl.data.sequences import one_hot, reverse_complement
from biodl.errors import ConfigError
from biodl.models import create_model
from biodl.models.sequence import StrandAverage


@pytest.mark.parametrize("name", ["deepbind", "basset"])
def test_any_length_from_the_minimum_gives_one_row_of_logits(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).eval()
    for length in (model.min_length, 101, 257):
        assert model(torch.rand(5, 4, length)).shape == (5, 3)
    assert model.motifs.in_channels == 4


@pytest.mark.parametrize("name", ["deepbind", "basset"])
def test_reverse_complement_averaging_makes_the_score_strand_symmetric(name):
    torch.manual_seed(0)
    net = create_model(name).eval()
    x = torch.from_numpy(one_hot(["ACGTTGCAAGGTCCAATGGACTTAGCCAGGAAGTGCCAATTCG",
                                  "GGGAAACCCTTTGGGCCCAAATTTGGCCAAGTTCAGGATCATG"]))
    assert not torch.allclose(net(x), net(reverse_complement(x)))  # one strand alone: not symmetric
    both = StrandAverage(net).eval()
    with torch.no_grad():
        a, b = both(x), both(reverse_complement(x))
    torch.testing.assert_close(a, b)
    p = torch.softmax(a, dim=1)
    want = (torch.softmax(net(x), 1) + torch.softmax(net(reverse_complement(x)), 1)) / 2
    torch.testing.assert_close(p, want.detach())


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="in_chans=3"):
        create_model("deepbind", in_chans=3)
    with pytest.raises(ConfigError, match="dropout"):
        create_model("deepbind", dropout=1.5)

import pytest
import torch

from biodl import create_model, list_models
from biodl.errors import ConfigError


def test_registry_lists_the_tabular_family():
    assert {"mlp", "logistic"} <= set(list_models())


@pytest.mark.parametrize("name, kwargs, n_params", [
    ("logistic", {}, 11 + 1),
    ("mlp", {"hidden": [8]}, 11 * 8 + 8 + 8 + 1),
])
def test_shapes_and_parameter_counts(name, kwargs, n_params):
    m = create_model(name, in_features=11, **kwargs)
    assert m(torch.randn(5, 11)).shape == (5, 1)
    assert sum(p.numel() for p in m.parameters()) == n_params


def test_unknown_model_and_argument_suggest():
    with pytest.raises(ConfigError, match="did you mean 'mlp'"):
        create_model("mpl", in_features=3)
    with pytest.raises(ConfigError, match=r"model.args.hiden.*did you mean 'hidden'"):
        create_model("mlp", in_features=3, hiden=[4])
    with pytest.raises(ConfigError, match="dropout must be in"):
        create_model("mlp", in_features=3, dropout=1.5)


def test_a_second_model_of_the_same_name_replaces_the_first_with_a_warning(monkeypatch):
    from biodl.models import _registry

    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))  # restored after the test
    original = _registry._REGISTRY["dbrnet"]
    assert _registry.register_model(original) is original  # the same constructor again: silent

    def dbrnet(num_classes: int = 2) -> torch.nn.Module:
        return torch.nn.Linear(3, num_classes)

    with pytest.warns(UserWarning, match="model 'dbrnet' registered again"):
        _registry.register_model(dbrnet)
    assert isinstance(create_model("dbrnet", num_classes=4), torch.nn.Linear)

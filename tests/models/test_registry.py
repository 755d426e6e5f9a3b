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


def _example(name: str):
    """(constructor arguments, input batch, expected output shape) for a registered model, chosen
    from its signature: tabular (in_features), segmentation (out_chans), DNA sequence (its
    family's module) or image classifier."""
    import inspect

    from biodl.models._registry import _REGISTRY

    params = inspect.signature(_REGISTRY[name]).parameters
    if _REGISTRY[name].__module__.endswith(".sequence"):
        return {"num_classes": 3}, torch.randn(2, 4, 101), (2, 3)
    if _REGISTRY[name].__module__.endswith(".mil"):  # bags: (bags, tiles, features)
        return {"in_features": 7, "num_classes": 3}, torch.randn(2, 5, 7), (2, 3)
    if "in_features" in params:
        return {"in_features": 7}, torch.randn(4, 7), (4, 1)
    if "out_chans" in params:
        return {"in_chans": 3, "width": 4, "depth": 2}, torch.randn(2, 3, 32, 32), (2, 1, 32, 32)
    size = 50 if name == "cancer_cnn" else 64
    args = {"num_classes": 3, "in_chans": 2, **({"img_size": size} if "img_size" in params else {})}
    return args, torch.randn(2, 2, size, size), (2, 3)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_forward_and_backward(name):
    """Each family gets this for free on registering (timm's way): built from its constructor's
    arguments, one batch forward gives the documented shape and every parameter a gradient."""
    torch.manual_seed(0)
    args, x, shape = _example(name)
    model = create_model(name, **args).train()
    out = model(x)
    assert out.shape == shape and torch.isfinite(out).all()
    out.float().square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    if "num_classes" in args and not name.endswith("mil"):  # CNNs: the parts reports and attributions ask for
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(model.head(model.features(x)), model(x))

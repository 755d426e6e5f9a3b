import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

from biodl.engine import Trainer, UnfreezeBackbone
from biodl.errors import CheckpointError
from biodl.models import create_model
from biodl.models.transfer import load_pretrained, param_groups, read_state_dict


@pytest.mark.parametrize("name, kwargs, size, n_params", [
    ("dbrnet", {"num_classes": 5}, 224, 16 * 53 * 53 * 120 + 120 + 120 * 84 + 84 + 84 * 5 + 5 + 3 * 6 * 25 + 6
     + 6 * 16 * 25 + 16),
    ("cancer_cnn", {"num_classes": 2}, 50, 3 * 32 * 81 + 32 + 32 * 64 * 81 + 64 + 64 * 128 * 81 + 128
     + 128 * 32 + 32 + 32 * 2 + 2),
])
def test_workshop_models_have_the_workshop_architecture(name, kwargs, size, n_params):
    m = create_model(name, **kwargs)
    assert m(torch.randn(2, 3, size, size)).shape == (2, kwargs["num_classes"])
    assert sum(p.numel() for p in m.parameters()) == n_params


@pytest.mark.parametrize("name", ["resnet_small", "resnet18", "efficientnet_b0", "convnext_tiny"])
def test_backbones_take_other_channel_counts(name):
    m = create_model(name, num_classes=3, in_chans=1).eval()
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def _torchvision_weights(tmp_path):
    import torchvision

    torch.manual_seed(0)
    src = torchvision.models.resnet18(weights=None)  # stands in for a downloaded ImageNet file
    sd = src.state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "resnet18.safetensors")
    torch.save(sd, tmp_path / "resnet18.pth")
    return sd


@pytest.mark.parametrize("fname", ["resnet18.safetensors", "resnet18.pth"])
def test_load_pretrained_backbone_keeps_a_new_head(tmp_path, fname):
    sd = _torchvision_weights(tmp_path)
    torch.manual_seed(1)
    model = create_model("resnet18", num_classes=2)
    head_before = model.head.weight.clone()
    report = load_pretrained(model, tmp_path / fname)
    assert report["dropped_head"] == ["fc.bias", "fc.weight"] and report["kept_random"] == []
    assert torch.equal(model.features.conv1.weight, sd["conv1.weight"])
    assert torch.equal(model.features.layer4[1].bn2.running_var, sd["layer4.1.bn2.running_var"])
    assert torch.equal(model.head.weight, head_before) and model.head.weight.shape == (2, 512)


def test_grey_input_keeps_a_random_first_layer(tmp_path):
    _torchvision_weights(tmp_path)
    report = load_pretrained(create_model("resnet18", num_classes=2, in_chans=1), tmp_path / "resnet18.safetensors")
    assert report["kept_random"] == ["conv1.weight"]


def test_bad_weight_files(tmp_path):
    with pytest.raises(CheckpointError, match="never downloads"):
        read_state_dict(tmp_path / "absent.pth")
    _torchvision_weights(tmp_path)
    with pytest.raises(CheckpointError, match="no tensor matches this model's backbone"):
        load_pretrained(create_model("efficientnet_b0", num_classes=2), tmp_path / "resnet18.safetensors")
    with pytest.raises(CheckpointError, match="another architecture; missing: layer1.0.conv1.weight"):
        load_pretrained(create_model("resnet50", num_classes=2), tmp_path / "resnet18.safetensors")
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"w": object()}))
    with pytest.raises(CheckpointError, match="not a readable PyTorch weights file"):
        read_state_dict(evil)
    garbage = tmp_path / "cut.pth"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="not a readable PyTorch weights file"):
        read_state_dict(garbage)
    import torch

    model_object = tmp_path / "whole_model.pth"  # torch.save(model): a pickled module, not a state dict
    torch.save(torch.nn.Linear(2, 2), model_object)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(model_object)
    msg = str(err.value)
    assert "holds Python objects besides tensors, which biodl does not load" in msg
    assert "weights_only=False" not in msg and "weights_only" not in msg  # PyTorch's advice is not passed on


def test_frozen_backbone_then_unfrozen_at_lower_rate():
    torch.manual_seed(0)
    model = create_model("resnet_small", num_classes=2, width=8, blocks=1)
    groups = param_groups(model, lr=0.1, backbone_lr_factor=0.1)
    assert [g["lr"] for g in groups] == [pytest.approx(0.01), 0.1]
    data = TensorDataset(torch.randn(32, 3, 16, 16), torch.randint(0, 2, (32,)))
    snap = []

    class Snap(UnfreezeBackbone):
        def on_epoch_end(self, trainer, logs):
            snap.append((model.features[0].weight.detach().clone(), model.head.weight.detach().clone()))

    t = Trainer(model, torch.nn.functional.cross_entropy, lambda p: torch.optim.SGD(param_groups(model, 0.1), lr=0.1),
                max_epochs=2, batch_size=8, device="cpu", callbacks=[Snap(after_epochs=1)])
    start = (model.features[0].weight.detach().clone(), model.head.weight.detach().clone())
    t.fit(data)
    assert torch.equal(snap[0][0], start[0]) and not torch.equal(snap[0][1], start[1])  # epoch 1: head only
    assert not torch.equal(snap[1][0], snap[0][0])  # epoch 2: backbone trains too


def test_pretrained_imagenet_resolves_to_the_torch_hub_cache_and_never_downloads(tmp_path, monkeypatch, cli):
    """`model.pretrained: imagenet` names torchvision's file in $TORCH_HOME/hub/checkpoints; absent,
    it is one line saying which file goes where (no download without model.download); present,
    it is loaded from there. Models without ImageNet weights are refused."""
    import numpy as np
    import torchvision
    from PIL import Image

    from tests.conftest import assert_one_line_error

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for i in range(24):
        d = tmp_path / "data" / ("ab"[i % 2])
        d.mkdir(parents=True, exist_ok=True)
        noise = np.random.default_rng(i).integers(0, 60, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(noise + np.uint8(150 * (i % 2))).save(d / f"{i}.png")
    args = ["train", "--data", tmp_path / "data", "--model", "resnet18", "--epochs", "1", "--set",
            "model.pretrained=imagenet", "--set", "trainer.progress=false", "--set", "n_boot=100",
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--out", tmp_path / "run"]
    where = tmp_path / "torch" / "hub" / "checkpoints"
    r = cli(*args)
    assert_one_line_error(r, str(where / "resnet18-f37072fd.pth"), "copy resnet18-f37072fd.pth",
                          "--set model.download=true")
    assert not (tmp_path / "run").exists() and not where.exists()
    where.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), where / "resnet18-f37072fd.pth")
    r = cli(*args)
    assert r.code == 0, r.err
    import json

    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["pretrained"]["path"] == str(where / "resnet18-f37072fd.pth")
    assert manifest["pretrained"]["dropped_head"] == ["fc.bias", "fc.weight"]
    r = cli(*args[:4], "resnet_small", *args[5:-1], tmp_path / "run2")
    assert_one_line_error(r, "model.pretrained", "model 'resnet_small' has no ImageNet weights", "resnet18, resnet50")

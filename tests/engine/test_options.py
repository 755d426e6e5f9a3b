"""Trainer switches: device choice, bf16 autocast, torch.compile, deterministic mode, gradient clipping."""

import os
import subprocess
from pathlib import Path

import pytest
import torch

from biodl.engine import Trainer, resolve_device
from biodl.errors import ConfigError
from biodl.repro import seed_everything
from tests.engine.test_trainer import _bce, _data, _trainer


def test_auto_device_is_cpu_here_and_bad_names_are_config_errors():
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_bf16_autocast_on_request_trains():
    t = _trainer(epochs=3, precision="bf16")
    assert t.autocast_dtype == torch.bfloat16
    seen = []
    hook = t.module.head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    hist = t.fit(_data(256), _data(128, 1))
    hook.remove()
    assert torch.bfloat16 in seen  # the linear layers really ran in bf16
    assert hist[-1]["train/loss"] < hist[0]["train/loss"]
    assert all(p.dtype == torch.float32 for p in t.module.parameters())  # master weights stay fp32


def test_fp32_by_default_on_cpu():
    assert _trainer(epochs=1).autocast_dtype is None


def test_gradient_clipping_bounds_the_update():
    # with SGD lr=1 and clipping to 1e-3, one step moves the weights by at most 1e-3 in norm
    seed_everything(0)
    model = torch.nn.Linear(4, 1)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    t = Trainer(model, _bce, lambda p: torch.optim.SGD(p, lr=1.0), max_epochs=1, batch_size=512, device="cpu",
                grad_clip=1e-3)
    t.fit(_data(64))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < (after - before).norm() <= 1e-3 + 1e-7


def test_deterministic_mode_sets_the_flags():
    was = torch.are_deterministic_algorithms_enabled()
    try:
        seed_everything(1, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    finally:
        torch.use_deterministic_algorithms(was)
        torch.backends.cudnn.deterministic = False


def test_compile_gives_the_eager_result_and_plain_checkpoint_keys(tmp_path):
    eager = _trainer(epochs=1, dropout=0.0)
    eager.fit(_data(64))
    compiled = _trainer(tmp_path, epochs=1, dropout=0.0, compile=True)
    compiled.fit(_data(64))
    for a, b in zip(eager.module.state_dict().values(), compiled.module.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    from safetensors.torch import load_file

    keys = load_file(tmp_path / "last.safetensors").keys()
    assert "model.head.weight" in keys and not any("_orig_mod" in k for k in keys)


def test_manifest_records_the_git_commit_of_the_checkout(trained_run):
    import json

    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    manifest = json.loads((trained_run / "manifest.json").read_text())
    assert manifest["git"]["commit"] == head.stdout.strip()
    assert isinstance(manifest["git"]["dirty"], bool)


def test_eval_forward_replaces_the_model_call_in_evaluate_and_predict_only():
    calls = []

    def halved(module, x):
        calls.append(len(x))
        return module(x) * 0.5

    trainer = _trainer(epochs=1, eval_forward=halved)
    data = _data(64)
    trainer.fit(data)
    assert calls == []  # training calls the model itself
    plain = torch.sigmoid(trainer.module.eval()(data.tensors[0]).squeeze(-1) * 0.5)
    torch.testing.assert_close(trainer.predict(data), plain)
    trainer.evaluate(data)
    assert sum(calls) == 2 * 64

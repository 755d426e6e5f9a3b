"""Transfer learning from a local weights file (nothing is ever downloaded).

``load_pretrained(model, path)`` copies a backbone's weights into ``model.features``. It reads
safetensors, or a PyTorch state dict with ``torch.load(weights_only=True)`` (PyTorch's
restricted unpickler: tensors and plain containers, never arbitrary objects or code), from
torchvision (``resnet18-*.pth`` and the like), timm ResNets, or a biodl checkpoint.
The source's classification head is left out: the model keeps its own new ``head``.
Then ``freeze_backbone``/``UnfreezeBackbone`` and ``param_groups`` give the usual recipe:
train the head first, unfreeze after N epochs, and train the backbone at a lower rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..io import read_safetensors

__all__ = [
    "IMAGENET", "imagenet_weights_file", "resolve_pretrained", "read_state_dict", "load_pretrained",
    "set_backbone_trainable", "param_groups",
]


#: keys of the classification layers that torchvision/timm backbones end with
_HEAD_PREFIXES = ("fc.", "classifier.", "head.")


#: ``model.pretrained`` value naming torchvision's ImageNet weights of the model
IMAGENET = "imagenet"


def imagenet_weights_file(model_name: str) -> tuple[Path, str]:
    """Where torchvision keeps the ImageNet weights of ``model_name`` (the file its
    default weights enum would download: ``$TORCH_HOME/hub/checkpoints/<file>``) and their URL."""
    import torchvision

    from .cnn import TORCHVISION_BACKBONES

    if model_name not in TORCHVISION_BACKBONES:
        raise ConfigError("model.pretrained", f"imagenet: model {model_name!r} has no ImageNet weights; the models "
                                              f"that have them: {', '.join(TORCHVISION_BACKBONES)}")
    url = torchvision.models.get_model_weights(model_name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


def resolve_pretrained(spec: str | Path, model_name: str, download: bool = False) -> Path:
    """The weights file ``model.pretrained`` names: a path as given, or for ``imagenet`` the file
    in the torch hub cache. That file is downloaded only when ``download`` is set (the user's
    explicit opt-in); otherwise its absence is one CheckpointError saying which file to put where."""
    if str(spec) != IMAGENET:
        return Path(spec)
    path, url = imagenet_weights_file(model_name)
    if path.is_file():
        return path
    if not download:
        raise CheckpointError(path, f"model.pretrained: imagenet needs torchvision's {model_name} weights here; "
                                    f"copy {path.name} (from {url}) into {path.parent}, or let biodl download it "
                                    "with --set model.download=true")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(path))  # the user opted in (model.download)
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a ``.pt``/``.pth`` state dict (weights only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such weights file (biodl never downloads weights; give a local path)")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - PyTorch's refusals and every kind of corrupt file
        if "unsupported global" in str(exc).lower():  # the restricted unpickler met a Python object
            raise CheckpointError(path, "holds Python objects besides tensors, which biodl does not load; save the "
                                        "state dict alone (torch.save(model.state_dict(), ...)) or as safetensors") \
                from None
        # PyTorch's own text advises retrying unrestricted (weights_only=False): not passed on
        raise CheckpointError(path, "not a readable PyTorch weights file (truncated, corrupt, or not written by "
                                    "torch.save)") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(path, "expected a state dict of tensors")
    return obj


def load_pretrained(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Copy matching backbone weights into ``model.features``; returns what was loaded and left out.

    Every tensor of the backbone must be found with the right shape, except those of a replaced
    input layer (``in_chans`` other than the source's), which are reported in ``kept_random``.
    """
    source = read_state_dict(path)
    for prefix in ("module.", "_orig_mod."):  # DDP / torch.compile wrappers
        source = {k.removeprefix(prefix): v for k, v in source.items()}
    if any(k.startswith("features.") for k in source):  # a biodl checkpoint: backbone under features.
        source = {k[len("features."):]: v for k, v in source.items() if k.startswith("features.")}
    dropped = sorted(k for k in source if k.startswith(_HEAD_PREFIXES))
    own = model.features.state_dict()
    loaded, mismatched = {}, []
    for k, v in source.items():
        if k in own and k not in dropped:
            if tuple(v.shape) == tuple(own[k].shape):
                loaded[k] = v
            else:
                mismatched.append(f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}")
    missing = [k for k in own if k not in loaded]
    if not loaded:
        first = ", ".join(list(source)[:3])
        raise CheckpointError(path, f"no tensor matches this model's backbone (first keys: {first})")
    if len(missing) > len(mismatched) + 2 or len(mismatched) > 2:  # more than a replaced input layer
        raise CheckpointError(path, f"made for another architecture; missing: {', '.join(missing[:4])}"
                                    + (f"; shape mismatch: {', '.join(mismatched[:4])}" if mismatched else ""))
    model.features.load_state_dict(loaded, strict=False)
    return {"loaded": len(loaded), "dropped_head": dropped, "kept_random": missing}


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze (False) or unfreeze (True) ``model.features``; frozen batch-norm layers keep their
    running statistics (eval mode) so that the pretrained statistics are not overwritten."""
    for p in model.features.parameters():
        p.requires_grad_(trainable)
    if not trainable:
        for m in model.features.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def param_groups(model: nn.Module, lr: float, backbone_lr_factor: float = 0.1) -> list[dict[str, Any]]:
    """Optimiser groups: the head at ``lr``, the backbone at ``lr * backbone_lr_factor``."""
    return [{"params": list(model.features.parameters()), "lr": lr * backbone_lr_factor},
            {"params": list(model.head.parameters()), "lr": lr}]

"""The inference half of the engine: a trained network on a device, ready to predict.

An :class:`Inferer` holds what running a network needs and nothing that training needs (no
optimiser, scheduler, loss or metrics): the device and its precision (channels-last and bf16
autocast on CUDA, channels-last on the CPU where it is safe), the input transform (e.g. uint8
pixels -> normalised floats), the forward pass (e.g. test-time augmentation), the postprocess
(logits -> probabilities) and Monte Carlo dropout passes. The :class:`~biodl.engine.trainer.Trainer`
evaluates and predicts through one; a finished run's predictor builds one per network.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .loaders import eval_loader

__all__ = ["resolve_device", "dropout_layers", "nhwc_safe_on_cpu", "Inferer"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda (this process's local rank under torchrun), then mps, then cpu."""
    from .distributed import world

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", world()[2] % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        from ..errors import ConfigError

        raise ConfigError("trainer.device", f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        from ..errors import ConfigError

        raise ConfigError("trainer.device", "cuda requested but no CUDA device is available")
    return device


def nhwc_safe_on_cpu(model: nn.Module) -> bool:
    """Whether channels_last (NHWC) may be used on the CPU, where it makes oneDNN convolutions
    faster (1.7x for DBRNet at 224 px, 1.4x for the small ResNet). Not with a strided 1x1
    convolution: oneDNN's NHWC weight gradient for it writes past its workspace with few input
    channels (uxlfoundation/oneDNN#6035; here a crash or heap corruption at odd batch sizes)."""
    return not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1)
                   for m in model.modules())


def dropout_layers(module: nn.Module) -> list[nn.Module]:
    """The (element or channel) dropout layers of ``module`` that drop something (p > 0)."""
    kinds = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
    return [m for m in module.modules() if isinstance(m, kinds) and m.p > 0]


class Inferer:
    """``postprocess(eval_forward(module, batch_transform(x)))`` for every sample of a data set,
    in order, batch by batch, on ``device``.

    Args:
        module: the network; moved to ``device`` (channels-last on CUDA, and on the CPU where
            that is safe).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or a torch.device.
        precision: ``auto`` (bf16 autocast on CUDA, float32 elsewhere), ``bf16`` or ``32``.
        batch_transform: ``batch_transform(x, train)`` on each input batch, on the device (e.g.
            uint8 -> normalised floats); the inferer calls it with ``train=False``.
        eval_forward: ``eval_forward(module, x)`` instead of ``module(x)`` (e.g. test-time
            augmentation).
        postprocess: raw outputs -> predictions (e.g. softmax over (B, K) logits).
        batch_size, num_workers: of the data loader (0 workers: read ahead by threads).
        mc_dropout: Monte Carlo dropout passes for :meth:`predict_passes` (0: one plain pass).
        seed: the MC-dropout masks are a function of it.

    Raises:
        ValueError: ``mc_dropout`` on a network without a dropout layer.
    """

    def __init__(self, module: nn.Module, *, device: str | torch.device = "auto", precision: str = "auto",
                 batch_transform: Callable[[Tensor, bool], Tensor] | None = None,
                 eval_forward: Callable[[nn.Module, Tensor], Tensor] | None = None,
                 postprocess: Callable[[Tensor], Tensor] = lambda t: t, batch_size: int = 64, num_workers: int = 0,
                 mc_dropout: int = 0, seed: int = 0) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.channels_last = self.device.type == "cuda" or (self.device.type == "cpu" and nhwc_safe_on_cpu(module))
        self.module = module.to(self.device)
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" or (
            precision == "auto" and self.device.type == "cuda") else None
        self.batch_transform = batch_transform
        self.eval_forward = eval_forward or (lambda m, x: m(x))
        self.postprocess = postprocess
        self.batch_size, self.num_workers = batch_size, num_workers
        if mc_dropout and not dropout_layers(module):
            raise ValueError("MC dropout needs a model with a dropout layer (p > 0)")
        self.mc_dropout, self.seed = mc_dropout, seed

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast where the precision asks for it, else nothing."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def prepare_batch(self, x: Tensor, train: bool = False) -> Tensor:
        """An input batch as the model sees it: on the device, through ``batch_transform``
        (normalisation; with ``train``, augmentation too) and channels-last when 4-D, e.g.
        (B, C, H, W) uint8 -> float."""
        x = x.to(self.device, non_blocking=True)
        if self.batch_transform is not None:
            x = self.batch_transform(x, train)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.no_grad()
    def infer(self, x: Tensor) -> Tensor:
        """``postprocess(eval_forward(module, batch_transform(x)))`` of one input batch (on the
        device, under autocast): the one inference path, which evaluation, prediction and tiled
        prediction all take. The module's mode (eval, or MC dropout's) is the caller's.
        (B, ...) -> (B, ...) on the device."""
        with self.autocast():
            out = self.eval_forward(self.module, self.prepare_batch(x))
        return self.postprocess(out.float())

    def predict(self, data: Dataset) -> Tensor:
        """The prediction of every sample, in order, on the CPU: (N, ...); with ``mc_dropout``
        passes, their mean (see :meth:`predict_passes`)."""
        return self.predict_passes(data).mean(dim=0)

    @torch.no_grad()
    def predict_passes(self, data: Dataset) -> Tensor:
        """(P, N, ...) predictions of every sample: one pass (P = 1) of the model in eval mode,
        or with ``mc_dropout`` P > 0, Monte Carlo dropout (Gal & Ghahramani 2016): P thinned
        networks. Pass t keeps each dropout layer's units by one mask, drawn from (``seed``, t,
        the layer) and shared by every sample, so a sample's prediction does not depend on the
        batch it comes in, the device or the global random state; batch norm stays in eval mode."""
        self.module.eval()
        if not self.mc_dropout:
            return self._predict(data).unsqueeze(0)
        return torch.stack([self._thinned(data, t) for t in range(self.mc_dropout)])

    def _thinned(self, data: Dataset, t: int) -> Tensor:
        """Pass ``t`` of MC dropout: every dropout layer multiplies its input by a fixed mask
        (units kept with probability 1 - p, scaled by 1 / (1 - p); whole channels for
        Dropout1d/2d/3d)."""
        masks: dict[tuple, Tensor] = {}

        def hook(index: int, layer: nn.Module):
            def apply(_m: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> Tensor:
                shape = tuple(out.shape[1:])
                if isinstance(layer, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
                    shape = shape[:1] + (1,) * (len(shape) - 1)
                key = (index, shape)
                if key not in masks:
                    g = torch.Generator().manual_seed(hash((self.seed, t, index)) & (2**63 - 1))
                    keep = (torch.rand(shape, generator=g) >= layer.p).float() / (1 - layer.p)
                    masks[key] = keep.to(out.device)
                return out * masks[key].to(out.dtype)
            return apply

        handles = [m.register_forward_hook(hook(i, m)) for i, m in enumerate(dropout_layers(self.module))]
        try:
            return self._predict(data)
        finally:
            for h in handles:
                h.remove()

    def _predict(self, data: Dataset) -> Tensor:
        outs = []
        for batch in eval_loader(data, self.batch_size, self.num_workers, device=self.device):
            outs.append(self.infer(batch[0] if isinstance(batch, (tuple, list)) else batch).cpu())
        return torch.cat(outs) if outs else torch.empty(0)

    @torch.no_grad()
    def tiled(self, image: Tensor, tile: int, overlap: int) -> Tensor:
        """A whole (C, H, W) image in overlapping ``tile`` x ``tile`` tiles through :meth:`infer`,
        blended (see :func:`biodl.engine.tiling.tiled_predict`; the image is padded to the network's
        multiple, ``2 ** module.depth`` for a U-Net): (K, H, W) on the device."""
        from .tiling import tiled_predict

        self.module.eval()
        multiple = 2 ** int(getattr(self.module, "depth", 0))
        return tiled_predict(self.infer, image.to(self.device), tile, overlap, multiple=multiple)

    @torch.no_grad()
    def layer_inputs(self, data: Dataset, layer: nn.Module) -> Tensor:
        """What ``layer`` receives for every sample in ``data`` (its first input, flattened to
        (N, D), on the CPU), from a plain forward pass; e.g. the penultimate-layer features when
        ``layer`` is the classifier head."""
        captured: list[Tensor] = []
        handle = layer.register_forward_hook(lambda _m, inputs, _out: captured.append(
            inputs[0].detach().float().flatten(1).cpu()))
        try:
            self.module.eval()
            for batch in eval_loader(data, self.batch_size, self.num_workers, device=self.device):
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                with self.autocast():
                    self.module(self.prepare_batch(x))
        finally:
            handle.remove()
        return torch.cat(captured) if captured else torch.empty(0)

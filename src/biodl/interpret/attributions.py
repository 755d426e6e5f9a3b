"""Attribution maps for image classifiers, computed with captum.

Every method here explains ``PixelModel``: the run's network behind its own normalisation, so
inputs are pixel values in [0, 1], (B, C, H, W), and baselines are images ("black" is zeros).
Each method returns a signed (H, W) map, positive where the pixels raise the target's score,
and a dict of diagnostics (e.g. the integrated-gradients convergence delta).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import BiodlError

__all__ = ["METHODS", "BASELINES", "PixelModel", "parse_methods", "baseline_image", "last_conv_blocks", "attribute"]


#: short name -> what it is
METHODS = {
    "saliency": "gradient magnitude (Simonyan et al. 2014)",
    "ixg": "input x gradient",
    "ig": "integrated gradients (Sundararajan et al. 2017)",
    "gradshap": "gradient SHAP (expected gradients from noisy baselines)",
    "smoothgrad": "SmoothGrad: saliency averaged over noisy copies (NoiseTunnel)",
    "occlusion": "occlusion: score drop when a square patch is blacked out",
    "gradcam": "Grad-CAM on the last convolutional block, upsampled",
    "superpixels": "superpixel occlusion (SLIC segments, LIME-like)",
}
BASELINES = ("black", "blurred", "masked")


class PixelModel(nn.Module):
    """``model`` behind its normalisation: (B, C, H, W) pixels in [0, 1] -> logits."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - self.mean) / self.std)


def parse_methods(text: str) -> list[str]:
    """``"ig,gradcam"`` -> ["ig", "gradcam"]; an unknown name is a one-line error."""
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise BiodlError("--method", f"unknown method {bad[0] if bad else text!r}; known: {', '.join(METHODS)}")
    return names


def baseline_image(kind: str | Tensor, x: Tensor) -> Tensor:
    """An IG baseline for ``x`` (1, C, H, W): ``black``; ``blurred`` (Gaussian, sigma = H/20);
    ``masked``, the workshop's: black but for the middle quarter of the rows, kept from ``x``;
    or a given image of the same shape."""
    if isinstance(kind, Tensor):
        return kind.to(x)
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "blurred":
        from torchvision.transforms.v2.functional import gaussian_blur

        sigma = max(x.shape[-2:]) / 20
        k = int(2 * round(3 * sigma) + 1)
        return gaussian_blur(x, [k, k], [sigma, sigma])
    if kind == "masked":
        out = torch.zeros_like(x)
        h = x.shape[-2]
        out[..., 3 * h // 8: 5 * h // 8, :] = x[..., 3 * h // 8: 5 * h // 8, :]
        return out
    raise BiodlError("--baseline", f"unknown baseline {kind!r}; known: {', '.join(BASELINES)} or an image file")


def last_conv_blocks(model: nn.Module, x: Tensor) -> list[tuple[str, nn.Module]]:
    """The module that finishes last among those whose output is a (B, C, H, W) map larger than
    1 x 1: for a ResNet its last stage, for a plain CNN its last pooling; for a model that stands
    for several (``members``, e.g. the fold models of a k-fold run) one per member. Found by one
    forward pass."""
    seen: list[tuple[str, nn.Module]] = []
    handles = []
    for name, module in model.named_modules():
        if module is model or not name:
            continue
        handles.append(module.register_forward_hook(
            lambda m, _i, out, name=name: seen.append((name, m)) if isinstance(out, Tensor) and out.dim() == 4
            and out.shape[-1] * out.shape[-2] > 1 else None))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise BiodlError("gradcam", "the model has no convolutional feature map to explain")
    last: dict[str, tuple[str, nn.Module]] = {}
    for name, module in seen:  # the last one inside each member (or overall)
        member = re.match(r"(.*\bmembers\.\d+)\.", name)
        last[member.group(1) if member else ""] = (name, module)
    return list(last.values())


def _gradcam(model: nn.Module, x: Tensor, target: int, layer: nn.Module | None = None) -> tuple[Tensor, dict]:
    """Grad-CAM at ``layer`` (default: the last convolutional block; for a model of several
    members the sum of every member's map, each the gradient of the joint output)."""
    from captum.attr import LayerAttribution, LayerGradCam

    blocks = [(None, layer)] if layer is not None else last_conv_blocks(model, x)
    total, shape = None, None
    for _, block in blocks:
        cam = LayerGradCam(model, block).attribute(x, target=target, relu_attributions=True)
        up = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")[0].sum(0)
        total, shape = (up if total is None else total + up), list(cam.shape[-2:])
    info = {"layer": blocks[0][0], "feature_map": shape}
    return total, {**info, "members": len(blocks)} if len(blocks) > 1 else info


def _superpixels(model: nn.Module, x: Tensor, target: int, n_segments: int = 50) -> tuple[Tensor, dict]:
    from captum.attr import FeatureAblation
    from skimage.segmentation import slic

    img = x[0].permute(1, 2, 0).detach().cpu().numpy()
    segments = slic(img.astype(np.float64), n_segments=n_segments, compactness=10, start_label=0,
                    channel_axis=-1 if img.shape[-1] > 1 else None)
    mask = torch.from_numpy(segments).to(x.device)[None, None].expand_as(x)
    attr = FeatureAblation(model).attribute(x, target=target, feature_mask=mask, baselines=0.0,
                                            perturbations_per_eval=16)
    return attr[0].mean(0), {"segments": int(segments.max() + 1)}


def attribute(method: str, model: nn.Module, x: Tensor, target: int, baseline: str | Tensor = "black",
              steps: int = 50, seed: int = 0) -> tuple[Tensor, dict[str, Any]]:
    """One method's (H, W) map for ``x`` (1, C, H, W) pixels in [0, 1], class ``target``, from
    ``model`` (a :class:`PixelModel`). Gradients flow to the input only: the model's parameters
    are frozen for the duration (a third of the backward pass saved)."""
    from captum.attr import GradientShap, InputXGradient, IntegratedGradients, NoiseTunnel, Occlusion, Saliency

    torch.manual_seed(seed)
    model.eval()
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        info: dict[str, Any] = {}
        x = x.detach().requires_grad_(True)
        if method == "saliency":
            a = Saliency(model).attribute(x, target=target, abs=True).amax(1)[0]
        elif method == "ixg":
            a = InputXGradient(model).attribute(x, target=target)[0].sum(0)
        elif method == "ig":
            base = baseline_image(baseline, x.detach())
            attr, delta = IntegratedGradients(model).attribute(
                x, base, target=target, n_steps=steps, internal_batch_size=min(steps, 25),
                return_convergence_delta=True)
            a = attr[0].sum(0)
            info = {"baseline": baseline if isinstance(baseline, str) else "image", "steps": steps,
                    "convergence_delta": float(delta.abs().max())}
        elif method == "gradshap":
            base = torch.cat([torch.zeros_like(x), baseline_image("blurred", x.detach())])
            a = GradientShap(model).attribute(x, base, n_samples=min(steps, 32), stdevs=0.05, target=target)[0].sum(0)
        elif method == "smoothgrad":
            a = NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=min(steps, 25),
                                                       nt_samples_batch_size=25, stdevs=0.1, target=target,
                                                       abs=True).amax(1)[0]
        elif method == "occlusion":
            side = max(2, x.shape[-1] // 8)
            a = Occlusion(model).attribute(x, (x.shape[1], side, side), strides=(x.shape[1], side // 2, side // 2),
                                           baselines=0.0, target=target, perturbations_per_eval=32)[0].mean(0)
            info = {"window": side}
        elif method == "gradcam":
            a, info = _gradcam(model, x, target)
        elif method == "superpixels":
            a, info = _superpixels(model, x, target)
        else:
            parse_methods(method)
            raise AssertionError(method)  # pragma: no cover
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return a.detach().float().cpu(), info

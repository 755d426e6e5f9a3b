"""Pictures of attributions and network internals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..io import atomic_write
from ..report.figures import pyplot, save_figure, tex_safe

__all__ = [
    "NON_NEGATIVE", "PANEL", "heat_rgb", "blend_rgb", "panel_size", "save_triptych", "attribution_grid",
    "first_layer_filters", "activation_maps",
]


#: methods whose maps are magnitudes (shown from 0 up); the others are signed
NON_NEGATIVE = {"saliency", "smoothgrad", "gradcam"}
PANEL = 224  # pixels a side of each panel of a per-image figure (at least)


def _rgb(x: Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) uint8."""
    img = x.detach().cpu().clamp(0, 1)
    img = img.expand(3, -1, -1) if img.shape[0] == 1 else img[:3]
    return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def heat_rgb(amap: np.ndarray, signed: bool) -> np.ndarray:
    """(H, W) map -> (H, W, 3) uint8: signed maps on a blue-white-red scale centred at 0,
    magnitudes on inferno; scaled by the 99th percentile of |map|."""
    import matplotlib

    scale = float(np.quantile(np.abs(amap), 0.99)) or float(np.abs(amap).max()) or 1.0
    if signed:
        rgba = matplotlib.colormaps["RdBu_r"](np.clip(amap / scale, -1, 1) * 0.5 + 0.5)
    else:
        rgba = matplotlib.colormaps["inferno"](np.clip(amap / scale, 0, 1))
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def blend_rgb(image: np.ndarray, amap: np.ndarray) -> np.ndarray:
    """The image in grey with the positive part of the map laid over it in colour."""
    import matplotlib

    pos = np.clip(amap, 0, None)
    scale = float(np.quantile(pos, 0.99)) or float(pos.max()) or 1.0
    level = np.clip(pos / scale, 0, 1)[..., None]
    grey = image.mean(axis=-1, keepdims=True).repeat(3, axis=-1)
    heat = matplotlib.colormaps["jet"](level[..., 0])[..., :3] * 255
    return (grey * (1 - 0.6 * level) + heat * 0.6 * level).round().clip(0, 255).astype(np.uint8)


def panel_size(h: int) -> int:
    """Side of each panel: the image's own side, scaled up by a whole factor to at least PANEL."""
    return h * max(1, -(-PANEL // h))


def save_triptych(x: Tensor, amap: Tensor, method: str, path: str | Path) -> tuple[int, int]:
    """``path``: [image | heat map | blend], each panel ``panel_size(H)`` pixels a side (nearest
    neighbour, so pixels stay visible). Returns the PNG's (width, height)."""
    from PIL import Image

    image = _rgb(x[0])
    a = amap.numpy()
    side = panel_size(image.shape[0])
    panels = [image, heat_rgb(a, method not in NON_NEGATIVE), blend_rgb(image, a)]
    strip = Image.new("RGB", (3 * side, side))
    for i, p in enumerate(panels):
        strip.paste(Image.fromarray(p).resize((side, side), Image.NEAREST), (i * side, 0))
    atomic_write(path, lambda p: strip.save(p, format="PNG"))
    return strip.size


def attribution_grid(images: list[Tensor], maps: list[dict[str, Tensor]], captions: list[str], path: str | Path
                     ) -> None:
    """Rows: images (their caption on the left); columns: the image, then each method's blend."""
    plt = pyplot()
    methods = list(maps[0])
    rows, cols = len(images), 1 + len(methods)
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.2 * rows + 0.3), squeeze=False)
    for r, (x, row) in enumerate(zip(images, maps, strict=True)):
        img = _rgb(x[0])
        axes[r, 0].imshow(img)
        axes[r, 0].set_title(tex_safe(captions[r]), fontsize=7)
        for c, m in enumerate(methods, start=1):
            axes[r, c].imshow(blend_rgb(img, row[m].numpy()))
            if r == 0:
                axes[r, c].set_title(m, fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    save_figure(fig, path, tight_layout=True)


def first_layer_filters(model: nn.Module, path: str | Path) -> bool:
    """A grid of the first convolution's filters (each scaled to [0, 1]; RGB when it reads 3
    channels). False when the model has no convolution."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        return False
    w = conv.weight.detach().float().cpu()
    lo, hi = w.amin(dim=(1, 2, 3), keepdim=True), w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - lo) / (hi - lo).clamp_min(1e-12)
    plt = pyplot()
    n = w.shape[0]
    cols = min(n, 16)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(0.7 * cols + 0.4, 0.7 * rows + 0.6), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            f = w[i]
            ax.imshow(f.permute(1, 2, 0).numpy() if f.shape[0] == 3 else f[0].numpy(), cmap=None if f.shape[0] == 3
                      else "gray", interpolation="nearest")
    fig.suptitle(f"first-layer filters: {n} of {tuple(conv.weight.shape[1:])}", fontsize=9)
    save_figure(fig, path)
    return True


@torch.no_grad()
def activation_maps(model: nn.Module, layer: str, x: Tensor, path: str | Path, n: int = 32) -> tuple[int, ...]:
    """The first ``n`` channels of what module ``layer`` (a name from ``model.named_modules()``)
    outputs for ``x`` (1, C, H, W), one panel each. Returns the output's shape."""
    from ..errors import BiodlError

    modules = dict(model.named_modules())
    if layer not in modules:
        conv = [k for k, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Sequential)) and k][:12]
        raise BiodlError("--layer", f"no module {layer!r} in the model; e.g. {', '.join(conv)}")
    out: list[Tensor] = []
    handle = modules[layer].register_forward_hook(lambda _m, _i, o: out.append(o.detach().float().cpu()))
    try:
        model.eval()
        model(x)
    finally:
        handle.remove()
    act = out[0][0]
    if act.dim() != 3:
        raise BiodlError("--layer", f"{layer} outputs shape {tuple(out[0].shape)}, not feature maps")
    plt = pyplot()
    k = min(n, act.shape[0])
    cols = min(k, 8)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.5), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < k:
            ax.imshow(act[i].numpy(), cmap="viridis")
            ax.set_title(str(i), fontsize=6)
    fig.suptitle(tex_safe(f"{layer}: {k} of {act.shape[0]} channels, {act.shape[1]}x{act.shape[2]}"), fontsize=9)
    save_figure(fig, path)
    return tuple(out[0].shape)

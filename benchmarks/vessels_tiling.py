"""Whole-image inference on one 999 x 960 fundus image (CHASE_DB1 size) with the vessel study's
U-Net (16-128 channels, depth 3), on this machine's CPU: biodl's ``tiled_predict`` (512 px tiles,
32 px blended overlap, 4 tiles a batch: the study's settings) against MONAI's ``sliding_window_inference`` with the same
tiles and overlap (Gaussian blending), and against one pass over the whole padded image.
Target: <= 3 s per image. Run from the repository root:

    python benchmarks/vessels_tiling.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from biodl.engine.tiling import tiled_predict
from biodl.models import create_model

TILE = 512


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from monai.inferers import sliding_window_inference

    torch.manual_seed(0)
    model = create_model("unet", in_chans=1, width=16, depth=3).eval().to(memory_format=torch.channels_last)
    image = torch.rand(1, 960, 999)

    def net(t: torch.Tensor) -> torch.Tensor:
        return model(t.contiguous(memory_format=torch.channels_last))

    def ours() -> torch.Tensor:
        return tiled_predict(net, image, TILE, 32, batch=4, multiple=8)

    def monai() -> torch.Tensor:
        with torch.no_grad():
            return sliding_window_inference(image[None], (TILE, TILE), 4, net, overlap=32 / TILE, mode="gaussian")[0]

    def whole() -> torch.Tensor:
        with torch.no_grad():
            padded = torch.nn.functional.pad(image[None], (0, 1024 - 999, 0, 1024 - 960), mode="reflect")
            return net(padded)[0, :, :960, :999]

    a, b = ours(), monai()
    print(f"max |biodl - MONAI| on the logits: {float((a - b).abs().max()):.3g} (blending windows differ)")
    arms = {"biodl tiled_predict": ours, "MONAI sliding_window": monai, "whole image, one pass": whole}
    best = dict.fromkeys(arms, float("inf"))
    for _ in range(args.rounds):
        for name, fn in arms.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    print(f"U-Net 16-128 (depth 3) on 1 x 960 x 999, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"best of {args.rounds} alternating rounds")
    for name, t in best.items():
        print(f"  {name:<24} {t:6.2f} s   {best['MONAI sliding_window'] / t:4.2f}x MONAI")
    print(f"target <= 3 s: {'met' if best['biodl tiled_predict'] <= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()

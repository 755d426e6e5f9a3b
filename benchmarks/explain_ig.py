"""Integrated gradients, 50 steps, one 224 x 224 image through ResNet-18 on this machine's CPU:
captum called the plain way against ``biodl.interpret.attribute("ig", ...)``, which freezes the
model's parameters (no weight gradients: about a third of the backward pass) and runs the 50
steps in two batches of 25. Target: <= 5 s. Run from the repository root:

    python benchmarks/explain_ig.py [--rounds 3] [--steps 50]
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision
from captum.attr import IntegratedGradients

from biodl.interpret import PixelModel, attribute


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = PixelModel(torchvision.models.resnet18(weights=None), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).eval()
    x = torch.rand(1, 3, 224, 224)
    base = torch.zeros_like(x)

    def plain() -> torch.Tensor:
        return IntegratedGradients(model).attribute(x, base, target=0, n_steps=args.steps)[0].sum(0)

    def ours() -> torch.Tensor:
        return attribute("ig", model, x, 0, "black", args.steps)[0]

    torch.testing.assert_close(plain(), ours(), rtol=1e-3, atol=1e-5)  # the same map
    best = {"captum, plain call": float("inf"), "biodl attribute('ig')": float("inf")}
    for _ in range(args.rounds):  # alternating rounds, best of each
        for name, fn in (("captum, plain call", plain), ("biodl attribute('ig')", ours)):
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    print(f"IG, {args.steps} steps, ResNet-18, 1 x 3 x 224 x 224, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; best of {args.rounds} alternating rounds")
    base_t = best["captum, plain call"]
    for name, t in best.items():
        print(f"  {name:<24} {t:6.2f} s   {base_t / t:4.2f}x")
    print(f"target <= 5 s: {'met' if best['biodl attribute(' + chr(39) + 'ig' + chr(39) + ')'] <= 5 else 'MISSED'}")


if __name__ == "__main__":
    main()

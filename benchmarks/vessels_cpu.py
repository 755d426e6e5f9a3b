"""Where the vessel study's CPU time goes, and what each lever of the field buys on this CPU.

Part 1, the split of one study run: preparing the fundus images (CLAHE, FOV), drawing the
training patches, one training step (forward + backward + AdamW) times the study's steps, and
tiled inference over the 20 training images (the threshold) and the 8 test images (each tile's 4
flips averaged, as the study predicts). Part 2, one
training step and one tiled image under each setting, side by side with float32 NCHW (the
baseline): channels-last, bf16 autocast (this CPU has avx512_bf16 if lscpu says so), larger
patches for the same pixels, and torch.compile.

    python benchmarks/vessels_cpu.py [--steps 20] [--compile]
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch

from biodl.config import build_config
from biodl.data.transforms import flip_tta_map
from biodl.engine import Inferer
from biodl.models import create_model
from biodl.studies.vessels import CONFIG
from biodl.tasks.segmentation import Normalise, _loss, draw_patches, load_cases
from biodl.tasks.segmentation_report import predict_map


def step_seconds(model, norm, loss, x, y, steps: int, channels_last: bool, bf16: bool) -> float:
    """Mean seconds of one training step over ``steps``, after 3 warm-up steps."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    model.train()

    def one() -> None:
        xb = norm(x, train=True)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with cast:
            out = model(xb)
        value = loss(out, y)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()

    for _ in range(3):
        one()
    t = time.perf_counter()
    for _ in range(steps):
        one()
    return (time.perf_counter() - t) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes to compile)")
    opts = parser.parse_args()
    torch.manual_seed(0)
    config = build_config(CONFIG, None, where="vessels")
    d = config.data
    t = time.perf_counter()
    from biodl.data.vessels import prepare_fundus

    train_cases, test_cases, _ = load_cases(config)
    prepared = {c.name: prepare_fundus(c.image, d.channels, d.clahe) for c in [*train_cases, *test_cases]}
    t_prepare = time.perf_counter() - t
    images = [prepared[c.name] for c in train_cases]
    masks, fovs = [c.mask for c in train_cases], [c.fov for c in train_cases]
    t = time.perf_counter()
    xs, ys = draw_patches(images, masks, fovs, d.patches, d.patch, 0, True)
    t_draw = time.perf_counter() - t
    norm = Normalise([0.5], [0.25], True)
    loss = _loss()

    def model():
        torch.manual_seed(0)
        return create_model(config.model.name, in_chans=1, **config.model.args)

    b = d.batch_size
    steps_per_run = config.trainer.epochs * d.patches // b
    print(f"vessels on the CPU ({torch.get_num_threads()} threads), study settings: {config.trainer.epochs} epochs x "
          f"{d.patches} patches of {d.patch} px, batch {b} = {steps_per_run} steps")
    study = (True, config.trainer.precision == "bf16")  # the study's (channels-last, bf16)
    settings = {"float32 NCHW (baseline)": (False, False), "float32 channels-last": (True, False),
                "bf16 autocast NCHW": (False, True), "bf16 autocast channels-last": (True, True)}
    rows = [(label + (" (the study)" if how == study else ""),
             step_seconds(model(), norm, loss, xs[:b], ys[:b], opts.steps, *how)) for label, how in settings.items()]
    base, now = rows[0][1], dict(zip(settings.values(), (r[1] for r in rows), strict=True))[study]
    x128, y128 = draw_patches(images, masks, fovs, b // 4, 128, 0, True)
    rows.append((f"128 px patches, batch {b // 4} (same pixels), channels-last",
                 step_seconds(model(), norm, loss, x128, y128, opts.steps, True, False)))
    if opts.compile:
        rows.append(("torch.compile, channels-last", step_seconds(torch.compile(model()), norm, loss, xs[:b], ys[:b],
                                                                 opts.steps, True, False)))
    print(f"{'one training step':<58} {'s/step':>7} {'run (s)':>8} {'vs baseline':>11}")
    for label, s in rows:
        print(f"{label:<58} {s:7.3f} {s * steps_per_run:8.0f} {base / s:10.2f}x")

    def per_image(precision: str, tta: bool = False) -> float:
        inferer = Inferer(model(), device="cpu", precision=precision, batch_transform=norm, postprocess=torch.sigmoid,
                          eval_forward=flip_tta_map if tta else None)
        t = time.perf_counter()
        for c in test_cases[:2]:
            predict_map(inferer, prepared[c.name], d.tile, d.overlap)
        return (time.perf_counter() - t) / 2

    per_image, per_image_bf16 = per_image("32"), per_image("bf16")
    per_image_tta = per_image("bf16" if study[1] else "32", tta=True)
    n_maps = len(train_cases) + len(test_cases)  # the threshold (training images), the test images
    tiled = per_image_tta if config.model.tta else per_image_bf16 if study[1] else per_image
    tta = ", 4-flip TTA" if config.model.tta else ""
    print(f"\nwhere a study run's time goes ({'bf16' if study[1] else 'float32'} channels-last{tta}, as the study "
          "runs):")
    split = [("prepare images (CLAHE, FOV)", t_prepare), ("draw patches (once)", t_draw),
             ("training steps", now * steps_per_run), ("tiled inference", tiled * n_maps)]
    for label, s in split:
        print(f"  {label:<42} {s:8.1f} s")
    print(f"  {'total':<42} {sum(s for _, s in split):8.1f} s")
    print(f"tiled inference per 999x960 image: float32 {per_image:.2f} s, bf16 {per_image_bf16:.2f} s "
          f"({per_image / per_image_bf16:.2f}x), with the 4 flips averaged {per_image_tta:.2f} s")


if __name__ == "__main__":
    main()

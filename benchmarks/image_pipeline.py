"""Training throughput from image files: the workshop's pipeline, MONAI's, and biodl's, against the
compute-only ceiling, for the same model, data and batch size.

Data: N generated fundus-like PNGs (224 x 224) in an ImageFolder tree of the five DR grades.
Arms (training images/s in steady state, after warm-up steps; each arm trains a fresh model
with Adam and cross-entropy; the arms alternate over rounds and each keeps its best):

  (a) workshop  torchvision ImageFolder, PIL decode per item, ToTensor + Normalize(0.5, 0.5),
                DataLoader(batch 4, shuffle, 2 workers), NCHW model: the workshop's code as written.
  (b) monai     CacheDataset(LoadImaged, EnsureChannelFirstd, ScaleIntensityd, cache_rate=1) +
                monai DataLoader(batch B, shuffle); the model in channels_last like (c) and (d), so
                that only the data pipeline differs.
  (c) biodl     ``biodl train``'s pipeline: decode once into the on-disk cache, uint8 batches read
                from it (ahead, by threads, into pinned buffers), normalised (and, on a second
                line, augmented) on the device, the Trainer with its checkpoints and logs; on a
                GPU also ``resident``: the set held on the device (``data.device_cache: on``).
  (d) ceiling   the same model and batch size on one in-memory batch of the same images, as
                normalised floats already on the device, over and over.

The cache builds (biodl's and MONAI's) are timed separately. Run from the repository root:

    python benchmarks/image_pipeline.py [--n 2000] [--models dbrnet,resnet18] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _images import GRADES, make_tree
from torch import nn

from biodl.engine import Callback
from biodl.engine.inferer import nhwc_safe_on_cpu

#: model -> (batch size, warm-up steps, timed steps) on the CPU and on a GPU
PLAN = {"cpu": {"dbrnet": (64, 2, 12), "resnet18": (32, 1, 6)},
        "cuda": {"dbrnet": (256, 10, 60), "resnet18": (256, 10, 60)}}


def make_model(name: str, device: torch.device, channels_last: bool) -> nn.Module:
    from biodl.models import create_model

    torch.manual_seed(0)
    m = create_model(name, num_classes=len(GRADES), in_chans=3).to(device)
    return m.to(memory_format=torch.channels_last) if channels_last else m


def _steps(model: nn.Module, batches, device: torch.device, warm: int, timed: int, channels_last: bool,
           bf16: bool) -> float:
    """Images/s over ``timed`` training steps after ``warm`` steps; ``batches`` yields (x, y) forever."""
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    n, t0 = 0, 0.0
    for i, (x, y) in enumerate(batches):
        if i == warm:
            _sync(device)
            t0, n = time.perf_counter(), 0
        if i == warm + timed:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(y)
    _sync(device)
    return n / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _forever(loader):
    while True:
        yield from loader


def ceiling(data, name: str, device: torch.device, bs: int, warm: int, timed: int, cl: bool, bf16: bool) -> float:
    """Distinct in-memory batches of the same images, normalised floats on the device, cycled
    (one batch over and over would be learnt by heart, and the CPU slows down on the denormal
    numbers that the vanishing gradients then produce)."""
    k = min(warm + timed, 16)
    rows = np.random.default_rng(1).permutation(len(data))[: k * bs] % len(data)
    x = torch.from_numpy(data.images[np.sort(rows)]).permute(0, 3, 1, 2).float().div(255)
    x = ((x - 0.5) / 0.25).contiguous().to(device)
    y = torch.from_numpy(data.labels[np.sort(rows)]).to(device)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).to(device)
    xs, ys = x[order].split(bs), y[order].split(bs)
    batches = ((xs[i % len(xs)], ys[i % len(ys)]) for i in range(warm + timed + 1))
    return _steps(make_model(name, device, cl), batches, device, warm, timed, cl, bf16)


def workshop(root: Path, name: str, device: torch.device, warm: int, timed_images: int) -> float:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    loader = DataLoader(datasets.ImageFolder(str(root), transform=tf), batch_size=4, shuffle=True, num_workers=2)
    return _steps(make_model(name, device, False), _forever(loader), device, warm * 4, timed_images // 4,
                  False, device.type == "cuda")


def monai_dataset(root: Path):
    from monai.data import CacheDataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityd

    files = [{"img": str(p), "label": GRADES.index(p.parent.name)} for p in sorted(root.rglob("*.png"))]
    tf = Compose([LoadImaged(keys="img", image_only=True), EnsureChannelFirstd(keys="img"),
                  ScaleIntensityd(keys="img")])
    return CacheDataset(files, tf, cache_rate=1.0, num_workers=2, progress=False)


def monai_arm(ds, name: str, device: torch.device, bs: int, warm: int, timed: int, cl: bool, bf16: bool) -> float:
    from monai.data import DataLoader

    loader = DataLoader(ds, batch_size=bs, shuffle=True, num_workers=0, pin_memory=device.type == "cuda")
    batches = ((b["img"].as_tensor(), b["label"]) for b in _forever(loader))
    return _steps(make_model(name, device, cl), batches, device, warm, timed, cl, bf16)


class _Clock(Callback):
    """Images/s between the end of batch ``warm`` and the end of the epoch."""

    def __init__(self, warm: int, bs: int) -> None:
        self.warm, self.bs, self.t0, self.n = warm, bs, 0.0, 0

    def on_train_batch_end(self, trainer, batch_idx: int) -> None:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        if batch_idx + 1 == self.warm:
            self.t0, self.n = time.perf_counter(), 0
        elif batch_idx + 1 > self.warm:
            self.n += self.bs
            self.rate = self.n / (time.perf_counter() - self.t0)


def biodl_images(root: Path, cache: Path):
    from biodl.config import build_config
    from biodl.tasks.image_data import load_images

    config = build_config({"task": "image", "data": {"path": str(root), "size": 224, "cache_dir": str(cache)}})
    return load_images(config)[0]


def biodl_arm(data, name: str, device: torch.device, bs: int, warm: int, timed: int, augment: bool,
              resident: bool = False) -> float:
    from biodl.config import build_config
    from biodl.data import ImageDataset
    from biodl.data.transforms import channel_stats
    from biodl.tasks.image import build_trainer

    config = build_config({
        "task": "image", "data": {"path": "unused", "batch_size": bs, "augment": augment},
        "model": {"name": name}, "optimizer": {"name": "adam", "lr": 1e-3},
        "trainer": {"epochs": 1, "progress": False, "device": str(device)}})
    # one pass of warm + timed batches; a small set (on a GPU) is repeated in a new order each time
    rows = np.concatenate([np.random.default_rng(i).permutation(len(data))
                           for i in range(-(-bs * (warm + timed) // len(data)))])[: bs * (warm + timed)]
    mean, std = channel_stats(data.images, rows)
    pre = {"mean": mean, "std": std, "classes": data.classes}
    trainer = build_trainer(config, make_model(name, device, False), len(data.classes), None, pre, None, device)
    clock = _Clock(warm, bs)
    trainer.callbacks.append(clock)
    train = ImageDataset(data, indices=rows)
    trainer.fit(train.resident(device) if resident else train)  # data.device_cache: on / off
    return clock.rate


def measure(name: str, data, mds, root: Path, device: torch.device, arms: list[str], rounds: int
            ) -> dict[str, float]:
    """Images/s of each arm for one model: arms alternate over rounds, each keeps its best."""
    bs, warm, timed = PLAN[device.type][name]
    cl = channels_last(name, device)
    bf16 = device.type == "cuda"
    runs = {"ceiling": lambda: ceiling(data, name, device, bs, warm, timed, cl, bf16),
            "workshop": lambda: workshop(root, name, device, warm, bs * timed),
            "monai": lambda: monai_arm(mds, name, device, bs, warm, timed, cl, bf16),
            "biodl": lambda: biodl_arm(data, name, device, bs, warm, timed, False),
            "biodl+aug": lambda: biodl_arm(data, name, device, bs, warm, timed, True),
            "resident": lambda: biodl_arm(data, name, device, bs, warm, timed, False, resident=True)}
    r: dict[str, float] = {}
    for k in range(rounds):
        for arm, fn in runs.items():
            if arm in arms and not (arm == "resident" and device.type != "cuda"):
                t = time.perf_counter()
                rate = fn()
                r[arm] = max(r.get(arm, 0.0), rate)
                print(f"  {name} round {k + 1}: {arm} {rate:.0f} images/s ({time.perf_counter() - t:.1f} s)",
                      flush=True)
    return r


def channels_last(name: str, device: torch.device) -> bool:
    """The layout biodl's Trainer picks for this model on this device."""
    return device.type == "cuda" or nhwc_safe_on_cpu(make_model(name, torch.device("cpu"), False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="generated images")
    ap.add_argument("--models", default="dbrnet,resnet18")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "biodl-bench-images")
    ap.add_argument("--arms", default="ceiling,workshop,monai,biodl,biodl+aug,resident",
                    help="comma-separated; resident is measured on a GPU only")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; best of them per arm")
    args = ap.parse_args()
    device, arms = torch.device(args.device), args.arms.split(",")
    root = args.work / f"tree-{args.n}"
    t = time.perf_counter()
    make_tree(root, args.n, 224)
    print(f"{args.n} PNGs of 224x224 in {root} ({time.perf_counter() - t:.1f} s if generated now); "
          f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=args.work))
    t = time.perf_counter()
    data = biodl_images(root, cache)
    print(f"cache build: biodl {time.perf_counter() - t:.1f} s", end="")
    mds = None
    if "monai" in arms:
        t = time.perf_counter()
        mds = monai_dataset(root)
        print(f", MONAI CacheDataset {time.perf_counter() - t:.1f} s", end="")
    print()
    bf16 = device.type == "cuda"
    for name in args.models.split(","):
        bs, _, timed = PLAN[device.type][name]
        r = measure(name, data, mds, root, device, arms, args.rounds)
        layout = "channels_last" if channels_last(name, device) else "NCHW"
        print(f"\n{name}: batch {bs} ({layout}{', bf16' if bf16 else ''}; workshop: batch 4, NCHW), "
              f"{bs * timed} timed images per arm, best of {args.rounds} alternating rounds")
        print(f"  {'arm':<10} {'img/s':>8} {'/ceiling':>9} {'/workshop':>10} {'/monai':>7}")
        for arm, v in r.items():
            ratios = [f"{v / r[k]:.2f}" if k in r else "-" for k in ("ceiling", "workshop", "monai")]
            print(f"  {arm:<10} {v:8.1f} {ratios[0]:>9} {ratios[1]:>10} {ratios[2]:>7}")


if __name__ == "__main__":
    main()

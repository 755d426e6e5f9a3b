"""Engine overhead: biodl's Trainer against a bare hand-written loop, same model, data and steps.

Both train the same MLP (64 -> 256 -> 256 -> 1, dropout) with Adam on the same
in-memory data, batch 256, shuffled each epoch. The Trainer also does what a real
run needs: resumable sampling, loss accumulation, the per-epoch ``last``
checkpoint (safetensors + JSON, fsynced) and metrics.csv. Runs alternate
(bare, engine, bare, ...) the best (least disturbed) and the median time per step are compared.

    python benchmarks/engine_overhead.py [--rows 16384] [--epochs 3] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from biodl.engine import CSVLogger, Trainer
from biodl.models import create_model
from biodl.repro import seed_everything


#: name -> (features, hidden, batch): "small" is the reference; "tiny" (the heart-failure MLP's size,
#: batch 16) shows the per-step overhead at its most visible, where a step is ~0.3 ms of compute.
SIZES = {"small": (64, [256, 256], 256), "tiny": (11, [32, 16], 16)}
SIZE = SIZES["small"]


def make_model() -> nn.Module:
    return create_model("mlp", in_features=SIZE[0], hidden=SIZE[1], dropout=0.1)


def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y.float())


def bare(x: torch.Tensor, y: torch.Tensor, epochs: int, bs: int) -> tuple[float, int]:
    seed_everything(0)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    steps = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), bs):
            idx = perm[i : i + bs]
            out = model(x[idx])
            loss = loss_fn(out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    return time.perf_counter() - t0, steps


def engine(x: torch.Tensor, y: torch.Tensor, epochs: int, bs: int) -> tuple[float, int]:
    seed_everything(0)
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(
            make_model(), loss_fn, lambda p: torch.optim.Adam(p, lr=1e-3), max_epochs=epochs, batch_size=bs,
            device="cpu", checkpoint_dir=Path(d), callbacks=[CSVLogger(Path(d) / "metrics.csv")],
        )
        t0 = time.perf_counter()
        trainer.fit(TensorDataset(x, y))
        return time.perf_counter() - t0, trainer.step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--size", choices=[*SIZES, "all"], default="all")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: least noise from other processes)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.rows} rows, {a.epochs} epochs, "
          f"{a.repeats} alternating repeats, ms per optimiser step")
    global SIZE
    for size in SIZES if a.size == "all" else [a.size]:
        SIZE = SIZES[size]
        n_feat, hidden, bs = SIZE
        g = torch.Generator().manual_seed(1)
        x = torch.randn(a.rows, n_feat, generator=g)
        y = (x[:, :8].sum(1) > 0).long()
        bare(x, y, 1, bs), engine(x, y, 1, bs)  # warm-up
        per_step: dict[str, list[float]] = {"bare": [], "engine": []}
        for _ in range(a.repeats):
            for name, fn in (("bare", bare), ("engine", engine)):
                secs, steps = fn(x, y, a.epochs, bs)
                per_step[name].append(secs / steps * 1e3)
        bm, em = statistics.median(per_step["bare"]), statistics.median(per_step["engine"])
        b, e = min(per_step["bare"]), min(per_step["engine"])
        print(f"[{size}: mlp {n_feat}->{'->'.join(map(str, hidden))}->1, batch {bs}]  "
              f"best of {a.repeats}: bare {b:.3f} ms  Trainer {e:.3f} ms  ratio {e / b:.3f} (aim <= 1.10);  "
              f"medians {bm:.3f} / {em:.3f}, ratio {em / bm:.3f}")


if __name__ == "__main__":
    main()

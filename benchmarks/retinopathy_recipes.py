"""A screen of training recipes for the RetinaMNIST study (issue 14's accuracy and AUC target),
and the calibration diagnosis that goes with it.

Each recipe trains the study's small ResNet (width 32, 2 blocks a stage) on the official 1,080
training images in a plain loop built from biodl's parts (model registry, batched augmentation,
dihedral TTA), so that variants the engine does not offer (EMA, SWA, soft ordinal labels,
mixup, upsampling) can be tried side by side. The epoch is chosen on the official validation
split (macro AUC), never on the test split; test numbers are printed for information. Per run
it also fits a temperature on the validation split (as ``biodl`` does) and prints the test ECE
before and after, and, for diagnosis only (never used by biodl), the temperature that the test
split itself would want. A pair of seeds is also scored as a two-member ensemble.

    python benchmarks/retinopathy_recipes.py [--recipes base,light,...] [--seeds 0,1] [--threads 2]

About 5 minutes per 40-epoch run on this 2-core CPU.
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from biodl.trust import calibration
from biodl.data.transforms import BatchAugment, dihedral_tta
from biodl.datasets import embedded_path
from biodl.evaluation import calibration_scores, multiclass_scores
from biodl.models import create_model

#: recipe -> its changes to the study's defaults (see ``train``)
RECIPES: dict[str, dict] = {
    "base": {},  # the study's recipe (40 epochs, AdamW 3e-3, wd 0.05, dropout 0.2, full augmentation)
    "tta": {"tta": True},
    "light": {"aug": "light"},  # flips and 90-degree rotations only
    "ordinal": {"ordinal": 1.0},  # soft labels: a Gaussian (sd 1 grade) around the true grade
    "ema": {"ema": 0.99},
    "swa": {"swa": 10, "monitor": "last"},
    "15ep": {"epochs": 15},
    "class_weights": {"cw": True},
    "less_reg": {"dropout": 0.0, "wd": 0.01, "aug": "mid"},
    "up48": {"up": 48, "epochs": 15},  # images upsampled to 48 px before the network
    "wide": {"width": 64, "epochs": 15},
}


def train(seed: int = 0, epochs: int = 40, width: int = 32, dropout: float = 0.2, lr: float = 3e-3, wd: float = 0.05,
          aug: str = "full", ordinal: float = 0.0, ema: float = 0.0, tta: bool = False, monitor: str = "auc",
          swa: int = 0, cw: bool = False, up: int = 0, bs: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """One recipe at one seed -> (validation (120, 5), test (400, 5)) probabilities (the study's small
    ResNet: ``width`` channels in the first stage, 2 blocks a stage)."""
    torch.manual_seed(seed)
    d = np.load(embedded_path("retinamnist"))

    def tensor(key: str) -> torch.Tensor:
        return torch.from_numpy(d[key]).permute(0, 3, 1, 2).contiguous()

    x_tr, x_va, x_te = tensor("train_images"), tensor("val_images"), tensor("test_images")
    y_tr = torch.from_numpy(d["train_labels"].ravel()).long()
    y_va = d["val_labels"].ravel()
    mean = (x_tr.float() / 255).mean((0, 2, 3)).view(1, -1, 1, 1)
    std = (x_tr.float() / 255).std((0, 2, 3)).view(1, -1, 1, 1)
    augment = {"full": BatchAugment(), "mid": BatchAugment(crop_scale=(0.9, 1.0)),
               "light": BatchAugment(degrees=0, crop_scale=(1.0, 1.0))}[aug]
    k = 5
    model = create_model("resnet_small", num_classes=k, in_chans=3, width=width, blocks=2, dropout=dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    steps = epochs * math.ceil(len(x_tr) / bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    grades = torch.arange(k).float()
    soft = torch.softmax(-((grades.view(-1, 1) - grades.view(1, -1)) ** 2) / (2 * max(ordinal, 1e-6) ** 2), dim=1)
    weights = len(y_tr) / (k * torch.bincount(y_tr, minlength=k).float())
    averaged = copy.deepcopy(model) if ema or swa else None
    n_swa = 0

    def prep(x: torch.Tensor, training: bool) -> torch.Tensor:
        x = x.float() / 255
        x = augment(x) if training else x
        x = (x - mean) / std
        return F.interpolate(x, size=(up, up), mode="bilinear", align_corners=False) if up else x

    @torch.no_grad()
    def predict(m: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
        m.eval()
        x = prep(x, False)
        return (dihedral_tta(m, x).exp() if tta else torch.softmax(m(x), 1)).numpy().astype(np.float64)

    gen = torch.Generator().manual_seed(seed)
    best, best_state = -math.inf, None
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(x_tr), bs):
            idx = order[i:i + bs]
            x, y = prep(x_tr[idx], True), y_tr[idx]
            target = soft[y] if ordinal else F.one_hot(y, k).float()
            per_case = -(target * F.log_softmax(model(x), 1)).sum(1)
            loss = (per_case * weights[y]).sum() / weights[y].sum() if cw else per_case.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if ema:
                with torch.no_grad():
                    for pa, pm in zip(averaged.parameters(), model.parameters(), strict=True):
                        pa.mul_(ema).add_(pm, alpha=1 - ema)
                    for ba, bm in zip(averaged.buffers(), model.buffers(), strict=True):
                        ba.copy_(bm)
        if swa and epoch >= epochs - swa:
            n_swa += 1
            with torch.no_grad():
                for pa, pm in zip(averaged.parameters(), model.parameters(), strict=True):
                    pa.mul_((n_swa - 1) / n_swa).add_(pm, alpha=1 / n_swa)
        scored = averaged if ema else model
        p_val = predict(scored, x_va)
        value = {"auc": multiclass_scores(y_va, p_val)["roc_auc"], "last": epoch}[monitor]
        if value > best:
            best, best_state = value, copy.deepcopy(scored.state_dict())
    if swa:  # batch-norm statistics of the averaged weights, from the training images
        with torch.no_grad():
            averaged.train()
            for m in averaged.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.reset_running_stats()
                    m.momentum = None
            for i in range(0, len(x_tr), bs):
                averaged(prep(x_tr[i:i + bs], False))
        final = averaged
    else:
        final = copy.deepcopy(model)
        final.load_state_dict(best_state)
    return predict(final, x_va), predict(final, x_te)


def line(name: str, p_val: np.ndarray, p_test: np.ndarray, seconds: float | None = None) -> str:
    d = np.load(embedded_path("retinamnist"))
    y_val, y_test = d["val_labels"].ravel(), d["test_labels"].ravel()
    val, test = multiclass_scores(y_val, p_val), multiclass_scores(y_test, p_test)
    cal = calibration.fit("temperature", y_val, p_val)
    diagnosis = calibration.fit("temperature", y_test, p_test).temperature  # never used by biodl
    before, after = calibration_scores(y_test, p_test)["ece"], calibration_scores(y_test, cal.apply(p_test))["ece"]
    took = f"{seconds:5.0f} s" if seconds is not None else "       "
    return (f"{name:20s} {took}  val acc {val['accuracy']:.3f} AUC {val['roc_auc']:.3f}   test acc "
            f"{test['accuracy']:.3f} AUC {test['roc_auc']:.3f}   T(val) {cal.temperature:.2f} -> test ECE "
            f"{before:.3f} -> {after:.3f}   [T(test), diagnosis only: {diagnosis:.2f}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    print("MedMNIST v2 best baselines on the test split: accuracy 0.531, AUC 0.750 (Google AutoML Vision)")
    for name in args.recipes.split(","):
        probs = []
        for seed in seeds:
            started = time.perf_counter()
            probs.append(train(seed=seed, **RECIPES[name]))
            print(line(f"{name} seed {seed}", *probs[-1], time.perf_counter() - started), flush=True)
        if len(probs) > 1:
            print(line(f"{name} mean of seeds", *(np.mean(p, axis=0) for p in zip(*probs, strict=True))), flush=True)


if __name__ == "__main__":
    main()

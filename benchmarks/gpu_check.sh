#!/bin/bash
# Issue 18's device checks: one call on a lent GPU (H100/H200), about 8 minutes, e.g.
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
# The device machine has torch, torchvision, torchmetrics, timm, scikit-learn, tensorboard, typer,
# rich, safetensors, pandas, scipy, matplotlib and PyYAML, but not pydantic (nor pydantic-core,
# annotated-types, typing-inspection, a recent typing_extensions) or monai (the Dice loss, the
# MONAI arm): their cp312 wheels go in .whl/ first (git-ignored through .git/info/exclude), e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl pydantic==2.14.4 \
#     pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0 monai==1.6.1
# Everything prints to the log and goes to $OUT; the tables come last.
set -uo pipefail
OUT=${OUT:-/tmp/biodl-gpu}
RUNS=/tmp/biodl-gpu-runs  # run folders stay on the machine: $OUT brings back at most 8 files
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1
# one call is at most 600 s: every step is capped by what is left before DEADLINE, so the tables print
DEADLINE=${DEADLINE:-560}
cap() { local left=$((DEADLINE - SECONDS)); ((left < $1)) && echo $((left > 5 ? left : 5)) || echo "$1"; }
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:$PWD/benchmarks:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"

# 1. the vessel study's wall time on the GPU (4 bf16 epochs, maps the mean of 4 flips)
start=$SECONDS
timeout $(cap 200) python3 -m biodl run vessels --out "$RUNS/vessels" --set trainer.progress=false >"$RUNS/vessels.log" 2>&1
echo "vessels: exit $?, wall $((SECONDS - start)) s" | tee "$OUT/vessels.txt"
tail -n 25 "$RUNS/vessels.log" >>"$OUT/vessels.txt"
cp "$RUNS/vessels/metrics.json" "$OUT/vessels_metrics.json" 2>/dev/null

# 2. the three batch routes give the plain route's batches on CUDA (pinned ring + side stream,
#    resident gather), and what each delivers
timeout $(cap 60) python3 benchmarks/gpu_loader_check.py --device cuda --images 2048 2>&1 | tee "$OUT/loaders.txt"

# 3. DBRNet and ResNet-18, 224 px, bf16, batch 256, from PNGs: biodl (disk cache, read ahead) and biodl
#    resident against the ceiling (target: biodl >= 0.90 of it); ARMS=ceiling,monai,biodl,resident adds MONAI
timeout $(cap 200) python3 benchmarks/image_pipeline.py --device cuda --n 2000 --models dbrnet,resnet18 \
  --arms "${ARMS:-ceiling,biodl,resident}" --rounds "${ROUNDS:-1}" --work /tmp/bench 2>&1 | tee "$OUT/pipeline.txt"

# 4. DDP through torchrun (1 process, NCCL), eager and compiled, against a plain eager run
common=(run retinopathy --set trainer.epochs=4 --set trainer.progress=false --set data.device_cache=on)
timeout $(cap 60) python3 -m biodl "${common[@]}" --out "$RUNS/eager" >"$RUNS/eager.log" 2>&1
timeout $(cap 90) torchrun --nproc_per_node=1 -m biodl "${common[@]}" --out "$RUNS/ddp" >"$RUNS/ddp.log" 2>&1
timeout $(cap 180) torchrun --nproc_per_node=1 -m biodl "${common[@]}" --set trainer.compile=true \
  --out "$RUNS/ddp-compile" >"$RUNS/ddp-compile.log" 2>&1
for f in eager ddp ddp-compile; do echo "== $f.log"; tail -n 15 "$RUNS/$f.log"; done >"$OUT/runs.log"
python3 - "$RUNS" <<'PY' | tee "$OUT/curves.txt"
import sys, pandas as pd
from pathlib import Path
out = Path(sys.argv[1])
ref = pd.read_csv(out / "eager/metrics.csv")
for name in ("ddp", "ddp-compile"):
    try:
        got = pd.read_csv(out / name / "metrics.csv")
    except FileNotFoundError:
        print(f"{name}: no metrics.csv (see {name}.log)")
        continue
    rel = ((got["train/loss"] - ref["train/loss"]).abs() / ref["train/loss"]).max()
    print(f"{name}: train/loss per epoch {got['train/loss'].round(4).tolist()} vs eager "
          f"{ref['train/loss'].round(4).tolist()}: max relative difference {rel:.2e} (bf16: expect < 2e-2)")
PY
tail -n 30 "$OUT/loaders.txt" "$OUT/pipeline.txt" "$OUT/vessels.txt" "$OUT/runs.log" "$OUT/curves.txt"

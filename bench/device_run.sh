#!/usr/bin/env bash
# Run the training bench on a CUDA machine from the .device-bench/ bundle (see bench/device_bundle.sh).
# Writes train-bench-cuda.json and the log to $OUT (or the current folder).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-.}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device-bench/wheels/*.whl
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 - <<'EOF'
import shutil
from pathlib import Path
from safetensors.torch import load_file, save_file

source, target = Path(".device-bench/model-fp16"), Path("/tmp/minilm-fp32")
shutil.rmtree(target, ignore_errors=True)
shutil.copytree(source, target)
weights = load_file(source / "model.safetensors")
save_file({k: v.float().contiguous() for k, v in weights.items()}, target / "model.safetensors", metadata={"format": "pt"})
EOF
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 bench/train_bench.py --articles .device-bench/articles.json.gz --base-model /tmp/minilm-fp32 \
  --device cuda --out "$out/train-bench-cuda.json" "$@" 2>&1 | tee "$out/train-bench-cuda.log"

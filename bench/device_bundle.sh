#!/usr/bin/env bash
# Prepare .device-bench/ for running bench/train_bench.py on a GPU machine that has PyTorch and a
# sentence-transformers but no network, no shared data folder and no PostgreSQL: the extracted articles
# (1 MB), an fp16 copy of the base model (45 MB; upcast to fp32 there, so training runs in fp32 master
# weights with bf16 autocast), and the wheels the bench needs beyond that image (cp312, manylinux).
#
#   bench/device_bundle.sh                 # here, in the repo root, with the project's venv active
#   echo /.device-bench/ >> .git/info/exclude
#   then on the GPU machine, carrying .device-bench:  bash bench/device_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
out=.device-bench
rm -rf "$out" && mkdir -p "$out/wheels"

HF_HUB_OFFLINE=1 "$PYTHON" bench/train_bench.py --export-articles "$out/articles.json.gz"

HF_HUB_OFFLINE=1 "$PYTHON" - "$out/model-fp16" <<'EOF'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
from models.base import BASE_MODEL_ID, resolve_model_path

source, target = Path(resolve_model_path(BASE_MODEL_ID)), Path(sys.argv[1])
shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors", "*.onnx", "onnx", "openvino"))
weights = load_file(source / "model.safetensors")
save_file({k: v.half().contiguous() for k, v in weights.items()}, target / "model.safetensors", metadata={"format": "pt"})
EOF

"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$out/wheels" sentence-transformers==6.2.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
du -sh "$out"

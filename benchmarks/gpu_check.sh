#!/usr/bin/env bash
# One short GPU check (about 5 minutes, at most 8): ELECTRA-Small pre-training in bf16 — tokens/s, MFU against the
# GPU's bf16 dense peak, peak memory — then the dcgan preset's images/s.  Installs nothing: it needs a Python whose
# torch sees the GPU and which has transformers + tokenizers (+ the project's small pure-Python deps); the project
# itself runs from src/.  Usage: bash benchmarks/gpu_check.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PYEOF'
import importlib, sys
missing = [m for m in ("torch", "transformers", "tokenizers", "safetensors", "numpy", "tqdm", "PIL", "matplotlib") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages {missing}; install the project's requirements first")
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch does not see a GPU")
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
PYEOF
timeout 480 "$PY" benchmarks/gpu_bench.py --steps "${1:-60}"

#!/usr/bin/env bash
# GPU acceptance run: the @pytest.mark.gpu tests, then the embed and cluster benchmarks at GPU
# sizes. Run from the repository root on a machine with CUDA, CuPy and (optionally) cuML and
# FAISS-GPU installed:  OUT=/path/to/logs bash scripts/gpu_check.sh
# Every step writes its log under "${OUT:-/tmp/gpu_check}"; the script stops at the first failure.
set -euo pipefail

OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

step() {  # step NAME CMD...: run CMD, tee its output to $OUT/NAME.log, keep its exit status
    local name="$1"
    shift
    echo "== $name: $*" | tee "$OUT/$name.log"
    "$@" 2>&1 | tee -a "$OUT/$name.log"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    python - <<'EOF'
import importlib
for mod in ("torch", "cupy", "cuml", "faiss"):
    try:
        m = importlib.import_module(mod)
        print(mod, getattr(m, "__version__", "?"))
    except Exception as exc:  # report, do not fail: each missing library has a fallback rung
        print(mod, "not importable:", exc)
import faiss, torch
print("cuda", torch.cuda.is_available(), "faiss gpus", getattr(faiss, "get_num_gpus", lambda: 0)())
EOF
} 2>&1 | tee "$OUT/env.log"

step pytest_gpu python -m pytest -m gpu -q -rs tests/
step bench_embed python scripts/bench_embed.py --backend gpu --n 20000 --batch-size 256
step bench_cluster python scripts/bench_cluster.py --backend gpu --sizes 1000000 4000000

# === packing benchmark: appended by the owner of the pack stage ===============================
# step bench_pack python scripts/bench_pack.py --backend gpu ...
# === end packing benchmark ====================================================================

echo "gpu_check: all steps passed; logs in $OUT"

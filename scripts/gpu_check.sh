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

# The packing kernel on CuPy at the issue's size, with the CPU run of the same input beside it.
step bench_pack_gpu python scripts/bench_pack.py --backend gpu --n-docs 1000000 --subsample 0 \
    --score weighted --batch-size 32 --no-trace
step bench_pack_cpu python scripts/bench_pack.py --backend cpu --n-docs 1000000 --subsample 0 \
    --score weighted --batch-size 32 --no-trace
# The whole pipeline on the GPU (embed -> cluster -> pack) on the embedded sample.
step e2e_gpu python -m datasculpt.main backend=gpu output_dir="$OUT/e2e" report.baselines=true

echo "gpu_check: all steps passed; logs in $OUT"

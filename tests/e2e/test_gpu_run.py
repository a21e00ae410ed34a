"""End to end on a real GPU: the command line with backend=gpu, every stage on the device
(the iclm baseline's kNN may warn), the output contract intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import GPU_TEST_MODEL, check_contract, run_cli

pytestmark = pytest.mark.slow


@pytest.mark.gpu
def test_end_to_end_run_on_the_gpu(tmp_path: Path) -> None:
    proc = run_cli("backend=gpu", "ctx_len=4096", f"output_dir={tmp_path / 'run'}",
                   f"embed.model={GPU_TEST_MODEL}", f"tokenizer={GPU_TEST_MODEL}",
                   "report.plots=false", "report.baselines=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["run"]["backend"] == "gpu"
    assert report["run"]["rungs"]["embed"].startswith("torch-cuda/")
    assert report["run"]["rungs"]["pack"] == "cupy"
    assert "rounds on cupy" in report["run"]["rungs"]["cluster"]
    assert not [w for w in report["run"]["warnings"] if not w.startswith("pack_iclm")]
    m = report["metrics"]
    assert m["lost_tokens"] == m["duplicated_tokens"] == m["overlong_sequences"] == 0
    check_contract(tmp_path / "run", ctx_len=4096, append_eos=True)

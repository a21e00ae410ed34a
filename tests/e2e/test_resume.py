"""End to end: killed runs (SIGKILL, from outside or at an injected fault point) resume to the
same bytes; reruns through the command line reuse what did not change. In-process, a stage
that failed: tests/test_pipeline.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_cli

pytestmark = pytest.mark.slow

ARGS = ["pack=datasculpt", "ctx_len=4096", "report.plots=false", "report.progress=false"]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    out.parent.mkdir(parents=True, exist_ok=True)
    return run_cli(*ARGS, f"output_dir={out}", *extra, cwd=out.parent)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = _run(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (out / "sequences.jsonl").read_bytes()


def test_same_seed_same_bytes_and_pack_changes_reuse_upstream(tmp_path: Path,
                                                             reference: bytes) -> None:
    out = tmp_path / "run"
    first = _run(out)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "sequences.jsonl").read_bytes() == reference
    again = _run(out, "pack.max_group=64")  # a knob of the default (window) strategy
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    for stage in ("tokenize", "embed", "cluster"):
        assert f"stage {stage}: reused" in log
    assert "stage pack: start" in log
    fresh = _run(out, "overwrite=true")
    assert fresh.returncode == 0
    assert "reused" not in fresh.stdout + fresh.stderr
    assert (out / "sequences.jsonl").read_bytes() == reference


def test_sigkill_during_embed_then_rerun_is_byte_identical(tmp_path: Path,
                                                          reference: bytes) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "datasculpt.main", *ARGS, f"output_dir={out}"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "stage embed: start" in line:
            time.sleep(0.3)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "sequences.jsonl").exists()
    assert not (out / "embeddings.npy").exists()  # only a temporary file, never the final name
    rerun = _run(out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "stage tokenize: reused" in rerun.stdout + rerun.stderr
    assert (out / "sequences.jsonl").read_bytes() == reference


@pytest.mark.parametrize("point", ["embed", "pack"])
def test_fault_injected_sigkill_then_rerun_is_byte_identical(tmp_path: Path, reference: bytes,
                                                            point: str) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DATASCULPT_FAULT": point}
    killed = subprocess.run([sys.executable, "-m", "datasculpt.main", *ARGS, f"output_dir={out}"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    assert not (out / "sequences.jsonl").exists() and not (out / "report.json").exists()
    rerun = _run(out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = rerun.stdout + rerun.stderr
    if point == "pack":
        assert "stage embed: reused" in log and "stage cluster: reused" in log
    assert f"stage {point}: start" in log
    assert (out / "sequences.jsonl").read_bytes() == reference

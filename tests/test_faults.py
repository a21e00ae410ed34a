"""faults: the fault points the resume and retry tests kill the process at (SIGKILL, as a crash
or an OOM kill would), every time or only the first time anywhere. Each case runs in a small
subprocess of its own: a fault point kills the process it is in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

CODE = ("from datasculpt.faults import fault_point\n"
        "fault_point('elsewhere')\n"
        "print('before', flush=True)\n"
        "fault_point('pack')\n"
        "print('after', flush=True)\n")


def _run(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DATASCULPT_FAULT")}
    return subprocess.run([sys.executable, "-c", CODE], env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_no_fault_without_the_switch_or_at_another_point() -> None:
    for env in ({}, {"DATASCULPT_FAULT": "embed"}):
        proc = _run(**env)
        assert proc.returncode == 0 and proc.stdout.split() == ["before", "after"], proc.stderr


def test_the_named_point_kills_the_process_every_time() -> None:
    for _ in range(2):
        proc = _run(DATASCULPT_FAULT="pack")
        assert proc.returncode == -signal.SIGKILL
        assert proc.stdout.split() == ["before"]
        assert "DATASCULPT_FAULT=pack: killing process" in proc.stderr


def test_once_kills_only_the_first_pass_anywhere(tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    first = _run(DATASCULPT_FAULT="pack", DATASCULPT_FAULT_ONCE=str(marker))
    assert first.returncode == -signal.SIGKILL and marker.exists()
    second = _run(DATASCULPT_FAULT="pack", DATASCULPT_FAULT_ONCE=str(marker))
    assert second.returncode == 0 and second.stdout.split() == ["before", "after"]

"""The SLURM recipes against a real SLURM: Debian's slurm-wlm + munge, one node on this
machine (``scripts/slurm/local_cluster.sh``). Skipped, with the reason, where it cannot start."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, check_contract, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm() -> None:
    if shutil.which("sbatch") is None or shutil.which("slurmctld") is None:
        pytest.skip("slurm-wlm is not installed (apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("starting a local SLURM needs root")
    proc = subprocess.run([str(REPO / "scripts" / "slurm" / "local_cluster.sh")],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.skip(f"local SLURM did not start: {(proc.stderr or proc.stdout)[-500:]}")


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
            "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}


def _corpus(tmp: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(5)
    recs = [{"docid": f"d{i}", "content": " ".join(f"t{i % 4}w{j}" for j in
                                                    rng.integers(0, 30, size=40 + 13 * i)),
             "topic": i % 4} for i in range(120)]
    path = write_jsonl(tmp / "in.jsonl", recs)
    centers = rng.normal(size=(4, 16))
    emb = centers[np.arange(120) % 4] + 0.3 * rng.normal(size=(120, 16))
    np.save(tmp / "emb.npy", emb.astype(np.float32))
    return path, tmp / "emb.npy"


def test_ray_job_sbatch_runs_the_pipeline_on_a_ray_cluster(tmp_path: Path, slurm: None) -> None:
    corpus, emb = _corpus(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    proc = subprocess.run(
        ["sbatch", "--wait", "--nodes=1", f"--output={tmp_path / 'job.out'}",
         str(REPO / "scripts" / "slurm" / "ray_job.sbatch"), f"input={corpus}",
         f"output_dir={out}", f"embed.precomputed={emb}", "ctx_len=1024", "label_key=topic",
         "report.plots=false", "report.progress=false", "backend=cpu"],
        capture_output=True, text=True, timeout=900, env={**_env(), "RAY_PORT": str(port)},
        cwd=tmp_path)
    log = (tmp_path / "job.out").read_text() if (tmp_path / "job.out").exists() else ""
    assert proc.returncode == 0, proc.stderr + log[-3000:]
    assert "1 Ray node(s) up" in log
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["executor"] == "ray"
    check_contract(out, ctx_len=1024, append_eos=True)
    # The cluster is gone with the job: nothing listens on its port any more.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_slurm_gpu_launcher_profile_runs_a_sweep(tmp_path: Path, slurm: None) -> None:
    corpus, _ = _corpus(tmp_path)
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "datasculpt.main", "-m", "hydra/launcher=slurm_gpu",
         "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=20",
         f"hydra.sweep.dir={sweep}", f"input={corpus}", "ctx_len=1024,2048", "pack=bfd",
         "backend=cpu", "report.semantic_metrics=false", "report.plots=false"],
        capture_output=True, text=True, timeout=900, env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.glob("*/report.json"))
    assert [json.loads((r / "report.json").read_text())["run"]["ctx_len"] for r in runs] == \
        [1024, 2048]
    assert not any("input" in r.name for r in runs)  # the path stays out of the names
    for r in runs:
        check_contract(r, ctx_len=int(r.name.split("ctx_len=")[1].split(",")[0]),
                       append_eos=True)

"""End to end: executor=ray against executor=local on a real Ray cluster, a head and a second
worker node started with ``ray start`` on 127.0.0.1 (the multi-node code path), joined by
address: the same bytes, a killed worker retried, a refused token. The executor's parts that
need no cluster: tests/executors/test_ray.py."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import check_contract, write_jsonl

import datasculpt
from datasculpt.io.doc_table import DOC_PARTS
from datasculpt.io.token_store import PARTS_DIR

ray = pytest.importorskip("ray", reason="executor=ray needs the [ray] extra")

pytestmark = pytest.mark.slow

ARTIFACTS = ("sequences.jsonl", "documents.parquet", "malformed.jsonl", "offsets.npy",
             "embeddings.npy", "clusters.npy", "centroids.npy", "pieces_datasculpt.npy")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli(*args: str, env: dict[str, str] | None = None) -> None:
    ray_bin = Path(sys.executable).with_name("ray")
    proc = subprocess.run([str(ray_bin), *args], capture_output=True, text=True, timeout=180,
                          env=env)
    # Ray is installed (the [ray] extra): a node that does not start is a failure, not a skip.
    assert proc.returncode == 0, f"ray {args[0]} failed: {proc.stderr.strip()[-2000:]}"


def _reload_ray_auth() -> None:
    """This process imported Ray (and read RAY_AUTH_* once) at collection; re-read them the
    way ``ray.init`` itself does when it turns token auth on. A user sets them before Python
    starts, as the SLURM recipe does."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@pytest.fixture(scope="module")
def ray_address():
    """Head + one worker node with token authentication, as the SLURM recipe starts them: the
    nodes and this driver share one token through the environment, whatever ~/.ray holds."""
    port = _free_port()
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **auth}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in auth.items():
            mp.setenv(key, value)
        _reload_ray_auth()
        _ray_cli("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                 "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats", env=env)
        try:
            _ray_cli("start", f"--address=127.0.0.1:{port}", "--num-cpus=1", env=env)
            yield f"127.0.0.1:{port}"
        finally:
            subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"],
                           capture_output=True, timeout=120, env=env)
    _reload_ray_auth()


def _corpus(tmp: Path) -> tuple[Path, Path]:
    """Three shards of planted topics, a malformed line and an id repeated across shards;
    embeddings aligned with the documents that survive reading."""
    rng = np.random.default_rng(3)
    words = [f"w{t}x{i}" for t in range(6) for i in range(40)]
    data = tmp / "shards"
    data.mkdir()
    topics = []
    for s in range(3):
        recs: list = []
        for i in range(150):
            t = int(rng.integers(0, 6))
            n = int(np.clip(rng.lognormal(np.log(120), 0.9), 5, 3000))
            text = " ".join(words[t * 40 + j] for j in rng.integers(0, 40, size=n))
            recs.append({"docid": f"s{s}d{i}", "content": text, "topic": t})
        if s == 1:
            recs.insert(7, "{not json")
            recs[20] = {**recs[20], "docid": "s0d3"}  # a duplicate of shard 0's d3
        topics += [r["topic"] for r in recs
                   if isinstance(r, dict) and not (s == 1 and r["docid"] == "s0d3")]
        write_jsonl(data / f"part-{s}.jsonl", recs)
    centers = rng.normal(size=(6, 24))
    emb = centers[np.asarray(topics)] + 0.6 * rng.normal(size=(len(topics), 24))
    np.save(tmp / "emb.npy", emb.astype(np.float32))
    return data, tmp / "emb.npy"


def _cfg(data: Path, executor: dict, **extra):
    return datasculpt.default_config(
        input=str(data), ctx_len=1024, label_key="topic",
        **{"report.plots": False, "report.progress": False, "backend.name": "cpu",
           "pack.task_units": 60, "pack.max_group": 16, "pack.remainder_group": 32,
           "output.shard_tokens": 20_000, "cluster.task_docs": 100,
           "tokenize_block_mb": 0.05,
           **{f"executor.{k}": v for k, v in executor.items()},
           **extra})


def _same_bytes(a: Path, b: Path) -> None:
    for name in ARTIFACTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # the token store's parts (parts.json, skips.npy and several tokenize tasks' parts) and
    # the documents' metadata parts (parts.json and one Arrow file per block)
    for folder, least in ((PARTS_DIR, 4), (DOC_PARTS, 3)):
        names = sorted(p.name for p in (a / folder).iterdir())
        assert len(names) >= least, folder
        assert names == sorted(p.name for p in (b / folder).iterdir())
        for name in names:
            assert (a / folder / name).read_bytes() == (b / folder / name).read_bytes(), name
    shards = sorted(p.name for p in (a / "tokens").glob("part-*.parquet"))
    assert len(shards) > 2  # several shard tasks ran
    assert shards == sorted(p.name for p in (b / "tokens").glob("part-*.parquet"))
    for name in shards:
        assert (a / "tokens" / name).read_bytes() == (b / "tokens" / name).read_bytes(), name


def test_ray_writes_the_same_bytes_as_local(tmp_path: Path, ray_address: str) -> None:
    data, emb = _corpus(tmp_path)
    local = datasculpt.run(_cfg(data, {"name": "local"}, **{"embed.precomputed": str(emb)}),
                           output_dir=str(tmp_path / "local"))
    remote = datasculpt.run(_cfg(data, {"name": "ray", "address": ray_address},
                                 **{"embed.precomputed": str(emb)}),
                            output_dir=str(tmp_path / "ray"))
    assert remote["run"]["executor"] == "ray" and local["run"]["executor"] == "local"
    assert local["input"]["malformed"] == 2  # the bad line and the duplicate id
    assert local["stages"]["pack"]["groups"] > 1
    _same_bytes(tmp_path / "local", tmp_path / "ray")
    check_contract(tmp_path / "ray", ctx_len=1024, append_eos=True)


def test_cluster_cells_under_ray_write_the_same_bytes_as_local(tmp_path: Path,
                                                               ray_address: str) -> None:
    # Cells forced small: the coarse block passes and each cell's clustering run as Ray
    # tasks; the labels, and so every artifact, are the local run's bytes.
    data, emb = _corpus(tmp_path)
    extra = {"embed.precomputed": str(emb), "cluster.cell_docs": 150}
    local = datasculpt.run(_cfg(data, {"name": "local"}, **extra),
                           output_dir=str(tmp_path / "local"))
    remote = datasculpt.run(_cfg(data, {"name": "ray", "address": ray_address}, **extra),
                            output_dir=str(tmp_path / "ray"))
    assert local["stages"]["cluster"]["cells"] >= 3
    assert remote["stages"]["cluster"]["cells"] == local["stages"]["cluster"]["cells"]
    _same_bytes(tmp_path / "local", tmp_path / "ray")
    check_contract(tmp_path / "ray", ctx_len=1024, append_eos=True)


def test_a_killed_worker_is_retried_and_the_output_is_unchanged(
        tmp_path: Path, ray_address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data, emb = _corpus(tmp_path)
    datasculpt.run(_cfg(data, {"name": "local"}, **{"embed.precomputed": str(emb)}),
                   output_dir=str(tmp_path / "local"))
    marker = tmp_path / "killed"
    monkeypatch.setenv("DATASCULPT_FAULT", "pack_task")
    monkeypatch.setenv("DATASCULPT_FAULT_ONCE", str(marker))
    datasculpt.run(_cfg(data, {"name": "ray", "address": ray_address},
                        **{"embed.precomputed": str(emb)}),
                   output_dir=str(tmp_path / "ray"))
    assert marker.exists()  # a worker process did die (SIGKILL) in the pack stage
    _same_bytes(tmp_path / "local", tmp_path / "ray")


def test_computed_embeddings_under_ray_keep_the_invariants_and_the_quality(
        tmp_path: Path, ray_address: str) -> None:
    data, _ = _corpus(tmp_path)
    short = {"embed.max_length": 64}  # the encoder's cost is not what is tested here
    local = datasculpt.run(_cfg(data, {"name": "local"}, **short),
                           output_dir=str(tmp_path / "local"))
    remote = datasculpt.run(_cfg(data, {"name": "ray", "address": ray_address}, **short),
                            output_dir=str(tmp_path / "ray"))
    assert remote["stages"]["embed"]["workers"] == "ray actors"
    check_contract(tmp_path / "ray", ctx_len=1024, append_eos=True)
    for key in ("relevance", "label_purity", "fill_rate"):
        assert remote["metrics"][key] == pytest.approx(local["metrics"][key], rel=0.01), key
    assert remote["metrics"]["n_documents"] == local["metrics"]["n_documents"]


def test_joining_without_the_clusters_token_is_a_config_error(
        tmp_path: Path, ray_address: str) -> None:
    data, emb = _corpus(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.run(
        [sys.executable, "-m", "datasculpt.main", f"input={data}", f"embed.precomputed={emb}",
         f"output_dir={tmp_path / 'out'}", "executor=ray", f"executor.address={ray_address}",
         "report.progress=false", "report.plots=false", "backend=cpu"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "refused this process's token" in proc.stderr

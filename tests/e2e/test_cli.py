"""End to end: the command line as users run it, a subprocess each time: the default run on
the embedded sample, exit codes and their one-line messages, a sweep with the submitit
launcher, the output contract. The same behaviours in-process: tests/test_main.py,
tests/test_config.py, tests/test_pipeline.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import check_contract, run_cli, write_jsonl

pytestmark = pytest.mark.slow


def _report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


def test_default_run_on_the_embedded_sample(tmp_path: Path) -> None:
    proc = run_cli(cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = [p.parent for p in tmp_path.glob("outputs/*/*/report.json")]
    report = _report(run_dir)
    seen = check_contract(run_dir, ctx_len=16384, append_eos=True)
    m = report["metrics"]
    assert seen["sequences"] == m["n_sequences"] and seen["documents"] == m["n_documents"]
    assert m["lost_tokens"] == m["duplicated_tokens"] == m["overlong_sequences"] == 0
    # the sample has documents beyond 16K: each is cut up front
    docs = pq.read_table(run_dir / "documents.parquet").to_pydict()
    assert report["run"]["forced_cut_documents"] == sum(
        n + 1 > 16384 for n in docs["n_tokens"]) >= 3
    assert (run_dir / "report.md").read_text().startswith("# datasculpt run report")
    # Issue 3: the clusters of the default model align with the sample's topics.
    clusters = np.load(run_dir / "clusters.npy", allow_pickle=False)
    majority = 0
    for c in np.unique(clusters):
        tokens: dict[str, int] = {}
        for i in np.flatnonzero(clusters == c):
            tokens[docs["topic"][i]] = tokens.get(docs["topic"][i], 0) + docs["n_tokens"][i]
        majority += max(tokens.values())
    assert majority / sum(docs["n_tokens"]) >= 0.85


def test_bfd_at_2048_never_truncates(tmp_path: Path) -> None:
    proc = run_cli("pack=bfd", "ctx_len=2048", "report.semantic_metrics=false",
                   f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = _report(tmp_path / "run")["metrics"]
    assert m["truncation_rate"] == 0.0
    assert 0.9 < m["fill_rate"] <= 1.0
    check_contract(tmp_path / "run", ctx_len=2048, append_eos=True)


def test_bad_config_through_the_real_command_line(tmp_path: Path) -> None:
    """test_config.py checks every case in-process; this one goes through a real process."""
    proc = run_cli("-m", "ctx_len=2048,-1", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["datasculpt: error: ctx_len must be > 0, got -1"], proc.stderr
    assert not list(tmp_path.glob("multirun/*/*/*/sequences.jsonl"))


def test_unusable_input_exits_2(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", ["not json", '{"docid": "x"}'])
    proc = run_cli(f"input={bad}", f"output_dir={tmp_path / 'o'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("datasculpt: error: no usable documents")
    strict = write_jsonl(tmp_path / "strict.jsonl", [{"content": "fine"}, "oops"])
    proc = run_cli(f"input={strict}", "strict=true", f"output_dir={tmp_path / 's'}", cwd=tmp_path)
    assert proc.returncode == 2 and "strict.jsonl:2" in proc.stderr
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o500)
    target = ro / "sub"
    proc = run_cli(f"input={strict}", f"output_dir={target}", cwd=tmp_path)
    if not target.exists():  # root ignores directory permissions
        assert proc.returncode == 2 and "output_dir is not writable" in proc.stderr


def test_multirun_with_submitit_local_gives_one_run_dir_per_point(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "in.jsonl",
                         [{"docid": f"d{i}", "content": "word " * (50 + 40 * i)}
                          for i in range(60)])
    proc = run_cli("-m", "ctx_len=2048,4096", "hydra/launcher=submitit_local", "pack=bfd",
                   "report.semantic_metrics=false", "report.plots=false", f"input={corpus}",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The input path stays out of the job directory names: no nested directories from it.
    runs = sorted(p.parent for p in (tmp_path / "sweep").glob("*/report.json"))
    assert len(runs) == 2
    assert [r.name.split(",")[0] for r in runs] == ["0_ctx_len=2048", "1_ctx_len=4096"]
    assert not any("input" in r.name for r in runs)
    assert sorted(_report(r)["run"]["ctx_len"] for r in runs) == [2048, 4096]
    for r in runs:
        assert (r / "sequences.jsonl").stat().st_size > 0
        check_contract(r, ctx_len=_report(r)["run"]["ctx_len"], append_eos=True)


def test_precomputed_embeddings_that_do_not_match_exit_2(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"content": f"doc {i}"} for i in range(5)])
    np.save(tmp_path / "rows.npy", np.ones((4, 8), dtype=np.float32))
    np.save(tmp_path / "flat.npy", np.ones(5, dtype=np.float32))
    for name, message in (("rows.npy", "have 4 rows, the corpus 5 documents"),
                          ("flat.npy", "must be a 2-D array")):
        proc = run_cli(f"input={data}", f"embed.precomputed={tmp_path / name}",
                       f"output_dir={tmp_path / name}.out", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.jsonl").write_bytes(b"")
    proc = run_cli(f"input={empty}", f"output_dir={tmp_path / 'e.out'}", cwd=tmp_path)
    assert proc.returncode == 2 and "no usable documents" in proc.stderr


def test_cli_bad_judge_model_exits_2_before_any_work(tmp_path: Path) -> None:
    proc = run_cli("judge=enabled", f"judge.model={tmp_path / 'absent.gguf'}",
                   f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"datasculpt: error: judge.model GGUF file not found: {tmp_path / 'absent.gguf'}"]
    assert not (tmp_path / "run" / "documents.parquet").exists()

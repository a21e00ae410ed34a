"""pipeline: the plan of a run (which stages, in order, and their keys for real configs,
computed without running anything) and ``datasculpt.run`` in this process: the Python API,
reruns to the same bytes, reuse, resuming after a stage failed, inputs it refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import check_contract, notes_corpus, read_sequences, run_pipeline, write_jsonl
from omegaconf import OmegaConf

import datasculpt
from datasculpt.backend import resolve_backend
from datasculpt.config import default_config
from datasculpt.errors import ConfigError, InputError
from datasculpt.executors import LocalExecutor
from datasculpt.io.read import source_of
from datasculpt.manifest import Manifest
from datasculpt.pipeline import plan
from datasculpt.runner import Run, Runner

# ------------------------------------------------------------ the plan's keys for real configs


def _digests(tmp: Path, **overrides: Any) -> dict[str, str]:
    cfg = default_config(output_dir=str(tmp), **{"report.baselines": True, **overrides})
    run = Run(cfg, OmegaConf.to_container(cfg, resolve=True), tmp, resolve_backend("cpu"),
              LocalExecutor(), source_of(cfg))
    runner = Runner(run, Manifest(tmp, fresh=True))
    runner.plan(plan(cfg))
    return runner.digests


def _changed(tmp: Path, **overrides: Any) -> set[str]:
    base, other = _digests(tmp), _digests(tmp, **overrides)
    assert base.keys() == other.keys()
    return {name for name in base if base[name] != other[name]}


# The stages that write what users read from the run's packing.
WRITERS = ("sequences", "shards", "megatron", "olmo")


def test_the_plan_of_a_default_run(tmp_path) -> None:
    assert list(_digests(tmp_path)) == ["tokenize", "embed", "cluster", "pack", "pack_concat",
                                        "pack_bfd", "pack_iclm", "sequences", "shards",
                                        "megatron", "olmo"]
    cfg = default_config(**{"pack.method": "bfd", "report.semantic_metrics": False})
    # Every format's stage is planned: one not asked for removes what another config wrote.
    assert [s.name for s in plan(cfg)] == ["tokenize", "pack", "sequences", "shards",
                                           "megatron", "olmo"]


def test_a_knob_of_one_pack_method_repacks_that_method_only(tmp_path) -> None:
    assert _changed(tmp_path, **{"pack.knn_k": 5}) == {"pack_iclm"}
    assert _changed(tmp_path, **{"pack.fit_bias": 0.3}) == {"pack", *WRITERS}
    # a knob of the unit strategy does not touch the default window strategy's packing
    assert _changed(tmp_path, **{"pack.batch_size": 8}) == set()
    assert _changed(tmp_path, **{"pack.strategy": "unit", "pack.batch_size": 8}) == {
        "pack", *WRITERS}
    # the seed: k-means, the seeded packers and the shards' shuffle (bfd has no random choice)
    assert _changed(tmp_path, seed=1) == set(_digests(tmp_path)) - {"tokenize", "embed",
                                                                    "pack_bfd"}


def test_the_embed_model_recomputes_embed_and_what_reads_it_not_tokenize(tmp_path) -> None:
    assert _changed(tmp_path, **{"embed.model": "/elsewhere/encoder"}) == {
        "embed", "cluster", "pack", "pack_iclm", *WRITERS}
    # a setting only embed=static reads leaves an encoder run's embeddings alone
    assert _changed(tmp_path, **{"embed.pca_dims": 128}) == set()
    assert _changed(tmp_path, tokenizer="/elsewhere/tokenizer") == set(_digests(tmp_path))


def test_the_judge_follows_the_packings_it_reads(tmp_path) -> None:
    on = {"judge.enabled": True}
    base, knn = _digests(tmp_path, **on), _digests(tmp_path, **on, **{"pack.knn_k": 5})
    assert {n for n in base if base[n] != knn[n]} == {"pack_iclm", "judge"}
    assert _changed(tmp_path, **{"judge.sequences": 8}) == set()  # judge off: not planned


def test_python_api_parquet_input_and_training_shards(tmp_path: Path, tokenizer) -> None:
    texts = [f"Paragraph {i} on rivers, deltas and sediment transport. " * (1 + 7 * i)
             for i in range(12)]
    pq.write_table(pa.table({"text": texts, "domain": ["geo"] * 12}), tmp_path / "in.parquet")
    cfg = datasculpt.default_config(input=str(tmp_path / "in.parquet"), ctx_len=512,
                                    label_key="domain",
                                    **{"report.semantic_metrics": False, "report.plots": False,
                                       "report.progress": False, "pack.method": "concat",
                                       "output.text": True})
    report = datasculpt.run(cfg, output_dir=str(tmp_path / "out"))
    assert report["metrics"]["label_purity"] == 1.0
    check_contract(tmp_path / "out", ctx_len=512, append_eos=True)
    docs = pq.read_table(tmp_path / "out" / "documents.parquet").to_pydict()
    assert docs["docid"][0] == f"{tmp_path / 'in.parquet'}:1"
    index = {d: i for i, d in enumerate(docs["docid"])}
    rows = {r["seq_id"]: r for f in sorted((tmp_path / "out" / "tokens").glob("*.parquet"))
            for r in pq.read_table(f).to_pylist()}
    for seq in read_sequences(tmp_path / "out" / "sequences.jsonl"):
        ids: list[int] = []
        for piece in seq["docs"]:
            full = tokenizer(texts[index[piece["docid"]]], add_special_tokens=False)["input_ids"]
            ids += full[piece["start"]:piece["end"]]
            if piece["end"] == len(full):
                ids.append(tokenizer.sep_token_id)
        assert rows[seq["seq_id"]]["input_ids"] == ids
        assert len(ids) == seq["n_tokens"]
        assert "sediment" in rows[seq["seq_id"]]["text"]


# ------------------------------------------------------------ datasculpt.run in this process


def _planted_vectors(tmp: Path, docs: list[dict[str, str]]) -> str:
    """Vectors for ``docs`` around one centre per topic, saved for ``embed.precomputed``."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16))
    emb = centres[[int(d["topic"]) for d in docs]] + 0.2 * rng.normal(size=(len(docs), 16))
    np.save(tmp / "emb.npy", emb.astype(np.float32))
    return str(tmp / "emb.npy")


def _outputs(out: Path) -> dict[str, bytes]:
    """The bytes of what users read and of the packing and clustering behind it."""
    names = ["sequences.jsonl", "clusters.npy", "pieces_datasculpt.npy",
             *(f"tokens/{p.name}" for p in sorted((out / "tokens").glob("part-*.parquet")))]
    return {name: (out / name).read_bytes() for name in names}


def _reused(report: dict[str, Any]) -> dict[str, bool]:
    return {name: bool(st.get("reused")) for name, st in report["stages"].items()}


def test_a_rerun_gives_the_same_bytes_and_a_pack_knob_reuses_what_comes_before(
        tmp_path: Path) -> None:
    docs = notes_corpus(30)
    over = {"embed.precomputed": _planted_vectors(tmp_path, docs), "output.shard_tokens": 2000}
    out, first = run_pipeline(tmp_path / "a", docs, **over)
    reference = _outputs(out)
    assert len(reference) > 4  # several shards
    assert not any(_reused(first).values())
    other, _ = run_pipeline(tmp_path / "b", docs, **over)  # another directory, same config
    assert _outputs(other) == reference
    _, again = run_pipeline(tmp_path / "a", docs, **over)
    assert all(_reused(again).values())
    _, knob = run_pipeline(tmp_path / "a", docs, **over, **{"pack.max_group": 4})
    assert _reused(knob) == {"tokenize": True, "embed": True, "cluster": True, "pack": False,
                             "sequences": False, "shards": False, "megatron": False,
                             "olmo": False}
    _, fresh = run_pipeline(tmp_path / "a", docs, **over, overwrite=True)
    assert not any(_reused(fresh).values())
    assert _outputs(out) == reference


@pytest.mark.parametrize("point", ["embed", "pack"])
def test_a_stage_that_failed_leaves_no_result_and_the_rerun_resumes_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    """What tests/e2e/test_resume.py does with SIGKILL, here with an exception at the same
    fault point (work done, result not yet handed on); the encoder computes the vectors."""
    import importlib

    docs = notes_corpus(18, seed=2)
    ref, _ = run_pipeline(tmp_path / "ref", docs)
    stage_module = importlib.import_module(f"datasculpt.stages.{point}")

    def fail(name: str) -> None:
        if name == point:
            raise RuntimeError(f"injected failure at {name}")

    monkeypatch.setattr(stage_module, "fault_point", fail)
    with pytest.raises(RuntimeError, match=f"injected failure at {point}"):
        run_pipeline(tmp_path / "run", docs)
    out = tmp_path / "run" / "run"
    assert not (out / "sequences.jsonl").exists() and not (out / "report.json").exists()
    assert (out / "documents.parquet").exists()  # tokenize finished before
    if point == "embed":
        assert not (out / "embeddings.npy").exists()  # never the final name half-written
    else:
        assert (out / "clusters.npy").exists()
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind
    monkeypatch.undo()
    _, report = run_pipeline(tmp_path / "run", docs)
    reused = _reused(report)
    assert reused["tokenize"] and not reused[point] and not reused["sequences"]
    if point == "pack":
        assert reused["embed"] and reused["cluster"]
    assert _outputs(out) == _outputs(ref)


def test_inputs_the_run_refuses_before_or_at_the_first_pass(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"content": f"doc {i}"} for i in range(5)])
    with pytest.raises(ConfigError, match="output_dir is not set"):
        datasculpt.run(datasculpt.default_config(input=str(data)))
    np.save(tmp_path / "flat.npy", np.ones(5, dtype=np.float32))
    flat = datasculpt.default_config(input=str(data),
                                     **{"embed.precomputed": str(tmp_path / "flat.npy")})
    with pytest.raises(InputError, match="must be a 2-D array"):
        datasculpt.run(flat, output_dir=str(tmp_path / "flat"))
    assert not (tmp_path / "flat" / "documents.parquet").exists()  # before the first pass
    np.save(tmp_path / "rows.npy", np.ones((4, 8), dtype=np.float32))
    rows = datasculpt.default_config(input=str(data), **{
        "embed.precomputed": str(tmp_path / "rows.npy"), "report.progress": False})
    with pytest.raises(InputError, match="have 4 rows, the corpus 5 documents"):
        datasculpt.run(rows, output_dir=str(tmp_path / "rows"))
    empty = write_jsonl(tmp_path / "empty.jsonl", ["", "{broken"])
    with pytest.raises(InputError, match="no usable documents in .*empty.jsonl \\(2 malformed\\)"):
        datasculpt.run(datasculpt.default_config(input=str(empty)),
                       output_dir=str(tmp_path / "empty"))


def test_a_writer_that_fails_fails_the_run_after_the_report_figures_beside_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's figures run on a thread beside the writers (``pipeline._beside``): a
    writer's failure is the run's, raised once that thread is done (none outlives the run),
    and no report is written; the rerun writes what a run without the failure writes."""
    import threading

    import datasculpt.stages.report as report_stage
    import datasculpt.stages.write as write_stage

    docs = notes_corpus(18, seed=2)
    ref, ref_report = run_pipeline(tmp_path / "ref", docs)
    figures_done = threading.Event()
    real_figures = report_stage.report_figures

    def figures(*args: Any) -> Any:
        try:
            return real_figures(*args)
        finally:
            figures_done.set()

    def broken_shards(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full while writing the shards")

    monkeypatch.setattr("datasculpt.pipeline.report_figures", figures)
    monkeypatch.setattr(write_stage, "write_shards", broken_shards)
    with pytest.raises(OSError, match="disk full"):
        run_pipeline(tmp_path / "run", docs)
    assert figures_done.is_set()
    assert not [t for t in threading.enumerate() if t.name.startswith("datasculpt-report")]
    out = tmp_path / "run" / "run"
    assert not (out / "report.json").exists() and (out / "sequences.jsonl").exists()
    monkeypatch.undo()
    _, report = run_pipeline(tmp_path / "run", docs)
    assert _outputs(out) == _outputs(ref)
    for key in ("metrics", "methods", "reference", "balance"):
        assert report[key] == ref_report[key]

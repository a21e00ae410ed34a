"""pipeline: the plan of a run (which stages, in order, and their keys for real configs,
computed without running anything) and ``datasculpt.run`` in this process: the Python API,
reruns to the same bytes, reuse, resuming after a stage failed, inputs it refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from helpers import check_contract, read_sequences
from omegaconf import OmegaConf

import datasculpt
from datasculpt.backend import resolve_backend
from datasculpt.config import default_config
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


def test_the_plan_of_a_default_run(tmp_path) -> None:
    assert list(_digests(tmp_path)) == ["tokenize", "embed", "cluster", "pack", "pack_concat",
                                        "pack_bfd", "pack_iclm", "sequences", "shards"]
    cfg = default_config(**{"pack.method": "bfd", "report.semantic_metrics": False})
    assert [s.name for s in plan(cfg)] == ["tokenize", "pack", "sequences", "shards"]


def test_a_knob_of_one_pack_method_repacks_that_method_only(tmp_path) -> None:
    assert _changed(tmp_path, **{"pack.knn_k": 5}) == {"pack_iclm"}
    assert _changed(tmp_path, **{"pack.fit_bias": 0.3}) == {"pack", "sequences", "shards"}
    # a knob of the unit strategy does not touch the default window strategy's packing
    assert _changed(tmp_path, **{"pack.batch_size": 8}) == set()
    assert _changed(tmp_path, **{"pack.strategy": "unit", "pack.batch_size": 8}) == {
        "pack", "sequences", "shards"}
    # the seed: k-means, the seeded packers and the shards' shuffle (bfd has no random choice)
    assert _changed(tmp_path, seed=1) == set(_digests(tmp_path)) - {"tokenize", "embed",
                                                                    "pack_bfd"}


def test_the_embed_model_recomputes_embed_and_what_reads_it_not_tokenize(tmp_path) -> None:
    assert _changed(tmp_path, **{"embed.model": "/elsewhere/encoder"}) == {
        "embed", "cluster", "pack", "pack_iclm", "sequences", "shards"}
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


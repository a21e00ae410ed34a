"""The stage graph: keys derived from exactly what a stage reads, reuse, and the plan's keys
for real configs (computed without running anything)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from datasculpt.backend import resolve_backend
from datasculpt.config import PackConfig, default_config
from datasculpt.executors import LocalExecutor
from datasculpt.io.read import source_of
from datasculpt.manifest import Manifest
from datasculpt.pipeline import plan
from datasculpt.runner import Run, Runner, Stage
from datasculpt.stages.pack import KNOBS

# ------------------------------------------------------------------ the runner, on toy stages


def _toy_run(tmp: Path, **values: Any) -> Run:
    cfg = OmegaConf.create({"x": 1, "y": 2, "report": {"progress": False}, **values})
    return Run(cfg, OmegaConf.to_container(cfg), tmp, resolve_backend("cpu"), LocalExecutor(),
               source=None)  # type: ignore[arg-type]


def _writer(name: str, calls: list[str], reads: tuple[str, ...] = (),
            inputs: tuple[str, ...] = (), fail: bool = False, final: bool = False) -> Stage:
    """A stage writing ``<name>.txt``: the values it reads and its inputs' contents."""

    def work(run: Run, got: dict[str, Any]) -> dict[str, Any]:
        calls.append(name)
        if fail:
            raise RuntimeError(f"{name} failed")
        values = ",".join(str(run.cfg[k]) for k in reads)
        text = f"{name}({values})[{';'.join(got.values())}]"
        (run.out / f"{name}.txt").write_text(text)
        return {"chars": len(text)}

    return Stage(name, work, artifacts=lambda run: [f"{name}.txt"], reads=reads, inputs=inputs,
                 load=lambda run, got: (run.out / f"{name}.txt").read_text(), final=final)


def _run_all(tmp: Path, stages: list[Stage], **values: Any) -> Runner:
    runner = Runner(_toy_run(tmp, **values), Manifest(tmp, fresh=False))
    runner.plan(stages)
    for stage in stages:
        runner(stage)
    return runner


def _chain(calls: list[str]) -> list[Stage]:
    return [_writer("A", calls, reads=("x",)), _writer("B", calls, reads=("y",), inputs=("A",)),
            _writer("C", calls, inputs=("B",))]


def test_a_stage_reruns_when_what_it_reads_changes_and_everything_after_it(tmp_path) -> None:
    calls: list[str] = []
    first = _run_all(tmp_path, _chain(calls))
    assert calls == ["A", "B", "C"] and first.results["C"] == "C()[B(2)[A(1)[]]]"
    calls.clear()
    again = _run_all(tmp_path, _chain(calls))
    assert calls == [] and all(s["reused"] for s in again.stats.values())
    assert again.results == first.results  # a reused stage is loaded from its artifacts
    _run_all(tmp_path, _chain(calls), y=3)
    assert calls == ["B", "C"]  # A does not read y
    calls.clear()
    _run_all(tmp_path, _chain(calls), y=3, z=9)  # nobody reads z
    assert calls == []


def test_a_stage_inserted_upstream_invalidates_what_follows(tmp_path) -> None:
    calls: list[str] = []
    _run_all(tmp_path, _chain(calls))
    calls.clear()
    a, b, c = _chain(calls)
    x = _writer("X", calls, inputs=("A",))
    runner = _run_all(tmp_path, [a, x, dataclasses.replace(b, inputs=("X",)), c])
    assert calls == ["X", "B", "C"]
    assert runner.results["C"] == "C()[B(2)[X()[A(1)[]]]]"


def test_a_missing_artifact_reruns_its_stage(tmp_path) -> None:
    calls: list[str] = []
    _run_all(tmp_path, _chain(calls))
    (tmp_path / "B.txt").unlink()
    calls.clear()
    _run_all(tmp_path, _chain(calls))
    assert calls == ["B"]  # C's key is unchanged: B rewrote the same bytes


def test_final_artifacts_of_another_config_go_before_anything_runs(tmp_path) -> None:
    calls: list[str] = []
    final = _writer("F", calls, reads=("x",), inputs=("A",), final=True)
    _run_all(tmp_path, [_writer("A", calls, reads=("x",)), final])
    assert (tmp_path / "F.txt").exists()
    broken = _writer("A", calls, reads=("x",), fail=True)
    with pytest.raises(RuntimeError, match="A failed"):
        _run_all(tmp_path, [broken, final], x=5)
    assert not (tmp_path / "F.txt").exists()  # not left looking like the x=5 run's result


def test_an_input_that_is_not_planned_is_an_error(tmp_path) -> None:
    _, b, _ = _chain([])
    runner = Runner(_toy_run(tmp_path), Manifest(tmp_path, fresh=True))
    with pytest.raises(RuntimeError, match="needs"):
        runner.plan([b])


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


def test_every_pack_knob_belongs_to_a_method() -> None:
    claimed = {k for names in KNOBS.values() for k in names}
    knobs = {f.name for f in dataclasses.fields(PackConfig)} - {"method"}
    assert knobs - claimed == set(), "a pack knob no method's key reads"
    assert claimed - knobs == set()

"""runner: stages as values and the one loop that runs them, on toy stages: keys derived from
exactly what a stage reads, reuse, reruns after a change upstream or a missing artifact. The
plan of real configs and their keys: tests/test_pipeline.py."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from datasculpt.backend import resolve_backend
from datasculpt.executors import LocalExecutor
from datasculpt.manifest import Manifest
from datasculpt.memory import driver_memory
from datasculpt.runner import Run, Runner, Stage


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
    assert (tmp_path / "F.txt").read_text() == "F(1)[A(1)[]]"
    broken = _writer("A", calls, reads=("x",), fail=True)
    with pytest.raises(RuntimeError, match="A failed"):
        _run_all(tmp_path, [broken, final], x=5)
    assert not (tmp_path / "F.txt").exists()  # not left looking like the x=5 run's result


def test_an_input_that_is_not_planned_is_an_error(tmp_path) -> None:
    _, b, _ = _chain([])
    runner = Runner(_toy_run(tmp_path), Manifest(tmp_path, fresh=True))
    with pytest.raises(RuntimeError, match="needs"):
        runner.plan([b])


MEMORY_KEYS = {"driver_rss_anon_bytes", "driver_peak_rss_bytes", "driver_rss_anon_start_bytes"}


def test_driver_memory_reads_rss_anon_and_the_peak_in_bytes(tmp_path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t  1500 kB\n"
                      "RssAnon:\t   1000 kB\nRssFile:\t 500 kB\n")
    assert driver_memory(status) == {"driver_rss_anon_bytes": 1000 * 1024,
                                     "driver_peak_rss_bytes": 2048 * 1024}
    assert driver_memory(tmp_path / "absent") == {}  # not Linux: no figures, no failure


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_every_stage_records_the_drivers_memory_in_its_stats_and_the_manifest(tmp_path) -> None:
    calls: list[str] = []
    runner = _run_all(tmp_path, _chain(calls))
    manifest = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    for name in "ABC":
        stats = runner.stats[name]
        assert stats.keys() >= MEMORY_KEYS
        assert 0 < stats["driver_rss_anon_bytes"] <= stats["driver_peak_rss_bytes"]
        assert stats["chars"] > 0  # the stage's own stats are kept beside them
        assert {k: manifest[name]["stats"][k] for k in MEMORY_KEYS} == {
            k: stats[k] for k in MEMORY_KEYS}
    # the peak only grows, stage after stage
    peaks = [runner.stats[n]["driver_peak_rss_bytes"] for n in "ABC"]
    assert peaks == sorted(peaks)
    # a reused stage reports this run's memory; its manifest entry keeps the run that made it
    before = (tmp_path / "manifest.json").read_bytes()
    again = _run_all(tmp_path, _chain(calls))
    assert all(again.stats[n].keys() >= MEMORY_KEYS and again.stats[n]["reused"] for n in "ABC")
    assert (tmp_path / "manifest.json").read_bytes() == before

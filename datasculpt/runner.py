"""Stages as values and the one loop that runs them.

A :class:`Stage` declares what it depends on: the config values it reads (dotted paths), the
stages whose results it consumes, and anything else its bytes depend on (the input files'
fingerprint). Its cache key is derived from exactly those, plus the keys of its inputs, so a
change anywhere upstream recomputes it and a knob it does not read never does. The
:class:`Runner` owns everything around the work: the manifest (reuse when the key matches and
the artifacts exist), timing, logging, the rung each stage ran on, and releasing GPU memory
between stages. Stage code only writes its artifacts and reads them back.

After each stage (its work or reuse, and its load) the runner adds the driver process's
memory to the stage's stats (``driver_rss_anon_bytes``, ``driver_peak_rss_bytes``, and
``driver_rss_anon_start_bytes`` from before the stage; Linux only): the manifest and the
report carry them, no artifact that is compared byte for byte does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from datasculpt.backend import Backend
from datasculpt.executors import Executor
from datasculpt.io.read import Source
from datasculpt.manifest import Manifest, stable_hash
from datasculpt.memory import driver_memory, release_gpu_memory, release_host_memory
from datasculpt.rungs import gpu_warnings

log = logging.getLogger("datasculpt")


@dataclass(frozen=True)
class Run:
    """What every stage of one run may read: the config (as given and as plain values), the
    run directory, where arrays live, what runs the independent pieces, and the input."""

    cfg: DictConfig
    plain: dict[str, Any]
    out: Path
    backend: Backend
    executor: Executor
    source: Source

    @property
    def progress(self) -> bool:
        return bool(self.cfg.report.progress)


Inputs = dict[str, Any]  # the loaded results of a stage's input stages, by stage name


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline, declared.

    ``work(run, inputs)`` writes the artifacts (atomically) and returns stats;
    ``load(run, inputs)`` reads the result back from them, so a fresh and a resumed run
    continue from the same bytes. ``final`` marks artifacts users read, which are
    removed up front when they are not this config's (a failed run never leaves another
    run's result looking like its own)."""

    name: str
    work: Callable[[Run, Inputs], dict[str, Any]]
    artifacts: Callable[[Run], list[str]]
    reads: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    load: Callable[[Run, Inputs], Any] | None = None
    extra: Callable[[Run], Any] | None = None
    rung: Callable[[dict[str, Any]], str | None] | None = None
    final: bool = False


def config_value(plain: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of the plain config (``pack.max_group``)."""
    node: Any = plain
    for part in path.split("."):
        node = node[part]
    return node


@dataclass
class Runner:
    """Runs stages in the order given, each once; keeps their digests, stats and results."""

    run: Run
    manifest: Manifest
    digests: dict[str, str] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    rungs: dict[str, str] = field(default_factory=dict)

    def key(self, stage: Stage) -> dict[str, Any]:
        missing = [n for n in stage.inputs if n not in self.digests]
        if missing:
            raise RuntimeError(f"stage {stage.name} needs {missing} to be planned first")
        return {"stage": stage.name,
                "config": {p: config_value(self.run.plain, p) for p in stage.reads},
                "inputs": {n: self.digests[n] for n in stage.inputs},
                "extra": stage.extra(self.run) if stage.extra else None}

    def plan(self, stages: list[Stage]) -> None:
        """Derive every stage's digest before any runs (keys depend on config and inputs,
        never on results), and remove final artifacts that another config produced."""
        for stage in stages:
            self.digests[stage.name] = stable_hash(self.key(stage))
        for stage in stages:
            entry = self.manifest.stages.get(stage.name)
            if stage.final and entry and entry.get("key") != self.digests[stage.name]:
                for name in entry.get("outputs", []):
                    (self.run.out / name).unlink(missing_ok=True)
                self.manifest.forget(stage.name)

    def __call__(self, stage: Stage) -> Any:
        """Run (or reuse) one planned stage and return its loaded result."""
        digest = self.digests[stage.name]
        inputs = {n: self.results[n] for n in stage.inputs}
        before = driver_memory().get("driver_rss_anon_bytes")
        fresh = not self.manifest.reusable(stage.name, digest)
        if not fresh:
            stats = {**self.manifest.stats(stage.name), "reused": True}
        else:
            log.info("stage %s: start", stage.name)
            t0, c0 = time.perf_counter(), time.process_time()
            stats = dict(stage.work(self.run, inputs))
            stats.setdefault("seconds", time.perf_counter() - t0)
            # the driver's CPU over all its threads: cpu_seconds / seconds is how many cores
            # the stage kept busy here (a Ray worker's CPU is its own)
            stats.setdefault("cpu_seconds", time.process_time() - c0)
            self.manifest.record(stage.name, digest, stage.artifacts(self.run), stats)
        if self.run.backend.is_gpu:
            release_gpu_memory()
        release_host_memory()
        self.stats[stage.name] = stats
        rung = stage.rung(stats) if stage.rung else None
        if rung:
            self.rungs[stage.name] = str(rung)
        result = stage.load(self.run, inputs) if stage.load else None
        self.results[stage.name] = result
        memory = driver_memory()
        if before is not None:
            memory["driver_rss_anon_start_bytes"] = before
        stats.update(memory)
        if fresh and memory:  # a reused stage's entry keeps the figures of the run that made it
            self.manifest.update_stats(stage.name, memory)
        return result

    def warnings(self) -> list[str]:
        """A GPU run must never turn into a CPU run without saying so."""
        return gpu_warnings(self.rungs, self.run.backend.name)

    def log_times(self) -> None:
        for name, st in self.stats.items():
            log.info("stage %s: %.2f s%s", name, st.get("seconds") or 0.0,
                     " (reused)" if st.get("reused") else "")

"""The plan of a run: which stages this config needs, in order; the runner does the rest.

read+tokenize -> embed -> cluster -> pack (the method, then each baseline) -> judge ->
write (``sequences.jsonl``, shards) -> report. Each stage is declared in
``datasculpt/stages/`` (what it reads, what it writes); ``datasculpt.runner`` runs it or
reuses its artifacts. Texts are streamed: read+tokenize keeps per-document metadata and
writes every document's token ids to the on-disk token store, the embed stage streams the
input again, and the training shards are assembled from the token store, so memory does not
grow with the corpus text. docs/DESIGN.md describes the stages and their artifacts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from datasculpt.backend import resolve_backend
from datasculpt.config import validate
from datasculpt.errors import ConfigError
from datasculpt.executors import make_executor
from datasculpt.io.read import source_of
from datasculpt.manifest import Manifest
from datasculpt.pack import SEMANTIC_METHODS
from datasculpt.runner import Run, Runner, Stage
from datasculpt.stages.cluster import CLUSTER
from datasculpt.stages.embed import embed_stage
from datasculpt.stages.judge import judge_stage
from datasculpt.stages.pack import BASELINES, pack_stage
from datasculpt.stages.report import remove_report, report_figures, report_run
from datasculpt.stages.tokenize import TOKENIZE
from datasculpt.stages.write import MEGATRON, OLMO, SHARDS, sequences_stage

log = logging.getLogger("datasculpt")

T = TypeVar("T")
# The stages that only write what users read: nothing later reads their results, so the
# report's figures are computed while they run.
WRITERS = ("sequences", "shards", "megatron", "olmo")


def methods_of(cfg: DictConfig) -> list[str]:
    """The run's method first, then (``report.baselines``) every other packer."""
    main = str(cfg.pack.method)
    return [main, *([m for m in BASELINES if m != main] if cfg.report.baselines else [])]


def plan(cfg: DictConfig) -> list[Stage]:
    """The stages this config runs, in order."""
    methods = methods_of(cfg)
    semantic = bool(cfg.report.semantic_metrics)
    need_embed = semantic or any(m in SEMANTIC_METHODS for m in methods)
    need_cluster = need_embed and (semantic or "datasculpt" in methods)
    stages = [TOKENIZE]
    if need_embed:
        stages.append(embed_stage(str(cfg.embed.kind)))
    if need_cluster:
        stages.append(CLUSTER)
    packs = {m: pack_stage(m, methods[0], str(cfg.pack.strategy)) for m in methods}
    stages += packs.values()
    if cfg.judge.enabled:
        stages.append(judge_stage({m: s.name for m, s in packs.items()}))
    return [*stages, sequences_stage(need_cluster), SHARDS, MEGATRON, OLMO]


def run(cfg: DictConfig, output_dir: str | None = None) -> dict[str, Any]:
    """Run the whole pipeline into ``output_dir`` and return the report (also written to disk)."""
    validate(cfg)
    out = _prepare_output_dir(output_dir or cfg.output_dir)
    backend = resolve_backend(cfg.backend.name)
    executor = make_executor(cfg.executor)
    try:
        source = source_of(cfg)
        if cfg.embed.precomputed:  # a malformed file fails before the first pass, not after it
            from datasculpt.embed import load_precomputed

            load_precomputed(cfg.embed.precomputed, None)
        this = Run(cfg, OmegaConf.to_container(cfg, resolve=True), out, backend, executor,
                   source)
        log.info("run directory: %s; backend: %s; executor: %s", out, backend.name,
                 executor.name)
        runner = Runner(this, Manifest(out, fresh=bool(cfg.overwrite)))
        stages = plan(cfg)
        remove_report(this)
        runner.plan(stages)
        writers = [s for s in stages if s.name in WRITERS]
        for stage in stages:
            if stage.name not in WRITERS:
                runner(stage)

        def write() -> None:
            for stage in writers:
                runner(stage)

        methods = methods_of(cfg)
        figures = _beside(lambda: report_figures(this, dict(runner.results), methods), write)
        return report_run(this, runner, methods, figures)
    finally:
        executor.close()


def _beside(side: Callable[[], T], main: Callable[[], object]) -> T:
    """``side()`` on a thread of its own while ``main()`` runs here; returns side's result.

    The report's figures (NumPy over every piece and embedding row, one core) need only the
    packers' results, and the writers (sequences.jsonl, the shards) leave cores idle: side by
    side the run ends ~10 s sooner at 10M documents. The writers' failure is raised after the
    side is done, so no thread outlives the run; the side's failure is raised after the
    writers."""
    with ThreadPoolExecutor(1, thread_name_prefix="datasculpt-report") as pool:
        side_done = pool.submit(side)
        main()
        return side_done.result()


def _prepare_output_dir(path: str | None) -> Path:
    if not path:
        raise ConfigError("output_dir is not set (the Python API needs output_dir=...)")
    out = Path(os.path.expanduser(path))
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output_dir is not writable: {out} ({exc.strerror})") from exc
    return out


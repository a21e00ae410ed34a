"""The last step of a run: ``report.json``, ``report.md`` and the plots, from every stage's
result and stats. Not a cached stage: it describes this run (what was reused, how long each
stage took), so it is written every time, and removed up front so a failed run leaves none."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from datasculpt.balance import balance_report
from datasculpt.metrics import (
    compute_metrics,
    group_ids,
    random_pair_cosine,
    random_reference,
    relevance_per_sequence,
    seq_doc_pairs,
)
from datasculpt.report import plot, write_report
from datasculpt.runner import Run, Runner
from datasculpt.stages.pack import stage_name

log = logging.getLogger("datasculpt")

OUTPUTS = ("report.json", "report.md")


def remove_report(run: Run) -> None:
    for name in OUTPUTS:
        (run.out / name).unlink(missing_ok=True)


@dataclass
class Figures:
    """What the report computes from the stages' results (not their stats): every packing's
    metrics, the plots, the random reference and the balance. It reads no writer's output, so
    it runs while the writers do (``pipeline.run``): at 10M documents ~12 s of NumPy on one
    core beside the shards' writers."""

    methods: dict[str, dict[str, Any]]
    plots: list[str]
    reference: dict[str, Any] | None
    balance: dict[str, Any]


def report_figures(run: Run, res: dict[str, Any], methods: list[str]) -> Figures:
    """Metrics of every packing against the random reference (``res``: the loaded results of
    the stages up to the packers and the judge)."""
    cfg = run.cfg
    docs, clusters = res["tokenize"], res.get("cluster")
    emb = res["embed"].host if res.get("embed") is not None else None
    main = methods[0]
    packings = {m: res[stage_name(m, main)] for m in methods}
    # Each figure that reads every embedding row or sorts every piece is computed once here
    # and handed to the metrics, the plots and the reference (seconds each at 10M documents).
    pair_cosine = random_pair_cosine(emb) if emb is not None else None
    cluster_ids = group_ids(clusters) if clusters is not None else None
    label_ids = group_ids(docs.labels) if docs.labels is not None else None
    results, relevance = {}, {}
    for m, packing in packings.items():
        pairs = seq_doc_pairs(packing)
        if emb is not None:
            relevance[m] = relevance_per_sequence(packing, emb, pairs)
        results[m] = compute_metrics(packing, docs.doc_len, cfg.ctx_len, docs.eos, emb,
                                     cluster_ids, label_ids, pairs=pairs,
                                     seq_relevance=relevance.get(m), pair_cosine=pair_cosine)
    plots = (plot(run.out / "plots", packings, docs.doc_len, cfg.ctx_len, docs.eos, emb,
                  relevance if emb is not None else None)
             if cfg.report.plots else [])
    reference = (random_reference(docs.units, cfg.ctx_len, cfg.seed, emb, cluster_ids,
                                  label_ids, pair_cosine=pair_cosine)
                 if emb is not None or docs.labels is not None else None)
    balance = balance_report(packings[main], docs.doc_len, docs.eos, cfg.output,
                             int(cfg.seed))
    return Figures(results, plots, reference, balance)


def report_run(run: Run, runner: Runner, methods: list[str],
               figures: Figures | None = None) -> dict[str, Any]:
    """The report of the run: ``figures`` (computed here when not given), the stages, the
    config."""
    cfg, res = run.cfg, runner.results
    docs, judged = res["tokenize"], res.get("judge")
    main = methods[0]
    if figures is None:
        figures = report_figures(run, res, methods)
    results = figures.methods
    for m, r in results.items():
        log.info("pack=%s: %d sequences, fill %.4f, truncation %.4f", m, r["n_sequences"],
                 r["fill_rate"], r["truncation_rate"])
    runner.log_times()
    warnings = runner.warnings()
    for warning in warnings:
        log.warning("%s", warning)
    metrics, sep = results[main], docs.sep
    stages = dict(runner.stats)
    stages["tokenize"] = {k: v for k, v in stages["tokenize"].items() if k != "read"}
    read = runner.stats["tokenize"]["read"]
    report = {
        "run": {"method": main, "ctx_len": cfg.ctx_len, "seed": cfg.seed,
                "backend": run.backend.name, "executor": run.executor.name,
                "rungs": runner.rungs, "warnings": warnings, "append_eos": bool(docs.eos),
                "separator_token": sep[1] if sep else None,
                "label_key": run.source.opts.label_key, "input": run.source.spec,
                "output_dir": str(run.out), "n_documents": metrics["n_documents"],
                "total_tokens": metrics["total_tokens"],
                "forced_cut_documents": metrics["forced_cut_documents"],
                "n_units": len(docs.units)},
        "input": read,
        "metrics": metrics,
        "methods": results,
        "reference": figures.reference,
        "context_gain": judged,
        "balance": figures.balance,
        "stages": stages,
        "plots": figures.plots,
        "config": run.plain,
    }
    write_report(run.out, report)
    log.info("wrote %s (%d sequences)", run.out / "sequences.jsonl", metrics["n_sequences"])
    return report

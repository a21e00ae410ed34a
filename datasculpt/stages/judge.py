"""Stage 5 (``judge=enabled``), judge: the context gain of every packing of the run and of a
random grouping of the same units, measured by a causal LM (``datasculpt.judge``):
per-window records in ``context_gain.jsonl``, the summaries in ``context_gain.json``."""

from __future__ import annotations

import json
from typing import Any

from datasculpt.runner import Inputs, Run, Stage


def _work(run: Run, inputs: Inputs) -> dict[str, Any]:
    from datasculpt import judge as judge_mod
    from datasculpt.judge.texts import document_texts_of
    from datasculpt.metrics import random_grouping

    cfg, src, docs = run.cfg, run.source, inputs["tokenize"]
    packings = {name: packing for name, packing in inputs.items() if name != "tokenize"}
    targets = {**packings, judge_mod.RANDOM: random_grouping(docs.units, cfg.ctx_len, cfg.seed)}
    return judge_mod.judge(
        targets, cfg.judge, doc_len=docs.doc_len, eos=bool(docs.eos), seed=cfg.seed,
        texts_of=lambda rows: document_texts_of(rows, docs.table.file_rows(), src.paths,
                                                src.opts, run.out),
        run_tokenizer=docs.tokenizer, device="cuda" if run.backend.is_gpu else "cpu",
        out=run.out, progress=run.progress)


def _load(run: Run, inputs: Inputs) -> dict[str, Any]:
    from datasculpt.judge import SUMMARY

    return json.loads((run.out / SUMMARY).read_text())


def judge_stage(pack_stages: dict[str, str]) -> Stage:
    """The judge over the packings of ``pack_stages`` ({method: its stage's name}); the
    inputs are named by method so the records and the report say which is which."""
    from datasculpt.judge import ARTIFACT, SUMMARY

    def work(run: Run, inputs: Inputs) -> dict[str, Any]:
        return _work(run, _by_method(inputs, pack_stages))

    return Stage("judge", work, artifacts=lambda run: [ARTIFACT, SUMMARY],
                 reads=("judge", "ctx_len", "seed", "append_eos"),
                 inputs=("tokenize", *pack_stages.values()), load=_load)


def _by_method(inputs: Inputs, pack_stages: dict[str, str]) -> Inputs:
    return {"tokenize": inputs["tokenize"],
            **{method: inputs[name] for method, name in pack_stages.items()}}

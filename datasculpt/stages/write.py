"""Stage 6, write: what users read. ``sequences.jsonl`` (one line per sequence of the run's
method: its pieces, by document id) and the training shards under ``tokens/`` (the token
ids of every sequence, separators placed, rows in the order every format shares: the
seeded shuffle, balanced across data-parallel ranks when asked for)."""

from __future__ import annotations

import importlib
import logging
import shutil
from typing import Any

import numpy as np

from datasculpt.balance import output_order, sequence_costs
from datasculpt.errors import InputError
from datasculpt.io.shards import SHARD_DIR, shard_files, write_shards
from datasculpt.io.token_store import TokenStore
from datasculpt.io.write import write_sequences
from datasculpt.runner import Inputs, Run, Stage

log = logging.getLogger("datasculpt")


def _sequences(run: Run, inputs: Inputs) -> dict[str, Any]:
    docs = inputs["tokenize"]
    n = write_sequences(run.out / "sequences.jsonl", inputs["pack"], docs.table,
                        docs.doc_len, docs.eos, clusters=inputs.get("cluster"),
                        progress=run.progress)
    return {"sequences": n}


def sequences_stage(with_clusters: bool) -> Stage:
    """``sequences.jsonl``, with each sequence's cluster when the run clustered."""
    return Stage("sequences", _sequences, artifacts=lambda run: ["sequences.jsonl"],
                 reads=("append_eos",),
                 inputs=("tokenize", "pack", *(("cluster",) if with_clusters else ())),
                 final=True)


def wants(cfg: Any, fmt: str) -> bool:
    """Whether this config writes training data in format ``fmt``."""
    return bool(cfg.output.tokens) and fmt in list(cfg.output.formats)


def _store(run: Run, docs: Any) -> TokenStore:
    store = TokenStore(run.out)
    if not np.array_equal(store.doc_len, docs.doc_len):  # a store from another tokenizer
        raise InputError(f"the token store in {run.out} does not match documents.parquet; "
                         "rerun with overwrite=true")
    return store


def _shards(run: Run, inputs: Inputs) -> dict[str, Any]:
    out, cfg, docs = run.out, run.cfg, inputs["tokenize"]
    if not wants(cfg, "parquet"):
        shutil.rmtree(out / SHARD_DIR, ignore_errors=True)  # never leave another config's
        return {"written": False}
    store = _store(run, docs)
    packing = inputs["pack"]
    stats = write_shards(out, packing, store, docs.table, docs.eos,
                         docs.sep[0] if docs.sep else None,
                         order=output_order(packing, docs.doc_len, docs.eos, cfg.output,
                                            int(cfg.seed)),
                         cost=sequence_costs(packing, docs.doc_len, docs.eos,
                                             int(cfg.output.balance.hidden)),
                         shard_tokens=int(cfg.output.shard_tokens),
                         text_tokenizer=docs.tokenizer if cfg.output.text else None,
                         progress=run.progress, executor=run.executor)
    stats = {**stats, "shuffle": bool(cfg.output.shuffle),
             "balanced_ranks": int(cfg.output.balance.ranks)}
    log.info("shards: %d rows in %d files under %s, %.0f tokens/s", stats["rows"],
             stats["shards"], out / SHARD_DIR, stats["tokens_per_s"] or 0)
    return stats


SHARDS = Stage("shards", _shards, artifacts=lambda run: shard_files(run.out),
               reads=("output", "append_eos", "seed"), inputs=("tokenize", "pack"), final=True)


def _format_stage(fmt: str, folder: str) -> Stage:
    """The stage writing training data in ``fmt`` under ``<run>/<folder>/`` (its writer:
    ``datasculpt.io.<fmt>``), or removing that folder when the config does not ask for it."""

    def work(run: Run, inputs: Inputs) -> dict[str, Any]:
        if not wants(run.cfg, fmt):
            shutil.rmtree(run.out / folder, ignore_errors=True)
            return {"written": False}
        docs = inputs["tokenize"]
        store = _store(run, docs)
        order = output_order(inputs["pack"], docs.doc_len, docs.eos, run.cfg.output,
                             int(run.cfg.seed))
        stats = importlib.import_module(f"datasculpt.io.{fmt}").write(
            run.out, inputs["pack"], store, docs.eos,
            docs.sep[0] if docs.sep else None, order, ctx_len=int(run.cfg.ctx_len),
            progress=run.progress)
        log.info("%s: %d rows, %d tokens under %s", fmt, stats["rows"], stats["tokens"],
                 run.out / folder)
        return stats

    def files(run: Run) -> list[str]:
        return sorted(str(p.relative_to(run.out)) for p in (run.out / folder).rglob("*")
                      if p.is_file())

    return Stage(fmt, work, artifacts=files,
                 reads=("output", "append_eos", "seed", "ctx_len"), inputs=("tokenize", "pack"),
                 final=True)


MEGATRON = _format_stage("megatron", "megatron")
OLMO = _format_stage("olmo", "olmo")

"""Stage 1, read + tokenize: the documents' metadata (``doc_parts/``, read memory-mapped by the
later stages, and ``documents.parquet``, the same table for users), the malformed records
(``malformed.jsonl``) and every document's token ids (the token store), in input order; that
order is the row order of every later artifact."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from datasculpt.errors import InputError
from datasculpt.io.doc_table import DocTable, doc_files
from datasculpt.io.ingest import read_and_tokenize
from datasculpt.io.token_store import store_files
from datasculpt.io.write import write_jsonl
from datasculpt.manifest import fingerprint
from datasculpt.runner import Inputs, Run, Stage
from datasculpt.tokenize import make_units, separator
from datasculpt.tokenizer_cache import load_run_tokenizer
from datasculpt.types import Units

log = logging.getLogger("datasculpt")

STORE_LAYOUT = 3  # bump when the token store's layout changes: old stores are then rebuilt


@dataclass(frozen=True)
class Documents:
    """The tokenize stage's result as later stages read it: the metadata (columns on disk),
    the token counts, the run tokenizer, the separator (id, text) placed after each document
    when ``append_eos``, and the units (documents, long ones cut) the packers place."""

    table: DocTable
    doc_len: np.ndarray
    tokenizer: Any
    eos: int
    sep: tuple[int, str] | None
    units: Units

    @cached_property
    def labels(self) -> np.ndarray | None:
        """The input labels as codes (equal labels, equal codes): what purity compares."""
        return self.table.label_codes()


def _work(run: Run, inputs: Inputs) -> dict[str, Any]:
    cfg, src = run.cfg, run.source
    table, doc_len, rstats, tstats = read_and_tokenize(
        src.paths, src.opts, cfg.tokenizer, int(cfg.tokenize_batch_size), run.out,
        run.executor, run.progress,
        block_bytes=max(1, int(cfg.tokenize_block_mb * (1 << 20))))
    if len(table) == 0:
        raise InputError(f"no usable documents in {src.spec} ({len(rstats.malformed)} "
                         "malformed)")
    if rstats.malformed:
        log.warning("read: %d malformed records (listed in the report)", len(rstats.malformed))
    log.info("read: %d documents, %d malformed records", len(table), len(rstats.malformed))
    table.write_parquet(run.out / "documents.parquet")
    read = rstats.as_dict()
    write_jsonl(run.out / "malformed.jsonl", read.pop("all_malformed"))
    return {**tstats, "read": read}


def _load(run: Run, inputs: Inputs) -> Documents:
    table = DocTable(run.out)
    doc_len = table.n_tokens()
    tok = load_run_tokenizer(run.cfg.tokenizer)
    eos = int(bool(run.cfg.append_eos))
    units = make_units(doc_len, run.cfg.ctx_len, eos)
    log.info("tokenize: %d tokens; %d documents longer than ctx_len cut into %d units",
             int(doc_len.sum()), int((doc_len + eos > run.cfg.ctx_len).sum()), len(units))
    return Documents(table, doc_len, tok, eos, separator(tok) if eos else None, units)


def _input_identity(run: Run) -> dict[str, Any]:
    """The input files (path, size, mtime) and how they are read: what the config alone
    does not say about the bytes this stage reads."""
    return {"input": fingerprint(run.source.paths), "opts": run.source.opts.__dict__,
            "store": STORE_LAYOUT}


TOKENIZE = Stage(
    "tokenize", _work,
    artifacts=lambda run: ["documents.parquet", "malformed.jsonl", *store_files(run.out),
                           *doc_files(run.out)],
    reads=("tokenizer",), extra=_input_identity, load=_load)

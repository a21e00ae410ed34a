"""Stage 4, pack: the pieces of every sequence (``pieces_<method>.npy``: sequence, document,
start, end), one stage per packing method of the run (the method, then each baseline)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from datasculpt.faults import fault_point
from datasculpt.io.write import write_npy
from datasculpt.runner import Inputs, Run, Stage
from datasculpt.types import Packing

log = logging.getLogger("datasculpt")

BASELINES = ("concat", "bfd", "iclm")

# The pack.* knobs each method reads (and so its key): a knob of one method re-packs that
# method only. A test checks that every knob of the schema belongs to some method.
_WINDOW = ("max_group", "max_waste", "remainder_group", "fit_bias", "diversity", "task_units",
           "block_bytes", "cost_cap")
_UNIT = ("score", "w_rel", "w_fit", "batch_size")
KNOBS: dict[str, tuple[str, ...]] = {
    "concat": (),
    "bfd": (),
    "iclm": ("knn_k",),
    "datasculpt/window": ("strategy", "mode", *_WINDOW),
    "datasculpt/unit": ("strategy", "mode", *_UNIT),
}
_SEEDED = ("concat", "iclm")  # the packers with a random choice


def knobs(method: str, strategy: str) -> tuple[str, ...]:
    return KNOBS[f"{method}/{strategy}" if method == "datasculpt" else method]


def stage_name(method: str, main: str) -> str:
    return "pack" if method == main else f"pack_{method}"


def _artifact(method: str) -> str:
    return f"pieces_{method}.npy"


def pack_stage(method: str, main: str, strategy: str) -> Stage:
    """The stage that packs with ``method`` (``main`` is the run's method, whose stage is
    called ``pack``)."""

    def work(run: Run, inputs: Inputs) -> dict[str, Any]:
        from datasculpt.pack import pack

        emb = inputs.get("embed")
        # iclm's kNN searches all documents at once: it takes the whole matrix (mapped on
        # the host). The datasculpt packer gathers the rows of each batch of clusters.
        rows = None if emb is None else emb.device if method == "iclm" else emb.by_rows()
        packing, stats = pack(method, inputs["tokenize"].units, run.cfg.ctx_len, run.cfg.pack,
                              run.cfg.seed, run.backend, embeddings=rows,
                              clusters=inputs.get("cluster"), executor=run.executor)
        fault_point("pack")
        write_npy(run.out / _artifact(method), np.stack(
            [packing.seq, packing.doc, packing.start, packing.end], axis=1))
        return stats

    def load(run: Run, inputs: Inputs) -> Packing:
        # memory-mapped: the pieces (32 bytes each) stay in the page cache, not the driver's
        # heap, for the writers and the report that read them
        arr = np.load(run.out / _artifact(method), mmap_mode="r", allow_pickle=False)
        return Packing(seq=arr[:, 0], doc=arr[:, 1], start=arr[:, 2], end=arr[:, 3])

    upstream = {"datasculpt": ("tokenize", "embed", "cluster"),
                "iclm": ("tokenize", "embed")}.get(method, ("tokenize",))
    reads = ("ctx_len", "append_eos", *(("seed",) if method in _SEEDED else ()),
             *(f"pack.{k}" for k in knobs(method, strategy)))
    return Stage(stage_name(method, main), work, artifacts=lambda run: [_artifact(method)],
                 reads=reads, inputs=upstream, load=load, extra=lambda run: {"method": method},
                 rung=lambda stats: stats.get("rung"))

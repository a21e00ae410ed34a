"""Stage 2, embed: one L2-normalised float32 vector per document (``embeddings.npy``, rows in
document order), from the encoder, the static table, an ``.npy`` given by the user or a
field of the input records. The static table reads its ids from the token store when its
tokenizer is the run's (``embed.static_ids``), else the texts again."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from datasculpt.backend import is_gpu_array
from datasculpt.config import EmbedConfig
from datasculpt.errors import InputError
from datasculpt.faults import fault_point
from datasculpt.io.ingest import document_texts
from datasculpt.io.row_file import RowFile, drop_mapped_pages
from datasculpt.io.write import atomic_path
from datasculpt.progress import progress_bar
from datasculpt.runner import Inputs, Run, Stage

log = logging.getLogger("datasculpt")

CHUNK = 1 << 13  # documents per encoder call: bounds the texts held at once
_DROP_EVERY = 16  # chunks of given vectors copied between drops of the mapped pages

# Measured on the dev corpus (docs/BENCHMARKS.md, "Static embeddings"): the packaged encoder
# embeds 13.7 to 14.7 documents/s on 2 cores (max_length 256); the embed=static stage 61x
# that (max_length 512, sqrt term weights). Rounded down: busier machines were slower.
_ENCODER_DOCS_PER_CORE_S = 6.0
_STATIC_SPEEDUP = 60.0
_SUGGEST_STATIC_S = 600.0

# Settings only embed=static reads: an encoder run's embeddings do not depend on them.
STATIC_ONLY = ("static_dir", "pca_dims", "term_weight")


@dataclass(frozen=True)
class Embeddings:
    """The vectors on the host (memory-mapped) and on the run's backend, moved there once
    for every stage that computes with them (the host array itself on a CPU run, no copy),
    and the file they came from."""

    host: np.ndarray
    device: Any
    path: Path | None = None

    def by_rows(self) -> Any:
        """What a stage that reads rows by index takes: on a GPU run the device matrix (moved
        there once, on purpose); on the host the file itself (``RowFile``), so that every
        task, in this process or another (Ray), maps it and reads only its own rows instead
        of receiving a copy of all of them."""
        if self.path is None or is_gpu_array(self.device):
            return self.device
        return RowFile(self.path)


def suggest_static(n: int) -> None:
    """Say what the encoder will cost on this CPU, and the faster option when it is long. The
    choice stays the user's: static vectors group documents a little less well."""
    cores = os.cpu_count() or 1
    seconds = n / (_ENCODER_DOCS_PER_CORE_S * cores)
    if seconds >= _SUGGEST_STATIC_S:
        log.warning("embed: the encoder on %d CPU cores needs about %.0f min for %d documents; "
                    "embed=static (a distilled lookup table) takes about %.1f min for them, "
                    "with somewhat lower relevance (docs/BENCHMARKS.md)", cores, seconds / 60, n,
                    seconds / _STATIC_SPEEDUP / 60)
    else:
        log.info("embed: the encoder on %d CPU cores needs about %.0f s for %d documents",
                 cores, seconds, n)


def _center(rows: np.ndarray) -> float:
    """Subtract the corpus mean from every row and renormalise, in chunks, in place; returns
    the mean's norm. Static vectors share a large common direction (the frequent tokens every
    document holds: two random documents of the dev corpus have cosine 0.57, against 0.16 with
    the encoder), which squeezes every similarity the clustering thresholds read."""
    from datasculpt.vectors import l2_normalize

    total = np.zeros(rows.shape[1], dtype=np.float64)
    for lo in range(0, rows.shape[0], CHUNK):
        total += rows[lo : lo + CHUNK].sum(axis=0, dtype=np.float64)
    mean = (total / max(rows.shape[0], 1)).astype(np.float32)
    for lo in range(0, rows.shape[0], CHUNK):
        rows[lo : lo + CHUNK] = l2_normalize(rows[lo : lo + CHUNK] - mean)
    return float(np.linalg.norm(mean))


def _given(run: Run, n: int, tmp: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Vectors the user supplied: an ``.npy`` aligned with the documents, or an input field."""
    from datasculpt import embed as embed_mod

    cfg = run.cfg.embed
    if cfg.precomputed:
        given = embed_mod.load_precomputed(cfg.precomputed, n)
        rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=given.shape)
        for i, lo in enumerate(range(0, n, CHUNK)):
            rows[lo : lo + CHUNK] = embed_mod.l2_normalize(
                np.asarray(given[lo : lo + CHUNK], dtype=np.float32))
            if i % _DROP_EVERY == _DROP_EVERY - 1:
                drop_mapped_pages(given, rows)
        drop_mapped_pages(given, rows)
        return rows, {"source": str(cfg.precomputed)}
    vectors = [doc.vector for doc in run.source.stream()]
    rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                     shape=(n, vectors[0].size))
    rows[:] = embed_mod.l2_normalize(np.stack(vectors))
    return rows, {"source": f"input field {cfg.vector_key!r}"}


def _static_ids(run: Run, tokenizer: Any, model_dir: str) -> tuple[Any, dict[str, Any]]:
    """The reader of the static table's ids and its extra arguments: the token store's ids
    when they are the static tokenizer's (``embed.static_ids``: the default model's table is
    distilled from the run tokenizer's vocabulary, so a static run tokenizes once), else
    every text again. ``ids_from`` in the stage's stats says which, ``ids_why`` why not."""
    from datasculpt.embed.static import load_static_model
    from datasculpt.embed.static_ids import store_id_map, stored_static_rows
    from datasculpt.tokenize import untruncated_backend

    static = load_static_model(Path(model_dir))
    # The store holds plain_ids(tokenizer): this backend, special tokens' strings matched.
    id_map = store_id_map(untruncated_backend(tokenizer), static.tokenizer,
                          static.unk_token_id)
    if isinstance(id_map, str):
        log.info("embed=static: tokenizing the texts again (%s)", id_map)
        return document_texts, {"ids_from": "text", "ids_why": id_map}
    return stored_static_rows, {"ids_from": "token_store", "id_map": id_map,
                                "max_length": int(run.cfg.embed.max_length)}


def _encoded(run: Run, blocks: list[tuple[int, int, int]], n: int, tmp: Any, tokenizer: Any,
             ) -> tuple[np.ndarray, dict[str, Any]]:
    """Vectors from the encoder or the static table, through ``executor.map_rows``: each
    input shard is read again by a reader (or, for the static table, its ids from the token
    store), its texts go in batches to the model workers, and every vector lands at its
    document's row whatever order the batches come back in."""
    from datasculpt import embed as embed_mod

    cfg, backend, src = run.cfg.embed, run.backend, run.source
    stats: dict[str, Any] = {}
    model_kwargs = {"cfg": OmegaConf.to_container(cfg, resolve=True), "backend": backend.name}
    model: Any = embed_mod.Encoder
    read: Any = document_texts
    read_kwargs: dict[str, Any] = {}
    if cfg.kind == "encoder" and not backend.is_gpu:
        suggest_static(n)
    if cfg.kind == "static":
        from datasculpt.embed.static import StaticEncoder, static_model_dir

        model = StaticEncoder
        model_kwargs["model_dir"] = str(static_model_dir(cfg))
        stats["static_dir"] = model_kwargs["model_dir"]
        read, how = _static_ids(run, tokenizer, model_kwargs["model_dir"])
        stats["ids_from"] = how.pop("ids_from")
        stats.update({k: how.pop(k) for k in ("ids_why",) if k in how})
        read_kwargs = how
    rows: Any = None
    rungs: set[str] = set()
    done = 0
    bar = progress_bar(run.progress, total=n, desc="embed", unit="doc")
    for batch in run.executor.map_rows(
            read, blocks, model,
            batch_size=CHUNK, gpu=backend.is_gpu, paths=src.paths, opts=src.opts,
            run_dir=str(run.out), model_kwargs=model_kwargs, **read_kwargs):
        vec = batch["vec"]
        if rows is None:
            rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                             shape=(n, vec.shape[1]))
        rows[batch["row"]] = vec
        rungs.update(np.unique(batch["rung"]).tolist())
        done += vec.shape[0]
        bar.update(vec.shape[0])
        fault_point("embed")
    bar.close()
    if done != n:
        raise InputError(f"embed: {done} of {n} documents came back")
    stats = {**stats, "model": str(cfg.model), "kind": str(cfg.kind), "n": n,
             "workers": run.executor.workers,
             "rung": ", ".join(sorted(rungs))}
    if cfg.kind == "static":
        stats["mean_removed"] = _center(rows)
    return rows, stats


def _work(run: Run, inputs: Inputs) -> dict[str, Any]:
    t0 = time.perf_counter()
    docs = inputs["tokenize"]
    n = len(docs.table)
    given = run.cfg.embed.precomputed or run.cfg.embed.vector_key
    with atomic_path(run.out / "embeddings.npy") as tmp:
        rows, stats = (_given(run, n, tmp) if given
                       else _encoded(run, docs.table.file_rows(), n, tmp, docs.tokenizer))
        dim = int(rows.shape[1])
        rows.flush()
        del rows
    seconds = time.perf_counter() - t0
    return {**stats, "dim": dim, "seconds": seconds,
            "docs_per_s": n / seconds if seconds > 0 else None}


def _load(run: Run, inputs: Inputs) -> Embeddings:
    host = np.load(run.out / "embeddings.npy", mmap_mode="r", allow_pickle=False)
    log.info("embed: %d x %d", *host.shape)
    # On the host np.asarray is a view of the map (no copy); on a GPU the one move there.
    return Embeddings(host, run.backend.asarray(np.asarray(host)), run.out / "embeddings.npy")


def _rung(stats: dict[str, Any]) -> str | None:
    return stats.get("rung") or ("given vectors" if "source" in stats else None)


def embed_stage(kind: str) -> Stage:
    """The embed stage for ``embed.kind``: a setting the chosen kind ignores is not part of
    its key, so it cannot make a run recompute its embeddings."""
    names = [f.name for f in fields(EmbedConfig)
             if kind == "static" or f.name not in STATIC_ONLY]
    return Stage("embed", _work, artifacts=lambda run: ["embeddings.npy"],
                 reads=tuple(f"embed.{n}" for n in names), inputs=("tokenize",), load=_load,
                 rung=_rung)

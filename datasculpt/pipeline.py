"""Declares the stages of a run and runs them in order; it does no stage's work itself.

read+tokenize -> embed -> cluster -> pack -> write/report (DESIGN §2). Each stage is a
:class:`~datasculpt.stages.Stage` (key, artifacts, work); ``stages.execute`` applies the
manifest rules, and every later stage reads its inputs back from the artifacts, so a fresh
and a resumed run continue from the same bytes. The executor (``executor=local|ray``) runs
the independent pieces inside the stages. Texts are streamed: read+tokenize keeps
per-document metadata and writes every document's token ids to the on-disk token store, the
embed stage streams the shards again, and the training shards are assembled from the token
store, so memory does not grow with the corpus text.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from datasculpt.backend import Backend, resolve_backend
from datasculpt.config import validate
from datasculpt.errors import ConfigError, InputError
from datasculpt.executors import Executor, make_executor
from datasculpt.faults import fault_point
from datasculpt.io.ingest import document_blocks, document_texts, read_and_tokenize
from datasculpt.io.read import Corpus, ReadOptions, ReadStats, iter_documents, resolve_inputs
from datasculpt.io.shards import SHARD_DIR, shard_files, write_shards
from datasculpt.io.token_store import OFFSETS, TOKENS, TokenStore
from datasculpt.io.write import (
    atomic_path,
    write_jsonl,
    write_npy,
    write_parquet,
    write_sequences,
)
from datasculpt.manifest import Manifest, fingerprint, stable_hash
from datasculpt.memory import release_gpu_memory
from datasculpt.metrics import compute_metrics, random_reference
from datasculpt.pack import SEMANTIC_METHODS, pack
from datasculpt.progress import progress_bar
from datasculpt.report import plot, write_report
from datasculpt.rungs import stage_rungs
from datasculpt.stages import Stage, execute
from datasculpt.tokenize import load_tokenizer, make_units, separator
from datasculpt.types import Packing

log = logging.getLogger("datasculpt")

FINAL_OUTPUTS = ("sequences.jsonl", "report.json", "report.md")
BASELINES = ("concat", "bfd", "iclm")
EMBED_CHUNK = 1 << 13  # documents per encoder call: bounds the texts held at once


@dataclass
class Source:
    """The input shards and how to read them; ``stream()`` re-reads them in the same order."""

    spec: str
    paths: list[Path]
    opts: ReadOptions
    progress: bool

    def stream(self) -> Iterator[Any]:
        return iter_documents(self.paths, self.opts, ReadStats(), self.progress)



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


def _load_documents(path: Path, label_key: str | None) -> tuple[Corpus, np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(path).to_pydict()
    corpus = Corpus(docids=table["docid"], sources=table["source"], lines=table["line"],
                    labels=table[label_key] if label_key else None)
    return corpus, np.asarray(table["n_tokens"], dtype=np.int64)


# Measured on the dev corpus (docs/BENCHMARKS.md, "Static embeddings"): the packaged encoder
# embeds 13.7 to 14.7 documents/s on 2 cores (max_length 256); the embed=static stage 61x
# that (max_length 512, sqrt term weights). Rounded down: busier machines were slower.
_ENCODER_DOCS_PER_CORE_S = 6.0
_STATIC_SPEEDUP = 60.0
_SUGGEST_STATIC_S = 600.0


def _suggest_static(n: int) -> None:
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
    from datasculpt.embed import l2_normalize

    total = np.zeros(rows.shape[1], dtype=np.float64)
    for lo in range(0, rows.shape[0], EMBED_CHUNK):
        total += rows[lo : lo + EMBED_CHUNK].sum(axis=0, dtype=np.float64)
    mean = (total / max(rows.shape[0], 1)).astype(np.float32)
    for lo in range(0, rows.shape[0], EMBED_CHUNK):
        rows[lo : lo + EMBED_CHUNK] = l2_normalize(rows[lo : lo + EMBED_CHUNK] - mean)
    return float(np.linalg.norm(mean))


def _embed(cfg: DictConfig, src: Source, sources: list[str], backend: Backend,
           executor: Executor, out: Path) -> dict:
    """Write ``embeddings.npy`` (float32, L2-normalised) from the encoder or the given vectors.

    The encoder runs through ``executor.map_rows``: each input shard is read again by a
    reader, its texts go in batches to the encoder workers, and every vector is written at
    its document's row, whatever order the batches come back in.
    """
    from datasculpt import embed as embed_mod

    t0 = time.perf_counter()
    n = len(sources)
    done = 0
    stats: dict[str, Any] = {}
    with atomic_path(out / "embeddings.npy") as tmp:
        if cfg.embed.precomputed:
            given = embed_mod.load_precomputed(cfg.embed.precomputed, n)
            rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=given.shape)
            for lo in range(0, n, EMBED_CHUNK):
                rows[lo : lo + EMBED_CHUNK] = embed_mod.l2_normalize(
                    np.asarray(given[lo : lo + EMBED_CHUNK], dtype=np.float32))
            stats["source"] = str(cfg.embed.precomputed)
        elif cfg.embed.vector_key:
            vectors = [doc.vector for doc in src.stream()]
            rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                             shape=(n, vectors[0].size))
            rows[:] = embed_mod.l2_normalize(np.stack(vectors))
            stats["source"] = f"input field {cfg.embed.vector_key!r}"
        else:
            rows = None
            rungs: set[str] = set()
            model_kwargs = {"cfg": OmegaConf.to_container(cfg.embed, resolve=True),
                            "backend": backend.name}
            model: Any = embed_mod.Encoder
            if cfg.embed.kind == "encoder" and not backend.is_gpu:
                _suggest_static(n)
            if cfg.embed.kind == "static":
                from datasculpt.embed.static import StaticEncoder, static_model_dir

                model = StaticEncoder
                model_kwargs["model_dir"] = str(static_model_dir(cfg.embed))
                stats["static_dir"] = model_kwargs["model_dir"]
            blocks = document_blocks(sources, [str(p) for p in src.paths])
            bar = progress_bar(src.progress, total=n, desc="embed", unit="doc")
            for batch in executor.map_rows(
                    document_texts, blocks, model, batch_size=EMBED_CHUNK,
                    gpu=backend.is_gpu, paths=src.paths, opts=src.opts, run_dir=str(out),
                    model_kwargs=model_kwargs):
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
            stats = {**stats, "model": str(cfg.embed.model), "kind": str(cfg.embed.kind), "n": n,
                     "workers": "ray actors" if executor.name == "ray" else backend.name,
                     "rung": ", ".join(sorted(rungs))}
            if cfg.embed.kind == "static":
                stats["mean_removed"] = _center(rows)
        dim = int(rows.shape[1])
        rows.flush()
        del rows
    seconds = time.perf_counter() - t0
    return {**stats, "dim": dim, "seconds": seconds,
            "docs_per_s": n / seconds if seconds > 0 else None}


# Settings only embed=static reads: an encoder run's embeddings do not depend on them.
_STATIC_ONLY = ("static_dir", "pca_dims", "term_weight")


def _embed_key(embed: dict[str, Any]) -> dict[str, Any]:
    """The embed node as the embed stage's key: a setting the chosen kind ignores cannot
    make a run recompute its embeddings."""
    if embed["kind"] == "static":
        return embed
    return {k: v for k, v in embed.items() if k not in _STATIC_ONLY}


def _judge(cfg: DictConfig, plain: dict[str, Any], out: Path, src: Source, sources: list[str],
           doc_len: np.ndarray, units: Any, packings: dict[str, Packing],
           pack_keys: dict[str, str], tok_key: str, tok: Any, backend: Backend,
           manifest: Manifest) -> dict[str, Any]:
    """The judge stage: context gain of every packing of the run and of a random grouping of
    the same units (``datasculpt.judge``), keyed by the packings it reads and its own node."""
    from datasculpt import judge as judge_mod
    from datasculpt.judge.texts import document_texts_of
    from datasculpt.metrics import random_grouping

    targets = {**packings, judge_mod.RANDOM: random_grouping(units, cfg.ctx_len, cfg.seed)}

    def work() -> dict[str, Any]:
        return judge_mod.judge(
            targets, cfg.judge, doc_len=doc_len, eos=bool(cfg.append_eos), seed=cfg.seed,
            texts_of=lambda rows: document_texts_of(rows, sources, src.paths, src.opts, out),
            run_tokenizer=tok, device="cuda" if backend.is_gpu else "cpu", out=out,
            progress=bool(cfg.report.progress))

    stage = Stage("judge", {"packs": pack_keys, "tok": tok_key, "judge": plain["judge"],
                            "random": {"ctx_len": cfg.ctx_len, "seed": cfg.seed,
                                       "eos": cfg.append_eos}},
                  lambda: [judge_mod.ARTIFACT], work)
    stats = execute(stage, manifest)
    if backend.is_gpu:
        release_gpu_memory()
    return stats


def _context_gain_report(judged: dict[str, Any] | None) -> dict[str, Any] | None:
    """``report.json``'s ``context_gain``: the judge's settings, then one entry per packing
    (the method, each baseline, ``random``)."""
    if judged is None:
        return None
    settings = {k: judged[k] for k in ("model", "source", "device", "dtype", "separator",
                                       "sequences", "max_tokens", "ngram",
                                       "near_dup_threshold")}
    return {"judge": settings, **judged["methods"]}


def run(cfg: DictConfig, output_dir: str | None = None) -> dict[str, Any]:
    """Run the whole pipeline into ``output_dir`` and return the report (also written to disk)."""
    validate(cfg)
    out = _prepare_output_dir(output_dir or cfg.output_dir)
    backend = resolve_backend(cfg.backend.name)
    executor = make_executor(cfg.executor)
    try:
        return _run(cfg, out, backend, executor)
    finally:
        executor.close()


def _run(cfg: DictConfig, out: Path, backend: Backend, executor: Executor) -> dict[str, Any]:
    progress = bool(cfg.report.progress)
    log.info("run directory: %s; backend: %s; executor: %s", out, backend.name, executor.name)
    manifest = Manifest(out, fresh=bool(cfg.overwrite))
    stages: dict[str, dict[str, Any]] = {}
    plain = OmegaConf.to_container(cfg, resolve=True)

    spec, label_key = str(cfg.input), cfg.label_key
    if cfg.input is None:
        from datasculpt.data import SAMPLE_LABEL_KEY, SAMPLE_PATH

        spec, label_key = str(SAMPLE_PATH), cfg.label_key or SAMPLE_LABEL_KEY
    opts = ReadOptions(text_key=cfg.text_key, id_key=cfg.id_key, label_key=label_key,
                       vector_key=cfg.embed.vector_key, strict=bool(cfg.strict))
    src = Source(spec, resolve_inputs(spec), opts, progress)
    if cfg.embed.precomputed:  # a malformed file fails before the first pass, not after it
        from datasculpt.embed import load_precomputed

        load_precomputed(cfg.embed.precomputed, None)
    read_key = stable_hash({"input": fingerprint(src.paths), "opts": opts.__dict__})
    # The executor changes where work runs, never what it writes: no part of any key.
    final_key = stable_hash({"read": read_key, "cfg": {k: v for k, v in plain.items()
                                                      if k not in ("overwrite", "output_dir",
                                                                   "executor")}})
    if manifest.stages.get("final", {}).get("key") != final_key:
        for name in FINAL_OUTPUTS:  # never leave a stale result that looks like this run's
            (out / name).unlink(missing_ok=True)
        manifest.forget("final")

    # read + tokenize -------------------------------------------------------------------
    tok = load_tokenizer(cfg.tokenizer)

    def tokenize_work() -> dict[str, Any]:
        corpus, doc_len, rstats, tstats = read_and_tokenize(
            src.paths, opts, cfg.tokenizer, int(cfg.tokenize_batch_size), out, executor,
            progress, block_bytes=max(1, int(cfg.tokenize_block_mb * (1 << 20))))
        if len(corpus) == 0:
            raise InputError(f"no usable documents in {spec} ({len(rstats.malformed)} "
                             "malformed)")
        if rstats.malformed:
            log.warning("read: %d malformed records (listed in the report)",
                        len(rstats.malformed))
        log.info("read: %d documents, %d malformed records", len(corpus), len(rstats.malformed))
        columns: dict[str, Any] = {"docid": corpus.docids, "source": corpus.sources,
                                   "line": np.asarray(corpus.lines, dtype=np.int64),
                                   "n_tokens": doc_len}
        if corpus.labels is not None:
            columns[label_key] = corpus.labels
        write_parquet(out / "documents.parquet", columns)
        read = rstats.as_dict()
        write_jsonl(out / "malformed.jsonl", read.pop("all_malformed"))
        return {**tstats, "read": read}

    tokenize = Stage("tokenize", {"read": read_key, "tokenizer": cfg.tokenizer, "store": 1},
                     lambda: ["documents.parquet", "malformed.jsonl", TOKENS, OFFSETS],
                     tokenize_work)
    tok_key = tokenize.digest
    stages["tokenize"] = execute(tokenize, manifest)
    corpus, doc_len = _load_documents(out / "documents.parquet", label_key)
    read_stats = stages["tokenize"].pop("read")
    eos = int(bool(cfg.append_eos))
    sep = separator(tok) if eos else None
    units = make_units(doc_len, cfg.ctx_len, eos)
    log.info("tokenize: %d tokens; %d documents longer than ctx_len cut into %d units",
             int(doc_len.sum()), int((doc_len + eos > cfg.ctx_len).sum()), len(units))

    # embed / cluster ---------------------------------------------------------------------
    methods = [cfg.pack.method] + ([m for m in BASELINES if m != cfg.pack.method]
                                   if cfg.report.baselines else [])
    need_embed = bool(cfg.report.semantic_metrics) or any(m in SEMANTIC_METHODS for m in methods)
    need_cluster = bool(cfg.report.semantic_metrics) or "datasculpt" in methods
    embeddings = clusters = None
    on_device: Any = None  # the embeddings on the backend, moved there once for cluster and pack

    def device_embeddings() -> Any:
        nonlocal on_device
        if on_device is None:
            on_device = backend.asarray(np.asarray(embeddings))
        return on_device

    embed = Stage("embed", {"read": read_key, "embed": _embed_key(plain["embed"])},
                  lambda: ["embeddings.npy"],
                  lambda: _embed(cfg, src, corpus.sources, backend, executor, out))
    if need_embed:
        stages["embed"] = execute(embed, manifest)
        if backend.is_gpu:
            release_gpu_memory()
        embeddings = np.load(out / "embeddings.npy", mmap_mode="r", allow_pickle=False)
        log.info("embed: %d x %d", *embeddings.shape)

    def cluster_work() -> dict[str, Any]:
        from datasculpt.cluster import cluster

        t0 = time.perf_counter()
        result = cluster(device_embeddings(), doc_len, cfg.ctx_len, cfg.cluster, backend,
                         cfg.seed, executor)
        write_npy(out / "clusters.npy", np.asarray(result.labels, dtype=np.int32))
        write_npy(out / "centroids.npy", np.asarray(result.centroids, dtype=np.float32))
        return {**result.stats, "seconds": time.perf_counter() - t0}

    cluster_stage = Stage("cluster", {"embed": embed.digest, "tok": tok_key,
                                      "cluster": plain["cluster"], "ctx_len": cfg.ctx_len,
                                      "seed": cfg.seed},
                          lambda: ["clusters.npy", "centroids.npy"], cluster_work)
    if need_cluster and embeddings is not None:
        stages["cluster"] = execute(cluster_stage, manifest)
        if backend.is_gpu:
            release_gpu_memory()
        clusters = np.load(out / "clusters.npy", allow_pickle=False)
        log.info("cluster: %d clusters", int(clusters.max()) + 1)

    # pack ------------------------------------------------------------------------------
    labels = np.asarray(corpus.labels) if corpus.labels is not None else None
    packings: dict[str, Packing] = {}
    results: dict[str, dict[str, Any]] = {}
    pack_keys: dict[str, str] = {}
    for method in methods:
        artifact = f"pieces_{method}.npy"

        def pack_work(method: str = method, artifact: str = artifact) -> dict[str, Any]:
            packing, pstats = pack(method, units, cfg.ctx_len, cfg.pack, cfg.seed, backend,
                                   embeddings=None if embeddings is None else device_embeddings(),
                                   clusters=clusters, executor=executor)
            fault_point("pack")
            write_npy(out / artifact, np.stack([packing.seq, packing.doc, packing.start,
                                                packing.end], axis=1))
            return pstats

        stage = Stage("pack" if method == cfg.pack.method else f"pack_{method}",
                      {"tok": tok_key, "embed": embed.digest, "cluster": cluster_stage.digest,
                       "pack": {**plain["pack"], "method": method}, "seed": cfg.seed,
                       "ctx_len": cfg.ctx_len, "eos": eos},
                      lambda artifact=artifact: [artifact], pack_work)
        pack_keys[method] = stage.digest
        stages[stage.name] = execute(stage, manifest)
        if backend.is_gpu:
            release_gpu_memory()
        arr = np.load(out / artifact, allow_pickle=False)
        packing = Packing(seq=arr[:, 0], doc=arr[:, 1], start=arr[:, 2], end=arr[:, 3])
        packings[method] = packing
        results[method] = compute_metrics(packing, doc_len, cfg.ctx_len, eos, embeddings,
                                          clusters, labels)
        log.info("pack=%s: %d sequences, fill %.4f, truncation %.4f", method,
                 results[method]["n_sequences"], results[method]["fill_rate"],
                 results[method]["truncation_rate"])
    judged = None
    if cfg.judge.enabled:
        judged = _judge(cfg, plain, out, src, corpus.sources, doc_len, units, packings,
                        pack_keys, tok_key, tok, backend, manifest)
        stages["judge"] = judged
    for name, st in stages.items():
        log.info("stage %s: %.2f s%s", name, st.get("seconds") or 0.0,
                 " (reused)" if st.get("reused") else "")

    # write / report --------------------------------------------------------------------
    main = cfg.pack.method
    manifest.begin("write")
    t0 = time.perf_counter()
    write_sequences(out / "sequences.jsonl", packings[main], corpus.docids, doc_len, eos,
                    clusters=clusters, progress=progress)
    stages["write"] = {"seconds": time.perf_counter() - t0}

    def shards_work() -> dict[str, Any]:
        store = TokenStore(out)
        if not np.array_equal(store.doc_len, doc_len):  # a store from another tokenizer
            raise InputError(f"the token store in {out} does not match documents.parquet; "
                             "rerun with overwrite=true")
        sstats = write_shards(out, packings[main], store, corpus.docids, eos,
                              sep[0] if sep else None, shuffle=bool(cfg.output.shuffle),
                              seed=cfg.seed, shard_tokens=int(cfg.output.shard_tokens),
                              text_tokenizer=tok if cfg.output.text else None,
                              progress=progress, executor=executor)
        log.info("shards: %d rows in %d files under %s, %.0f tokens/s", sstats["rows"],
                 sstats["shards"], out / SHARD_DIR, sstats["tokens_per_s"] or 0)
        return sstats

    shards = Stage("shards", {"pack": pack_keys[main], "output": plain["output"],
                              "sep": sep[0] if sep else None},
                   lambda: shard_files(out), shards_work)
    if not cfg.output.tokens:
        shutil.rmtree(out / SHARD_DIR, ignore_errors=True)  # never leave another config's
        manifest.forget("shards")
    else:
        stages["shards"] = execute(shards, manifest)
    plots = []
    if cfg.report.plots:
        plots = plot(out / "plots", packings, doc_len, cfg.ctx_len, eos, embeddings)
    metrics = results[main]
    reference = (random_reference(units, cfg.ctx_len, cfg.seed, embeddings, clusters, labels)
                 if embeddings is not None or labels is not None else None)
    rungs, rung_warnings = stage_rungs(stages, backend.name)
    for warning in rung_warnings:
        log.warning("%s", warning)
    report = {
        "run": {"method": main, "ctx_len": cfg.ctx_len, "seed": cfg.seed, "backend": backend.name,
                "executor": executor.name, "rungs": rungs, "warnings": rung_warnings,
                "append_eos": bool(eos), "separator_token": sep[1] if sep else None,
                "label_key": label_key, "input": spec, "output_dir": str(out),
                "n_documents": metrics["n_documents"], "total_tokens": metrics["total_tokens"],
                "forced_cut_documents": metrics["forced_cut_documents"],
                "n_units": len(units)},
        "input": read_stats,
        "metrics": metrics,
        "methods": results,
        "reference": reference,
        "context_gain": _context_gain_report(judged),
        "stages": stages,
        "plots": plots,
        "config": plain,
    }
    write_report(out, report)
    manifest.record("final", final_key, list(FINAL_OUTPUTS), {})
    log.info("wrote %s (%d sequences)", out / "sequences.jsonl", metrics["n_sequences"])
    return report

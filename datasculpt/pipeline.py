"""Orders the stages, reuses finished artifacts and logs; it does no stage's work itself.

read -> tokenize -> embed -> cluster -> pack -> write/report (DESIGN §2).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from datasculpt.backend import Backend, resolve_backend, to_numpy
from datasculpt.config import validate
from datasculpt.errors import ConfigError, InputError
from datasculpt.io.read import ReadOptions, read_corpus, resolve_inputs
from datasculpt.io.write import TextSource, write_npy, write_parquet, write_sequences
from datasculpt.manifest import Manifest, fingerprint, stable_hash
from datasculpt.metrics import compute_metrics
from datasculpt.pack import SEMANTIC_METHODS, pack
from datasculpt.report import plot, write_report
from datasculpt.tokenize import count_tokens, load_tokenizer, make_units, separator
from datasculpt.types import Packing

log = logging.getLogger("datasculpt")

FINAL_OUTPUTS = ("sequences.jsonl", "report.json", "report.md")
BASELINES = ("concat", "bfd", "iclm")


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


def _embeddings(cfg: DictConfig, corpus: Any, backend: Backend, progress: bool) -> tuple[Any, dict]:
    from datasculpt import embed as embed_mod

    n = len(corpus)
    t0 = time.perf_counter()
    if cfg.embed.precomputed:
        emb = np.asarray(embed_mod.load_precomputed(cfg.embed.precomputed, n), dtype=np.float32)
        stats: dict[str, Any] = {"source": str(cfg.embed.precomputed)}
    elif cfg.embed.vector_key:
        emb = np.asarray(corpus.vectors, dtype=np.float32)
        stats = {"source": f"input field {cfg.embed.vector_key!r}"}
    else:
        emb, stats = embed_mod.embed_texts(corpus.texts, cfg.embed, backend, progress=progress)
        emb = to_numpy(emb)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = (emb / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    stats = {**stats, "dim": int(emb.shape[1]), "seconds": time.perf_counter() - t0}
    return emb, stats


def run(cfg: DictConfig, output_dir: str | None = None) -> dict[str, Any]:
    """Run the whole pipeline into ``output_dir`` and return the report (also written to disk)."""
    validate(cfg)
    out = _prepare_output_dir(output_dir or cfg.output_dir)
    backend = resolve_backend(cfg.backend.name)
    progress = bool(cfg.report.progress)
    log.info("run directory: %s; backend: %s", out, backend.name)
    manifest = Manifest(out, fresh=bool(cfg.overwrite))
    stages: dict[str, dict[str, Any]] = {}
    plain = OmegaConf.to_container(cfg, resolve=True)

    # read ------------------------------------------------------------------------------
    spec, label_key = str(cfg.input), cfg.label_key
    if cfg.input is None:
        from datasculpt.data import SAMPLE_LABEL_KEY, SAMPLE_PATH

        spec, label_key = str(SAMPLE_PATH), cfg.label_key or SAMPLE_LABEL_KEY
    opts = ReadOptions(text_key=cfg.text_key, id_key=cfg.id_key, label_key=label_key,
                       vector_key=cfg.embed.vector_key, strict=bool(cfg.strict))
    read_key = stable_hash({"input": fingerprint(resolve_inputs(spec)), "opts": opts.__dict__})
    final_key = stable_hash({"read": read_key, "cfg": {k: v for k, v in plain.items()
                                                      if k not in ("overwrite", "output_dir")}})
    if manifest.stages.get("final", {}).get("key") != final_key:
        for name in FINAL_OUTPUTS:  # never leave a stale result that looks like this run's
            (out / name).unlink(missing_ok=True)
        manifest.forget("final")
    t0 = time.perf_counter()
    corpus, read_stats = read_corpus(spec, opts, progress=progress)
    stages["read"] = {"seconds": time.perf_counter() - t0, "documents": len(corpus)}
    if len(corpus) == 0:
        raise InputError(f"no usable documents in {spec} ({len(read_stats.malformed)} malformed)")
    log.info("read: %d documents, %d malformed records", len(corpus), len(read_stats.malformed))

    # tokenize --------------------------------------------------------------------------
    tok = load_tokenizer(cfg.tokenizer)
    tok_key = stable_hash({"read": read_key, "tokenizer": cfg.tokenizer})
    if manifest.reusable("tokenize", tok_key):
        import pyarrow.parquet as pq

        doc_len = pq.read_table(out / "documents.parquet", columns=["n_tokens"])["n_tokens"]
        doc_len = doc_len.to_numpy().astype(np.int64)
        stages["tokenize"] = {**manifest.stats("tokenize"), "reused": True}
    else:
        doc_len, tstats = count_tokens(corpus.texts, tok, cfg.tokenize_batch_size,
                                       total=len(corpus), progress=progress)
        columns: dict[str, Any] = {"docid": corpus.docids, "source": corpus.sources,
                                   "line": np.asarray(corpus.lines, dtype=np.int64),
                                   "n_tokens": doc_len}
        if corpus.labels is not None:
            columns[label_key] = corpus.labels
        write_parquet(out / "documents.parquet", columns)
        manifest.record("tokenize", tok_key, ["documents.parquet"], tstats)
        stages["tokenize"] = tstats
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
    embed_key = stable_hash({"read": read_key, "embed": plain["embed"]})
    if need_embed:
        if manifest.reusable("embed", embed_key):
            embeddings = np.load(out / "embeddings.npy", mmap_mode="r", allow_pickle=False)
            stages["embed"] = {**manifest.stats("embed"), "reused": True}
        else:
            embeddings, estats = _embeddings(cfg, corpus, backend, progress)
            write_npy(out / "embeddings.npy", embeddings)
            manifest.record("embed", embed_key, ["embeddings.npy"], estats)
            stages["embed"] = estats
        log.info("embed: %s x %s", *embeddings.shape)
    cluster_key = stable_hash({"embed": embed_key, "tok": tok_key, "cluster": plain["cluster"],
                               "ctx_len": cfg.ctx_len, "seed": cfg.seed})
    if need_cluster and embeddings is not None:
        if manifest.reusable("cluster", cluster_key):
            clusters = np.load(out / "clusters.npy", allow_pickle=False)
            stages["cluster"] = {**manifest.stats("cluster"), "reused": True}
        else:
            from datasculpt.cluster import cluster

            t0 = time.perf_counter()
            result = cluster(backend.asarray(embeddings), doc_len, cfg.ctx_len, cfg.cluster,
                             backend, cfg.seed)
            clusters = np.asarray(result.labels, dtype=np.int32)
            write_npy(out / "clusters.npy", clusters)
            write_npy(out / "centroids.npy", np.asarray(result.centroids, dtype=np.float32))
            cstats = {**result.stats, "seconds": time.perf_counter() - t0}
            manifest.record("cluster", cluster_key, ["clusters.npy", "centroids.npy"], cstats)
            stages["cluster"] = cstats
        log.info("cluster: %d clusters", int(clusters.max()) + 1)

    # pack ------------------------------------------------------------------------------
    labels = np.asarray(corpus.labels) if corpus.labels is not None else None
    packings: dict[str, Packing] = {}
    results: dict[str, dict[str, Any]] = {}
    for method in methods:
        pack_key = stable_hash({"tok": tok_key, "embed": embed_key, "cluster": cluster_key,
                                "pack": {**plain["pack"], "method": method}, "seed": cfg.seed,
                                "ctx_len": cfg.ctx_len, "eos": eos})
        stage = "pack" if method == cfg.pack.method else f"pack_{method}"
        artifact = f"pieces_{method}.npy"
        if manifest.reusable(stage, pack_key):
            arr = np.load(out / artifact, allow_pickle=False)
            packing = Packing(seq=arr[:, 0], doc=arr[:, 1], start=arr[:, 2], end=arr[:, 3])
            pstats = {**manifest.stats(stage), "reused": True}
        else:
            device_emb = backend.asarray(embeddings) if embeddings is not None else None
            packing, pstats = pack(method, units, cfg.ctx_len, cfg.pack, cfg.seed, backend,
                                   embeddings=device_emb, clusters=clusters)
            arr = np.stack([packing.seq, packing.doc, packing.start, packing.end], axis=1)
            write_npy(out / artifact, arr)
            manifest.record(stage, pack_key, [artifact], pstats)
        stages[stage] = pstats
        packings[method] = packing
        results[method] = compute_metrics(packing, doc_len, cfg.ctx_len, eos, embeddings,
                                          clusters, labels)
        log.info("pack=%s: %d sequences, fill %.4f, truncation %.4f", method,
                 results[method]["n_sequences"], results[method]["fill_rate"],
                 results[method]["truncation_rate"])

    # write / report --------------------------------------------------------------------
    main = cfg.pack.method
    t0 = time.perf_counter()
    text_source = TextSource(corpus.texts, tok) if (cfg.write_text or cfg.write_input_ids) else None
    write_sequences(out / "sequences.jsonl", packings[main], corpus.docids, doc_len, eos,
                    clusters=clusters, text_source=text_source, separator=sep,
                    with_text=bool(cfg.write_text), with_input_ids=bool(cfg.write_input_ids),
                    progress=progress)
    stages["write"] = {"seconds": time.perf_counter() - t0}
    plots = []
    if cfg.report.plots:
        plots = plot(out / "plots", packings, doc_len, cfg.ctx_len, eos, embeddings)
    metrics = results[main]
    report = {
        "run": {"method": main, "ctx_len": cfg.ctx_len, "seed": cfg.seed, "backend": backend.name,
                "append_eos": bool(eos), "separator_token": sep[1] if sep else None,
                "label_key": label_key, "input": spec, "output_dir": str(out),
                "n_documents": metrics["n_documents"], "total_tokens": metrics["total_tokens"],
                "forced_cut_documents": metrics["forced_cut_documents"],
                "n_units": len(units)},
        "input": read_stats.as_dict(),
        "metrics": metrics,
        "methods": results,
        "stages": stages,
        "plots": plots,
        "config": plain,
    }
    write_report(out, report)
    manifest.record("final", final_key, list(FINAL_OUTPUTS), {})
    log.info("wrote %s (%d sequences)", out / "sequences.jsonl", metrics["n_sequences"])
    return report

"""Context gain of every packer on a real corpus: does the packing help a language model?

For every ctx_len and every variant (a set of config overrides), the real pipeline packs the
corpus (``datasculpt.run``, reusing the tokenize and embed stages of ``--work-dir``, the same
directory ``bench_quality.py`` uses), with every baseline; then the judge (``datasculpt.judge``)
scores a seeded sample of each packing's sequences and of a random grouping of the same
units. A packing's judged windows are cached under ``<work-dir>/context_gain/`` by the
digest of its pieces, the judge settings and the seed, so a packing that several variants
share (the baselines, the random control) is judged once, and reruns only judge what is new.

Prints one Markdown table per ctx_len (context gain with and without near-duplicates, standard
errors, near-duplicate share, relevance, label purity, truncation) and the correlation,
window by window, between relevance and context gain.

    python scripts/make_dev_corpus.py
    python scripts/bench_context_gain.py --ctx 2048 8192 --sequences 256 --dtype bf16
    python scripts/bench_context_gain.py --ctx 2048 --variant fb0 pack.fit_bias=0 \\
        --variant fb03 pack.fit_bias=0.3 --only datasculpt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import yaml  # noqa: E402

import datasculpt  # noqa: E402
from datasculpt.io.read import ReadOptions, resolve_inputs  # noqa: E402
from datasculpt.judge.gain import (  # noqa: E402
    GainSettings,
    eligible_sequences,
    judge_packings,
    sample_sequences,
    summarize,
)
from datasculpt.judge.lm import load_judge  # noqa: E402
from datasculpt.judge.texts import document_texts_of  # noqa: E402
from datasculpt.metrics import random_grouping, relevance_per_sequence  # noqa: E402
from datasculpt.tokenize import load_tokenizer, make_units  # noqa: E402
from datasculpt.types import Packing  # noqa: E402

DEFAULT_INPUT = Path.home() / ".cache" / "datasculpt" / "devcorpus" / "devcorpus.jsonl"
DEFAULT_WORK = Path.home() / ".cache" / "datasculpt" / "bench_quality"


def load_packing(path: Path) -> Packing:
    arr = np.load(path, allow_pickle=False)
    return Packing(seq=arr[:, 0], doc=arr[:, 1], start=arr[:, 2], end=arr[:, 3])


def digest(packing: Packing, extra: dict) -> str:
    h = hashlib.sha256()
    for a in (packing.seq, packing.doc, packing.start, packing.end):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()[:20]


def cached(path: Path) -> dict[int, dict]:
    """The judged windows of one packing so far, by sequence id (a torn last line, from a
    killed run, is ignored and judged again)."""
    out: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[rec["seq_id"]] = rec
    return out


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x, y)[0, 1]) if x.size > 2 else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rank = lambda v: np.argsort(np.argsort(v, kind="stable"), kind="stable")  # noqa: E731
    return pearson(rank(x).astype(float), rank(y).astype(float))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default=str(DEFAULT_INPUT))
    ap.add_argument("--label-key", default="domain")
    ap.add_argument("--work-dir", default=str(DEFAULT_WORK))
    ap.add_argument("--ctx", type=int, nargs="+", default=[2048, 8192])
    ap.add_argument("--variant", nargs="+", action="append", default=None,
                    metavar=("NAME", "KEY=VALUE"),
                    help="a named set of overrides (repeatable); default: 'window' (the "
                         "default config) and 'unit' (pack.strategy=unit)")
    ap.add_argument("--only", nargs="*", default=None,
                    help="judge only these methods (datasculpt concat bfd iclm random)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--sequences", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=4096)
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if not Path(args.input).exists():
        sys.exit(f"input not found: {args.input} (make it with scripts/make_dev_corpus.py)")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("datasculpt.judge").setLevel(logging.INFO)
    variants = args.variant or [["window"], ["unit", "pack.strategy=unit"]]
    work = Path(args.work_dir)
    cache_dir = work / "context_gain"
    cache_dir.mkdir(parents=True, exist_ok=True)
    settings = GainSettings(sequences=args.sequences, max_tokens=args.max_tokens,
                            batch_tokens=args.batch_tokens)
    # What a window's record depends on (not the sample size: samples are nested, so a
    # larger --sequences judges only the windows it adds).
    judge_key = {"model": args.model, "seed": args.seed, "dtype": args.dtype,
                 **{k: v for k, v in settings.__dict__.items() if k != "sequences"}}
    print(f"input: {args.input}; judge {args.model} ({args.dtype}), {args.sequences} sequences "
          f"per packing, cut at {args.max_tokens} tokens; machine: {platform.platform()}, "
          f"{os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}", flush=True)
    lm = None
    tok = load_tokenizer("default")
    opts = ReadOptions(label_key=args.label_key)
    paths = resolve_inputs(args.input)
    for ctx in args.ctx:
        rows: list[tuple[str, Packing, dict, str]] = []  # (name, packing, metrics, cache key)
        for vname, *sets in variants:
            overrides = {"input": args.input, "label_key": args.label_key, "ctx_len": ctx,
                         "report.plots": False, "report.progress": False, "seed": args.seed,
                         "report.baselines": args.only is None or
                         bool(set(args.only) - {"datasculpt", "random"})}
            for item in sets:
                key, _, value = item.partition("=")
                overrides[key] = yaml.safe_load(value)
            report = datasculpt.run(datasculpt.default_config(**overrides), output_dir=str(work))
            for method, metrics in report["methods"].items():
                name = vname if method == "datasculpt" else method
                if args.only is not None and method not in args.only:
                    continue
                if any(r[0] == name for r in rows):
                    continue
                packing = load_packing(work / f"pieces_{method}.npy")
                rows.append((name, packing, metrics, digest(packing, judge_key)))
        docs = pq.read_table(work / "documents.parquet").to_pydict()
        doc_len = np.asarray(docs["n_tokens"], dtype=np.int64)
        if args.only is None or "random" in args.only:
            rand = random_grouping(make_units(doc_len, ctx, 1), ctx, args.seed)
            rows.append(("random", rand, report["reference"], digest(rand, judge_key)))
        want = {name: sample_sequences(p, args.sequences, args.seed, name)
                for name, p, _, _ in rows}
        have = {name: cached(cache_dir / f"{key}.jsonl") for name, _, _, key in rows}
        missing = {name: np.asarray(sorted(set(want[name].tolist()) - set(have[name])),
                                    dtype=np.int64) for name in want}
        for name, packing, _, key in rows:  # one packing at a time: each is saved when done
            if not missing[name].size:
                continue
            lm = lm or load_judge(args.model, args.device, args.dtype)
            t0 = time.perf_counter()
            judged = judge_packings(
                {name: packing}, lm, doc_len, True,
                lambda r, src=docs["source"]: document_texts_of(r, src, paths, opts, work), tok,
                settings, args.seed, progress=True, chosen=missing)
            with open(cache_dir / f"{key}.jsonl", "a") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in judged.records)
            print(f"ctx {ctx}: judged {name} ({missing[name].size} sequences) in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        emb = np.load(work / "embeddings.npy", mmap_mode="r", allow_pickle=False)
        print(f"\nctx {ctx}\n")
        print("| packer | context gain | without near-dups | per scored token | near-dup share "
              "| relevance | label purity (>= 2 docs) | truncation | r(relevance, gain) | n |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        pooled_rel, pooled_gain = [], []
        for name, packing, m, key in rows:
            mine = set(want[name].tolist())
            records = [r for r in cached(cache_dir / f"{key}.jsonl").values()
                       if r["seq_id"] in mine]
            s = summarize(records, eligible_sequences(packing))
            rel = relevance_per_sequence(packing, emb)[[r["seq_id"] for r in records]]
            gain = np.asarray([r["saved"] / r["tokens"] for r in records])
            ok = np.isfinite(rel)
            pooled_rel.append(rel[ok])
            pooled_gain.append(gain[ok])

            def f(x: float | None, spec: str = "{:.4f}") -> str:
                return "n/a" if x is None else spec.format(x)

            trunc = m.get("truncation_rate")
            print(f"| {name} | {f(s['context_gain'])} ± {f(s['context_gain_se'])} | "
                  f"{f(s['context_gain_no_near_dup'])} ± {f(s['context_gain_no_near_dup_se'])} "
                  f"| {f(s['gain_per_scored_token'])} | {f(s['near_dup_share'], '{:.3f}')} | "
                  f"{f(m.get('relevance'))} | {f(m.get('label_purity_multi'))} | "
                  f"{f(trunc)} | {pearson(rel[ok], gain[ok]):.3f} | {s['sequences']} |")
        x, y = np.concatenate(pooled_rel), np.concatenate(pooled_gain)
        print(f"\nrelevance vs context gain, window by window over every packer ({x.size} "
              f"windows): Pearson {pearson(x, y):.3f}, Spearman {spearman(x, y):.3f}",
              flush=True)


if __name__ == "__main__":
    main()

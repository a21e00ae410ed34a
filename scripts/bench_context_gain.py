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
import zlib
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import yaml  # noqa: E402

import datasculpt  # noqa: E402
from datasculpt.io.ingest import document_blocks  # noqa: E402
from datasculpt.io.read import ReadOptions, resolve_inputs  # noqa: E402
from datasculpt.judge.gain import (  # noqa: E402
    GainSettings,
    eligible_sequences,
    eligible_token_share,
    judge_packings,
    sample_sequences,
    sequence_pieces,
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


BASELINE_NAMES = ("concat", "bfd", "iclm")


def windows_of(packing: Packing) -> dict[int, tuple]:
    """Sequence id -> its pieces (consecutive spans of one document joined), for the
    sequences the judge can sample: what makes two packings' windows the same window."""
    ids = np.arange(packing.n_sequences)
    return {int(s): tuple(p) for s, p in zip(ids.tolist(), sequence_pieces(packing, ids),
                                              strict=True) if len(p) >= 2}


def paired(shared: list[dict], gone: list[dict], mine: list[dict], st: dict,
           seed: int, n_boot: int = 2000) -> dict:
    """Context gain of a variant and its difference from the base packing, by strata: the
    windows both share (``shared``: the base's sample that falls there), those only the
    base has (``gone``: a sample of them) and those only the variant has (``mine``: a
    sample of them). A change that leaves most windows alone is then compared on what it
    changed, not through two independent samples' noise."""
    def arr(recs: list[dict]) -> np.ndarray:
        return np.asarray([[r["saved"], r["saved"] - r["near_dup_saved"], r["tokens"]]
                           for r in recs], dtype=np.float64).reshape(-1, 3)

    com, b_uni, v_uni = arr(shared), arr(gone), arr(mine)
    sizes = (st["n_common"], st["n_base_unique"], st["n_unique"])

    def totals(c: np.ndarray, bu: np.ndarray, vu: np.ndarray) -> tuple[np.ndarray, ...]:
        tot = [n * x.mean(axis=0) if x.size and n else np.zeros(3)
               for n, x in zip(sizes, (c, bu, vu), strict=True)]
        return tot[0] + tot[1], tot[0] + tot[2]

    def est(c: np.ndarray, bu: np.ndarray, vu: np.ndarray) -> np.ndarray:
        tb, tv = totals(c, bu, vu)
        return np.asarray([tv[0] / tv[2], tv[1] / tv[2], tv[0] / tv[2] - tb[0] / tb[2],
                           tv[1] / tv[2] - tb[1] / tb[2]])

    point = est(com, b_uni, v_uni)
    rng = np.random.default_rng(seed)
    boots = np.stack([est(*(x[rng.integers(0, len(x), len(x))] if len(x) else x
                            for x in (com, b_uni, v_uni))) for _ in range(n_boot)])
    se = boots.std(axis=0, ddof=1)
    return {"gain": point[0], "clean": point[1], "d_gain": point[2], "d_gain_se": se[2],
            "d_clean": point[3], "d_clean_se": se[3]}


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
    ap.add_argument("--against", default=None,
                    help="compare every other datasculpt variant with this one by strata: "
                         "their shared windows once, their own windows by a sample of them")
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
        blocks = document_blocks(docs["source"], [str(p) for p in paths])
        doc_len = np.asarray(docs["n_tokens"], dtype=np.int64)
        if args.only is None or "random" in args.only:
            rand = random_grouping(make_units(doc_len, ctx, 1), ctx, args.seed)
            rows.append(("random", rand, report["reference"], digest(rand, judge_key)))
        want = {name: sample_sequences(p, args.sequences, args.seed, name)
                for name, p, _, _ in rows}
        strata: dict[str, dict] = {}
        if args.against:
            base = next(p for n, p, _, _ in rows if n == args.against)
            base_w = windows_of(base)
            for name, p, _, _ in rows:
                if name == args.against or name == "random" or name in BASELINE_NAMES:
                    continue
                mine_w = windows_of(p)
                common = set(mine_w.values()) & set(base_w.values())
                unique = np.asarray(sorted(s for s, w in mine_w.items() if w not in common),
                                    dtype=np.int64)
                rng = np.random.default_rng([args.seed, zlib.crc32(name.encode())])
                want[name] = np.sort(rng.permutation(unique)[: args.sequences])
                # and a sample of the base's windows this variant does not have
                gone = np.asarray(sorted(s for s, w in base_w.items() if w not in common),
                                  dtype=np.int64)
                rng = np.random.default_rng([args.seed, zlib.crc32(f"{name}/base".encode())])
                strata[name] = {"common": common, "n_common": len(common),
                                "n_unique": int(unique.size), "base_w": base_w,
                                "n_base_unique": int(gone.size),
                                "base_unique": np.sort(rng.permutation(gone)[: args.sequences])}
            extra = [st["base_unique"] for st in strata.values()]
            want[f"{args.against}/all"] = np.union1d(want[args.against],
                                                     np.concatenate(extra) if extra else [])
        have = {name: cached(cache_dir / f"{key}.jsonl") for name, _, _, key in rows}
        # in --against mode the base also judges its windows each variant lacks
        to_judge = {name: want.get(f"{name}/all", want[name]) for name in have}
        missing = {name: np.asarray(sorted(set(to_judge[name].tolist()) - set(have[name])),
                                    dtype=np.int64) for name in have}
        for name, packing, _, key in rows:  # one packing at a time: each is saved when done
            if not missing[name].size:
                continue
            lm = lm or load_judge(args.model, args.device, args.dtype)
            t0 = time.perf_counter()
            judged = judge_packings(
                {name: packing}, lm, doc_len, True,
                lambda r, b=blocks: document_texts_of(r, b, paths, opts, work), tok,
                settings, args.seed, progress=True, chosen=missing)
            with open(cache_dir / f"{key}.jsonl", "a") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in judged.records)
            print(f"ctx {ctx}: judged {name} ({missing[name].size} sequences) in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        emb = np.load(work / "embeddings.npy", mmap_mode="r", allow_pickle=False)
        print(f"\nctx {ctx}\n")
        print("| packer | context gain | without near-dups | per scored token | near-dup share "
              "| tokens in >= 2-piece windows | relevance | label purity (>= 2 docs) | "
              "truncation | r(relevance, gain) | n |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        pooled_rel, pooled_gain = [], []
        for name, packing, m, key in rows:
            if name in strata:  # its sample is of its own windows only: in the table below
                continue
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
                  f"{eligible_token_share(packing, doc_len, True):.3f} | "
                  f"{f(m.get('relevance'))} | {f(m.get('label_purity_multi'))} | "
                  f"{f(trunc)} | {pearson(rel[ok], gain[ok]):.3f} | {s['sequences']} |")
        if strata:
            base_key = next(k for n, _, _, k in rows if n == args.against)
            base_all = cached(cache_dir / f"{base_key}.jsonl")
            base_recs = [base_all[s] for s in want[args.against].tolist()]
            print(f"\nAgainst {args.against}, stratified: windows common to both packings are "
                  "estimated once from its sample; each variant's own windows from theirs "
                  "(differences and standard errors by a bootstrap over windows within "
                  "strata).\n")
            print("| variant | windows in common | context gain | difference | without "
                  "near-dups | difference | relevance | label purity (>= 2 docs) | seq_ratio |")
            print("|---|---|---|---|---|---|---|---|---|")
            for name, _, m, key in rows:
                if name not in strata:
                    continue
                st = strata[name]
                recs = [r for r in cached(cache_dir / f"{key}.jsonl").values()
                        if r["seq_id"] in set(want[name].tolist())]
                shared = [r for r in base_recs if st["base_w"][r["seq_id"]] in st["common"]]
                gone = [base_all[s] for s in st["base_unique"].tolist()]
                est = paired(shared, gone, recs, st, args.seed)
                print(f"| {name} | {st['n_common']} of {st['n_common'] + st['n_unique']} | "
                      f"{est['gain']:.4f} | {est['d_gain']:+.4f} ± {est['d_gain_se']:.4f} | "
                      f"{est['clean']:.4f} | {est['d_clean']:+.4f} ± {est['d_clean_se']:.4f} | "
                      f"{m['relevance']:.4f} | {m['label_purity_multi']:.4f} | "
                      f"{m['seq_ratio']:.4f} |", flush=True)
        x, y = np.concatenate(pooled_rel), np.concatenate(pooled_gain)
        print(f"\nrelevance vs context gain, window by window over every packer ({x.size} "
              f"windows): Pearson {pearson(x, y):.3f}, Spearman {spearman(x, y):.3f}",
              flush=True)


if __name__ == "__main__":
    main()

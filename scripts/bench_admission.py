"""Duplicate-id admission on the driver: the hashed index against the dict of id strings it
replaced, on synthetic unique ids admitted a block at a time (as the ingest merge does).

Prints, per corpus size, the seconds to admit every id (hashing included), the index's bytes
per document (its arrays' nbytes), its peak while admitting (tracemalloc, a second pass: the
transient copies of the merges included), and the resident memory the old dict took::

    python scripts/bench_admission.py                 # 1M and 10M ids, blocks of 65,536
    python scripts/bench_admission.py --sizes 1000000 --block 1000000
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from datasculpt.io.admission import Admission, hash_ids  # noqa: E402


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _admit(ids: list[str], block: int) -> Admission:
    admission = Admission(lambda k: (ids[k], "bench", k))
    nones = [None] * block
    for a in range(0, len(ids), block):
        chunk = ids[a:a + block]
        problems = admission.admit_block("bench", range(a, a + len(chunk)), chunk,
                                         nones[:len(chunk)], nones[:len(chunk)])
        assert not any(problems)
    return admission


def _dict(ids: list[str]) -> dict[str, int]:
    """The replaced structure: docid -> file << 40 | line."""
    first: dict[str, int] = {}
    for i, d in enumerate(ids):
        if d not in first:
            first[d] = (3 << 40) | i
    return first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--block", type=int, default=65_536)
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, blocks of {args.block:,}\n")
    print("| ids | hash only | hashed admission | index B/doc | peak B/doc | runs "
          "| dict admission | dict RSS B/doc |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        ids = [f"doc-{i:010d}-{(i * 2654435761) % 1000003}" for i in range(n)]
        t0 = time.perf_counter()
        for a in range(0, n, args.block):
            hash_ids(ids[a:a + args.block])
        t_hash = time.perf_counter() - t0
        t0 = time.perf_counter()
        admission = _admit(ids, args.block)
        t_adm = time.perf_counter() - t0
        per_doc = admission.index.nbytes / n
        runs = admission.index.runs
        del admission
        tracemalloc.start()
        admission = _admit(ids, args.block)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del admission
        before = _rss()
        t0 = time.perf_counter()
        first = _dict(ids)
        t_dict = time.perf_counter() - t0
        dict_bytes = (_rss() - before) / n
        del first
        print(f"| {n:,} | {t_hash:.2f} s | {t_adm:.2f} s | {per_doc:.1f} | {peak / n:.1f} "
              f"| {runs} | {t_dict:.2f} s | {dict_bytes:.0f} |")


if __name__ == "__main__":
    main()

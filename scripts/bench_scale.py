"""Issue 21 at scale: the real command line on N short documents against the bare tokenizer.

Why: the goal is stated relative to the one cost no run can avoid, tokenizing the corpus once
(10M documents end to end in <= 6 GiB peak RSS and <= 1.5x the bare tokenizer's wall time; with
``embed=static``, 1M documents within 1.5x). So both are measured here on the same corpus, on the
same machine, in the same sitting, and the ratio is printed beside the per-stage times and the
driver's memory the run records in its ``manifest.json``.

The corpus (cached under ``--work`` by size and seed, so a second sitting reuses it) is JSONL
of 20-60 words per document (``--words``) drawn from a topic's window of single-token words
(``synthetic.tokenizer_words``), with an aligned float32 ``N x 64`` ``.npy`` of planted
cluster embeddings for ``--embed precomputed``. Generation is vectorised with numpy; only the
assembly of each JSON line is a Python loop.

    python scripts/bench_scale.py --docs 1000000 --work /tmp/bench_scale --json scale_1m.json
    python scripts/bench_scale.py --docs 1000000 --embed static --work /tmp/bench_scale

What is measured, and how:

- bare tokenizer: the run's tokenizer (``tokenizer=default`` unless ``--args`` changes it) as
  the tokenize stage calls it (``datasculpt.tokenize.plain_ids``: the Rust
  ``encode_batch_fast``, batches of ``tokenize_batch_size`` = 1024), over every text of the
  corpus. Only the encode calls are timed; reading and parsing the JSONL, which the run also
  does, is reported apart (``pass_seconds``).
- the run: ``python -m datasculpt.main input=... output_dir=... ctx_len=...
  embed.precomputed=...|embed=static overwrite=true report.progress=false`` plus ``--args``,
  the main job's defaults otherwise (pack=datasculpt, no baselines, plots on). Wall time of the
  child process. Peak RSS two ways: the sum of the RSS of the child and all its descendants,
  polled every 0.1 s with psutil (``peak_rss_tree_bytes``, what the 6 GiB goal is held to; a
  sample can miss a peak shorter than the interval), and the kernel's exact ``ru_maxrss`` of
  the largest single process (``max_rss_single_bytes``, ``getrusage(RUSAGE_CHILDREN)``).
- per stage, from the run's ``manifest.json``: the stage's work seconds and the driver's
  ``RssAnon`` after it (heap: anonymous resident memory, not mapped files or page cache).
- driver heap per document: (max over stages of ``driver_rss_anon_bytes`` - the first stage's
  ``driver_rss_anon_start_bytes``) / N. The baseline is the driver after its imports, config
  and executor set-up and before the first document is read; modules a later stage imports
  lazily count as heap, so at small N the figure is dominated by that fixed cost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import synthetic  # noqa: E402

DIM = 64
TOPICS = 200
SPAN = 200  # vocabulary words per topic window
WORDS = (20, 60)  # words per document, inclusive
CHUNK = 200_000  # documents generated at a time; the corpus depends on it (write_corpus)
GOAL_PEAK_BYTES = 6 << 30
GOAL_RATIO = 1.5


def corpus_paths(work: Path, n_docs: int, seed: int, words: tuple[int, int] = WORDS,
                 ) -> tuple[Path, Path]:
    """The cached corpus and embeddings of one size, seed and document length (the default
    length keeps the names the earlier sittings' caches have)."""
    stem = f"n{n_docs}_s{seed}" + ("" if tuple(words) == WORDS else f"_w{words[0]}-{words[1]}")
    return work / f"corpus_{stem}.jsonl", work / f"embeddings_{stem}_d{DIM}.npy"


def _padded_vocab(vocab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each word followed by a space as a fixed-width byte row, its mask and its length: a
    gather of rows then concatenates the words of millions of documents without Python."""
    encoded = [w.encode("ascii") + b" " for w in vocab.tolist()]
    width = max(len(b) for b in encoded)
    rows = np.zeros((len(encoded), width), dtype=np.uint8)
    for i, b in enumerate(encoded):
        rows[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    lens = np.asarray([len(b) for b in encoded], dtype=np.int64)
    return rows, rows != 0, lens


def write_corpus(path: Path, topic: np.ndarray, n_words: np.ndarray, vocab: np.ndarray,
                 rng: np.random.Generator) -> None:
    """JSONL lines ``{"docid", "content", "topic"}``; a topic's words come from its window.

    The draws are made chunk by chunk in document order, so the corpus depends on the seed and
    on ``CHUNK``, which is therefore a constant.
    """
    rows, mask, lens = _padded_vocab(vocab)
    with open(path, "wb") as fh:
        for lo in range(0, topic.size, CHUNK):
            t, nw = topic[lo : lo + CHUNK], n_words[lo : lo + CHUNK]
            doc = np.repeat(np.arange(t.size), nw)
            words = (t[doc] * SPAN + rng.integers(0, SPAN, size=doc.size)) % vocab.size
            buf = rows[words][mask[words]].tobytes()
            ends = np.cumsum(np.bincount(doc, weights=lens[words], minlength=t.size)
                             .astype(np.int64))
            starts = np.concatenate(([0], ends[:-1]))
            lines = [b'{"docid": "doc%d", "content": "%s", "topic": %d}\n'
                     % (lo + i, buf[a : b - 1], k)  # b - 1: no trailing space
                     for i, (a, b, k) in enumerate(zip(starts.tolist(), ends.tolist(),
                                                       t.tolist(), strict=True))]
            fh.write(b"".join(lines))


def make_corpus(work: Path, n_docs: int, seed: int, words: tuple[int, int] = WORDS,
                ) -> tuple[Path, Path, bool]:
    """The corpus and embeddings of this size and seed, generated unless ``work`` has them.

    Written under temporary names and renamed, so an interrupted generation is never reused.
    Returns the paths and whether they were reused.
    """
    corpus, emb = corpus_paths(work, n_docs, seed, words)
    if corpus.exists() and emb.exists():
        return corpus, emb, True
    rng = np.random.default_rng(seed)
    vocab = synthetic.tokenizer_words(rng)
    vocab = vocab[[w.isascii() for w in vocab.tolist()]]  # JSON-safe bytes as they are
    topic = rng.integers(0, TOPICS, size=n_docs)
    n_words = rng.integers(words[0], words[1] + 1, size=n_docs)
    tmp_corpus, tmp_emb = corpus.with_name(corpus.name + ".tmp"), emb.with_name(emb.name + ".tmp")
    write_corpus(tmp_corpus, topic, n_words, vocab, rng)
    synthetic.write_planted_embeddings(tmp_emb, topic, TOPICS, DIM, rng)
    os.replace(tmp_corpus, corpus)
    os.replace(tmp_emb, emb)
    return corpus, emb, False


def bare_tokenizer(corpus: Path, tokenizer: str, batch_size: int, text_key: str = "content",
                   read_docs: int = 65_536) -> dict[str, Any]:
    """Every text of ``corpus`` through the tokenizer exactly as the tokenize stage calls it.

    Texts are read ``read_docs`` at a time, so memory stays small at 10M documents; only
    the encode calls are inside ``seconds``.
    """
    from datasculpt.tokenize import load_tokenizer, plain_ids

    encode = plain_ids(load_tokenizer(tokenizer))
    seconds, docs, tokens = 0.0, 0, 0
    t_pass = time.perf_counter()
    with open(corpus, encoding="utf-8") as fh:
        while True:
            texts = [str(json.loads(line)[text_key]) for _, line in zip(range(read_docs), fh,
                                                                          strict=False)]
            if not texts:
                break
            for a in range(0, len(texts), batch_size):
                t0 = time.perf_counter()
                ids = encode(texts[a : a + batch_size])
                seconds += time.perf_counter() - t0
                tokens += sum(len(x) for x in ids)
            docs += len(texts)
    return {"seconds": seconds, "pass_seconds": time.perf_counter() - t_pass,
            "documents": docs, "tokens": tokens, "tokenizer": tokenizer,
            "batch_size": batch_size}


class TreePeak:
    """The largest sum of RSS over a process and all its descendants, polled on a thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break  # the root is gone
            for proc in procs:
                # a child may exit between the listing and the read
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            if total:
                self.peak = max(self.peak, total)
                self.samples += 1
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_command_line(corpus: Path, emb: Path, embed: str, ctx_len: int, out: Path,
                     extra: list[str]) -> dict[str, Any]:
    """The real command line in a child process: its wall time and peak memory."""
    overrides = [f"input={corpus}", f"output_dir={out}", f"ctx_len={ctx_len}",
                 "embed=static" if embed == "static" else f"embed.precomputed={emb}",
                 "overwrite=true", "report.progress=false", *extra]
    cmd = [sys.executable, "-m", "datasculpt.main", *overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    log = out.parent / f"{out.name}.log"
    t0, ru0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        poll = TreePeak(proc.pid)
        rc = proc.wait()
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_tree = poll.stop()
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        sys.exit(f"run failed with exit code {rc}; {log}:\n" + "\n".join(tail))
    cpu = (ru.ru_utime - ru0.ru_utime) + (ru.ru_stime - ru0.ru_stime)
    return {"command": cmd, "wall_seconds": wall, "cpu_seconds": cpu,
            "peak_rss_tree_bytes": peak_tree,
            "rss_samples": poll.samples,
            # Linux reports ru_maxrss in KiB: the largest single process waited for so far
            "max_rss_single_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
            "log": str(log)}


def read_run(out: Path, n_docs: int) -> dict[str, Any]:
    """Per-stage seconds and driver memory from the run's own files, nothing internal."""
    import pyarrow.parquet as pq

    manifest = json.loads((out / "manifest.json").read_text())["stages"]
    stages: dict[str, dict[str, Any]] = {}
    for name, entry in manifest.items():
        st = entry.get("stats", {})
        stages[name] = {k: st.get(k) for k in ("seconds", "cpu_seconds",
                                               "driver_rss_anon_start_bytes",
                                               "driver_rss_anon_bytes", "driver_peak_rss_bytes")}
    first = next(iter(stages.values()), {})
    baseline = first.get("driver_rss_anon_start_bytes")
    heaps = {n: s["driver_rss_anon_bytes"] for n, s in stages.items()
             if s["driver_rss_anon_bytes"] is not None}
    heap_stage = max(heaps, key=heaps.__getitem__) if heaps else None
    per_doc = ((heaps[heap_stage] - baseline) / n_docs
               if heap_stage is not None and baseline is not None else None)
    # The writers run beside the report's figures (pipeline.WRITERS): their RssAnon holds the
    # report's working arrays too. The stages before them hold the run's own state alone.
    from datasculpt.pipeline import WRITERS

    alone = {n: h for n, h in heaps.items() if n not in WRITERS}
    alone_stage = max(alone, key=alone.__getitem__) if alone else None
    return {"stages": stages, "driver_heap_baseline_bytes": baseline,
            "driver_heap_max_bytes": heaps.get(heap_stage) if heap_stage else None,
            "driver_heap_max_stage": heap_stage, "driver_heap_per_doc_bytes": per_doc,
            "driver_heap_alone_stage": alone_stage,
            "driver_heap_alone_per_doc_bytes": (
                (alone[alone_stage] - baseline) / n_docs
                if alone_stage is not None and baseline is not None else None),
            "documents_parquet_rows": pq.read_metadata(out / "documents.parquet").num_rows}


def _override(extra: list[str], key: str, default: str) -> str:
    """The value ``--args`` gives ``key``, else the run's default, so the bare tokenizer is
    always the one the run uses."""
    for arg in extra:
        k, _, v = arg.partition("=")
        if k.lstrip("+") == key:
            return v
    return default


def _mib(b: float | None) -> str:
    return "n/a" if b is None else f"{b / 2**20:,.0f} MiB"


def print_table(res: dict[str, Any]) -> None:
    run, bare = res["run"], res["bare_tokenizer"]
    lo, hi = res.get("words", WORDS)
    print(f"\n{res['docs']:,} documents of {lo}-{hi} words, embed={res['embed']}; "
          f"{res['machine']}")
    print(f"{'stage':<16}{'seconds':>10}{'cpu s':>10}{'driver RssAnon after':>24}"
          f"{'driver VmHWM':>16}")
    for name, st in run["stages"].items():
        sec = "n/a" if st["seconds"] is None else f"{st['seconds']:.2f}"
        cpu = "n/a" if st.get("cpu_seconds") is None else f"{st['cpu_seconds']:.2f}"
        print(f"{name:<16}{sec:>10}{cpu:>10}{_mib(st['driver_rss_anon_bytes']):>24}"
              f"{_mib(st['driver_peak_rss_bytes']):>16}")
    staged = sum(st["seconds"] or 0.0 for st in run["stages"].values())
    print(f"{'(other)':<16}{run['wall_seconds'] - staged:>10.2f}   startup, loads, report")
    print(f"run wall time           {run['wall_seconds']:.2f} s; CPU {run['cpu_seconds']:.2f} s "
          f"over all its processes ({run['cpu_seconds'] / run['wall_seconds']:.2f} cores busy "
          f"of {os.cpu_count()})")
    print(f"bare tokenizer          {bare['seconds']:.2f} s encode ({bare['tokens']:,} tokens, "
          f"{bare['tokens'] / max(bare['seconds'], 1e-9) / 1e3:,.0f}k tokens/s; read+parse+"
          f"encode pass {bare['pass_seconds']:.2f} s)")
    print(f"ratio run / bare        {res['ratio']:.2f}x (goal <= {GOAL_RATIO}x)")
    print(f"peak RSS, process tree  {run['peak_rss_tree_bytes'] / 2**30:.2f} GiB (psutil, "
          f"0.1 s polls; goal <= {GOAL_PEAK_BYTES / 2**30:.0f} GiB at 10M); largest single "
          f"process ru_maxrss {run['max_rss_single_bytes'] / 2**30:.2f} GiB")
    per_doc = run["driver_heap_per_doc_bytes"]
    print(f"driver heap             {_mib(run['driver_heap_max_bytes'])} after "
          f"{run['driver_heap_max_stage']} - {_mib(run['driver_heap_baseline_bytes'])} at "
          f"start = {'n/a' if per_doc is None else f'{per_doc:,.0f}'} bytes per document")
    alone = run.get("driver_heap_alone_per_doc_bytes")
    if alone is not None and run.get("driver_heap_alone_stage") != run["driver_heap_max_stage"]:
        print(f"                        {alone:,.0f} bytes per document after "
              f"{run['driver_heap_alone_stage']}, the largest before the writers (they run "
              "beside the report's figures, whose arrays the figure above includes)")
    print(f"documents.parquet rows  {run['documents_parquet_rows']:,}")
    loads = ", ".join(f"{k} {v[0]:.2f}" for k, v in res["load_average"].items())
    print(f"1-min load average      {loads} ({os.cpu_count()} CPUs; above that, other work "
          "shared the machine and the times are not clean)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=1_000_000, help="documents (N)")
    ap.add_argument("--embed", choices=("precomputed", "static"), default="precomputed")
    ap.add_argument("--work", type=Path, default=Path("/tmp/datasculpt_bench_scale"),
                    help="where the corpus is cached and the run writes")
    ap.add_argument("--args", nargs="*", default=[],
                    help="extra overrides for the run, e.g. report.plots=false")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--words", type=int, nargs=2, default=list(WORDS), metavar=("MIN", "MAX"),
                    help="words per document, inclusive (one token each; default 20 60): "
                         "longer documents weigh the per-document stages less against the "
                         "tokenizer's per-token cost")
    ap.add_argument("--ctx-len", type=int, default=16384)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    words = (int(args.words[0]), int(args.words[1]))
    if not 1 <= words[0] <= words[1]:
        ap.error(f"--words: need 1 <= MIN <= MAX, got {words[0]} {words[1]}")
    corpus, emb, reused = make_corpus(args.work, args.docs, args.seed, words)
    gen = time.perf_counter() - t0
    print(f"corpus {'reused' if reused else f'generated in {gen:.1f} s'}: {corpus} "
          f"({corpus.stat().st_size / 2**20:,.0f} MiB), {emb}", flush=True)

    tokenizer = _override(args.args, "tokenizer", "default")
    batch = int(_override(args.args, "tokenize_batch_size", "1024"))
    # The two timings are only comparable on a quiet machine: the load averages say whether
    # something else ran beside them.
    load = {"before_bare": os.getloadavg()}
    bare = bare_tokenizer(corpus, tokenizer, batch)
    load["before_run"] = os.getloadavg()
    print(f"bare tokenizer: {bare['seconds']:.2f} s", flush=True)
    out = args.work / f"run_{corpus.stem.removeprefix('corpus_')}_{args.embed}"
    run = run_command_line(corpus, emb, args.embed, args.ctx_len, out, args.args)
    load["after_run"] = os.getloadavg()
    print(f"run: {run['wall_seconds']:.2f} s", flush=True)
    run.update(read_run(out, args.docs))
    res = {"docs": args.docs, "embed": args.embed, "seed": args.seed, "ctx_len": args.ctx_len,
           "words": list(words),
           "extra_args": args.args,
           "machine": f"{platform.node()}, {os.cpu_count()} CPUs", "load_average": load,
           "corpus": {"path": str(corpus), "bytes": corpus.stat().st_size, "reused": reused,
                      "generate_seconds": None if reused else gen, "embeddings": str(emb)},
           "bare_tokenizer": bare, "run": run,
           "ratio": run["wall_seconds"] / bare["seconds"]}
    res["goals"] = {"ratio_le_1_5": res["ratio"] <= GOAL_RATIO,
                    "peak_rss_tree_le_6gib": run["peak_rss_tree_bytes"] <= GOAL_PEAK_BYTES}
    print_table(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

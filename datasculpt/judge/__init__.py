"""The judge: does a packing help a language model? (``judge.enabled=true``)

Relevance and purity are proxies; the judge measures the thing itself with a real causal LM:
how many nats a window's context saves on each of its pieces (``gain``), near-duplicate
copying counted apart (``near_dup``), for the method, every baseline the run packed and a
random grouping of the same units. The model is found offline (``lm``); the pieces' text is
read back from the input (``texts``). Per-window records go to ``context_gain.jsonl``, the
summaries to ``report.json`` under ``context_gain``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from datasculpt.errors import ConfigError
from datasculpt.io.write import write_json, write_jsonl
from datasculpt.judge.gain import GainSettings, judge_packings
from datasculpt.judge.lm import load_judge
from datasculpt.types import Packing

log = logging.getLogger(__name__)

ARTIFACT = "context_gain.jsonl"  # one record per judged window
SUMMARY = "context_gain.json"  # the judge's settings and each packing's summary
RANDOM = "random"


def settings_of(cfg: Any) -> GainSettings:
    return GainSettings(sequences=int(cfg.sequences), max_tokens=int(cfg.max_tokens),
                        batch_tokens=int(cfg.batch_tokens), ngram=int(cfg.ngram),
                        near_dup_threshold=float(cfg.near_dup_threshold))


def judge(packings: dict[str, Packing], cfg: Any, *, doc_len: np.ndarray, eos: bool, seed: int,
          texts_of: Any, run_tokenizer: Any, device: str, out: Path,
          progress: bool = True) -> dict[str, Any]:
    """Score ``packings`` (the random control among them) with ``cfg.model``; writes the
    per-window records and returns the summaries and what produced them."""
    t0 = time.perf_counter()
    lm = load_judge(str(cfg.model), device, str(cfg.dtype))
    settings = settings_of(cfg)
    if lm.max_positions and settings.max_tokens > lm.max_positions:
        raise ConfigError(f"judge.max_tokens={settings.max_tokens} is beyond judge.model's "
                          f"{lm.max_positions} positions")
    judged = judge_packings(packings, lm, doc_len, eos, texts_of, run_tokenizer, settings, seed,
                            progress)
    write_jsonl(out / ARTIFACT, judged.records)
    summary = {"judge": {"model": lm.name, "source": lm.source, "device": lm.device,
                         "dtype": lm.dtype, "separator": lm.separator,
                         "sequences": settings.sequences, "max_tokens": settings.max_tokens,
                         "ngram": settings.ngram,
                         "near_dup_threshold": settings.near_dup_threshold},
               **judged.summaries}
    write_json(out / SUMMARY, summary)
    return {**summary["judge"], "seconds": time.perf_counter() - t0}

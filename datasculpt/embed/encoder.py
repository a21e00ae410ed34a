"""The transformer encoder: documents -> L2-normalised ``N x D`` float32 vectors.

A transformers encoder with mean pooling over the attention mask (or the CLS vector), run under
``torch.inference_mode()`` in fp32 on CPU and bf16/fp16 on CUDA. Throughput comes from padding:
documents are sorted by character length over the whole corpus, each chunk of them is tokenized
once and re-sorted by its exact token count, so a batch pads to within a few tokens of its
longest member; results are scattered back into input order. On CUDA an out-of-memory batch
halves the batch size and is retried. On the GPU the result stays on the device (torch ->
CuPy through DLPack).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from datasculpt.backend import Backend
from datasculpt.embed.batch import vector_batch
from datasculpt.embed.clip import clipped_ids
from datasculpt.errors import ConfigError
from datasculpt.models import resolve_model_path
from datasculpt.progress import progress_bar
from datasculpt.vectors import l2_normalize

log = logging.getLogger(__name__)

# Documents tokenized together; each chunk is re-sorted by token count before batching.
_BATCHES_PER_CHUNK = 32

_MODELS: dict[tuple[str, str, str, bool], tuple[Any, Any]] = {}


def auto_cuda_dtype(capability: tuple[int, int]) -> torch.dtype:
    """bf16 where the GPU computes it natively (compute capability 8.0, Ampere, and later),
    fp16 before. ``torch.cuda.is_bf16_supported()`` also says yes where bf16 is only
    emulated (T4, V100), which runs several times slower than fp16 there."""
    return torch.bfloat16 if tuple(capability) >= (8, 0) else torch.float16


def _torch_dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        if device.startswith("cuda"):
            return auto_cuda_dtype(torch.cuda.get_device_capability(device))
        return torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def model_dtype(model: Any) -> str:
    """The dtype the encoder's weights really have (not the one asked for)."""
    param = next(model.parameters(), None)
    return str(param.dtype if param is not None else torch.float32).removeprefix("torch.")


def load_model(model: str, device: str, dtype: torch.dtype, trust_remote_code: bool = False):
    """Tokenizer and encoder in eval mode, cached per (model, device, dtype) in this process."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a weight-loading bar per run clutters logs, says nothing
    path = resolve_model_path(model)
    key = (path, device, str(dtype), bool(trust_remote_code))
    if key not in _MODELS:
        try:
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            enc = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot load embed.model {model!r}: {first}") from None
        _MODELS[key] = (tok, enc.to(device).eval())
    return _MODELS[key]



def _tokenize(tok: Any, texts: list[str], max_length: int) -> list[list[int]]:
    """Truncated input ids (special tokens included) of ``texts``, computed on clipped texts."""
    kw = {"truncation": True, "max_length": max_length, "return_attention_mask": False,
          "return_token_type_ids": False}
    return clipped_ids(lambda batch: tok(batch, **kw)["input_ids"], texts, max_length)


def _pad(ids: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    lens = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    mask = np.arange(int(lens.max())) < lens[:, None]
    arr = np.full(mask.shape, pad_id, dtype=np.int64)
    arr[mask] = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(lens.sum()))
    return arr, mask.astype(np.int64)


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    hidden = hidden.float()
    if pooling == "cls":
        vec = hidden[:, 0]
    else:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        vec = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
    return l2_normalize(vec)


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom)


def _encode(
    model: Any, arr: np.ndarray, mask: np.ndarray, device: str, pooling: str, retry: bool
) -> torch.Tensor | None:
    """Pooled, normalised vectors of one padded batch; ``None`` on an out-of-memory error."""
    try:
        # Plain copies: non_blocking from pageable (unpinned) memory is synchronous anyway,
        # and the model call right after needs the ids.
        t_ids = torch.from_numpy(arr).to(device)
        t_mask = torch.from_numpy(mask).to(device)
        return _pool(model(input_ids=t_ids, attention_mask=t_mask)[0], t_mask, pooling)
    except Exception as exc:
        if retry and _is_oom(exc):
            return None
        raise


def embed_texts(
    texts: Sequence[str], cfg: Any, backend: Backend, progress: bool = True
) -> tuple[Any, dict[str, Any]]:
    """Embed ``texts`` in input order; returns ``(N x D float32 on the backend, stats)``."""
    device = backend.torch_device
    dtype = _torch_dtype(str(cfg.dtype), device)
    tok, model = load_model(str(cfg.model), device, dtype, bool(cfg.trust_remote_code))
    limit = getattr(model.config, "max_position_embeddings", None) or cfg.max_length
    max_length = int(min(cfg.max_length, limit))
    dim = int(model.config.hidden_size)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    n = len(texts)
    batch = int(cfg.batch_size)
    out = torch.empty((n, dim), dtype=torch.float32, device=device)
    # Longest first: an out-of-memory batch shows up at the start, not after an hour.
    char_len = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n)
    by_chars = np.argsort(-char_len, kind="stable")
    n_tokens = 0
    t0 = time.perf_counter()
    bar = progress_bar(progress, total=n, desc="embed", unit="doc")
    with torch.inference_mode():
        chunk = batch * _BATCHES_PER_CHUNK
        for c0 in range(0, n, chunk):
            rows = by_chars[c0:c0 + chunk]
            ids = _tokenize(tok, [texts[i] for i in rows.tolist()], max_length)
            lens = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
            local = np.argsort(-lens, kind="stable")
            p = 0
            while p < len(local):
                sel = local[p:p + batch]
                arr, mask = _pad([ids[i] for i in sel.tolist()], pad_id)
                vec = _encode(model, arr, mask, device, str(cfg.pooling), retry=batch > 1)
                if vec is None:  # out of memory: the frames holding the batch are gone by now
                    torch.cuda.empty_cache()
                    batch = max(1, batch // 2)
                    log.warning("embed: CUDA out of memory; retrying with batch size %d", batch)
                    continue
                out[torch.from_numpy(rows[sel]).to(device)] = vec
                n_tokens += int(lens[sel].sum())
                p += len(sel)
                bar.update(len(sel))
    bar.close()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    emb = backend.asarray(out) if backend.is_gpu else out.numpy()
    stats = {
        "model": str(cfg.model), "dim": dim, "n": n, "seconds": seconds,
        "docs_per_s": n / seconds if seconds > 0 else None,
        "tokens_per_s": n_tokens / seconds if seconds > 0 else None,
        "tokens": n_tokens, "device": device, "dtype": model_dtype(model),
        "max_length": max_length, "batch_size": batch, "pooling": str(cfg.pooling),
    }
    log.info("embed: %d docs in %.1fs (%.0f docs/s) on %s/%s", n, seconds,
             stats["docs_per_s"] or 0.0, device, stats["dtype"])
    return emb, stats


class Encoder:
    """The encoder as a stateful batch function: an executor builds one per worker (one per
    GPU under Ray) and feeds it batches of ``{"row", "text"}``; the model loads once."""

    def __init__(self, cfg: dict[str, Any], backend: str) -> None:
        from omegaconf import OmegaConf

        from datasculpt.backend import resolve_backend

        self.cfg = OmegaConf.create(cfg)
        self.backend = resolve_backend(backend)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        vec, stats = embed_texts(list(batch["text"]), self.cfg, self.backend, progress=False)
        return vector_batch(batch["row"], vec, f"torch-{stats['device']}/{stats['dtype']}")


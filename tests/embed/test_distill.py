"""embed.distill: the static table distilled once with model2vec from a real (tiny,
random-weight) encoder, cached under XDG_CACHE_HOME, checked against its manifest and
distilled again when damaged; a missing table or hub model is a config error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datasculpt.config import EmbedConfig
from datasculpt.embed.distill import MARKER, cache_root
from datasculpt.embed.static import StaticTable, static_model_dir
from datasculpt.errors import ConfigError

pytest.importorskip("model2vec.distill", reason="embed=static needs the [static] extra")


def _cfg(model: Path, **kw) -> EmbedConfig:
    return EmbedConfig(model=str(model), kind="static", pca_dims=16, max_length=512, **kw)



def test_distilled_once_then_reused(tiny_encoder: Path, static_cache: Path, caplog) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="datasculpt.embed.distill"):
        first = static_model_dir(_cfg(tiny_encoder))
    assert first.parent == cache_root() and str(static_cache) in str(first)
    assert "distilling" in caplog.text
    mtime = (first / MARKER).stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="datasculpt.embed.distill"):
        again = static_model_dir(_cfg(tiny_encoder))
    assert again == first and "distilling" not in caplog.text
    assert (first / MARKER).stat().st_mtime_ns == mtime
    # other distillation parameters are another entry
    assert static_model_dir(EmbedConfig(model=str(tiny_encoder), kind="static",
                                        pca_dims=8)) != first


def test_a_damaged_cache_entry_is_distilled_again(tiny_encoder: Path, static_cache: Path) -> None:
    path = static_model_dir(_cfg(tiny_encoder))
    good = StaticTable(path, "cpu").table.numpy().copy()
    listed = json.loads((path / MARKER).read_text())["files"]
    weights = next(name for name in listed if name.endswith(".safetensors"))
    data = bytearray((path / weights).read_bytes())
    data[-8:] = b"\x00" * 8  # flipped bytes in the table
    (path / weights).write_bytes(bytes(data))
    rebuilt = static_model_dir(_cfg(tiny_encoder))
    assert rebuilt == path
    np.testing.assert_array_equal(StaticTable(rebuilt, "cpu").table.numpy(), good)
    (path / MARKER).unlink()  # an entry cut short before its manifest: also rebuilt
    again = static_model_dir(_cfg(tiny_encoder))
    files = json.loads((path / MARKER).read_text())["files"]
    assert again == path and sorted(files) == sorted(listed)
    assert files[weights] == listed[weights]  # the same table, distilled again (README dated)
    np.testing.assert_array_equal(StaticTable(again, "cpu").table.numpy(), good)


def test_a_missing_static_dir_or_hub_model_is_a_config_error(static_cache: Path) -> None:
    with pytest.raises(ConfigError, match="not a Model2Vec model"):
        static_model_dir(EmbedConfig(kind="static", static_dir=str(static_cache / "nope")))
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache"):
        static_model_dir(EmbedConfig(kind="static", model="no-such-org/no-such-model"))

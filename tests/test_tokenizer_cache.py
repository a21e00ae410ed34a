"""datasculpt/tokenizer_cache.py: the run's tokenizer read back from its cache entry gives the
transformers tokenizer's ids, special tokens and length, without importing transformers, and a
damaged or outdated entry is rebuilt, never trusted."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datasculpt.errors import ConfigError
from datasculpt.models import resolve_model_path
from datasculpt.tokenize import load_tokenizer, plain_ids, separator
from datasculpt.tokenizer_cache import RunTokenizer, cache_root, load_run_tokenizer

REPO = Path(__file__).resolve().parent.parent
TEXTS = ["Hello, world!", "  spaced\tout \n text  ", "naïve café [SEP] [CLS] x", "",
         "a" * 300 + " tail", "数字 and 123.45"]


@pytest.fixture
def tok_dir(tmp_path, monkeypatch) -> Path:
    """The packaged MiniLM's tokenizer files (not its weights) in a folder of their own, and
    an empty cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    load_run_tokenizer.cache_clear()
    src = Path(resolve_model_path("default", "tokenizer"))
    out = tmp_path / "tok"
    out.mkdir()
    for p in src.iterdir():
        if p.is_file() and p.suffix in (".json", ".txt"):
            shutil.copy(p, out / p.name)
    yield out
    load_run_tokenizer.cache_clear()


def _entries() -> list[Path]:
    return sorted(cache_root().glob("*.json"))


def _same_as_transformers(run: RunTokenizer, name: str) -> None:
    hf = load_tokenizer(name)
    assert plain_ids(run)(TEXTS) == plain_ids(hf)(TEXTS)
    assert plain_ids(run, specials_as_text=True)(TEXTS) == plain_ids(hf, True)(TEXTS)
    assert separator(run) == separator(hf) == (hf.sep_token_id, hf.sep_token)
    assert len(run) == len(hf) and run.eos_token_id == hf.eos_token_id


def test_the_first_load_writes_an_entry_that_a_later_load_reads_back_the_same(tok_dir) -> None:
    first = load_run_tokenizer(str(tok_dir))
    assert isinstance(first, RunTokenizer) and len(_entries()) == 1
    _same_as_transformers(first, str(tok_dir))
    load_run_tokenizer.cache_clear()
    again = load_run_tokenizer(str(tok_dir))
    assert "full" not in again.__dict__  # read from the entry: transformers not asked
    _same_as_transformers(again, str(tok_dir))
    assert again.backend_tokenizer.to_str() == first.backend_tokenizer.to_str()
    # anything else comes from the transformers tokenizer, loaded then
    ids = plain_ids(again)(TEXTS[:2])
    assert again.batch_decode(ids) == load_tokenizer(str(tok_dir)).batch_decode(ids)
    assert "full" in again.__dict__


def test_a_run_from_the_entry_never_imports_transformers(tok_dir) -> None:
    load_run_tokenizer(str(tok_dir))  # writes the entry
    code = ("import sys; from datasculpt.tokenizer_cache import load_run_tokenizer; "
            "from datasculpt.tokenize import plain_ids; "
            f"t = load_run_tokenizer({str(tok_dir)!r}); "
            "print(plain_ids(t)(['hello world'])[0], 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120, check=True)
    hf_ids = load_tokenizer(str(tok_dir))("hello world", add_special_tokens=False)["input_ids"]
    assert out.stdout.strip() == f"{hf_ids} False"


def test_a_damaged_entry_is_rebuilt_and_an_edited_tokenizer_gets_its_own(tok_dir) -> None:
    load_run_tokenizer(str(tok_dir))
    (entry,) = _entries()
    entry.write_text(entry.read_text()[:100])  # cut short
    load_run_tokenizer.cache_clear()
    rebuilt = load_run_tokenizer(str(tok_dir))
    assert "full" in rebuilt.__dict__  # the entry was not trusted: transformers built it
    assert json.loads(entry.read_text())["backend"] == rebuilt.backend_tokenizer.to_str()
    # a forged entry with another key is not read either
    forged = json.loads(entry.read_text())
    forged["key"] = "0" * 64
    entry.write_text(json.dumps(forged))
    load_run_tokenizer.cache_clear()
    assert "full" in load_run_tokenizer(str(tok_dir)).__dict__
    # lower-casing switched off (in both files: transformers sets the normaliser from the
    # config): a new key, and the new behaviour
    spec_path, cfg_path = tok_dir / "tokenizer.json", tok_dir / "tokenizer_config.json"
    spec, cfg = json.loads(spec_path.read_text()), json.loads(cfg_path.read_text())
    assert spec["normalizer"]["lowercase"]
    spec["normalizer"]["lowercase"] = cfg["do_lower_case"] = False
    spec_path.write_text(json.dumps(spec))
    cfg_path.write_text(json.dumps(cfg))
    load_run_tokenizer.cache_clear()
    load_tokenizer.cache_clear()  # its own cache holds the tokenizer as it was
    cased = load_run_tokenizer(str(tok_dir))
    assert len(_entries()) == 2
    _same_as_transformers(cased, str(tok_dir))
    assert plain_ids(cased)(["Hello"]) != plain_ids(rebuilt)(["Hello"])


def test_it_pickles_without_loading_transformers_and_hub_names_go_to_transformers(
        tok_dir) -> None:
    load_run_tokenizer(str(tok_dir))
    load_run_tokenizer.cache_clear()
    run = load_run_tokenizer(str(tok_dir))
    back = pickle.loads(pickle.dumps(run))
    assert "full" not in back.__dict__ and len(back) == len(run)
    assert plain_ids(back)(TEXTS) == plain_ids(run)(TEXTS)
    with pytest.raises(AttributeError):
        _ = back._private
    with pytest.raises(ConfigError, match="not found"):
        load_run_tokenizer("/no/such/tokenizer/dir")
    with pytest.raises(ConfigError, match="cannot load tokenizer"):
        load_run_tokenizer("no-such-org/no-such-tokenizer-xyz")

"""main: the Hydra app run in this process, as ``python -m datasculpt.main`` runs it (the
precheck, then the app): a run into ``output_dir``, and the exit codes with their one line on
stderr (2: unusable input, 1: an internal failure). Bad configs: tests/test_config.py; the
same through a real subprocess: tests/e2e/test_cli.py."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import check_contract, write_jsonl

from datasculpt import main as main_mod

TINY = ["pack=bfd", "report.semantic_metrics=false", "report.plots=false",
        "report.progress=false", "ctx_len=128"]


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """``main.main()`` with the given arguments; Hydra's logging set-up undone afterwards."""
    from hydra.core.global_hydra import GlobalHydra

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def call(*args: str) -> None:
        monkeypatch.setattr(sys, "argv", ["datasculpt", *args])
        GlobalHydra.instance().clear()
        main_mod.main()

    yield call
    GlobalHydra.instance().clear()
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def _corpus(path: Path) -> Path:
    return write_jsonl(path, [{"docid": f"d{i}", "content": "river delta sediment " * (5 + 9 * i)}
                              for i in range(12)])


def test_a_run_writes_its_artifacts_and_hydras_record_to_output_dir(app, tmp_path: Path) -> None:
    data = _corpus(tmp_path / "in.jsonl")
    out = tmp_path / "run"
    app(f"input={data}", f"output_dir={out}", *TINY)
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["ctx_len"] == 128 and report["run"]["method"] == "bfd"
    assert report["run"]["output_dir"] == str(out)
    assert report["metrics"]["n_documents"] == 12
    seen = check_contract(out, ctx_len=128, append_eos=True)
    assert seen["sequences"] == report["metrics"]["n_sequences"]
    # Hydra's run directory is output_dir: the composed config and the log sit beside it all.
    assert "ctx_len: 128" in (out / ".hydra" / "config.yaml").read_text()
    assert "stage pack: start" in (out / "datasculpt.log").read_text()


def test_unusable_input_exits_2_with_one_line(app, tmp_path: Path, capsys) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", ["not json", '{"docid": "x"}'])
    with pytest.raises(SystemExit) as exc:
        app(f"input={bad}", f"output_dir={tmp_path / 'o'}", *TINY)
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"datasculpt: error: no usable documents in {bad} (2 malformed)")
    strict = write_jsonl(tmp_path / "strict.jsonl", [{"content": "fine"}, "oops"])
    with pytest.raises(SystemExit) as exc:
        app(f"input={strict}", "strict=true", f"output_dir={tmp_path / 's'}", *TINY)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("datasculpt: error: ") and f"{strict}:2" in err[-1]
    assert not (tmp_path / "s" / "sequences.jsonl").exists()


def test_an_internal_failure_exits_1_and_logs_the_traceback(app, tmp_path: Path, capsys,
                                                            monkeypatch) -> None:
    import datasculpt.pipeline

    def broken(cfg, output_dir=None):
        raise RuntimeError("a bug deep inside a stage")

    monkeypatch.setattr(datasculpt.pipeline, "run", broken)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        app(f"input={_corpus(tmp_path / 'in.jsonl')}", f"output_dir={out}", *TINY)
    assert exc.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "datasculpt: internal error (traceback above / in the run log)")
    log = (out / "datasculpt.log").read_text()
    assert "internal failure" in log and "RuntimeError: a bug deep inside a stage" in log


def test_the_config_dir_is_the_checkouts_conf_when_run_from_a_checkout() -> None:
    from helpers import REPO

    assert main_mod.source_config_dir() == REPO / "conf"
    assert str(REPO / "conf") == main_mod.CONFIG_PATH


def test_python_dash_m_datasculpt_is_the_same_command(monkeypatch, capsys) -> None:
    import runpy

    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setattr(sys, "argv", ["datasculpt", "ctx_len=4096", "pack=bfd", "--cfg", "job"])
    GlobalHydra.instance().clear()
    try:
        runpy.run_module("datasculpt", run_name="__main__")
    finally:
        GlobalHydra.instance().clear()
    job = capsys.readouterr().out
    assert "ctx_len: 4096" in job and "method: bfd" in job

"""Bad configs and missing optional packages: one line on stderr, exit code 2, before any
work. Checked in-process through the command line's own precheck (``main.precheck``, what
``python -m datasculpt.main`` runs first); tests/e2e/test_cli.py keeps one check through a
real subprocess."""

from __future__ import annotations

import sys

import pytest
from helpers import REPO

from datasculpt.main import precheck


def _exit_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        precheck(args)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("datasculpt: error: "), lines
    return lines[0]


@pytest.mark.parametrize(("args", "message"), [
    (["ctx_len=0"], "ctx_len must be > 0"),
    (["nonsense_key=1"], "Key 'nonsense_key' not in"),
    (["pack=shuffle"], "Could not find 'pack/shuffle'"),
    (["pack.method=shuffle"], "unknown pack method 'shuffle'"),
    (["input=/definitely/not/here.jsonl"], "input not found"),
    (["ctx_len=lots"], "could not be converted to Integer"),
    (["-m", "ctx_len=2048,-1"], "ctx_len must be > 0, got -1"),
    (["tokenizer=./no/such/dir"], "tokenizer path not found"),
    (["pack.max_waste=2"], "pack.max_waste must be in [0, 1]"),
    (["judge=enabled", "judge.model=/no/such/model.gguf"], "judge.model"),
    (["cluster.cell_docs=0"], "cluster.cell_docs must be >= 1, got 0"),
    (["cluster.cell_docs=many"], "could not be converted to Integer"),
])
def test_a_bad_config_is_one_line_and_exit_code_2(args: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert message in _exit_line(args, capsys)


def test_backend_gpu_without_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    from datasculpt.backend import gpu_problem

    if gpu_problem() is None:
        pytest.skip("this machine has a usable GPU")
    assert "backend=gpu was requested but no usable GPU" in _exit_line(["backend=gpu"], capsys)


@pytest.mark.parametrize(("args", "module", "hint"), [
    (["embed.kind=static"], "model2vec", "pip install 'datasculpt[static]'"),
    (["executor=ray"], "ray", "pip install 'datasculpt[ray]'"),
    (["cluster.kmeans=faiss-cpu"], "faiss", "pip install 'datasculpt[cpu]'"),
    (["cluster.kmeans=cuml"], "cuml", "'datasculpt[gpu-cu13]'"),
])
def test_an_option_whose_extra_is_missing_names_the_extra(
        args: list[str], module: str, hint: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    line = _exit_line(args, capsys)
    assert f"needs the {module} package" in line and hint in line


def test_installed_extras_pass(capsys: pytest.CaptureFixture[str]) -> None:
    from datasculpt.extras import installed

    args = [a for a, m in (("embed.kind=static", "model2vec"), ("executor=ray", "ray"),
                           ("cluster.kmeans=faiss-cpu", "faiss")) if installed(m)]
    precheck(args)  # no SystemExit
    assert capsys.readouterr().err == ""


def test_a_source_checkout_runs_without_the_installed_config_package(tmp_path) -> None:
    """Hydra's ``datasculpt.conf`` exists only in an installed build; from a plain checkout
    (no install, as on a machine without a package index) the app reads ``conf/`` itself."""
    import subprocess

    code = ("import sys\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "import importlib.util\n"
            "assert importlib.util.find_spec('datasculpt.conf') is None, 'installed conf seen'\n"
            "sys.argv = ['datasculpt', 'ctx_len=4096', '--cfg', 'job']\n"
            "from datasculpt.main import main\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ctx_len: 4096" in proc.stdout and "method: datasculpt" in proc.stdout

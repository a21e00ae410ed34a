"""End to end from a bare source tree: ``python -m datasculpt.main`` where the package is not
installed but copied (a lent GPU machine gets the working tree, nothing installed). The run must
import the copy and compose the copy's ``conf/``, not an installed datasculpt's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import check_contract, notes_corpus, write_jsonl

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _tracked_copy(dest: Path) -> Path:
    """The tracked files of this checkout, as they are in the working tree (uncommitted edits
    included: they are what a device call would copy), without anything git ignores."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                                check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout: no tracked tree to copy")
    for rel in filter(None, listed.decode().split("\0")):
        src = REPO / rel
        if not src.is_file():  # deleted in the working tree, not yet committed
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    return dest


def test_a_copied_source_tree_runs_from_itself(tmp_path: Path) -> None:
    tree = _tracked_copy(tmp_path.resolve() / "tree")  # as the run resolves its paths
    assert not (tree / "datasculpt.egg-info").exists()
    # Only the copy on the path: an inherited PYTHONPATH (a worktree, say) would hide it.
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}
    probe = subprocess.run(
        [sys.executable, "-c",
         "import datasculpt, datasculpt.main as m; print(datasculpt.__file__); "
         "print(m.CONFIG_PATH)"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    module_file, config_path = probe.stdout.strip().splitlines()[-2:]
    assert Path(module_file).resolve() == (tree / "datasculpt" / "__init__.py").resolve()
    assert Path(config_path).resolve() == (tree / "conf").resolve()

    data = write_jsonl(tmp_path / "in.jsonl", notes_corpus())
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "datasculpt.main", f"input={data}", "label_key=topic",
         "ctx_len=256", "report.plots=false", "report.progress=false", f"output_dir={out}"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("report.json", "report.md", "sequences.jsonl", "documents.parquet"):
        assert (out / name).is_file(), name
    seen = check_contract(out, ctx_len=256, append_eos=True)
    report = json.loads((out / "report.json").read_text())
    assert seen["documents"] == report["metrics"]["n_documents"] == 36
    # Hydra records where it composed the config from: the copy's conf/, as a file source.
    hydra_yaml = (out / ".hydra" / "hydra.yaml").read_text()
    assert f"- path: {tree / 'conf'}\n      schema: file\n      provider: main" in hydra_yaml, \
        hydra_yaml
    assert not list(tree.glob("outputs")), "the run wrote into the tree despite output_dir"

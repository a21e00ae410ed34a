"""The command line as users run it: Hydra app, exit codes, sweeps, the output contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from helpers import check_contract, read_sequences, run_cli, write_jsonl

import datasculpt
from datasculpt.tokenize import make_units  # noqa: F401 - imported to fail fast on a broken install


def _report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


def test_default_run_on_the_embedded_sample(tmp_path: Path) -> None:
    proc = run_cli(cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = [p.parent for p in tmp_path.glob("outputs/*/*/report.json")]
    report = _report(run_dir)
    seen = check_contract(run_dir, ctx_len=16384, append_eos=True)
    m = report["metrics"]
    assert seen["sequences"] == m["n_sequences"] and seen["documents"] == m["n_documents"]
    assert m["lost_tokens"] == m["duplicated_tokens"] == m["overlong_sequences"] == 0
    assert report["run"]["forced_cut_documents"] >= 3  # the sample has documents beyond 16K
    assert (run_dir / "report.md").read_text().startswith("# datasculpt run report")
    # Issue 3: the clusters of the default model align with the sample's topics.
    docs = pq.read_table(run_dir / "documents.parquet").to_pydict()
    clusters = np.load(run_dir / "clusters.npy", allow_pickle=False)
    majority = 0
    for c in np.unique(clusters):
        tokens: dict[str, int] = {}
        for i in np.flatnonzero(clusters == c):
            tokens[docs["topic"][i]] = tokens.get(docs["topic"][i], 0) + docs["n_tokens"][i]
        majority += max(tokens.values())
    assert majority / sum(docs["n_tokens"]) >= 0.85


def test_bfd_at_2048_never_truncates(tmp_path: Path) -> None:
    proc = run_cli("pack=bfd", "ctx_len=2048", "report.semantic_metrics=false",
                   f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = _report(tmp_path / "run")["metrics"]
    assert m["truncation_rate"] == 0.0
    assert 0.9 < m["fill_rate"] <= 1.0
    check_contract(tmp_path / "run", ctx_len=2048, append_eos=True)


def test_bad_config_through_the_real_command_line(tmp_path: Path) -> None:
    """test_config.py checks every case in-process; this one goes through a real process."""
    proc = run_cli("-m", "ctx_len=2048,-1", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["datasculpt: error: ctx_len must be > 0, got -1"], proc.stderr
    assert not list(tmp_path.glob("multirun/*/*/*/sequences.jsonl"))


def test_unusable_input_exits_2(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", ["not json", '{"docid": "x"}'])
    proc = run_cli(f"input={bad}", f"output_dir={tmp_path / 'o'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("datasculpt: error: no usable documents")
    strict = write_jsonl(tmp_path / "strict.jsonl", [{"content": "fine"}, "oops"])
    proc = run_cli(f"input={strict}", "strict=true", f"output_dir={tmp_path / 's'}", cwd=tmp_path)
    assert proc.returncode == 2 and "strict.jsonl:2" in proc.stderr
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o500)
    target = ro / "sub"
    proc = run_cli(f"input={strict}", f"output_dir={target}", cwd=tmp_path)
    if not target.exists():  # root ignores directory permissions
        assert proc.returncode == 2 and "output_dir is not writable" in proc.stderr


def test_multirun_with_submitit_local_gives_one_run_dir_per_point(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "in.jsonl",
                         [{"docid": f"d{i}", "content": "word " * (50 + 40 * i)}
                          for i in range(60)])
    proc = run_cli("-m", "ctx_len=2048,4096", "hydra/launcher=submitit_local", "pack=bfd",
                   "report.semantic_metrics=false", "report.plots=false", f"input={corpus}",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The input path stays out of the job directory names: no nested directories from it.
    runs = sorted(p.parent for p in (tmp_path / "sweep").glob("*/report.json"))
    assert len(runs) == 2
    assert [r.name.split(",")[0] for r in runs] == ["0_ctx_len=2048", "1_ctx_len=4096"]
    assert not any("input" in r.name for r in runs)
    assert sorted(_report(r)["run"]["ctx_len"] for r in runs) == [2048, 4096]
    for r in runs:
        assert (r / "sequences.jsonl").stat().st_size > 0
        check_contract(r, ctx_len=_report(r)["run"]["ctx_len"], append_eos=True)


def test_python_api_parquet_input_and_training_shards(tmp_path: Path, tokenizer) -> None:
    texts = [f"Paragraph {i} on rivers, deltas and sediment transport. " * (1 + 7 * i)
             for i in range(12)]
    pq.write_table(pa.table({"text": texts, "domain": ["geo"] * 12}), tmp_path / "in.parquet")
    cfg = datasculpt.default_config(input=str(tmp_path / "in.parquet"), ctx_len=512,
                                    label_key="domain",
                                    **{"report.semantic_metrics": False, "report.plots": False,
                                       "report.progress": False, "pack.method": "concat",
                                       "output.text": True})
    report = datasculpt.run(cfg, output_dir=str(tmp_path / "out"))
    assert report["metrics"]["label_purity"] == 1.0
    check_contract(tmp_path / "out", ctx_len=512, append_eos=True)
    docs = pq.read_table(tmp_path / "out" / "documents.parquet").to_pydict()
    assert docs["docid"][0] == f"{tmp_path / 'in.parquet'}:1"
    index = {d: i for i, d in enumerate(docs["docid"])}
    rows = {r["seq_id"]: r for f in sorted((tmp_path / "out" / "tokens").glob("*.parquet"))
            for r in pq.read_table(f).to_pylist()}
    for seq in read_sequences(tmp_path / "out" / "sequences.jsonl"):
        ids: list[int] = []
        for piece in seq["docs"]:
            full = tokenizer(texts[index[piece["docid"]]], add_special_tokens=False)["input_ids"]
            ids += full[piece["start"]:piece["end"]]
            if piece["end"] == len(full):
                ids.append(tokenizer.sep_token_id)
        assert rows[seq["seq_id"]]["input_ids"] == ids
        assert len(ids) == seq["n_tokens"]
        assert "sediment" in rows[seq["seq_id"]]["text"]


def test_precomputed_embeddings_that_do_not_match_exit_2(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"content": f"doc {i}"} for i in range(5)])
    np.save(tmp_path / "rows.npy", np.ones((4, 8), dtype=np.float32))
    np.save(tmp_path / "flat.npy", np.ones(5, dtype=np.float32))
    for name, message in (("rows.npy", "have 4 rows, the corpus 5 documents"),
                          ("flat.npy", "must be a 2-D array")):
        proc = run_cli(f"input={data}", f"embed.precomputed={tmp_path / name}",
                       f"output_dir={tmp_path / name}.out", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.jsonl").write_bytes(b"")
    proc = run_cli(f"input={empty}", f"output_dir={tmp_path / 'e.out'}", cwd=tmp_path)
    assert proc.returncode == 2 and "no usable documents" in proc.stderr


def test_vectors_from_an_input_field_drive_the_packing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 6))
    records = []
    for i in range(40):
        vec = centres[i % 2] + 0.05 * rng.normal(size=6)
        records.append({"docid": f"d{i}", "text": f"document {i} " * (20 + i), "vec": vec.tolist()})
    records.append({"docid": "bad", "text": "no vector here"})
    data = write_jsonl(tmp_path / "v.jsonl", records)
    cfg = datasculpt.default_config(input=str(data), ctx_len=256, **{
        "embed.vector_key": "vec", "report.plots": False, "report.progress": False})
    report = datasculpt.run(cfg, output_dir=str(tmp_path / "out"))
    emb = np.load(tmp_path / "out" / "embeddings.npy", allow_pickle=False)
    given = np.asarray([r["vec"] for r in records[:40]])
    assert np.allclose(emb, given / np.linalg.norm(given, axis=1, keepdims=True), atol=1e-6)
    assert report["input"]["malformed_by_reason"] == {"missing or invalid vector field 'vec'": 1}
    clusters = np.load(tmp_path / "out" / "clusters.npy", allow_pickle=False)
    assert len(set(zip(clusters.tolist(), [i % 2 for i in range(40)], strict=True))) == 2
    # Only the cross-cluster remainder pass may mix the two planted groups in a window.
    assert report["metrics"]["cluster_purity"] >= 0.9
    check_contract(tmp_path / "out", ctx_len=256, append_eos=True)

"""rungs: which implementation ran each stage (read from its stats by the stage), and a
warning for every stage of a GPU run that computed on the host."""

from __future__ import annotations

from datasculpt.rungs import gpu_warnings
from datasculpt.stages.cluster import CLUSTER
from datasculpt.stages.embed import embed_stage
from datasculpt.stages.pack import pack_stage


def test_host_rungs_of_a_gpu_run_are_warnings() -> None:
    stats = {"embed": {"rung": "torch-cuda/bfloat16"},
             "cluster": {"kmeans": "faiss-cpu", "xp": "cupy"},
             "pack": {"rung": "cupy"}, "pack_bfd": {"rung": "host"},
             "pack_iclm": {"rung": "torch-cpu"}}
    stages = [embed_stage("encoder"), CLUSTER, pack_stage("datasculpt", "datasculpt", "window"),
              pack_stage("bfd", "datasculpt", "window"),
              pack_stage("iclm", "datasculpt", "window")]
    rungs = {s.name: s.rung(stats[s.name]) for s in stages if s.rung}
    assert rungs["embed"] == "torch-cuda/bfloat16" and rungs["pack"] == "cupy"
    assert rungs["cluster"] == "faiss-cpu; rounds on cupy"
    warnings = gpu_warnings(rungs, "gpu")
    assert sorted(w.split()[0] for w in warnings) == ["cluster", "pack_iclm"]
    assert gpu_warnings(rungs, "cpu") == []

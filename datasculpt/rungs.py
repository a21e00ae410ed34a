"""Which implementation ran each stage, and a warning for every stage of a GPU run that ran on
the host: a GPU run must never turn into a CPU run without saying so (DESIGN §3)."""

from __future__ import annotations

from typing import Any

# Rungs that compute on the host. "host" is the packers that are integer bookkeeping by
# design (concat, bfd), never expected on the GPU.
HOST_RUNGS = ("faiss-cpu", "torch-cpu", "numpy")


def stage_rungs(stages: dict[str, dict[str, Any]], backend: str
                ) -> tuple[dict[str, str], list[str]]:
    """``({stage: rung}, warnings)`` from the stages' stats (reused stages included)."""
    rungs: dict[str, str] = {}
    for name, stats in stages.items():
        if name == "embed":
            rung = stats.get("rung") or ("given vectors" if "source" in stats else None)
        elif name == "cluster":
            rung = stats.get("kmeans") and f"{stats['kmeans']}; rounds on {stats.get('xp')}"
        elif name.startswith("pack"):
            rung = stats.get("rung")
        else:
            rung = None
        if rung:
            rungs[name] = str(rung)
    warnings = []
    if backend == "gpu":
        for name, rung in rungs.items():
            on_host = [r for r in HOST_RUNGS if r in rung]
            if on_host:
                warnings.append(f"{name} ran on the host ({rung}) although the run is on "
                                "the GPU")
    return rungs, warnings

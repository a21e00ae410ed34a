"""Which implementation ran each stage, and a warning for every stage of a GPU run that ran on
the host: a GPU run must never turn into a CPU run without saying so (docs/DESIGN.md,
"Backends and rungs"). Each stage says how to read its rung from its stats (``Stage.rung``)."""

from __future__ import annotations

# Rungs that compute on the host. "host" is the packers that are integer bookkeeping by
# design (concat, bfd), never expected on the GPU.
HOST_RUNGS = ("faiss-cpu", "torch-cpu", "numpy")


def gpu_warnings(rungs: dict[str, str], backend: str) -> list[str]:
    """One line per stage of a GPU run whose rung computed on the host."""
    if backend != "gpu":
        return []
    return [f"{name} ran on the host ({rung}) although the run is on the GPU"
            for name, rung in rungs.items() if any(r in rung for r in HOST_RUNGS)]

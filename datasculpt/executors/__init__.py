"""Executors: what runs the independent pieces of a stage (``executor=local|ray``).

Stage code hands an executor a module-level function, a list of items and the large read-only
arrays every call shares; it gets the results back in item order. It never knows where they
ran, nor tests which executor it has (the executor places the data, see ``base.py``), so the
same stage code gives the same bytes under either executor.
"""

from __future__ import annotations

from typing import Any

from datasculpt.executors.base import Executor, LocalExecutor, on_task_device

__all__ = ["Executor", "LocalExecutor", "make_executor", "on_task_device"]


def make_executor(cfg: Any) -> Executor:
    """The executor the ``executor`` config node asks for (validated earlier)."""
    if cfg.name == "ray":
        from datasculpt.executors.ray import RayExecutor

        return RayExecutor(address=cfg.address, num_cpus=cfg.num_cpus)
    return LocalExecutor()

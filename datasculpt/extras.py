"""Optional packages: an option whose extra is not installed fails before any work, with one
line naming the extra (``pip install 'datasculpt[static]'``), instead of a traceback from
deep inside a stage."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from datasculpt.errors import ConfigError

# one of the two, for the card's CUDA major (docs/INSTALL.md)
_GPU = "pip install 'datasculpt[gpu-cu12]' or 'datasculpt[gpu-cu13]'"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (some take seconds)."""
    if module in sys.modules:
        return sys.modules[module] is not None  # None: imports of it are blocked
    return importlib.util.find_spec(module) is not None


def require(module: str, option: str, extra: str) -> None:
    """``extra``: the extra's name, or the whole install hint when there is a choice."""
    if not installed(module):
        hint = extra if extra.startswith("pip ") else f"pip install 'datasculpt[{extra}]'"
        raise ConfigError(f"{option} needs the {module} package, which is not installed: "
                          f"{hint}")


def check_extras(cfg: Any) -> None:
    """Every optional package the config asks for by name."""
    if cfg.embed.kind == "static":
        require("model2vec", "embed=static", "static")
    if cfg.executor.name == "ray":
        require("ray", "executor=ray", "ray")
    if cfg.backend.name == "gpu":  # torch must see CUDA too: the backend says what is wrong
        from datasculpt.backend import gpu_problem

        problem = gpu_problem()
        if problem is not None:
            raise ConfigError(f"backend=gpu was requested but no usable GPU was found: "
                              f"{problem}")
    kmeans = cfg.cluster.kmeans
    if kmeans == "cuml":
        require("cuml", "cluster.kmeans=cuml", _GPU)
    elif kmeans == "faiss-gpu":
        require("faiss", "cluster.kmeans=faiss-gpu", _GPU)
    elif kmeans == "faiss-cpu":
        require("faiss", "cluster.kmeans=faiss-cpu", "cpu")

"""Where arrays live: the only module that knows NumPy from CuPy.

Array code elsewhere asks ``xp_of(array)`` for its namespace and uses the API NumPy and CuPy
share; the few operations they spell differently (scatter-add, host transfer, DLPack hand-off
from torch) live here. Optional GPU libraries are imported lazily so the core runs without them.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from datasculpt.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    """The resolved backend: ``name`` is ``"gpu"`` or ``"cpu"``; ``xp`` is cupy or numpy."""

    name: str
    xp: ModuleType
    torch_device: str

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    def asarray(self, x: Any) -> Any:
        """Move a host/torch array onto this backend (no copy when it is already there)."""
        if self.is_gpu:
            return to_device(x)
        return to_numpy(x)


@functools.lru_cache(maxsize=1)
def gpu_problem() -> str | None:
    """Why the GPU path is unusable here, or ``None`` when torch sees CUDA and CuPy imports."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return "torch is not installed"
    if not torch.cuda.is_available():
        build = torch.version.cuda
        return ("torch sees no CUDA device" if build else
                f"torch {torch.__version__} is a CPU-only build")
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except ModuleNotFoundError:
        return ("CuPy is not installed: pip install 'datasculpt[gpu-cu12]' or "
                "'datasculpt[gpu-cu13]'")
    except Exception as exc:  # ImportError, or a CUDA runtime error from a broken install
        return f"CuPy is not usable ({exc.__class__.__name__}: {exc})"
    # Counting devices proves little: a CuPy without its CUDA toolkit (NVRTC, cuBLAS) or a
    # torch built for a newer driver fails at its first kernel. Run one of each here.
    h = np.arange(64, dtype=np.float32).reshape(8, 8)
    try:
        a = cupy.asarray(h)  # an elementwise kernel (compiled by NVRTC) and a cuBLAS matmul
        if float(((a * 2 + 1) @ a.T).sum()) != float(((h * 2 + 1) @ h.T).sum()):
            return "CuPy computes a wrong matmul"
    except Exception as exc:
        return f"CuPy cannot run a kernel ({exc.__class__.__name__}: {exc})"
    try:
        t = torch.ones(8, 8, device="cuda")
        if float((t @ t).sum()) != 512.0:
            return "torch computes a wrong matmul on the GPU"
    except Exception as exc:
        return f"torch cannot run a kernel on the GPU ({exc.__class__.__name__}: {exc})"
    return None


def gpu_present() -> bool:
    """An NVIDIA device node or driver tool is here, whatever torch and CuPy think."""
    return os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi") is not None


def resolve_backend(name: str) -> Backend:
    """Turn ``backend=auto|gpu|cpu`` into a Backend; ``gpu`` without a usable GPU is an error."""
    if name not in ("auto", "gpu", "cpu"):
        raise ConfigError(f"backend must be auto, gpu or cpu, got {name!r}")
    if name == "cpu":
        return Backend("cpu", np, "cpu")
    problem = gpu_problem()
    if problem is None:
        import cupy

        return Backend("gpu", cupy, "cuda")
    if name == "gpu":
        raise ConfigError(f"backend=gpu was requested but no usable GPU was found: {problem}")
    if gpu_present():  # a GPU machine running on the CPU is a broken install, not a choice
        log.warning("backend=auto: this machine has an NVIDIA GPU but it is not usable (%s); "
                    "running on the CPU. See docs/INSTALL.md", problem)
    else:
        log.info("backend=auto: using the CPU (%s)", problem)
    return Backend("cpu", np, "cpu")


def is_gpu_array(x: Any) -> bool:
    return array_api_compat.is_cupy_array(x)


def xp_of(*arrays: Any) -> ModuleType:
    """The NumPy-compatible module that owns ``arrays`` (cupy for device arrays, else numpy)."""
    if any(is_gpu_array(a) for a in arrays):
        import cupy

        return cupy
    return np


def to_numpy(x: Any) -> np.ndarray:
    """Host copy of a NumPy, CuPy or torch array (no copy for NumPy input)."""
    if isinstance(x, np.ndarray):
        return x
    if is_gpu_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_device(x: Any) -> Any:
    """CuPy view of a CUDA torch tensor (DLPack, no host copy) or a device copy of host data."""
    import cupy

    if array_api_compat.is_torch_array(x):
        if x.is_cuda:
            return cupy.from_dlpack(x.detach().contiguous())
        x = x.detach().numpy()
    return cupy.asarray(x)


# What ``cupy.add.at`` adds with CUDA atomics on every CuPy this project supports (>= 14.1.1,
# the floor in pyproject.toml and environment.yml): int64 joined in CuPy 14.1.0; narrower
# integers, bool and complex are refused there on every version.
ATOMIC_ADD_DTYPES = frozenset(np.dtype(t) for t in (
    np.int32, np.int64, np.uint32, np.uint64, np.float16, np.float32, np.float64))


def scatter_add(target: Any, index: Any, values: Any) -> None:
    """``target[index] += values`` along axis 0, repeated indices accumulated (in place).

    On the GPU this is ``cupy.add.at``: ``cupyx.scatter_add`` runs the same kernel through
    ``ndarray.scatter_add``, deprecated since CuPy 12, and so warns on every call. Its atomics
    take only ``ATOMIC_ADD_DTYPES``; any other target is refused on every backend, so a CPU
    test catches the call that would crash on the GPU. Float atomics land in no fixed order:
    the last bits of a float sum vary from run to run (integer sums are exact).

    On the host, NumPy's ``add.at`` is ~10x slower than torch's ``index_add_`` over the same
    memory (zero-copy views), so contiguous float32/float64 targets borrow torch; both add in
    index order.
    """
    if np.dtype(target.dtype) not in ATOMIC_ADD_DTYPES:
        raise TypeError(f"scatter_add into {np.dtype(target.dtype)} has no CUDA atomic add "
                        f"(cupy.add.at takes int32, int64, uint32, uint64 and floats)")
    if is_gpu_array(target):
        import cupy

        cupy.add.at(target, index, values)
        return
    if target.dtype in (np.float32, np.float64) and target.flags.c_contiguous and target.ndim:
        import torch

        src = np.ascontiguousarray(np.broadcast_to(values, (len(index), *target.shape[1:])),
                                   dtype=target.dtype)
        with warnings.catch_warnings():  # a read-only source (a memmap) is only read here
            warnings.simplefilter("ignore", UserWarning)
            src_t = torch.from_numpy(src)
        torch.from_numpy(target).index_add_(
            0, torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64)), src_t
        )
        return
    np.add.at(target, index, values)

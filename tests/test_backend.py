"""backend: where arrays live. The int64 scatter refused on every backend (as CuPy refuses
it), the reason a GPU cannot be used, and the zero-copy DLPack hand-off on a real GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasculpt.backend import gpu_problem, resolve_backend, scatter_add, to_device, to_numpy
from datasculpt.errors import ConfigError


def test_int64_scatter_add_is_refused_everywhere() -> None:
    # cupyx.scatter_add has no int64 before CuPy 14.1: the CPU path refuses it too, so the
    # CPU tests of the packing kernel catch such a call before a GPU run does.
    with pytest.raises(TypeError, match="int64"):
        scatter_add(np.zeros(4, np.int64), np.array([0, 1, 1]), 1)
    counts = np.zeros(4, np.int32)
    scatter_add(counts, np.array([0, 1, 1, 3]), 1)
    assert counts.tolist() == [1, 2, 0, 1]


def test_gpu_problem_names_the_reason_here() -> None:
    problem = gpu_problem()
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert problem == (f"torch {torch.__version__} is a CPU-only build"
                       if torch.version.cuda is None else "torch sees no CUDA device")


def test_float_scatter_add_through_torch_equals_numpy_add_at() -> None:
    rng = np.random.default_rng(0)
    index = rng.integers(0, 7, 500)  # many repeats
    values = rng.normal(size=(500, 3))
    for dtype in (np.float32, np.float64):
        target = np.zeros((7, 3), dtype)
        scatter_add(target, index, values.astype(dtype))
        want = np.zeros((7, 3), np.float64)
        np.add.at(want, index, values)
        np.testing.assert_allclose(target, want, rtol=1e-5, atol=1e-5)
    counts = np.zeros(7, np.float32)
    scatter_add(counts, index, 1)  # a scalar broadcast to every index
    assert counts.tolist() == np.bincount(index, minlength=7).tolist()


def test_the_cpu_backend_keeps_host_arrays_and_a_gpu_request_says_why_not() -> None:
    cpu = resolve_backend("cpu")
    assert (cpu.name, cpu.is_gpu, cpu.torch_device) == ("cpu", False, "cpu")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert cpu.asarray(x) is x  # no copy
    assert to_numpy(torch.from_numpy(x)).tolist() == x.tolist()
    with pytest.raises(ConfigError, match="backend must be auto, gpu or cpu, got 'tpu'"):
        resolve_backend("tpu")
    problem = gpu_problem()
    if problem is None:
        pytest.skip("this machine has a usable GPU")
    assert resolve_backend("auto").name == "cpu"
    with pytest.raises(ConfigError, match="no usable GPU") as err:
        resolve_backend("gpu")
    assert problem in str(err.value)


@pytest.mark.gpu
def test_dlpack_hand_off_shares_device_memory(gpu_backend) -> None:
    import cupy

    t = torch.arange(12, dtype=torch.float32, device="cuda").reshape(3, 4)
    c = to_device(t)  # torch -> CuPy without a copy
    assert isinstance(c, cupy.ndarray) and c.data.ptr == t.data_ptr()
    back = torch.from_dlpack(c)
    assert back.data_ptr() == t.data_ptr()
    c[0, 0] = 42.0
    assert float(t[0, 0]) == 42.0

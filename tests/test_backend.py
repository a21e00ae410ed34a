"""backend: where arrays live. The scatter-add dtypes CuPy's atomics refuse, refused on every
backend; the reason a GPU cannot be used; the zero-copy DLPack hand-off and ``cupy.add.at``
without CuPy's deprecation warning on a real GPU."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from datasculpt.backend import gpu_problem, resolve_backend, scatter_add, to_device, to_numpy
from datasculpt.errors import ConfigError


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint8, np.uint16, np.bool_,
                                   np.complex64])
def test_scatter_add_refuses_what_cuda_atomics_cannot_add(dtype) -> None:
    # NumPy's add.at takes these; cupy.add.at does not. Refusing them on the host too makes
    # a CPU test of the packing kernel catch such a call before a GPU run does.
    target = np.zeros(4, dtype)
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        scatter_add(target, np.array([0, 1, 1]), 1)
    assert not target.any()


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.uint64, np.float16])
def test_scatter_add_accumulates_repeated_indices_for_every_atomic_dtype(dtype) -> None:
    # int64 included: every CuPy this project supports (>= 14.1.1) adds it with atomics.
    counts = np.zeros(4, dtype)
    scatter_add(counts, np.array([0, 1, 1, 3]), 1)
    assert counts.tolist() == [1, 2, 0, 1]
    rows = np.zeros((3, 2), dtype)
    scatter_add(rows, np.array([2, 0, 2]), np.array([[1, 2], [3, 4], [5, 6]], dtype))
    assert rows.tolist() == [[3, 4], [0, 0], [6, 8]]


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


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint64, np.float32, np.float64])
def test_gpu_scatter_add_is_cupy_add_at_without_a_deprecation_warning(gpu_backend,
                                                                      dtype) -> None:
    import cupy

    index = np.random.default_rng(0).integers(0, 7, 500)
    values = np.arange(500 * 3).reshape(500, 3) % 11
    want = np.zeros((7, 3), dtype)
    np.add.at(want, index, values.astype(dtype))
    target = cupy.zeros((7, 3), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cupyx.scatter_add warns on every call
        scatter_add(target, cupy.asarray(index), cupy.asarray(values, dtype=dtype))
    np.testing.assert_array_equal(cupy.asnumpy(target), want)  # small integers: exact

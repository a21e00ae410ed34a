"""memory: freed heap pages handed back to the OS (glibc's malloc_trim), GPU pools emptied."""

from __future__ import annotations

import platform
import sys

import pytest

from datasculpt.memory import (
    driver_memory,
    release_free_memory,
    release_gpu_memory,
    release_host_memory,
)


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_freed_heap_goes_back_to_the_os_on_glibc() -> None:
    # The tokenize stage relies on this to keep its resident set flat over a long corpus.
    assert release_free_memory() is True


@pytest.mark.skipif(sys.platform != "linux", reason="RssAnon is read from /proc")
def test_freed_arrow_buffers_go_back_to_the_os_between_stages() -> None:
    # Arrow's allocator keeps freed pages resident (documents.parquet from 1M documents left
    # ~150 MB in the driver); the runner's release after each stage hands them back.
    import numpy as np
    import pyarrow as pa

    def anon() -> int:
        return driver_memory()["driver_rss_anon_bytes"]

    base = anon()
    strings = pa.concat_arrays([pa.array(np.arange(1 << 20) + i).cast(pa.string())
                                for i in range(8)])
    assert anon() - base > 100 << 20  # ~8M strings held
    del strings
    release_host_memory()
    assert anon() - base < 64 << 20


def test_releasing_gpu_memory_without_a_gpu_is_harmless() -> None:
    # The runner calls it after every stage of a GPU run; torch imported, no CUDA device here.
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    release_gpu_memory()  # CuPy absent, torch without CUDA, no FAISS GPU: nothing to free

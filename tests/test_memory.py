"""memory: freed heap pages handed back to the OS (glibc's malloc_trim), GPU pools emptied."""

from __future__ import annotations

import platform
import sys

import pytest

from datasculpt.memory import release_free_memory, release_gpu_memory


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_freed_heap_goes_back_to_the_os_on_glibc() -> None:
    # The tokenize stage relies on this to keep its resident set flat over a long corpus.
    assert release_free_memory() is True


def test_releasing_gpu_memory_without_a_gpu_is_harmless() -> None:
    # The runner calls it after every stage of a GPU run; torch imported, no CUDA device here.
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    release_gpu_memory()  # CuPy absent, torch without CUDA, no FAISS GPU: nothing to free

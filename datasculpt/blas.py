"""One BLAS thread while a host kernel whose choices rest on matrix products runs.

OpenBLAS rounds a float32 product differently with another thread count (x @ c.T of 1000 x
384 by 11 x 384: 227 of 11,000 entries differ between one and two threads), and a
different rounding can flip an argmax: the window strategy's cluster split gave another
packing at 1M documents on two threads than on one. The output must not depend on the
machine's cores, so the packing kernels and the cluster stage (its ISODATA rounds' candidate
products) run their products on one BLAS thread; they already run several batches or blocks
side by side on the host's threads, which is where their parallelism comes from.

Where the limit lands depends on OpenBLAS's threading layer (``threadpoolctl`` explains):
with its own threads the limit is process-wide and only the first thread to set it may
change it, so the caller of the kernel sets it for the threads it starts; with OpenMP it is
per thread, so every task sets it again in the thread that runs it (a no-op in the first
case). A Ray worker runs one task at a time in its own process and sets its own.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _controller() -> Any:
    """The process's BLAS libraries, found once: ``threadpool_limits`` searches every loaded
    library on each call (~3 ms; 3 s of a 10M-document pack, one call per task). The
    libraries that matter are NumPy's, loaded with it, before any kernel runs."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread() -> Any:
    """A context manager holding BLAS at one thread (restored on exit)."""
    return _controller().limit(limits=1, user_api="blas")

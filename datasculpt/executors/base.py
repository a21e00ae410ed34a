"""The executor interface, and the local executor: one process, threads over the host's cores.

Where work and data live is the executor's business, never the stage's: a stage hands its
arrays over where the backend put them (``share``, or ``map``'s shared values), a task puts
each input it computes with on its device with :func:`on_task_device`, and ``task_progress``
says whether a task's progress bar would reach the user. The local executor leaves every array
where it is; an executor whose tasks run in other processes ships host copies and brings
device arrays in results back as host copies.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from datasculpt.backend import to_device

T = TypeVar("T")
R = TypeVar("R")

# Whether the task running in this thread computes on a GPU (``map(..., gpu=True)``).
_TASK_GPU: ContextVar[bool] = ContextVar("datasculpt_task_gpu", default=False)


class Executor(Protocol):
    """Runs ``fn(item, **shared)`` for every item; results come back in item order.

    ``fn`` must be a module-level function (a remote executor ships it by reference) and must
    not depend on where or in which order calls run. ``shared`` holds the read-only inputs all
    calls need (arrays, configs): a remote executor stores them once per ``map``, not per item.
    ``threads`` says the items may share one process's memory and cores (NumPy kernels that
    release the GIL); ``gpu`` that each call computes on a GPU: a remote executor gives each
    call one, and the call puts its array inputs there with :func:`on_task_device`. A call in
    another process receives every array on the host, and a device array it returns comes back
    as a host copy; in this process arrays stay where they are.
    """

    name: str
    # Whether a task's progress bar reaches the user's terminal (tasks in this process).
    task_progress: bool
    workers: str  # who runs map_rows' model, for the report ("this process", "ray actors")

    def map(self, fn: Callable[..., R], items: Sequence[T], *, threads: int = 1,
            gpu: bool = False, **shared: Any) -> list[R]: ...

    def share(self, value: Any) -> Any:
        """A handle that ``map`` accepts as a ``shared`` value in place of ``value``, placed
        once where every later ``map``'s tasks read it (a stage's rows, read by many passes):
        ``value`` itself in this process, a host copy in a store for other processes."""
        ...

    def map_rows(self, read: Callable[..., Iterator[dict[str, Any]]], items: Sequence[T],
                 model: Callable[..., Any], *, batch_size: int, gpu: bool = False,
                 model_kwargs: dict[str, Any] | None = None, **shared: Any,
                 ) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


def on_task_device(x: Any) -> Any:
    """``x`` on the device the calling task computes on; ``None`` passes through.

    In a task of ``map(..., gpu=True)`` an array is moved to the GPU: a call in another
    process received it on the host, while in this process it is already there (no copy).
    Elsewhere ``x`` is returned as it is.
    """
    if x is None or not _TASK_GPU.get():
        return x
    return to_device(x)


@contextmanager
def task_context(gpu: bool) -> Iterator[None]:
    """Run a task's call inside: ``on_task_device`` then knows whether it computes on a GPU."""
    token = _TASK_GPU.set(bool(gpu))
    try:
        yield
    finally:
        _TASK_GPU.reset(token)


def host_threads(limit: int = 4) -> int:
    """Threads for independent NumPy work: the host's cores, at most ``limit`` (the calls
    share its memory bandwidth)."""
    return max(1, min(os.cpu_count() or 1, limit))


class LocalExecutor:
    """Everything in this process; ``threads > 1`` runs the items on a thread pool."""

    name = "local"
    task_progress = True
    workers = "this process"

    def map(self, fn: Callable[..., R], items: Sequence[T], *, threads: int = 1,
            gpu: bool = False, **shared: Any) -> list[R]:
        # One process: the backend already put every array where the tasks compute.
        def call(item: T) -> R:
            with task_context(gpu):
                return fn(item, **shared)

        items = list(items)
        if threads > 1 and len(items) > 1:
            with ThreadPoolExecutor(min(threads, len(items)),
                                    thread_name_prefix="datasculpt") as pool:
                return list(pool.map(call, items))
        return [call(item) for item in items]

    def share(self, value: Any) -> Any:
        return value

    def map_rows(self, read: Callable[..., Iterator[dict[str, Any]]], items: Sequence[T],
                 model: Callable[..., Any], *, batch_size: int, gpu: bool = False,
                 model_kwargs: dict[str, Any] | None = None, **shared: Any,
                 ) -> Iterator[dict[str, Any]]:
        """Rows from ``read(item, **shared)`` for every item, through one stateful
        ``model(**model_kwargs)`` called on batches of ``batch_size`` rows (a dict of column
        arrays); yields the model's output batches. Memory holds one batch of rows."""
        del gpu
        fn = model(**(model_kwargs or {}))
        for item in items:
            rows: list[dict[str, Any]] = []
            for row in read(item, **shared):
                rows.append(row)
                if len(rows) >= batch_size:
                    yield fn(columns(rows))
                    rows = []
            if rows:
                yield fn(columns(rows))

    def close(self) -> None:
        pass


def columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows as a batch of columns, the batch format Ray Data hands a ``map_batches`` UDF."""
    import numpy as np

    return {k: np.asarray([r[k] for r in rows], dtype=object if isinstance(rows[0][k], str)
                          else None) for k in rows[0]}

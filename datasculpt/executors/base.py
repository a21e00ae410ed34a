"""The executor interface, and the local executor: one process, threads over the host's cores."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn(item, **shared)`` for every item; results come back in item order.

    ``fn`` must be a module-level function (a remote executor ships it by reference) and must
    not depend on where or in which order calls run. ``shared`` holds the read-only inputs all
    calls need (arrays, configs): a remote executor stores them once per ``map``, not per item.
    ``threads`` says the items may share one process's memory and cores (NumPy kernels that
    release the GIL); ``gpu`` that each call wants a GPU of its own.
    """

    name: str

    def map(self, fn: Callable[..., R], items: Sequence[T], *, threads: int = 1,
            gpu: bool = False, **shared: Any) -> list[R]: ...

    def share(self, value: Any) -> Any:
        """A handle that ``map`` accepts as a ``shared`` value in place of ``value``, stored
        once for every later ``map`` (a stage's rows, read by many passes)."""
        ...

    def map_rows(self, read: Callable[..., Iterator[dict[str, Any]]], items: Sequence[T],
                 model: Callable[..., Any], *, batch_size: int, gpu: bool = False,
                 model_kwargs: dict[str, Any] | None = None, **shared: Any,
                 ) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


def host_threads(limit: int = 4) -> int:
    """Threads for independent NumPy work: the host's cores, at most ``limit`` (the calls
    share its memory bandwidth)."""
    return max(1, min(os.cpu_count() or 1, limit))


class LocalExecutor:
    """Everything in this process; ``threads > 1`` runs the items on a thread pool."""

    name = "local"

    def map(self, fn: Callable[..., R], items: Sequence[T], *, threads: int = 1,
            gpu: bool = False, **shared: Any) -> list[R]:
        del gpu  # one process: the backend already decided where arrays live
        items = list(items)
        if threads > 1 and len(items) > 1:
            with ThreadPoolExecutor(min(threads, len(items)),
                                    thread_name_prefix="datasculpt") as pool:
                return list(pool.map(lambda item: fn(item, **shared), items))
        return [fn(item, **shared) for item in items]

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

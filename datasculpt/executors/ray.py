"""The Ray executor: the items of a stage run as Ray tasks across the cluster's nodes.

``address=None`` starts a local Ray cluster for this run (and stops it at the end);
``"auto"`` or ``"ray://host:port"`` joins an existing one (the SLURM recipe starts one with
``ray start``). Shared inputs go into the object store once per ``map`` and reach every task
by reference (zero-copy for NumPy arrays on the same node). Device memory does not travel
between processes: a device array goes in as a host copy, a GPU task puts what it computes
with on its GPU (``on_task_device``), and a device array it returns comes back as a host
copy. A task whose worker dies is retried by Ray (``max_retries``): calls are pure functions
of their inputs, so a retry gives the same result. The run directory must be on a filesystem
every node sees.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from datasculpt.backend import is_gpu_array, to_numpy
from datasculpt.errors import ConfigError
from datasculpt.executors.base import task_context

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
MAX_RETRIES = 3


def _check_reachable(address: str) -> None:
    """Fail in seconds on a ``host:port`` nobody answers (``ray.init`` retries for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=10):
            pass
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None


def _is_auth_error(exc: BaseException) -> bool:
    """Ray reports a token mismatch as a ConnectionError over a RuntimeError whose message
    holds the AuthenticationError's traceback as text."""
    from ray.exceptions import AuthenticationError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AuthenticationError) or "InvalidAuthToken" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _to_host(obj: Any) -> Any:
    """``obj`` with its device arrays (also inside tuples, lists and dicts) as host copies."""
    if is_gpu_array(obj):
        return to_numpy(obj)
    if type(obj) is tuple:
        return tuple(_to_host(v) for v in obj)
    if type(obj) is list:
        return [_to_host(v) for v in obj]
    if type(obj) is dict:
        return {k: _to_host(v) for k, v in obj.items()}
    return obj


def _call(fn: Callable[..., R], item: Any, gpu: bool, /, **shared: Any) -> R:
    """A task: ``fn`` in its task context, its device arrays handed back on the host."""
    with task_context(gpu):
        return _to_host(fn(item, **shared))


def _read_rows(row: dict[str, Any], *, read: Callable[..., Iterator[dict[str, Any]]],
               items: list[Any], shared: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The ``flat_map`` reader: item number -> the rows ``read`` yields for that item."""
    yield from read(items[int(row["item"])], **shared)


class RayExecutor:
    name = "ray"
    task_progress = False  # a worker's bar would go to its log, not to the user
    workers = "ray actors"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("executor=ray needs Ray: pip install 'datasculpt[ray]'") from exc
        self._ray = ray
        self._owned = False
        if address and address != "auto" and not address.startswith("ray://"):
            _check_reachable(address)
        if not ray.is_initialized():
            # Workers inherit the driver's import path, so datasculpt imports in every task
            # even when it runs from a source checkout.
            # DATASCULPT_* (the fault-injection switches of the tests) reach them too.
            env_vars = {k: v for k, v in os.environ.items() if k.startswith("DATASCULPT_")}
            env_vars["PYTHONPATH"] = os.pathsep.join(
                p for p in (os.environ.get("PYTHONPATH"), os.getcwd()) if p)
            env = {"env_vars": env_vars}
            try:
                ray.init(address=address, num_cpus=num_cpus if address is None else None,
                         include_dashboard=False, log_to_driver=False, runtime_env=env,
                         configure_logging=False)
            except ConnectionError as exc:
                if _is_auth_error(exc):
                    raise ConfigError(
                        f"the Ray cluster at {address!r} refused this process's token: set "
                        "RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN or "
                        "RAY_AUTH_TOKEN_PATH) as the nodes have them") from exc
                raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {exc}") from exc
            self._owned = True
        res = ray.cluster_resources()
        log.info("executor=ray: %d nodes, %g CPUs, %g GPUs", len(ray.nodes()),
                 res.get("CPU", 0), res.get("GPU", 0))
        self._task = ray.remote(max_retries=MAX_RETRIES)(_call)

    def map(self, fn: Callable[..., R], items: Sequence[T], *, threads: int = 1,
            gpu: bool = False, **shared: Any) -> list[R]:
        del threads  # Ray schedules one task per item over the cluster's CPUs
        ray = self._ray
        items = list(items)
        if not items:
            return []
        refs = {k: v if isinstance(v, ray.ObjectRef) else ray.put(_to_host(v))
                for k, v in shared.items()}
        task = self._task.options(num_gpus=1) if gpu else self._task
        return ray.get([task.remote(fn, _to_host(item), gpu, **refs) for item in items])

    def share(self, value: Any) -> Any:
        """A host copy of the value in the object store (tasks receive it resolved, zero-copy
        on a node)."""
        return self._ray.put(_to_host(value))

    def map_rows(self, read: Callable[..., Iterator[dict[str, Any]]], items: Sequence[T],
                 model: Callable[..., Any], *, batch_size: int, gpu: bool = False,
                 model_kwargs: dict[str, Any] | None = None, **shared: Any,
                 ) -> Iterator[dict[str, Any]]:
        """A Ray Data pipeline: one read task per item (``flat_map``), then ``map_batches``
        over a pool of actors each holding one ``model`` (one actor per GPU with ``gpu``, else
        CPU actors), streamed back with Ray Data's backpressure: nothing is materialised."""
        ray = self._ray
        items = list(items)
        if not items:
            return
        res = ray.cluster_resources()
        if gpu:
            n_gpus = int(res.get("GPU", 0))
            if n_gpus < 1:
                raise ConfigError("the run is on the GPU but the Ray cluster has no GPU")
            pool = {"num_gpus": 1, "concurrency": n_gpus}
        else:
            # A CPU actor runs torch on its CPUs; one actor per two CPUs leaves room for the
            # readers that feed them.
            pool = {"num_cpus": 1, "concurrency": max(1, int(res.get("CPU", 1)) // 2)}
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ds = ray.data.from_items([{"item": i} for i in range(len(items))],
                                 override_num_blocks=len(items))
        ds = ds.flat_map(_read_rows, fn_kwargs={"read": read, "items": items,
                                                "shared": shared})
        ds = ds.map_batches(model, fn_constructor_kwargs=model_kwargs or {},
                            batch_size=batch_size, batch_format="numpy", **pool)
        yield from ds.iter_batches(batch_size=None, batch_format="numpy")

    def close(self) -> None:
        if self._owned:
            self._ray.shutdown()
            self._owned = False

"""Executors: where a task's arrays live is the executor's business, not the stage's."""

from __future__ import annotations

import numpy as np
import pytest

import datasculpt.executors.base as base
from datasculpt.config import PackConfig
from datasculpt.executors import LocalExecutor, on_task_device
from datasculpt.executors.ray import _to_host
from datasculpt.pack.datasculpt import pack_datasculpt
from datasculpt.tokenize import make_units


def _placed(item: int, *, x: np.ndarray) -> object:
    return on_task_device(x)


@pytest.mark.parametrize("threads", [1, 3])
def test_a_gpu_task_puts_its_inputs_on_the_device(monkeypatch: pytest.MonkeyPatch,
                                                  threads: int) -> None:
    monkeypatch.setattr(base, "to_device", lambda v: ("on device", v))
    x = np.arange(3)
    local = LocalExecutor()
    on_gpu = local.map(_placed, range(4), threads=threads, gpu=True, x=x)
    assert all(r[0] == "on device" and r[1] is x for r in on_gpu)
    on_host = local.map(_placed, range(4), threads=threads, gpu=False, x=x)
    assert all(r is x for r in on_host)
    # Outside a task nothing moves, and None passes through.
    assert on_task_device(x) is x and on_task_device(None) is None


def test_only_the_local_executor_shows_task_progress() -> None:
    from datasculpt.executors.ray import RayExecutor

    assert LocalExecutor.task_progress is True
    assert RayExecutor.task_progress is False


def test_results_keep_their_structure_on_the_way_back() -> None:
    a, b = np.zeros(2), np.ones(3)
    out = _to_host((a, [b, {"k": a}], 5, None))
    assert out[0] is a and out[1][0] is b and out[1][1]["k"] is a and out[2:] == (5, None)


def test_the_window_strategy_needs_an_executor() -> None:
    units = make_units(np.array([5, 6]), 16, 1)
    emb = np.eye(2, dtype=np.float32)
    with pytest.raises(ValueError, match="executor"):
        pack_datasculpt(units, emb, np.zeros(2), 16, PackConfig(method="datasculpt"))
    packing, _ = pack_datasculpt(units, emb, np.zeros(2), 16,
                                 PackConfig(method="datasculpt", strategy="unit"))
    assert packing.n_sequences == 1

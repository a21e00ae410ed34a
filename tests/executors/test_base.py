"""executors.base: the executor interface and the local executor. Where a task's arrays live
is the executor's business, not the stage's; results come back in item order; map_rows feeds
one stateful model batches of rows."""

from __future__ import annotations

import numpy as np
import pytest

import datasculpt.executors.base as base
from datasculpt.executors import LocalExecutor, on_task_device


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




def _square(item: int, *, offset: int) -> int:
    return item * item + offset


def test_results_come_back_in_item_order_on_any_number_of_threads() -> None:
    local = LocalExecutor()
    want = [i * i + 7 for i in range(50)]
    for threads in (1, 4):
        assert local.map(_square, range(50), threads=threads, offset=7) == want
    assert local.map(_square, [], threads=4, offset=7) == []
    shared = np.arange(5)
    assert local.share(shared) is shared  # one process: the value itself


class _Summer:
    """A stateful batch function, built once: counts its batches."""

    def __init__(self, start: int) -> None:
        self.calls = 0
        self.start = start

    def __call__(self, batch: dict) -> dict:
        self.calls += 1
        return {"row": batch["row"], "sum": batch["value"] + self.start,
                "text": batch["text"], "call": np.full(len(batch["row"]), self.calls)}


def _rows(item: int, *, width: int):
    for k in range(item):
        yield {"row": item * 100 + k, "value": k * width, "text": f"item {item} row {k}"}


def test_map_rows_feeds_one_model_batches_of_rows_per_item() -> None:
    out = list(LocalExecutor().map_rows(_rows, [3, 0, 5], _Summer, batch_size=2,
                                        model_kwargs={"start": 1000}, width=10))
    # batches never span two items: 3 rows -> 2 + 1, 0 rows -> none, 5 rows -> 2 + 2 + 1
    assert [b["row"].tolist() for b in out] == [[300, 301], [302], [500, 501], [502, 503],
                                                [504]]
    assert [int(b["call"][0]) for b in out] == [1, 2, 3, 4, 5]  # one model for every batch
    assert out[0]["sum"].tolist() == [1000, 1010]
    assert out[1]["text"].dtype == object and out[1]["text"].tolist() == ["item 3 row 2"]

"""pack.datasculpt: the method's entry point, which picks the strategy (``window``, the
default, or the paper's ``unit``), checks its config and runs the kernel where the embeddings
live (NumPy, or CuPy on a GPU). The kernels themselves: test_window.py and test_unit.py."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_same_packing, packing_corpus

from datasculpt.config import PackConfig
from datasculpt.executors import LocalExecutor
from datasculpt.pack.datasculpt import pack_datasculpt
from datasculpt.tokenize import make_units

LOCAL = LocalExecutor()


@pytest.mark.gpu
@pytest.mark.parametrize("strategy", ["window", "unit"])
def test_packing_kernel_on_cupy_gives_the_numpy_packing(strategy: str) -> None:
    # Integer embeddings keep every Gram entry exact on both devices, so the two runs must
    # agree unit for unit (with real embeddings, GPU rounding may flip near-ties).
    import cupy

    rng = np.random.default_rng(11)
    doc_len = np.clip(np.rint(rng.lognormal(np.log(300), 1.0, 3000)), 1, 3 * 2048)
    units = make_units(doc_len.astype(np.int64), 2048, 1)
    emb = rng.integers(-2, 3, (3000, 16)).astype(np.float32)
    clusters = rng.integers(0, 6, 3000)
    cfg = PackConfig(method="datasculpt", strategy=strategy, max_group=64,
                     remainder_group=256)
    cpu, c = pack_datasculpt(units, emb, clusters, 2048, cfg, executor=LOCAL)
    dev, g = pack_datasculpt(units, cupy.asarray(emb), clusters, 2048, cfg, executor=LOCAL)
    assert_same_packing(cpu, dev)
    if strategy == "window":  # the GPU's blocks from its free memory: fewer, larger
        assert g["greedy_blocks"] < c["greedy_blocks"]
        assert g["greedy_steps"] < c["greedy_steps"]


def test_config_is_validated():
    units = make_units(np.array([5, 6]), 16, 1)
    emb = np.eye(2, dtype=np.float32)
    with pytest.raises(ValueError, match="strategy"):
        pack_datasculpt(units, emb, np.zeros(2), 16,
                        PackConfig(method="datasculpt", strategy="nope"))


def test_the_window_strategy_needs_an_executor() -> None:
    units = make_units(np.array([5, 6]), 16, 1)
    emb = np.eye(2, dtype=np.float32)
    with pytest.raises(ValueError, match="executor"):
        pack_datasculpt(units, emb, np.zeros(2), 16, PackConfig(method="datasculpt"))
    packing, _ = pack_datasculpt(units, emb, np.zeros(2), 16,
                                 PackConfig(method="datasculpt", strategy="unit"))
    assert packing.n_sequences == 1


def test_the_packing_does_not_depend_on_the_blas_thread_count() -> None:
    # 8 clusters of ~2,500 units: the window strategy splits each by a k-means whose products
    # OpenBLAS rounds differently on two threads; before the kernels held one BLAS thread,
    # this corpus packed differently on one and on two (datasculpt/blas.py).
    from threadpoolctl import threadpool_limits

    doc_len, emb, labels = packing_corpus(20000, 4096, 8, 384, 0)
    units = make_units(doc_len, 4096, eos=1)
    out = []
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            out.append(pack_datasculpt(units, emb, labels, 4096, PackConfig(),
                                       executor=LOCAL)[0])
    assert_same_packing(*out)


@pytest.mark.parametrize("strategy", ["window", "unit"])
def test_rows_read_from_the_file_give_the_packing_of_the_array(tmp_path, strategy) -> None:
    # A CPU run hands its embeddings.npy over as a RowFile: each batch gathers its rows from
    # the file. The packing must be the one of the array in memory.
    from datasculpt.io.row_file import RowFile

    doc_len, emb, clusters = packing_corpus(2000, 2048, 6, 16, seed=5)
    units = make_units(doc_len.astype(np.int64), 2048, 1)
    np.save(tmp_path / "embeddings.npy", emb.astype(np.float32))
    cfg = PackConfig(method="datasculpt", strategy=strategy, max_group=64,
                     remainder_group=256, mode="fill")
    a, sa = pack_datasculpt(units, emb, clusters, 2048, cfg, executor=LOCAL)
    b, sb = pack_datasculpt(units, RowFile(tmp_path / "embeddings.npy"), clusters, 2048, cfg,
                            executor=LOCAL)
    assert_same_packing(a, b)
    assert sa["sequences"] == sb["sequences"] and sa["greedy_steps"] == sb["greedy_steps"]

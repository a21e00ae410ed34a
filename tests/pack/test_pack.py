"""pack: the package's entry point, ``datasculpt.pack.pack``: one call for every packer, with
the stats the pack stage reports (where it ran, how fast) and the mistakes it refuses. Each
packer's own behaviour: test_<packer>.py beside this file; all of them against one another:
test_quality.py."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_packing, packing_corpus

from datasculpt.backend import resolve_backend
from datasculpt.config import PackConfig
from datasculpt.executors import LocalExecutor
from datasculpt.pack import pack
from datasculpt.tokenize import make_units

CPU = resolve_backend("cpu")


@pytest.mark.parametrize(("method", "rung"), [("concat", "host"), ("bfd", "host"),
                                              ("iclm", "faiss-cpu"), ("datasculpt", "numpy")])
def test_every_method_packs_and_says_where_it_ran(method: str, rung: str) -> None:
    doc_len, emb, labels = packing_corpus(200, 512, 3, 8, seed=4, median=120)
    units = make_units(doc_len, 512, 1)
    packing, stats = pack(method, units, 512, PackConfig(method=method), 0, CPU,
                          embeddings=emb, clusters=labels, executor=LocalExecutor())
    check_packing(packing, units, 512, emb)
    assert (stats["method"], stats["rung"]) == (method, rung)
    assert stats["units_per_s"] == pytest.approx(len(units) / stats["seconds"])


def test_mistakes_a_direct_caller_can_make_are_refused() -> None:
    units = make_units(np.array([5, 6]), 16, 1)
    emb = np.eye(2, dtype=np.float32)
    with pytest.raises(ValueError, match="pack=datasculpt needs cluster labels"):
        pack("datasculpt", units, 16, PackConfig(), 0, CPU, embeddings=emb,
             executor=LocalExecutor())
    with pytest.raises(ValueError, match="unknown pack method 'shuffle'"):
        pack("shuffle", units, 16, PackConfig(), 0, CPU)

"""What the embedders hand an executor's model workers back, one batch of documents at a time.

The embed stage runs an embedder as a stateful batch function (``Executor.map_rows``): one is
built per worker (the model loads once), fed batches of ``{"row", "text"}`` columns, and
returns ``{"row", "vec", "rung"}``, each vector at its document's row wherever it was computed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datasculpt.backend import to_numpy


def vector_batch(rows: Any, vec: Any, rung: str) -> dict[str, Any]:
    """The output columns: ``row`` (int64), ``vec`` (host float32, one row per document) and
    ``rung`` (where the vectors were computed, per row: the stage reports it)."""
    return {"row": np.asarray(rows, dtype=np.int64),
            "vec": to_numpy(vec).astype(np.float32, copy=False),
            "rung": np.full(len(rows), rung)}

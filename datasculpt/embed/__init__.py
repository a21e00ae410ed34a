"""The embed stage's vectors: one L2-normalised float32 row per document.

Three sources, side by side: the transformer encoder (``encoder.py``, ``embed=minilm`` and
other encoders), a Model2Vec token table distilled from it (``static.py`` and ``distill.py``,
``embed=static``, optional extra ``static``), or vectors given with the run
(``precomputed.py``). The two embedders share how they tokenize long texts (``clip.py``) and
what they hand back to the executor's workers (``batch.py``).
"""

from __future__ import annotations

from datasculpt.embed.clip import clipped_ids
from datasculpt.embed.encoder import Encoder, auto_cuda_dtype, embed_texts, load_model
from datasculpt.embed.precomputed import load_precomputed
from datasculpt.vectors import l2_normalize

__all__ = ["Encoder", "auto_cuda_dtype", "clipped_ids", "embed_texts", "l2_normalize",
           "load_model", "load_precomputed"]

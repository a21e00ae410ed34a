"""stages.pack: one stage per packing method, keyed by the knobs that method reads."""

from __future__ import annotations

import dataclasses

from datasculpt.config import PackConfig
from datasculpt.stages.pack import KNOBS


def test_every_pack_knob_belongs_to_a_method() -> None:
    claimed = {k for names in KNOBS.values() for k in names}
    knobs = {f.name for f in dataclasses.fields(PackConfig)} - {"method"}
    assert knobs - claimed == set(), "a pack knob no method's key reads"
    assert claimed - knobs == set()

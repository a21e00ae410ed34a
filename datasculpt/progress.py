"""Progress bars for long stages: on a terminal only, so SLURM logs and pipes stay clean."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm


def progress_bar(enabled: bool, iterable: Any = None, **kwargs: Any) -> tqdm:
    """A tqdm bar that shows when ``enabled`` and stderr is a terminal (tqdm's ``disable=None``)."""
    return tqdm(iterable, disable=None if enabled else True, **kwargs)

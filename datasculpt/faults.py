"""Fault injection for the resume and retry tests: the process kills itself (SIGKILL) at a
named point, as a crash or an OOM kill would.

``DATASCULPT_FAULT=<name>`` kills at every pass through the point; with
``DATASCULPT_FAULT_ONCE=<path>`` only the first pass anywhere kills (it leaves ``path``
behind), so a retried task goes through. The points sit where a kill hurts most: work done,
result not yet handed on.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)


def fault_point(name: str) -> None:
    if os.environ.get("DATASCULPT_FAULT") != name:
        return
    once = os.environ.get("DATASCULPT_FAULT_ONCE")
    if once:
        try:
            fd = os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
    log.warning("DATASCULPT_FAULT=%s: killing process %d", name, os.getpid())
    logging.shutdown()
    os.kill(os.getpid(), signal.SIGKILL)

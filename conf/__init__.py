"""Hydra config tree, installed as ``datasculpt.conf`` (see pyproject's package-dir)."""

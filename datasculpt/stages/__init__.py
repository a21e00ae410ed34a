"""The stages of a run, one module each, in pipeline order: ``tokenize`` (read + tokenize),
``embed``, ``cluster``, ``pack``, ``judge``, ``write`` (sequences and shards), and the
``report`` that closes a run. Each declares a :class:`datasculpt.runner.Stage`; the
algorithms they call live in the packages of the same names."""

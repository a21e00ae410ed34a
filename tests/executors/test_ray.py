"""executors.ray, in this process and without a cluster: results come back with their
structure, an address nobody answers and a refused token are one-line config errors. The
executor on a real two-node Ray cluster: tests/e2e/test_ray_cluster.py (slow)."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from datasculpt.errors import ConfigError
from datasculpt.executors.ray import _check_reachable, _is_auth_error, _to_host


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_results_keep_their_structure_on_the_way_back() -> None:
    a, b = np.zeros(2), np.ones(3)
    out = _to_host((a, [b, {"k": a}], 5, None))
    assert out[0] is a and out[1][0] is b and out[1][1]["k"] is a and out[2:] == (5, None)


def test_an_address_nobody_answers_is_a_config_error_in_seconds() -> None:
    address = f"127.0.0.1:{_free_port()}"
    with pytest.raises(ConfigError, match=f"cannot reach the Ray cluster at '{address}'"):
        _check_reachable(address)
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster at 'nonsense'"):
        _check_reachable("nonsense")  # no port at all


def test_a_ray_address_that_answers_nothing_fails_the_run_before_any_work(tmp_path) -> None:
    pytest.importorskip("ray", reason="executor=ray needs the [ray] extra")
    import datasculpt

    (tmp_path / "in.jsonl").write_text('{"content": "a few words"}\n')
    cfg = datasculpt.default_config(input=str(tmp_path / "in.jsonl"), **{
        "executor.name": "ray", "executor.address": f"127.0.0.1:{_free_port()}",
        "report.progress": False})
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster"):
        datasculpt.run(cfg, output_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out" / "documents.parquet").exists()


def test_a_refused_token_is_told_apart_from_other_connection_errors() -> None:
    pytest.importorskip("ray", reason="executor=ray needs the [ray] extra")
    # Ray wraps the AuthenticationError's traceback as text in a RuntimeError, under a
    # ConnectionError: found through __cause__ and __context__.
    inner = RuntimeError("Traceback ...\nray.exceptions.AuthenticationError: InvalidAuthToken")
    try:
        try:
            raise inner
        except RuntimeError as exc:
            raise ConnectionError("could not connect to the GCS") from exc
    except ConnectionError as exc:
        refused = exc
    assert _is_auth_error(refused) is True
    assert _is_auth_error(ConnectionError("GCS did not answer in 60 s")) is False
